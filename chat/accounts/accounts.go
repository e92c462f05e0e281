// Package accounts deletes local accounts for good and makes every node of
// a cluster act on the deletion. Remove is the one way to delete an
// account: "poosmsd user del", in-band removal (XEP-0077) and any future
// admin path call it. A Watcher on each node reads the store's account
// journal and, for each deletion, ends the account's sessions on that
// node, drops it from the rooms the node knows and tells the contacts the
// node serves.
//
// Why a journal in the store rather than a message between processes:
// "poosmsd user del" is a separate process that may run while the server
// does, on a single node with SQLite as well as beside a cluster; the store
// is the one thing every process shares. The deletion and its journal
// entry are one transaction, so no node can miss a deletion that happened,
// and each node polls the journal (one indexed query a second); a node
// that deletes an account itself applies it at once and nudges the other
// nodes through the cluster, which then read the journal without waiting.
// The nudge carries no authority: a node acts only on what the journal in
// the store says.
//
// The package never touches a socket or SQL: it sees the store and the
// services through the small interfaces below.
package accounts

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"mellium.im/xmpp/jid"

	"poosms.org/poosms/store"
)

// Store is the account deletion the store offers; *store.DB is one.
type Store interface {
	AccountExists(ctx context.Context, username string) (bool, error)
	PurgeAccount(ctx context.Context, username, bare string) (store.AccountPurge, error)
}

// Files removes a user's shared files; *upload.Service is one.
type Files interface {
	DeleteUser(localpart string) error
}

// Remove deletes the local account username of domain for good: its files
// first, then, in one transaction, the account with everything it owns and
// everything that names it (see store.PurgeAccount), recorded in the
// account journal for the nodes to act on. It returns store.ErrNotFound if
// there is no such account.
//
// The order makes a crash at any point safe: a crash before the
// transaction commits leaves the account as it was, without some of its
// files (delete it again); after it, nothing of the account is left to a
// new account with the same name. Files uploaded between the two steps
// are removed by the nodes when they apply the deletion (Apply). files
// may be nil.
func Remove(ctx context.Context, st Store, files Files, domain, username string) (store.AccountPurge, error) {
	bare, err := jid.New(username, domain, "")
	if err != nil || bare.Localpart() == "" {
		return store.AccountPurge{}, fmt.Errorf("accounts: %q is not a user of %s", username, domain)
	}
	ok, err := st.AccountExists(ctx, username)
	if err != nil {
		return store.AccountPurge{}, fmt.Errorf("accounts: remove %s: %w", bare, err)
	}
	if !ok {
		return store.AccountPurge{}, store.ErrNotFound
	}
	if files != nil {
		if err := files.DeleteUser(username); err != nil {
			return store.AccountPurge{}, fmt.Errorf("accounts: remove %s: %w", bare, err)
		}
	}
	p, err := st.PurgeAccount(ctx, username, bare.String())
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		err = fmt.Errorf("accounts: remove %s: %w", bare, err)
	}
	return p, err
}

// Services are what a node tells of a deletion. Any field may be nil.
type Services struct {
	// Sessions ends the account's sessions (*signaling.Server).
	Sessions interface{ EndUser(local string) }
	// Rooms drops the account from the rooms (*muc.Service).
	Rooms interface {
		AccountRemoved(ctx context.Context, bare jid.JID)
	}
	// Chat tells the account's contacts (*chat.Service).
	Chat interface {
		AccountRemoved(ctx context.Context, bare jid.JID, contacts []store.PurgedContact)
	}
	// Files removes the account's files and refuses its old upload URLs
	// (*upload.Service).
	Files interface {
		DeleteUser(localpart string) error
		RevokeSlots(localpart string, before time.Time)
	}
	// Exists reports whether an account exists now (*store.DB).
	Exists func(ctx context.Context, username string) (bool, error)
}

// Journal is the store's account journal; *store.DB is one.
type Journal interface {
	AccountPurges(ctx context.Context, after int64, limit int) ([]store.AccountPurge, error)
	LastAccountPurge(ctx context.Context) (int64, error)
	PruneAccountPurges(ctx context.Context, before time.Time) error
}

// Defaults for Config.
const (
	DefaultInterval = time.Second
	DefaultKeep     = 24 * time.Hour
)

// Config configures a Watcher.
type Config struct {
	// Domain is the served domain, e.g. "localhost". Required.
	Domain string
	// Journal is the store's account journal. Required.
	Journal Journal
	// Interval is how often the journal is read. Default DefaultInterval.
	Interval time.Duration
	// Keep is how long journal entries are kept (pruned hourly). Default
	// DefaultKeep.
	Keep time.Duration
	// Logger receives the watcher's logs. Default slog.Default().
	Logger *slog.Logger
}

// pruneEvery is how often the journal is pruned.
const pruneEvery = time.Hour

