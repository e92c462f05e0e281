package pie_test

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"poosms.org/poosms/internal/testenv"
	"poosms.org/poosms/pie"
	"poosms.org/poosms/signaling/sasl"
	"poosms.org/poosms/store"
)

func openDB(t *testing.T, dsn string) *store.DB {
	t.Helper()
	db, err := store.Open(t.Context(), dsn, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// stores runs fn on SQLite, and on MySQL when the tests have one.
func stores(t *testing.T, fn func(t *testing.T, newDB func() *store.DB)) {
	t.Run("sqlite", func(t *testing.T) { fn(t, func() *store.DB { return openDB(t, "sqlite") }) })
	t.Run("mysql", func(t *testing.T) {
		if os.Getenv("POOSMS_TEST_MYSQL_DSN") == "" && !testenv.CI() {
			t.Skip("POOSMS_TEST_MYSQL_DSN is not set")
		}
		fn(t, func() *store.DB { return openDB(t, testenv.MySQLDSN(t)) })
	})
}

// fill gives alice and bob one of everything pie carries.
func fill(t *testing.T, db *store.DB) {
	t.Helper()
	ctx := t.Context()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, u := range []string{"alice", "bob", "émile"} {
		c, err := sasl.NewCredentials(u+"-password", 4096)
		must(err)
		must(db.CreateAccount(ctx, u, c))
	}
	sha1Only, err := sasl.NewCredentials("carol-password", 4096)
	must(err)
	sha1Only.StoredKeySHA256, sha1Only.ServerKeySHA256 = nil, nil
	must(db.CreateAccount(ctx, "carol", sha1Only))
	must(db.PutRosterItem(ctx, "alice", store.RosterItem{Contact: "bob@localhost", Name: "Bob <the builder> & co", Groups: []string{"Friends", "Work"}, Subscription: store.SubBoth, Listed: true}))
	must(db.PutRosterItem(ctx, "alice", store.RosterItem{Contact: "dave@remote.example", Subscription: store.SubNone, AskOut: true, PendingIn: true, Listed: true}))
	must(db.PutRosterItem(ctx, "alice", store.RosterItem{Contact: "eve@remote.example", PendingIn: true, Subscription: store.SubNone}))
	must(db.PutRosterItem(ctx, "bob", store.RosterItem{Contact: "alice@localhost", Subscription: store.SubBoth, Listed: true}))
	must(db.SetVCard(ctx, "alice", []byte("<vCard xmlns='vcard-temp'><FN>Alice &amp; Co</FN><NICKNAME>ali</NICKNAME></vCard>")))
	must(db.SetPrivateXML(ctx, "alice", "storage:rosternotes", []byte("<storage xmlns='storage:rosternotes'><note jid='bob@localhost'>tall</note></storage>")))
	must(db.SetPrivateXML(ctx, "alice", "urn:example:prefs", []byte("<prefs xmlns='urn:example:prefs' theme='dark'/>")))
	stamp := time.Date(2026, 11, 25, 10, 0, 0, 123456000, time.UTC)
	must(db.PushOffline(ctx, "bob", "alice@localhost", stamp, []byte("<message xmlns='jabber:client' from='alice@localhost/laptop' to='bob@localhost' type='chat' id='m1'><body>hi bob</body></message>"), 100))
	must(db.PushOffline(ctx, "bob", "dave@remote.example", stamp.Add(time.Minute), []byte("<message xmlns='jabber:client' from='dave@remote.example/x' to='bob@localhost' id='m2'><body>second</body><delay xmlns='urn:xmpp:delay' from='remote.example' stamp='2026-11-25T09:00:00Z'/></message>"), 100))
	must(db.PutPEPNode(ctx, "alice", store.PEPNode{Node: "http://jabber.org/protocol/nick", AccessModel: store.AccessPresence, MaxItems: 1, SendLast: true}))
	must(db.PublishPEPItem(ctx, "alice", "http://jabber.org/protocol/nick", store.PEPItem{ID: "current", Publisher: "alice@localhost/laptop", Stamp: stamp, Payload: []byte("<nick xmlns='http://jabber.org/protocol/nick'>Ali</nick>")}))
	must(db.PutPEPNode(ctx, "alice", store.PEPNode{Node: "urn:xmpp:bookmarks:1", AccessModel: store.AccessWhitelist, MaxItems: 1000, SendLast: false}))
	for i, room := range []string{"a@conference.localhost", "b@conference.localhost"} {
		must(db.PublishPEPItem(ctx, "alice", "urn:xmpp:bookmarks:1", store.PEPItem{ID: room, Publisher: "alice@localhost/phone", Stamp: stamp.Add(time.Duration(i) * time.Second),
			Payload: []byte("<conference xmlns='urn:xmpp:bookmarks:1' autojoin='true'><nick>ali</nick></conference>")}))
	}
}

func export(t *testing.T, db *store.DB) []byte {
	t.Helper()
	var buf bytes.Buffer
	if _, err := pie.Export(t.Context(), db, "localhost", &buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func importFile(t *testing.T, db *store.DB, data []byte) pie.Stats {
	t.Helper()
	file := filepath.Join(t.TempDir(), "export.xml")
	if err := os.WriteFile(file, data, 0o600); err != nil {
		t.Fatal(err)
	}
	stats, err := pie.Import(t.Context(), db, pie.Options{Domain: "localhost", Iterations: 4096, OfflineLimit: 100, MaxStanzaBytes: 1 << 16}, file)
	if err != nil {
		t.Fatal(err)
	}
	return stats
}

// poosmsd export → import into an empty server → export again gives the
// same file: nothing is lost or changed on the way.
func TestRoundTrip(t *testing.T) {
	stores(t, func(t *testing.T, newDB func() *store.DB) {
		src := newDB()
		fill(t, src)
		first := export(t, src)
		dst := newDB()
		stats := importFile(t, dst, first)
		if stats.Users != 4 || stats.RosterItems != 3 || stats.VCards != 1 || stats.PrivateXML != 2 ||
			stats.OfflineMessages != 2 || stats.PEPNodes != 2 || stats.PEPItems != 3 || len(stats.Warnings) != 0 {
			t.Errorf("import stats %+v", stats)
		}
		if stats.Credentials["SCRAM-SHA-1"] != 1 || stats.Credentials["SCRAM-SHA-1+SCRAM-SHA-256"] != 3 {
			t.Errorf("credentials %v", stats.Credentials)
		}
		if second := export(t, dst); !bytes.Equal(first, second) {
			t.Fatalf("the export of the imported server differs:\n%s\n----\n%s", first, second)
		}
		// The verifiers are the same: the old passwords work.
		for _, u := range []string{"alice", "émile"} {
			a, err := dst.Account(t.Context(), u)
			if err != nil || !sasl.CheckPassword(a.Credentials, u+"-password") {
				t.Errorf("%s's password does not check after the round trip (%v)", u, err)
			}
		}
		// Importing again leaves every account as it is.
		if again := importFile(t, dst, first); again.Users != 0 || len(again.Existing) != 4 {
			t.Errorf("second import: %+v", again)
		}
		if strings.Contains(string(first), "-password") {
			t.Error("the export holds a password")
		}
	})
}

// ejabberd 23.01 with SCRAM storage writes every SCRAM value base64-encoded
// twice; the file in testdata is its export_piefxis output (made with
// pie/testdata/make-ejabberd-fixture.sh), and its users log in with their
// passwords after the import.
func TestEjabberdSCRAMFixture(t *testing.T) {
	db := openDB(t, "sqlite")
	data, err := os.ReadFile("testdata/ejabberd-23.01-scram-sha1.xml")
	if err != nil {
		t.Fatal(err)
	}
	stats := importFile(t, db, data)
	if stats.Users != 2 || stats.Credentials["SCRAM-SHA-1"] != 2 || stats.RosterItems != 1 || stats.VCards != 1 ||
		stats.PrivateXML != 1 || stats.OfflineMessages != 1 || len(stats.Warnings) != 0 {
		t.Fatalf("stats %+v", stats)
	}
	for _, u := range []string{"alice", "bob"} {
		a, err := db.Account(t.Context(), u)
		if err != nil {
			t.Fatal(err)
		}
		if len(a.Salt) != 16 || a.StoredKeySHA256 != nil {
			t.Errorf("%s: salt of %d bytes, SHA-256 verifier %x", u, len(a.Salt), a.StoredKeySHA256)
		}
		if !sasl.CheckPassword(a.Credentials, u+"-old-password") || sasl.CheckPassword(a.Credentials, "wrong-password") {
			t.Errorf("%s: the ejabberd password does not check", u)
		}
	}
}

// What an import must not take: names that are not JIDs, includes that
// leave the folder, a DTD, oversized payloads, other domains.
func TestImportRefusesHostileInput(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	opt := pie.Options{Domain: "localhost", Iterations: 4096, OfflineLimit: 2, MaxStanzaBytes: 1024}
	db := openDB(t, "sqlite")
	for _, tc := range []struct{ name, body, wantErr string }{
		{"dtd.xml", "<?xml version='1.0'?><!DOCTYPE x [<!ENTITY e 'x'>]><server-data xmlns='urn:xmpp:pie:0'/>", "DTD"},
		{"include.xml", "<server-data xmlns='urn:xmpp:pie:0' xmlns:xi='http://www.w3.org/2001/XInclude'><xi:include href='../etc/passwd'/></server-data>", "same folder"},
		{"abs.xml", "<server-data xmlns='urn:xmpp:pie:0' xmlns:xi='http://www.w3.org/2001/XInclude'><xi:include href='/etc/passwd'/></server-data>", "same folder"},
		{"url.xml", "<server-data xmlns='urn:xmpp:pie:0' xmlns:xi='http://www.w3.org/2001/XInclude'><xi:include href='http://example.org/x.xml'/></server-data>", "same folder"},
	} {
		_, err := pie.Import(t.Context(), db, opt, write(tc.name, tc.body))
		if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
			t.Errorf("%s: %v, want an error about %s", tc.name, err, tc.wantErr)
		}
	}
	big := strings.Repeat("x", 300<<10)
	stats, err := pie.Import(t.Context(), db, opt, write("users.xml", `<server-data xmlns='urn:xmpp:pie:0'>
<host jid='other.example'><user name='mallory' password='pw'/></host>
<host jid='LOCALHOST'>
<user name='a@b'/><user name=''/><user name='bad/name'/>
<user name='Zoe' password='short'>
<query xmlns='jabber:iq:roster'><item jid='zoe@localhost'/><item jid='not a jid@@'/><item jid='x@y' subscription='remove'/><item jid='ok@y'/><item jid='OK@y'/></query>
<vCard xmlns='vcard-temp'><FN>`+big+`</FN></vCard>
<query xmlns='jabber:iq:private'><x/><query xmlns='jabber:iq:private'/><ok xmlns='urn:ok'/></query>
<offline-messages><message xmlns='jabber:client' to='zoe@localhost'><body>1</body></message><message xmlns='jabber:client'><body>`+big+`</body></message>
<message xmlns='jabber:client'><body>2</body></message><message xmlns='jabber:client'><body>3</body></message></offline-messages>
<pubsub xmlns='http://jabber.org/protocol/pubsub#owner'><configure node='n'><x xmlns='jabber:x:data'><field var='pubsub#access_model'><value>roster</value></field></x></configure></pubsub>
<pubsub xmlns='http://jabber.org/protocol/pubsub'><items node='n'><item><p xmlns='urn:p'/></item><item id='1'/><item id='2' publisher='zoe@localhost.evil/x'><p xmlns='urn:p'/></item></items></pubsub>
<privacy xmlns='jabber:iq:privacy'/>
</user></host></server-data>`))
	if err != nil {
		t.Fatal(err)
	}
	if stats.Users != 1 || stats.RosterItems != 1 || stats.VCards != 0 || stats.PrivateXML != 1 || stats.OfflineMessages != 2 ||
		stats.PEPItems != 1 || stats.Skipped["privacy"] != 1 || len(stats.OtherHosts) != 1 {
		t.Errorf("stats %+v", stats)
	}
	if names, _ := db.Accounts(t.Context()); len(names) != 1 || names[0] != "zoe" {
		t.Errorf("accounts %q, want zoe only", names)
	}
	// A short password from the old server still logs in.
	a, _ := db.Account(t.Context(), "zoe")
	if !sasl.CheckPassword(a.Credentials, "short") {
		t.Error("zoe's old password does not check")
	}
	// A publisher other than the owner is not taken over.
	if items, err := db.PEPItems(t.Context(), "zoe", "n", nil, 0); err != nil || len(items) != 1 || items[0].Publisher != "zoe@localhost" {
		t.Errorf("items of n: %+v %v, want one published by zoe@localhost", items, err)
	}
	// An access model poosms lacks never widens access.
	if n, err := db.PEPNode(t.Context(), "zoe", "n"); err != nil || n.AccessModel != store.AccessWhitelist {
		t.Errorf("node n: %+v %v, want whitelist", n, err)
	}
}
