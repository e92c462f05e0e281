package store

import (
	"context"
	"errors"
)

// maxArchiveBatch bounds how many callers' entries share one transaction.
const maxArchiveBatch = 256

var errClosed = errors.New("store: closed")

// archiveWriter commits the archive entries of many concurrent callers in
// shared transactions (group commit). Each caller still returns only once
// its own entries are committed, so a message is durable before the
// stanza that carried it is acknowledged; but instead of one transaction
// (and one wait for the database's write lock) per message, a busy server
// pays one per batch. Each caller's entries sit in a savepoint of their
// own, so one caller's error does not undo the others'.
type archiveWriter struct {
	db   *DB
	reqs chan *archiveReq
	stop chan struct{}
	done chan struct{}
}

type archiveReq struct {
	ctx     context.Context
	entries []ArchiveEntry
	err     chan error
}

// archive returns the writer, started on first use.
func (db *DB) archive() *archiveWriter {
	db.archiveOnce.Do(func() {
		w := &archiveWriter{db: db, reqs: make(chan *archiveReq, maxArchiveBatch), stop: make(chan struct{}), done: make(chan struct{})}
		db.archiveW = w
		go w.run()
	})
	return db.archiveW
}

// stopArchive ends the writer, if it was started; queued callers get an
// error. Safe to call twice.
func (db *DB) stopArchive() {
	db.archiveOnce.Do(func() {}) // no writer may start after Close
	db.archiveStop.Do(func() {
		if w := db.archiveW; w != nil {
			close(w.stop)
			<-w.done
		}
	})
}

func (w *archiveWriter) submit(ctx context.Context, entries []ArchiveEntry) error {
	if w == nil {
		return errClosed // the database was closed before anything was archived
	}
	r := &archiveReq{ctx: ctx, entries: entries, err: make(chan error, 1)}
	select {
	case w.reqs <- r:
	case <-w.stop:
		return errClosed
	case <-ctx.Done():
		return fail("archive messages", ctx.Err())
	}
	select {
	case err := <-r.err:
		return err
	case <-ctx.Done():
		return fail("archive messages", ctx.Err())
	}
}

func (w *archiveWriter) run() {
	defer close(w.done)
	batch := make([]*archiveReq, 0, maxArchiveBatch)
	for {
		select {
		case <-w.stop:
			for {
				select {
				case r := <-w.reqs:
					r.err <- errClosed
				default:
					return
				}
			}
		case r := <-w.reqs:
			batch = append(batch[:0], r)
		fill:
			for len(batch) < maxArchiveBatch {
				select {
				case r := <-w.reqs:
					batch = append(batch, r)
				default:
					break fill
				}
			}
			w.commit(batch)
			clear(batch)
		}
	}
}

// commit writes a batch in one transaction and answers every caller.
func (w *archiveWriter) commit(batch []*archiveReq) {
	results := make([]error, len(batch))
	answer := func() {
		for i, r := range batch {
			r.err <- results[i]
		}
	}
	tx, err := w.db.sql.BeginTx(context.Background(), nil)
	if err != nil {
		for i := range results {
			results[i] = fail("archive messages", err)
		}
		answer()
		return
	}
	for i, r := range batch {
		if err := r.ctx.Err(); err != nil {
			results[i] = fail("archive messages", err)
			continue
		}
		if _, err := tx.ExecContext(r.ctx, "SAVEPOINT archive_entry"); err != nil {
			results[i] = fail("archive messages", err)
			continue
		}
		results[i] = insertArchiveEntries(r.ctx, tx, r.entries)
		if results[i] != nil {
			_, _ = tx.ExecContext(context.Background(), "ROLLBACK TO SAVEPOINT archive_entry")
		}
		if _, err := tx.ExecContext(context.Background(), "RELEASE SAVEPOINT archive_entry"); err != nil && results[i] == nil {
			results[i] = fail("archive messages", err)
		}
	}
	if err := tx.Commit(); err != nil {
		for i := range results {
			if results[i] == nil {
				results[i] = fail("archive messages", err)
			}
		}
	}
	answer()
}
