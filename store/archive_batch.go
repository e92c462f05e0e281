package store

import (
	"context"
	"database/sql"
	"errors"
	"time"
)

// maxArchiveBatch bounds how many callers' entries share one transaction.
const maxArchiveBatch = 1024

// archiveBatchDelay is the longest the writer waits for more callers
// before committing a batch, and it waits only while the server is busy:
// when the previous batch held more than one caller and this one is still
// smaller than archiveBatchFull. A lone message on a quiet server is
// committed at once.
const (
	archiveBatchDelay = time.Millisecond
	archiveBatchFull  = 64
)

var errClosed = errors.New("store: closed")

// archiveWriter commits the archive entries of many concurrent callers in
// shared transactions (group commit). Each caller still returns only once
// its own entries are committed, so a message is durable before the
// stanza that carried it is acknowledged; but instead of one transaction
// (and one wait for the database's write lock) per message, a busy server
// pays one per batch, written with a few multi-row statements
// (commitFast). If that fails, the batch is written again caller by
// caller, each caller's entries in a savepoint of their own, so one
// caller's error does not undo the others'.
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
	busy := false
	linger := time.NewTimer(0)
	defer linger.Stop()
	<-linger.C
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
			if busy && len(batch) < archiveBatchFull {
				linger.Reset(archiveBatchDelay)
			wait:
				for len(batch) < maxArchiveBatch {
					select {
					case r := <-w.reqs:
						batch = append(batch, r)
					case <-linger.C:
						break wait
					}
				}
				if !linger.Stop() {
					select {
					case <-linger.C:
					default:
					}
				}
			}
			busy = len(batch) > 1
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
		}
	}
	if err := commitFast(context.Background(), tx, batch, results); err != nil {
		// Caller by caller, each with its own outcome (those already
		// answered, an owner without an account, keep theirs).
		w.slow(tx, batch, results)
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

// slow writes each request of batch that has no result yet in a
// savepoint of its own inside tx.
func (w *archiveWriter) slow(tx *sql.Tx, batch []*archiveReq, results []error) {
	for i, r := range batch {
		if results[i] != nil {
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
}
