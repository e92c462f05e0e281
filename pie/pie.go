// Package pie reads and writes XEP-0227 files (Portable Import/Export
// Format for XMPP-IM Servers): accounts with their SCRAM verifiers, rosters
// with pending subscription requests, vCards, offline messages, private XML
// and PEP nodes with their items. "poosmsd export" and "poosmsd import" are
// its front: they move a server's users between poosms servers, and from
// Prosody (prosody-migrator to its xep0227 store) and ejabberd (ejabberdctl
// export_piefxis, XInclude files and all).
//
// pie works on the store only; it never reaches a running server, and it
// must not trust what it reads: an import file comes from another program,
// and everything in it a user once sent. Names are normalised as JIDs,
// sizes are bounded as chat bounds them, and an account that exists is
// left untouched.
package pie

import (
	"context"
	"time"

	"poosms.org/poosms/store"
)

// Namespaces of the file format.
const (
	NS         = "urn:xmpp:pie:0"
	NSScram    = "urn:xmpp:pie:0#scram"
	NSXInclude = "http://www.w3.org/2001/XInclude"
	// NSPoosms holds the attributes poosms adds where XEP-0227 has no
	// place for a value (a PEP item's publication time), so that a poosms
	// export imports back unchanged. Other servers ignore them.
	NSPoosms = "urn:poosms:pie:0"

	nsClient     = "jabber:client"
	nsRoster     = "jabber:iq:roster"
	nsPrivate    = "jabber:iq:private"
	nsVCard      = "vcard-temp"
	nsDelay      = "urn:xmpp:delay"
	nsPubSub     = "http://jabber.org/protocol/pubsub"
	nsPubSubOwn  = "http://jabber.org/protocol/pubsub#owner"
	nsDataForms  = "jabber:x:data"
	nodeConfigFT = "http://jabber.org/protocol/pubsub#node_config"
)

// Limits applied to imported data, the same as chat applies to what a
// client stores.
const (
	maxVCardBytes   = 256 << 10
	maxPrivateBytes = 64 << 10
	maxPEPPayload   = 512 << 10
	maxPEPName      = 1024
	maxPEPItems     = 1000 // what max_items='max' means
)

// Store is what export and import need from poosms's store (*store.DB).
type Store interface {
	Accounts(ctx context.Context) ([]string, error)
	Account(ctx context.Context, username string) (store.Account, error)
	CreateAccount(ctx context.Context, username string, c store.Credentials) error
	RosterItems(ctx context.Context, owner string) ([]store.RosterItem, error)
	RosterItem(ctx context.Context, owner, contact string) (store.RosterItem, error)
	PutRosterItem(ctx context.Context, owner string, it store.RosterItem) error
	VCard(ctx context.Context, owner string) ([]byte, error)
	SetVCard(ctx context.Context, owner string, vcard []byte) error
	AllPrivateXML(ctx context.Context, owner string) ([]store.PrivateXMLEntry, error)
	SetPrivateXML(ctx context.Context, owner, ns string, payload []byte) error
	OfflineMessages(ctx context.Context, owner string) ([]store.OfflineMessage, error)
	PushOffline(ctx context.Context, owner, sender string, stamp time.Time, stanza []byte, limit int) error
	PEPNodes(ctx context.Context, owner string) ([]store.PEPNode, error)
	PEPItems(ctx context.Context, owner, node string, ids []string, max int) ([]store.PEPItem, error)
	PutPEPNode(ctx context.Context, owner string, n store.PEPNode) error
	PublishPEPItem(ctx context.Context, owner, node string, it store.PEPItem) error
}

var _ Store = (*store.DB)(nil)

// Stats counts what an export wrote or an import stored.
type Stats struct {
	Users           int
	RosterItems     int
	VCards          int
	PrivateXML      int
	OfflineMessages int
	PEPNodes        int
	PEPItems        int
	// Credentials counts accounts by what their password came from:
	// "password" (both verifiers derived), "SCRAM-SHA-1", "SCRAM-SHA-256",
	// "SCRAM-SHA-1+SCRAM-SHA-256", or "none" (no login until a new
	// password is set).
	Credentials map[string]int
	// Existing lists accounts an import found already there and left as
	// they were.
	Existing []string
	// OtherHosts lists the hosts of an import file that are not this
	// server's domain, skipped.
	OtherHosts []string
	// Skipped counts, by element name, what an import did not take
	// (privacy lists, archives, last activity…).
	Skipped map[string]int
	// Warnings name what was dropped and why, one line each.
	Warnings []string
}

func (s *Stats) warn(format string, args ...any) {
	if len(s.Warnings) < 1000 {
		s.Warnings = append(s.Warnings, sprintf(format, args...))
	}
}
