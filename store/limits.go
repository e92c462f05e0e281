package store

import (
	"context"
	"database/sql"
	"errors"
)

// ErrLimit says a write would have taken one user's stored state past a
// limit the caller gave (items in a roster, nodes, bytes); nothing was
// written.
var ErrLimit = errors.New("store: limit reached")

// inAccountTx runs fn in one transaction with the id of owner's account,
// locked as lockAccount does. A missing account is ErrNotFound. An error
// from fn rolls the transaction back and is returned as fn gave it.
func (db *DB) inAccountTx(ctx context.Context, op, owner string, fn func(tx *sql.Tx, id int64) error) (err error) {
	tx, err := db.sql.BeginTx(ctx, nil)
	if err != nil {
		return fail(op, err)
	}
	defer func() {
		if err != nil {
			rollback(tx)
		}
	}()
	id, err := db.lockAccount(ctx, tx, owner)
	if err != nil {
		return fail(op, err)
	}
	if err := fn(tx, id); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return fail(op, err)
	}
	return nil
}

// count runs a SELECT COUNT(*) or SUM query that yields one number.
func count(ctx context.Context, tx *sql.Tx, op, query string, args ...any) (int64, error) {
	var n sql.NullInt64
	if err := tx.QueryRowContext(ctx, query, args...).Scan(&n); err != nil {
		return 0, fail(op, err)
	}
	return n.Int64, nil
}

// CountRosterItems returns how many items owner's roster holds, those kept
// only for a pending request included.
func (db *DB) CountRosterItems(ctx context.Context, owner string) (int, error) {
	var n int
	err := db.sql.QueryRowContext(ctx, `
		SELECT COUNT(*) FROM roster_items r JOIN accounts a ON a.id = r.account_id
		WHERE a.username = ?`, owner).Scan(&n)
	if err != nil {
		return 0, fail("count roster items", err)
	}
	return n, nil
}

// PutRosterItemWithin is PutRosterItem that refuses, with ErrLimit, to add
// a new contact to a roster that already holds limit items (those kept only
// for a pending request included). Replacing an item is always allowed. A
// limit of 0 or less is no limit.
func (db *DB) PutRosterItemWithin(ctx context.Context, owner string, it RosterItem, limit int) error {
	if limit <= 0 {
		return db.PutRosterItem(ctx, owner, it)
	}
	query, args, err := rosterUpsert(db.dialect, owner, it)
	if err != nil {
		return err
	}
	const op = "put roster item"
	return db.inAccountTx(ctx, op, owner, func(tx *sql.Tx, id int64) error {
		have, err := count(ctx, tx, op,
			`SELECT COUNT(*) FROM roster_items WHERE account_id = ? AND contact = ?`, id, it.Contact)
		if err != nil {
			return err
		}
		if have == 0 {
			n, err := count(ctx, tx, op, `SELECT COUNT(*) FROM roster_items WHERE account_id = ?`, id)
			if err != nil {
				return err
			}
			if n >= int64(limit) {
				return ErrLimit
			}
		}
		if _, err := tx.ExecContext(ctx, query, args...); err != nil {
			return fail(op, err)
		}
		return nil
	})
}

// SetPrivateXMLWithin is SetPrivateXML that refuses, with ErrLimit, a
// payload that would take the bytes owner keeps under all namespaces
// together past maxBytes (0 or less: no limit).
func (db *DB) SetPrivateXMLWithin(ctx context.Context, owner, ns string, payload []byte, maxBytes int64) error {
	if maxBytes <= 0 {
		return db.SetPrivateXML(ctx, owner, ns, payload)
	}
	const op = "save private xml"
	return db.inAccountTx(ctx, op, owner, func(tx *sql.Tx, id int64) error {
		others, err := count(ctx, tx, op,
			`SELECT SUM(LENGTH(payload)) FROM private_xml WHERE account_id = ? AND namespace <> ?`, id, ns)
		if err != nil {
			return err
		}
		if others+int64(len(payload)) > maxBytes {
			return ErrLimit
		}
		return upsert(ctx, tx, op, privateUpdate, privateInsert, blob(payload), ns, id)
	})
}

// CreatePEPNode creates owner's node n. It returns ErrExists if owner has
// a node of that name, ErrLimit if owner already has maxNodes nodes (0 or
// less: no limit) and ErrNotFound if owner has no account.
func (db *DB) CreatePEPNode(ctx context.Context, owner string, n PEPNode, maxNodes int) error {
	const op = "create pep node"
	return db.inAccountTx(ctx, op, owner, func(tx *sql.Tx, id int64) error {
		have, err := count(ctx, tx, op, `SELECT COUNT(*) FROM pep_nodes WHERE account_id = ? AND node = ?`, id, n.Node)
		if err != nil {
			return err
		}
		if have > 0 {
			return ErrExists
		}
		if maxNodes > 0 {
			k, err := count(ctx, tx, op, `SELECT COUNT(*) FROM pep_nodes WHERE account_id = ?`, id)
			if err != nil {
				return err
			}
			if k >= int64(maxNodes) {
				return ErrLimit
			}
		}
		if _, err := tx.ExecContext(ctx, `
			INSERT INTO pep_nodes (account_id, node, access_model, max_items, send_last)
			VALUES (?, ?, ?, ?, ?)`, id, n.Node, n.AccessModel, n.MaxItems, n.SendLast); err != nil {
			return fail(op, err)
		}
		return nil
	})
}
