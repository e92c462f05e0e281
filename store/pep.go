package store

import (
	"context"
	"database/sql"
	"errors"
	"slices"
	"strings"
	"time"
)

// PEP access models (XEP-0060 §4.5) poosms supports.
const (
	AccessOpen      = "open"
	AccessPresence  = "presence"
	AccessWhitelist = "whitelist"
)

// PEPNode is one personal eventing node of a user (XEP-0163) with the
// configuration poosms keeps.
type PEPNode struct {
	Node        string
	AccessModel string // AccessOpen, AccessPresence or AccessWhitelist
	MaxItems    int    // the most items kept; 0 means no limit ("max")
	SendLast    bool   // send the last item to new subscribers and on presence
}

// PEPItem is one published item.
type PEPItem struct {
	ID        string
	Publisher string // full JID of the publishing session
	Stamp     time.Time
	Payload   []byte // the serialised payload element
}

// PEPNodes returns owner's nodes, sorted by name.
func (db *DB) PEPNodes(ctx context.Context, owner string) ([]PEPNode, error) {
	rows, err := db.sql.QueryContext(ctx, `
		SELECT n.node, n.access_model, n.max_items, n.send_last
		FROM pep_nodes n JOIN accounts a ON a.id = n.account_id
		WHERE a.username = ? ORDER BY n.node`, owner)
	if err != nil {
		return nil, fail("load pep nodes", err)
	}
	defer rows.Close()
	var out []PEPNode
	for rows.Next() {
		var n PEPNode
		if err := rows.Scan(&n.Node, &n.AccessModel, &n.MaxItems, &n.SendLast); err != nil {
			return nil, fail("load pep nodes", err)
		}
		out = append(out, n)
	}
	if err := rows.Err(); err != nil {
		return nil, fail("load pep nodes", err)
	}
	return out, nil
}

// PEPNode returns owner's node, or ErrNotFound.
func (db *DB) PEPNode(ctx context.Context, owner, node string) (PEPNode, error) {
	n := PEPNode{Node: node}
	err := db.sql.QueryRowContext(ctx, `
		SELECT n.access_model, n.max_items, n.send_last
		FROM pep_nodes n JOIN accounts a ON a.id = n.account_id
		WHERE a.username = ? AND n.node = ?`, owner, node).Scan(&n.AccessModel, &n.MaxItems, &n.SendLast)
	if err != nil {
		return PEPNode{}, fail("load pep node", err)
	}
	return n, nil
}

// PutPEPNode creates owner's node n or replaces its configuration, and
// drops the oldest items beyond a lowered MaxItems. It returns ErrNotFound
// if owner has no account.
func (db *DB) PutPEPNode(ctx context.Context, owner string, n PEPNode) (err error) {
	tx, err := db.sql.BeginTx(ctx, nil)
	if err != nil {
		return fail("save pep node", err)
	}
	defer func() {
		if err != nil {
			rollback(tx)
		}
	}()
	var id int64
	if err := tx.QueryRowContext(ctx, `SELECT id FROM accounts WHERE username = ?`, owner).Scan(&id); err != nil {
		return fail("save pep node", err)
	}
	res, err := tx.ExecContext(ctx, `
		UPDATE pep_nodes SET access_model = ?, max_items = ?, send_last = ?
		WHERE account_id = ? AND node = ?`, n.AccessModel, n.MaxItems, n.SendLast, id, n.Node)
	if err != nil {
		return fail("save pep node", err)
	}
	if k, err := res.RowsAffected(); err != nil {
		return fail("save pep node", err)
	} else if k == 0 {
		if _, err := tx.ExecContext(ctx, `
			INSERT INTO pep_nodes (account_id, node, access_model, max_items, send_last)
			VALUES (?, ?, ?, ?, ?)`, id, n.Node, n.AccessModel, n.MaxItems, n.SendLast); err != nil {
			return fail("save pep node", err)
		}
	}
	if err := trimItems(ctx, tx, id, n.Node, n.MaxItems); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return fail("save pep node", err)
	}
	return nil
}

