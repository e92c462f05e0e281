// Package store keeps poosms's durable state (accounts, rosters, offline
// messages) behind small interfaces, with SQLite (the default) and
// MySQL/MariaDB implementations that pass one contract test suite.
package store

import (
	"errors"
	"time"
)

// Errors the store returns; drivers' own "no rows" errors never escape.
var (
	ErrNotFound  = errors.New("store: not found")
	ErrExists    = errors.New("store: already exists")
	ErrQueueFull = errors.New("store: offline queue full")
)

// Credentials are SCRAM verifiers (RFC 5802): the password itself is never
// stored. Both hashes share one salt and iteration count.
type Credentials struct {
	Salt            []byte
	Iterations      int
	StoredKeySHA1   []byte
	ServerKeySHA1   []byte
	StoredKeySHA256 []byte
	ServerKeySHA256 []byte
}

// Account is a local user.
type Account struct {
	Username string // the normalised localpart
	Created  time.Time
	Credentials
}

// Subscription states of a roster item (RFC 6121 §2.1.2.5).
const (
	SubNone = "none"
	SubTo   = "to"
	SubFrom = "from"
	SubBoth = "both"
)

// RosterItem is one contact in an owner's roster together with the
// subscription state between them.
type RosterItem struct {
	Contact      string   // bare JID of the contact
	Name         string   // the owner's name for the contact
	Groups       []string // roster groups, in the order given
	Subscription string   // SubNone, SubTo, SubFrom or SubBoth
	AskOut       bool     // the owner asked to subscribe; no answer yet (ask='subscribe')
	PendingIn    bool     // the contact asked to subscribe to the owner; no answer yet
	Listed       bool     // shown in the owner's roster (false: kept only for PendingIn)
}

// OfflineMessage is a stanza stored for a user who was offline.
type OfflineMessage struct {
	ID     int64
	Stamp  time.Time // when the server received it
	Stanza []byte    // the serialised <message/>
}
