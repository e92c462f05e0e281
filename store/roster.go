package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
)

// rosterColumns are the columns scanRosterItem reads, in order.
const rosterColumns = `r.contact, r.name, r.group_names, r.subscription, r.ask_out, r.pending_in, r.listed`

// RosterItems returns the roster of the user owner, sorted byte-wise by
// contact. An owner with no items (or no account) has an empty roster.
func (db *DB) RosterItems(ctx context.Context, owner string) ([]RosterItem, error) {
	rows, err := db.sql.QueryContext(ctx, `
		SELECT `+rosterColumns+`
		FROM roster_items r JOIN accounts a ON a.id = r.account_id
		WHERE a.username = ?
		ORDER BY r.contact`, owner)
	if err != nil {
		return nil, fail("load roster", err)
	}
	defer rows.Close()
	var items []RosterItem
	for rows.Next() {
		it, err := scanRosterItem(rows)
		if err != nil {
			return nil, fail("load roster", err)
		}
		items = append(items, it)
	}
	if err := rows.Err(); err != nil {
		return nil, fail("load roster", err)
	}
	return items, nil
}

// RosterItem returns the item for contact (a bare JID) in owner's roster,
// or ErrNotFound.
func (db *DB) RosterItem(ctx context.Context, owner, contact string) (RosterItem, error) {
	row := db.sql.QueryRowContext(ctx, `
		SELECT `+rosterColumns+`
		FROM roster_items r JOIN accounts a ON a.id = r.account_id
		WHERE a.username = ? AND r.contact = ?`, owner, contact)
	it, err := scanRosterItem(row)
	if err != nil {
		return RosterItem{}, fail("load roster item", err)
	}
	return it, nil
}

// PutRosterItem stores it in owner's roster, replacing any item for the
// same contact. An empty Subscription means SubNone. It returns
// ErrNotFound if owner has no account.
func (db *DB) PutRosterItem(ctx context.Context, owner string, it RosterItem) error {
	query, args, err := rosterUpsert(db.dialect, owner, it)
	if err != nil {
		return err
	}
	res, err := db.sql.ExecContext(ctx, query, args...)
	if err != nil {
		return fail("put roster item", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return fail("put roster item", err)
	}
	if n == 0 {
		return ErrNotFound
	}
	return nil
}

// rosterUpsert builds the statement that stores it in owner's roster: an
// insert from a SELECT on accounts, so that an unknown owner inserts
// nothing, that updates the row if the contact is already there.
func rosterUpsert(dialect, owner string, it RosterItem) (query string, args []any, err error) {
	sub := it.Subscription
	switch sub {
	case "":
		sub = SubNone
	case SubNone, SubTo, SubFrom, SubBoth:
	default:
		return "", nil, fmt.Errorf("store: put roster item: invalid subscription %q", it.Subscription)
	}
	groups := it.Groups
	if groups == nil {
		groups = []string{}
	}
	groupsJSON, err := json.Marshal(groups)
	if err != nil {
		return "", nil, fmt.Errorf("store: put roster item: encode groups: %w", err)
	}
	query = `
		INSERT INTO roster_items (account_id, contact, name, group_names,
			subscription, ask_out, pending_in, listed)
		SELECT id, ?, ?, ?, ?, ?, ?, ? FROM accounts WHERE username = ?`
	switch dialect {
	case DialectMySQL:
		query += `
		ON DUPLICATE KEY UPDATE name = VALUES(name), group_names = VALUES(group_names),
			subscription = VALUES(subscription), ask_out = VALUES(ask_out),
			pending_in = VALUES(pending_in), listed = VALUES(listed)`
	default:
		query += `
		ON CONFLICT (account_id, contact) DO UPDATE SET name = excluded.name,
			group_names = excluded.group_names, subscription = excluded.subscription,
			ask_out = excluded.ask_out, pending_in = excluded.pending_in, listed = excluded.listed`
	}
	return query, []any{it.Contact, it.Name, string(groupsJSON), sub, it.AskOut, it.PendingIn, it.Listed, owner}, nil
}

// DeleteRosterItem removes contact from owner's roster. Removing an item
// that is not there is not an error.
func (db *DB) DeleteRosterItem(ctx context.Context, owner, contact string) error {
	_, err := db.sql.ExecContext(ctx, `
		DELETE FROM roster_items
		WHERE account_id = (SELECT id FROM accounts WHERE username = ?) AND contact = ?`,
		owner, contact)
	if err != nil {
		return fail("delete roster item", err)
	}
	return nil
}

// scanner is a *sql.Row or *sql.Rows.
type scanner interface {
	Scan(dest ...any) error
}

// scanRosterItem reads one row of rosterColumns.
func scanRosterItem(s scanner) (RosterItem, error) {
	var (
		it     RosterItem
		groups string
	)
	if err := s.Scan(&it.Contact, &it.Name, &groups, &it.Subscription,
		&it.AskOut, &it.PendingIn, &it.Listed); err != nil {
		return RosterItem{}, err
	}
	if err := json.Unmarshal([]byte(groups), &it.Groups); err != nil {
		return RosterItem{}, fmt.Errorf("decode groups of %q: %w", it.Contact, err)
	}
	if len(it.Groups) == 0 {
		it.Groups = nil
	}
	return it, nil
}

var _ scanner = (*sql.Row)(nil)
