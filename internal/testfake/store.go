package testfake

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"sync"
	"time"

	"poosms.org/poosms/store"
)

// Store is an in-memory store of accounts, rosters and offline messages:
// what chat needs from persistence (chat.Store), with the contract of
// *store.DB (store/storetest.RunChat checks it against the same suite).
// It keeps no credentials. It is safe for concurrent use.
type Store struct {
	mu       sync.Mutex
	accounts map[string]bool
	roster   map[string]map[string]store.RosterItem
	offline  map[string][]store.OfflineMessage
	sender   map[int64]string // offline message ID → its sender
	nextID   int64
}

// NewStore is a store holding the accounts users and nothing else.
func NewStore(users ...string) *Store {
	m := &Store{
		accounts: map[string]bool{},
		roster:   map[string]map[string]store.RosterItem{},
		offline:  map[string][]store.OfflineMessage{},
		sender:   map[int64]string{},
	}
	for _, u := range users {
		m.accounts[u] = true
	}
	return m
}

// CreateAccount adds the account username, or fails with store.ErrExists.
// The credentials are not kept.
func (m *Store) CreateAccount(ctx context.Context, username string, _ store.Credentials) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.accounts[username] {
		return store.ErrExists
	}
	m.accounts[username] = true
	return nil
}

// AccountExists reports whether username has an account.
func (m *Store) AccountExists(ctx context.Context, username string) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.accounts[username], nil
}

// RosterItems returns owner's roster items, sorted by contact.
func (m *Store) RosterItems(ctx context.Context, owner string) ([]store.RosterItem, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []store.RosterItem
	for _, it := range m.roster[owner] {
		it.Groups = slices.Clone(it.Groups)
		out = append(out, it)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Contact < out[j].Contact })
	return out, nil
}

// RosterItem returns owner's item for contact, or store.ErrNotFound.
func (m *Store) RosterItem(ctx context.Context, owner, contact string) (store.RosterItem, error) {
	if err := ctx.Err(); err != nil {
		return store.RosterItem{}, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	it, ok := m.roster[owner][contact]
	if !ok {
		return store.RosterItem{}, store.ErrNotFound
	}
	it.Groups = slices.Clone(it.Groups)
	return it, nil
}

// PutRosterItem stores it in owner's roster, replacing any item for the
// same contact. An empty Subscription means store.SubNone; owner must have
// an account (store.ErrNotFound).
func (m *Store) PutRosterItem(ctx context.Context, owner string, it store.RosterItem) error {
	return m.PutRosterItemWithin(ctx, owner, it, 0)
}

// PutRosterItemWithin is PutRosterItem that refuses, with store.ErrLimit,
// to add a new contact to a roster that holds limit items (0 or less: no
// limit).
func (m *Store) PutRosterItemWithin(ctx context.Context, owner string, it store.RosterItem, limit int) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	switch it.Subscription {
	case "":
		it.Subscription = store.SubNone
	case store.SubNone, store.SubTo, store.SubFrom, store.SubBoth:
	default:
		return fmt.Errorf("testfake: put roster item: invalid subscription %q", it.Subscription)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.accounts[owner] {
		return store.ErrNotFound
	}
	if _, ok := m.roster[owner][it.Contact]; !ok && limit > 0 && len(m.roster[owner]) >= limit {
		return store.ErrLimit
	}
	if m.roster[owner] == nil {
		m.roster[owner] = map[string]store.RosterItem{}
	}
	it.Groups = slices.Clone(it.Groups)
	m.roster[owner][it.Contact] = it
	return nil
}

// CountRosterItems returns how many items owner's roster holds.
func (m *Store) CountRosterItems(ctx context.Context, owner string) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.roster[owner]), nil
}

// DeleteRosterItem removes owner's item for contact, if there is one.
func (m *Store) DeleteRosterItem(ctx context.Context, owner, contact string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.roster[owner], contact)
	return nil
}

// PushOffline queues stanza for owner, as PushOfflineWithin with no share
// per sender.
func (m *Store) PushOffline(ctx context.Context, owner, sender string, stamp time.Time, stanza []byte, limit int) error {
	return m.PushOfflineWithin(ctx, owner, sender, stamp, stanza, limit, 0)
}

// PushOfflineWithin queues stanza for owner, stamped (in UTC, to the
// microsecond, as the database keeps it). It fails with store.ErrNotFound
// if owner has no account, store.ErrQueueFull if owner has limit messages
// queued, and store.ErrLimit if sender has perSender of them (0 or less:
// no share).
func (m *Store) PushOfflineWithin(ctx context.Context, owner, sender string, stamp time.Time, stanza []byte, limit, perSender int) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.accounts[owner] {
		return store.ErrNotFound
	}
	if len(m.offline[owner]) >= limit {
		return store.ErrQueueFull
	}
	mine := 0
	for _, o := range m.offline[owner] {
		if m.sender[o.ID] == sender {
			mine++
		}
	}
	if perSender > 0 && mine >= perSender {
		return store.ErrLimit
	}
	m.nextID++
	m.sender[m.nextID] = sender
	m.offline[owner] = append(m.offline[owner], store.OfflineMessage{
		ID:     m.nextID,
		Stamp:  stamp.UTC().Truncate(time.Microsecond),
		Stanza: slices.Clone(stanza),
	})
	return nil
}

// OfflineMessages returns the messages queued for owner, oldest first.
func (m *Store) OfflineMessages(ctx context.Context, owner string) ([]store.OfflineMessage, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	out := slices.Clone(m.offline[owner])
	for i := range out {
		out[i].Stanza = slices.Clone(out[i].Stanza)
	}
	return out, nil
}

// DeleteOffline removes owner's queued messages whose ID is at most upTo.
func (m *Store) DeleteOffline(ctx context.Context, owner string, upTo int64) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.offline[owner] = slices.DeleteFunc(m.offline[owner], func(o store.OfflineMessage) bool {
		if o.ID <= upTo {
			delete(m.sender, o.ID)
			return true
		}
		return false
	})
	if len(m.offline[owner]) == 0 {
		delete(m.offline, owner)
	}
	return nil
}

// CountOffline returns how many messages are queued for owner.
func (m *Store) CountOffline(ctx context.Context, owner string) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	return m.Queued(owner), nil
}

// Queued is how many messages are queued for owner.
func (m *Store) Queued(owner string) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.offline[owner])
}

// Item returns owner's stored item for contact, and whether there is one.
func (m *Store) Item(owner, contact string) (store.RosterItem, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	it, ok := m.roster[owner][contact]
	return it, ok
}