// DeletePEPNode removes owner's node and its items, or returns ErrNotFound.
func (db *DB) DeletePEPNode(ctx context.Context, owner, node string) error {
	res, err := db.sql.ExecContext(ctx, `
		DELETE FROM pep_nodes
		WHERE account_id = (SELECT id FROM accounts WHERE username = ?) AND node = ?`, owner, node)
	if err != nil {
		return fail("delete pep node", err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return fail("delete pep node", err)
	} else if n == 0 {
		return ErrNotFound
	}
	return nil
}

// PublishPEPItem stores it as the newest item of owner's node, replacing
// an item with the same ID, then drops the oldest items beyond the node's
// MaxItems. It returns ErrNotFound if the node does not exist.
func (db *DB) PublishPEPItem(ctx context.Context, owner, node string, it PEPItem) error {
	return db.PublishPEPItemWithin(ctx, owner, node, it, 0)
}

// PublishPEPItemWithin is PublishPEPItem that refuses, with ErrLimit and
// nothing changed, an item that would leave the node's payloads (after the
// oldest items beyond MaxItems are dropped) over maxBytes in all. A
// maxBytes of 0 or less is no limit.
func (db *DB) PublishPEPItemWithin(ctx context.Context, owner, node string, it PEPItem, maxBytes int64) (err error) {
	tx, err := db.sql.BeginTx(ctx, nil)
	if err != nil {
		return fail("publish pep item", err)
	}
	defer func() {
		if err != nil {
			rollback(tx)
		}
	}()
	lookup := `SELECT n.account_id, n.max_items FROM pep_nodes n JOIN accounts a ON a.id = n.account_id
		WHERE a.username = ? AND n.node = ?`
	if db.dialect == DialectMySQL {
		lookup += ` FOR UPDATE`
	}
	var (
		id  int64
		max int
	)
	if err := tx.QueryRowContext(ctx, lookup, owner, node).Scan(&id, &max); err != nil {
		return fail("publish pep item", err)
	}
	if _, err := tx.ExecContext(ctx,
		`DELETE FROM pep_items WHERE account_id = ? AND node = ? AND item_id = ?`, id, node, it.ID); err != nil {
		return fail("publish pep item", err)
	}
	if _, err := tx.ExecContext(ctx, `
		INSERT INTO pep_items (account_id, node, item_id, publisher, stamp_us, payload)
		VALUES (?, ?, ?, ?, ?, ?)`, id, node, it.ID, it.Publisher, micros(it.Stamp), blob(it.Payload)); err != nil {
		return fail("publish pep item", err)
	}
	if err := trimItems(ctx, tx, id, node, max); err != nil {
		return err
	}
	if maxBytes > 0 {
		var total sql.NullInt64
		if err := tx.QueryRowContext(ctx, `SELECT SUM(LENGTH(payload)) FROM pep_items WHERE account_id = ? AND node = ?`,
			id, node).Scan(&total); err != nil {
			return fail("publish pep item", err)
		}
		if total.Int64 > maxBytes {
			return ErrLimit
		}
	}
	if err := tx.Commit(); err != nil {
		return fail("publish pep item", err)
	}
	return nil
}

// trimItems keeps the newest max items of a node (all when max is 0 or
// less).
func trimItems(ctx context.Context, tx *sql.Tx, account int64, node string, max int) error {
	if max <= 0 {
		return nil
	}
	var oldestKept int64
	err := tx.QueryRowContext(ctx, `
		SELECT seq FROM pep_items WHERE account_id = ? AND node = ?
		ORDER BY seq DESC LIMIT 1 OFFSET ?`, account, node, max-1).Scan(&oldestKept)
	if errors.Is(err, sql.ErrNoRows) {
		return nil
	}
	if err != nil {
		return fail("trim pep items", err)
	}
	if _, err := tx.ExecContext(ctx,
		`DELETE FROM pep_items WHERE account_id = ? AND node = ? AND seq < ?`, account, node, oldestKept); err != nil {
		return fail("trim pep items", err)
	}
	return nil
}

// PEPItems returns items of owner's node, newest first: those named in ids
// (in that order of recency) or, with no ids, the newest max (all when max
// is 0 or less). It returns ErrNotFound if the node does not exist.
func (db *DB) PEPItems(ctx context.Context, owner, node string, ids []string, max int) ([]PEPItem, error) {
	if _, err := db.PEPNode(ctx, owner, node); err != nil {
		return nil, err
	}
	q := `SELECT i.item_id, i.publisher, i.stamp_us, i.payload
		FROM pep_items i JOIN accounts a ON a.id = i.account_id
		WHERE a.username = ? AND i.node = ?`
	args := []any{owner, node}
	if len(ids) > 0 {
		q += " AND i.item_id IN (?" + strings.Repeat(", ?", len(ids)-1) + ")"
		for _, id := range ids {
			args = append(args, id)
		}
	}
	q += " ORDER BY i.seq DESC"
	if max > 0 && len(ids) == 0 {
		q += " LIMIT ?"
		args = append(args, max)
	}
	rows, err := db.sql.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fail("load pep items", err)
	}
	defer rows.Close()
	var out []PEPItem
	for rows.Next() {
		var (
			it PEPItem
			us int64
		)
		if err := rows.Scan(&it.ID, &it.Publisher, &us, &it.Payload); err != nil {
			return nil, fail("load pep items", err)
		}
		it.Stamp = fromMicros(us)
		out = append(out, it)
	}
	if err := rows.Err(); err != nil {
		return nil, fail("load pep items", err)
	}
	return out, nil
}

