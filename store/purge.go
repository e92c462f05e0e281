package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"time"
)

// Deleting an account for good. One transaction removes the account with
// everything it owns (its roster, offline queue, archive, blocklist, PEP
// nodes, vCard, private XML, directory listing: ON DELETE CASCADE) and
// everything other rows hold that names it, and appends a record of it to
// the account journal (account_purges). Either all of it happens or none:
// a crash halfway leaves the account as it was, never a half-deleted one
// whose leftovers a new account with the same name would inherit.
//
// What stays, on purpose: other users' archives and room archives (their
// records of what was said), other users' blocklists naming the account
// and outcast (banned) room affiliations (deleting an account and
// registering the name again must not undo a block or a ban).

// PurgedContact is one roster item another account held for a deleted
// account, as it was just before the deletion: what that account's
// sessions must be told (RFC 6121 §3.2.3, §3.3.3) and shown (a roster
// push removing the item).
type PurgedContact struct {
	Owner        string `json:"owner"` // the localpart whose roster held the item
	Subscription string `json:"sub"`   // SubNone, SubTo, SubFrom or SubBoth
	AskOut       bool   `json:"ask,omitempty"`
	PendingIn    bool   `json:"pending,omitempty"`
	Listed       bool   `json:"listed,omitempty"`
}

// AccountPurge is one entry of the account journal: an account deleted
// for good.
type AccountPurge struct {
	Seq      int64     // increases with every deletion; never reused
	Username string    // the deleted account's localpart
	At       time.Time // when it was deleted
	Contacts []PurgedContact
}

// PurgeAccount deletes the account username, whose bare JID is bare, for
// good: see the top of this file for what goes and what stays. Undelivered
// messages the account sent (offline messages from bare in others' queues)
// go too. It returns the journal entry it wrote, or ErrNotFound if there
// is no such account.
func (db *DB) PurgeAccount(ctx context.Context, username, bare string) (p AccountPurge, err error) {
	tx, err := db.sql.BeginTx(ctx, nil)
	if err != nil {
		return p, fail("purge account", err)
	}
	defer func() {
		if err != nil {
			rollback(tx)
		}
	}()
	id, err := db.lockAccount(ctx, tx, username)
	if err != nil {
		return p, fail("purge account", err)
	}
	contacts, err := purgedContacts(ctx, tx, id, bare)
	if err != nil {
		return p, err
	}
	for _, q := range []struct{ what, query string }{
		{"others' roster items", `DELETE FROM roster_items WHERE contact = ?`},
		{"room affiliations", `DELETE FROM room_affiliations WHERE jid = ? AND affiliation <> 'outcast'`},
		{"offline messages sent", `DELETE FROM offline_messages WHERE sender = ?`},
	} {
		if _, err := tx.ExecContext(ctx, q.query, bare); err != nil {
			return p, fail("purge account: "+q.what, err)
		}
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM accounts WHERE id = ?`, id); err != nil {
		return p, fail("purge account", err)
	}
	doc, err := json.Marshal(contacts)
	if err != nil {
		return p, fmt.Errorf("store: purge account: encode contacts: %w", err)
	}
	p = AccountPurge{Username: username, At: time.Now().UTC().Truncate(time.Microsecond), Contacts: contacts}
	res, err := tx.ExecContext(ctx,
		`INSERT INTO account_purges (username, purged_us, contacts) VALUES (?, ?, ?)`,
		username, micros(p.At), string(doc))
	if err != nil {
		return p, fail("purge account: journal", err)
	}
	if p.Seq, err = res.LastInsertId(); err != nil {
		return p, fail("purge account: journal", err)
	}
	if err := tx.Commit(); err != nil {
		return p, fail("purge account", err)
	}
	return p, nil
}

// purgedContacts reads the roster items other accounts hold for bare.
func purgedContacts(ctx context.Context, tx *sql.Tx, id int64, bare string) ([]PurgedContact, error) {
	rows, err := tx.QueryContext(ctx, `
		SELECT a.username, r.subscription, r.ask_out, r.pending_in, r.listed
		FROM roster_items r JOIN accounts a ON a.id = r.account_id
		WHERE r.contact = ? AND r.account_id <> ?
		ORDER BY a.username`, bare, id)
	if err != nil {
		return nil, fail("purge account: read contacts", err)
	}
	defer rows.Close()
	out := []PurgedContact{}
	for rows.Next() {
		var c PurgedContact
		if err := rows.Scan(&c.Owner, &c.Subscription, &c.AskOut, &c.PendingIn, &c.Listed); err != nil {
			return nil, fail("purge account: read contacts", err)
		}
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fail("purge account: read contacts", err)
	}
	return out, nil
}

// AccountPurges returns the journal entries after seq, oldest first, at
// most limit of them (limit <= 0 means 100).
func (db *DB) AccountPurges(ctx context.Context, after int64, limit int) ([]AccountPurge, error) {
	if limit <= 0 {
		limit = 100
	}
	rows, err := db.sql.QueryContext(ctx, `
		SELECT seq, username, purged_us, contacts FROM account_purges
		WHERE seq > ? ORDER BY seq LIMIT ?`, after, limit)
	if err != nil {
		return nil, fail("read account journal", err)
	}
	defer rows.Close()
	var out []AccountPurge
	for rows.Next() {
		var (
			p   AccountPurge
			us  int64
			doc string
		)
		if err := rows.Scan(&p.Seq, &p.Username, &us, &doc); err != nil {
			return nil, fail("read account journal", err)
		}
		p.At = fromMicros(us)
		if err := json.Unmarshal([]byte(doc), &p.Contacts); err != nil {
			return nil, fmt.Errorf("store: read account journal: entry %d: %w", p.Seq, err)
		}
		out = append(out, p)
	}
	if err := rows.Err(); err != nil {
		return nil, fail("read account journal", err)
	}
	return out, nil
}

// LastAccountPurge returns the newest journal entry's sequence number, 0
// when the journal is empty.
func (db *DB) LastAccountPurge(ctx context.Context) (int64, error) {
	var seq sql.NullInt64
	if err := db.sql.QueryRowContext(ctx, `SELECT MAX(seq) FROM account_purges`).Scan(&seq); err != nil {
		return 0, fail("read account journal", err)
	}
	return seq.Int64, nil
}

// PruneAccountPurges removes the journal entries older than before, except
// the newest entry (so that sequence numbers keep increasing on databases
// that restart their counters from the highest row).
func (db *DB) PruneAccountPurges(ctx context.Context, before time.Time) error {
	last, err := db.LastAccountPurge(ctx)
	if err != nil {
		return err
	}
	if _, err := db.sql.ExecContext(ctx,
		`DELETE FROM account_purges WHERE purged_us < ? AND seq < ?`, micros(before), last); err != nil {
		return fail("prune account journal", err)
	}
	return nil
}
