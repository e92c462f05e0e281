package store

import (
	"context"
	"database/sql"
	"strings"
)

// archiveInsertRows is the most rows one multi-row INSERT carries: 6
// parameters each, well under SQLite's and MySQL's parameter limits.
const archiveInsertRows = 128

// archiveLookupChunk is the most names or ids in one IN (…) list.
const archiveLookupChunk = 500

// commitFast writes the entries of every request in reqs inside tx with a
// handful of statements for the whole batch, where the slow path
// (insertArchiveEntries, one savepoint per request) takes four per entry:
// one lookup of every owner's account, one of their archive counters,
// multi-row INSERTs, one UPDATE of the counters, and a trim only for the
// accounts due one. Requests naming an owner without an account get
// ErrNotFound in results and are left out. Any other error (a duplicate
// stanza id, say) undoes the whole attempt, back to the savepoint it
// started from, and is returned: the caller then writes the batch the slow
// way, where each request gets its own outcome.
func commitFast(ctx context.Context, tx *sql.Tx, reqs []*archiveReq, results []error) (err error) {
	if _, err := tx.ExecContext(ctx, "SAVEPOINT archive_batch"); err != nil {
		return fail("archive messages", err)
	}
	defer func() {
		if err != nil {
			_, _ = tx.ExecContext(context.Background(), "ROLLBACK TO SAVEPOINT archive_batch")
		}
		if _, rerr := tx.ExecContext(context.Background(), "RELEASE SAVEPOINT archive_batch"); rerr != nil && err == nil {
			err = fail("archive messages", rerr)
		}
	}()

	// Every owner's account, in one pass.
	owners := map[string]int64{}
	for i, r := range reqs {
		if results[i] != nil {
			continue
		}
		for _, e := range r.entries {
			owners[e.Owner] = 0
		}
	}
	names := make([]any, 0, len(owners))
	for o := range owners {
		names = append(names, o)
	}
	if err := inChunks(names, func(part []any) error {
		rows, err := tx.QueryContext(ctx, `SELECT id, username FROM accounts WHERE username IN (`+marks(len(part))+`)`, part...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var id int64
			var name string
			if err := rows.Scan(&id, &name); err != nil {
				return err
			}
			owners[name] = id
		}
		return rows.Err()
	}); err != nil {
		return fail("archive messages", err)
	}

	// What each account gets from this batch, and under which limit.
	type added struct {
		n, bytes int64
		limit    ArchiveLimit
	}
	perAcct := map[int64]*added{}
	var rows []any
	for i, r := range reqs {
		if results[i] != nil {
			continue
		}
		missing := false
		for _, e := range r.entries {
			missing = missing || owners[e.Owner] == 0
		}
		if missing {
			results[i] = ErrNotFound
			continue
		}
		for _, e := range r.entries {
			m, acct := e.Message, owners[e.Owner]
			bare, _, _ := strings.Cut(m.With, "/")
			rows = append(rows, acct, m.ID, bare, m.With, micros(m.Stamp), blob(m.Stanza))
			a := perAcct[acct]
			if a == nil {
				a = &added{}
				perAcct[acct] = a
			}
			a.n++
			a.bytes += int64(len(m.Stanza))
			a.limit = e.Limit
		}
	}
	if len(rows) == 0 {
		return nil
	}
	const cols = 6
	for len(rows) > 0 {
		n := min(len(rows)/cols, archiveInsertRows)
		if _, err := tx.ExecContext(ctx, `INSERT INTO archive_messages (account_id, stanza_id, with_bare, with_full, stamp_us, stanza) VALUES `+
			strings.Repeat("(?, ?, ?, ?, ?, ?), ", n-1)+"(?, ?, ?, ?, ?, ?)", rows[:n*cols]...); err != nil {
			return fail("archive messages", err)
		}
		rows = rows[n*cols:]
	}

	// The archive counters (see ArchiveLimit.count): an account without a
	// row, or whose count reaches a sixteenth of a cap, is trimmed; the
	// others' counts grow, all in one UPDATE.
	ids := make([]any, 0, len(perAcct))
	for id := range perAcct {
		ids = append(ids, id)
	}
	type counter struct{ n, bytes int64 }
	have := map[int64]counter{}
	if err := inChunks(ids, func(part []any) error {
		rs, err := tx.QueryContext(ctx, `SELECT account_id, added, added_bytes FROM archive_quota WHERE account_id IN (`+marks(len(part))+`)`, part...)
		if err != nil {
			return err
		}
		defer rs.Close()
		for rs.Next() {
			var id int64
			var c counter
			if err := rs.Scan(&id, &c.n, &c.bytes); err != nil {
				return err
			}
			have[id] = c
		}
		return rs.Err()
	}); err != nil {
		return fail("count archived message", err)
	}
	var grow []any // account id, messages, bytes
	for id, a := range perAcct {
		c, ok := have[id]
		sn, sb := slack(int64(a.limit.Messages)), slack(a.limit.Bytes)
		switch {
		case !ok && sn == 0 && sb == 0:
			// No cap and no counter: nothing to count.
		case ok && (sn == 0 || c.n+a.n < sn) && (sb == 0 || c.bytes+a.bytes < sb):
			grow = append(grow, id, a.n, a.bytes)
		default:
			if err := a.limit.trim(ctx, tx, id, sn, sb); err != nil {
				return err
			}
		}
	}
	for len(grow) > 0 {
		n := min(len(grow)/3, archiveLookupChunk/3)
		part := grow[:n*3]
		grow = grow[n*3:]
		var q strings.Builder
		args := make([]any, 0, n*5)
		q.WriteString("UPDATE archive_quota SET added = added + CASE account_id")
		for i := 0; i < n; i++ {
			q.WriteString(" WHEN ? THEN ?")
			args = append(args, part[i*3], part[i*3+1])
		}
		q.WriteString(" ELSE 0 END, added_bytes = added_bytes + CASE account_id")
		for i := 0; i < n; i++ {
			q.WriteString(" WHEN ? THEN ?")
			args = append(args, part[i*3], part[i*3+2])
		}
		q.WriteString(" ELSE 0 END WHERE account_id IN (" + marks(n) + ")")
		for i := 0; i < n; i++ {
			args = append(args, part[i*3])
		}
		if _, err := tx.ExecContext(ctx, q.String(), args...); err != nil {
			return fail("count archived message", err)
		}
	}
	return nil
}

// marks is n comma-separated placeholders.
func marks(n int) string {
	return strings.Repeat("?, ", n-1) + "?"
}

// inChunks calls f with vals in slices of at most archiveLookupChunk.
func inChunks(vals []any, f func([]any) error) error {
	for len(vals) > 0 {
		n := min(len(vals), archiveLookupChunk)
		if err := f(vals[:n]); err != nil {
			return err
		}
		vals = vals[n:]
	}
	return nil
}