// RetractPEPItem deletes one item of owner's node. It returns ErrNotFound
// if there is no such item.
func (db *DB) RetractPEPItem(ctx context.Context, owner, node, id string) error {
	res, err := db.sql.ExecContext(ctx, `
		DELETE FROM pep_items
		WHERE account_id = (SELECT id FROM accounts WHERE username = ?) AND node = ? AND item_id = ?`,
		owner, node, id)
	if err != nil {
		return fail("retract pep item", err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return fail("retract pep item", err)
	} else if n == 0 {
		return ErrNotFound
	}
	return nil
}

// PEPItemQuery asks for one page of a node's items, the node's items in
// publication order (oldest first) being the result set as in Result Set
// Management (XEP-0059).
type PEPItemQuery struct {
	// After and Before are item ids: the page starts just after After, or
	// ends just before Before.
	After, Before string
	// Last asks for the page at the end (the newest items); Before
	// implies it.
	Last bool
	// Max is the most items on the page; 0 or less means 1.
	Max int
	// MaxBytes bounds the payloads on the page together, except that a page
	// always holds at least one item when there is one; 0 or less: no bound.
	MaxBytes int
}

// PEPItemPage is one page of a node's items.
type PEPItemPage struct {
	Items []PEPItem // oldest first
	// First is the index of Items[0] among all of the node's items, oldest
	// first; Count is how many items the node holds.
	First, Count int
	// Complete is true when the page reaches the end of the node's items in
	// its direction (the newest for a forward page, the oldest for Last).
	Complete bool
}

// PEPItemsPage returns one page of owner's node. It returns ErrNotFound if
// the node does not exist, or if After or Before names no item of it.
func (db *DB) PEPItemsPage(ctx context.Context, owner, node string, q PEPItemQuery) (PEPItemPage, error) {
	const op = "load pep items"
	var page PEPItemPage
	var acct int64
	if err := db.sql.QueryRowContext(ctx, `
		SELECT n.account_id FROM pep_nodes n JOIN accounts a ON a.id = n.account_id
		WHERE a.username = ? AND n.node = ?`, owner, node).Scan(&acct); err != nil {
		return page, fail(op, err)
	}
	if err := db.sql.QueryRowContext(ctx,
		`SELECT COUNT(*) FROM pep_items WHERE account_id = ? AND node = ?`, acct, node).Scan(&page.Count); err != nil {
		return page, fail(op, err)
	}
	where, args := `account_id = ? AND node = ?`, []any{acct, node}
	last := q.Last || q.Before != ""
	for _, c := range []struct{ id, op string }{{q.After, ">"}, {q.Before, "<"}} {
		if c.id == "" {
			continue
		}
		var seq int64
		if err := db.sql.QueryRowContext(ctx, `SELECT seq FROM pep_items WHERE account_id = ? AND node = ? AND item_id = ?`,
			acct, node, c.id).Scan(&seq); err != nil {
			return page, fail(op, err)
		}
		where += " AND seq " + c.op + " ?"
		args = append(args, seq)
	}
	order := " ORDER BY seq"
	if last {
		order += " DESC"
	}
	limit := max(q.Max, 1)
	rows, err := db.sql.QueryContext(ctx, `SELECT seq, item_id, publisher, stamp_us, payload FROM pep_items WHERE `+
		where+order+` LIMIT ?`, append(args, limit+1)...)
	if err != nil {
		return page, fail(op, err)
	}
	defer rows.Close()
	var (
		firstSeq int64
		bytes    int
	)
	page.Complete = true
	for rows.Next() {
		var (
			it  PEPItem
			seq int64
			us  int64
		)
		if err := rows.Scan(&seq, &it.ID, &it.Publisher, &us, &it.Payload); err != nil {
			return page, fail(op, err)
		}
		if len(page.Items) == limit || (q.MaxBytes > 0 && len(page.Items) > 0 && bytes+len(it.Payload) > q.MaxBytes) {
			page.Complete = false
			break
		}
		it.Stamp = fromMicros(us)
		bytes += len(it.Payload)
		page.Items = append(page.Items, it)
		if len(page.Items) == 1 || last {
			firstSeq = seq
		}
	}
	if err := rows.Err(); err != nil {
		return page, fail(op, err)
	}
	rows.Close()
	if last {
		slices.Reverse(page.Items)
	}
	if len(page.Items) > 0 {
		if err := db.sql.QueryRowContext(ctx, `SELECT COUNT(*) FROM pep_items WHERE account_id = ? AND node = ? AND seq < ?`,
			acct, node, firstSeq).Scan(&page.First); err != nil {
			return page, fail(op, err)
		}
	}
	return page, nil
}