// Watcher applies the deletions in the account journal to one node's
// services, each once, in journal order. Start it early (it notes where
// the journal ends), then Run it once the services exist.
type Watcher struct {
	cfg Config
	log *slog.Logger

	// mu serialises the reading and applying of the journal and guards
	// last and svc.
	mu      sync.Mutex
	last    int64 // sequence number of the last entry applied (or skipped at Start)
	svc     *Services
	pruned  time.Time
	started bool

	poke   chan struct{}
	stop   context.Context
	cancel context.CancelFunc
	done   chan struct{}
}

// NewWatcher validates cfg and fills in defaults.
func NewWatcher(cfg Config) (*Watcher, error) {
	if cfg.Domain == "" || cfg.Journal == nil {
		return nil, errors.New("accounts: a watcher needs the domain and the journal")
	}
	if cfg.Interval <= 0 {
		cfg.Interval = DefaultInterval
	}
	if cfg.Keep <= 0 {
		cfg.Keep = DefaultKeep
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	w := &Watcher{cfg: cfg, log: cfg.Logger, poke: make(chan struct{}, 1), done: make(chan struct{})}
	w.stop, w.cancel = context.WithCancel(context.Background())
	return w, nil
}

// Start notes where the journal ends now: deletions before it concern no
// session of this node, which has none yet.
func (w *Watcher) Start(ctx context.Context) error {
	last, err := w.cfg.Journal.LastAccountPurge(ctx)
	if err != nil {
		return fmt.Errorf("accounts: read the account journal: %w", err)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.last, w.started = last, true
	return nil
}

// Run starts applying deletions to svc: now, every Interval, and whenever
// Poke is called. Call it once, after Start; Close stops it.
func (w *Watcher) Run(svc Services) {
	w.mu.Lock()
	w.svc = &svc
	w.mu.Unlock()
	go w.loop()
}

// Poke makes the watcher read the journal now (another node deleted an
// account). It never blocks.
func (w *Watcher) Poke() {
	select {
	case w.poke <- struct{}{}:
	default:
	}
}

// Close stops the watcher and waits for it. Safe to call more than once,
// and without Run.
func (w *Watcher) Close() {
	w.cancel()
	w.mu.Lock()
	running := w.svc != nil
	w.mu.Unlock()
	if running {
		<-w.done
	}
}

func (w *Watcher) loop() {
	defer close(w.done)
	tick := time.NewTicker(w.cfg.Interval)
	defer tick.Stop()
	for {
		if err := w.Sync(w.stop); err != nil && w.stop.Err() == nil {
			w.log.Warn("accounts: read the account journal", "err", err)
		}
		select {
		case <-w.stop.Done():
			return
		case <-tick.C:
		case <-w.poke:
		}
	}
}

// Sync applies, now, the deletions this node has not applied yet. Before
// Run it does nothing (Run's first pass applies them).
func (w *Watcher) Sync(ctx context.Context) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.svc == nil || !w.started {
		return nil
	}
	for {
		batch, err := w.cfg.Journal.AccountPurges(ctx, w.last, 100)
		if err != nil {
			return err
		}
		for _, p := range batch {
			w.apply(ctx, p)
			w.last = p.Seq
		}
		if len(batch) < 100 {
			break
		}
	}
	if time.Since(w.pruned) > pruneEvery {
		w.pruned = time.Now()
		if err := w.cfg.Journal.PruneAccountPurges(ctx, time.Now().Add(-w.cfg.Keep)); err != nil {
			w.log.Warn("accounts: prune the account journal", "err", err)
		}
	}
	return nil
}

// apply carries out one deletion on this node's services. w.mu is held.
func (w *Watcher) apply(ctx context.Context, p store.AccountPurge) {
	bare, err := jid.New(p.Username, w.cfg.Domain, "")
	if err != nil {
		w.log.Warn("accounts: journal entry names no valid user", "seq", p.Seq, "err", err)
		return
	}
	svc := w.svc
	// Sessions first, so that none acts for the account while the rest
	// is undone.
	if svc.Sessions != nil {
		svc.Sessions.EndUser(p.Username)
	}
	if svc.Rooms != nil {
		svc.Rooms.AccountRemoved(ctx, bare)
	}
	if svc.Chat != nil {
		svc.Chat.AccountRemoved(ctx, bare, p.Contacts)
	}
	if svc.Files != nil {
		w.files(ctx, svc, p)
	}
	w.log.Info("account deleted", "jid", bare.String(), "seq", p.Seq, "contacts", len(p.Contacts))
}

// files removes what the account uploaded since Remove removed its files,
// unless a new account took the name meanwhile: then only the old
// account's upload URLs are refused.
func (w *Watcher) files(ctx context.Context, svc *Services, p store.AccountPurge) {
	again := false
	if svc.Exists != nil {
		ok, err := svc.Exists(ctx, p.Username)
		if err != nil {
			w.log.Warn("accounts: check for a new account with a deleted name", "user", p.Username, "err", err)
			ok = true // keep the files; the old URLs are refused either way
		}
		again = ok
	}
	if again {
		svc.Files.RevokeSlots(p.Username, p.At)
		return
	}
	if err := svc.Files.DeleteUser(p.Username); err != nil {
		w.log.Error("accounts: delete a deleted account's files", "user", p.Username, "err", err)
	}
}
