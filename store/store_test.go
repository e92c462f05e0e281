package store_test

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"

	"poosms.org/poosms/store"
	"poosms.org/poosms/store/storetest"
)

// mysqlEnv names the server the MySQL tests use, as a go-sql-driver DSN
// with no database: root@tcp(127.0.0.1:3306)/
const mysqlEnv = "POOSMS_TEST_MYSQL_DSN"

func open(t *testing.T, dsn, dataDir string) *store.DB {
	t.Helper()
	db, err := store.Open(t.Context(), dsn, dataDir)
	if err != nil {
		t.Fatalf("Open(%q): %v", dsn, err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func TestSQLite(t *testing.T) {
	storetest.Run(t, func(t *testing.T) *store.DB {
		return open(t, "sqlite", t.TempDir())
	})
}

func TestSQLiteMemory(t *testing.T) {
	storetest.Run(t, func(t *testing.T) *store.DB {
		return open(t, "sqlite::memory:", "")
	})
}

func TestMySQL(t *testing.T) {
	server := mysqlServer(t)
	storetest.Run(t, func(t *testing.T) *store.DB {
		return open(t, newMySQLDatabase(t, server), "")
	})
}

// mysqlServer returns the test server's DSN, skipping the test if there
// is none (failing it under CI, where there must be one).
func mysqlServer(t *testing.T) string {
	t.Helper()
	dsn := os.Getenv(mysqlEnv)
	if dsn == "" {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is not set; CI must provide a MySQL/MariaDB server", mysqlEnv)
		}
		t.Skipf("%s is not set (e.g. %s='root@tcp(127.0.0.1:3306)/')", mysqlEnv, mysqlEnv)
	}
	return dsn
}

// newMySQLDatabase creates an empty database on server, dropped when t
// ends, and returns the store DSN for it.
func newMySQLDatabase(t *testing.T, server string) string {
	t.Helper()
	cfg, admin := mysqlAdmin(t, server)
	name := "t_" + hex.EncodeToString(randomBytes(t, 8))
	ctx := t.Context()
	if _, err := admin.ExecContext(ctx, "CREATE DATABASE "+name+" CHARACTER SET utf8mb4"); err != nil {
		t.Fatalf("create test database: %v", err)
	}
	t.Cleanup(func() {
		if _, err := admin.ExecContext(context.Background(), "DROP DATABASE IF EXISTS "+name); err != nil {
			t.Errorf("drop test database %s: %v", name, err)
		}
	})
	cfg.DBName = name
	return "mysql://" + cfg.FormatDSN()
}

// mysqlAdmin returns the parsed server DSN and a plain connection to the
// server, closed when t ends.
func mysqlAdmin(t *testing.T, server string) (*mysql.Config, *sql.DB) {
	t.Helper()
	cfg, err := mysql.ParseDSN(server)
	if err != nil {
		t.Fatalf("%s: %v", mysqlEnv, err)
	}
	admin, err := sql.Open("mysql", server)
	if err != nil {
		t.Fatalf("connect to %s: %v", mysqlEnv, err)
	}
	t.Cleanup(func() { admin.Close() })
	return cfg, admin
}

func randomBytes(t *testing.T, n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func TestOpenDefaultSQLiteCreatesDataDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data", "nested")
	db := open(t, "", dir)
	if db.Dialect() != store.DialectSQLite {
		t.Errorf("Dialect() = %q, want sqlite", db.Dialect())
	}
	info, err := os.Stat(dir)
	if err != nil {
		t.Fatalf("data directory: %v", err)
	}
	if perm := info.Mode().Perm(); perm != 0o700 {
		t.Errorf("data directory mode = %o, want 700", perm)
	}
	if err := db.CreateAccount(t.Context(), "alice", store.Credentials{}); err != nil {
		t.Fatalf("CreateAccount: %v", err)
	}
	// The files hold password verifiers.
	for _, name := range []string{store.DefaultSQLiteFile, store.DefaultSQLiteFile + "-wal"} {
		info, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Errorf("database file: %v", err)
		} else if perm := info.Mode().Perm(); perm != 0o600 {
			t.Errorf("%s mode = %o, want 600", name, perm)
		}
	}
}

func TestOpenSQLiteFile(t *testing.T) {
	// A path with characters that mean something in a URI.
	path := filepath.Join(t.TempDir(), "odd name?#%.db")
	db := open(t, "sqlite:"+path, "")
	if err := db.CreateAccount(t.Context(), "alice", store.Credentials{}); err != nil {
		t.Fatalf("CreateAccount: %v", err)
	}
	if _, err := os.Stat(path); err != nil {
		t.Errorf("database file %q: %v", path, err)
	}
}

func TestOpenRejectsUnknownForms(t *testing.T) {
	for _, dsn := range []string{
		"postgres://user:hunter2@db.example/poosms",
		"sqlite3",
		"sqlite:",
		"mysql:user:hunter2@tcp(127.0.0.1:3306)/poosms",
		"mysql://user:hunter2@tcp(127.0.0.1:3306)/",
		"mysql://user:hunter2@tcp(127.0.0.1:3306",
	} {
		_, err := store.Open(t.Context(), dsn, t.TempDir())
		if err == nil {
			t.Errorf("Open(%q) succeeded", dsn)
			continue
		}
		msg := err.Error()
		if strings.Contains(msg, "hunter2") {
			t.Errorf("Open(%q) error shows the password: %v", dsn, err)
		}
		if !strings.Contains(msg, "sqlite:<file>") || !strings.Contains(msg, "mysql://") {
			t.Errorf("Open(%q) error does not list the accepted forms: %v", dsn, err)
		}
	}
	if _, err := store.Open(t.Context(), "sqlite", ""); err == nil {
		t.Error(`Open("sqlite") with no data directory succeeded`)
	}
}

func TestOpenUnreachableMySQL(t *testing.T) {
	// Nothing listens on port 1 of the loopback address.
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	_, err := store.Open(ctx, "mysql://poosms:secret@tcp(127.0.0.1:1)/poosms?timeout=2s", "")
	if err == nil {
		t.Fatal("Open on a closed port succeeded")
	}
	if !strings.Contains(err.Error(), "connect to mysql") || strings.Contains(err.Error(), "secret") {
		t.Errorf("unclear error: %v", err)
	}
}

// reopen checks that data survives closing and opening again, and that
// opening an up-to-date database applies no migration twice.
func reopen(t *testing.T, dsn string, versions func() int) {
	ctx := t.Context()
	db, err := store.Open(ctx, dsn, "")
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	if err := db.CreateAccount(ctx, "jürgen", store.Credentials{Salt: []byte{0, 1, 2}, Iterations: 4096}); err != nil {
		t.Fatalf("CreateAccount: %v", err)
	}
	if err := db.PutRosterItem(ctx, "jürgen", store.RosterItem{Contact: "日本@例え.jp", Groups: []string{"x"}, Listed: true}); err != nil {
		t.Fatalf("PutRosterItem: %v", err)
	}
	if err := db.PushOffline(ctx, "jürgen", "", time.Now(), []byte("<message/>"), 5); err != nil {
		t.Fatalf("PushOffline: %v", err)
	}
	if err := db.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	before := versions()

	for range 2 {
		db, err = store.Open(ctx, dsn, "")
		if err != nil {
			t.Fatalf("Open again: %v", err)
		}
		a, err := db.Account(ctx, "jürgen")
		if err != nil || a.Iterations != 4096 || string(a.Salt) != "\x00\x01\x02" {
			t.Errorf("account after reopen = %+v, %v", a, err)
		}
		if it, err := db.RosterItem(ctx, "jürgen", "日本@例え.jp"); err != nil || len(it.Groups) != 1 {
			t.Errorf("roster item after reopen = %+v, %v", it, err)
		}
		if n, err := db.CountOffline(ctx, "jürgen"); err != nil || n != 1 {
			t.Errorf("offline count after reopen = %d, %v; want 1", n, err)
		}
		if err := db.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
		if after := versions(); after != before {
			t.Errorf("reopening changed the migration records from %d to %d rows", before, after)
		}
	}
}

// countVersions returns a func counting the rows of the migration table.
func countVersions(t *testing.T, driver, dsn string) func() int {
	return func() int {
		t.Helper()
		raw, err := sql.Open(driver, dsn)
		if err != nil {
			t.Fatal(err)
		}
		defer raw.Close()
		var n int
		if err := raw.QueryRowContext(t.Context(), "SELECT COUNT(*) FROM poosms_schema_version").Scan(&n); err != nil {
			t.Fatalf("count migrations: %v", err)
		}
		if n < 2 { // the zero version and at least one migration
			t.Fatalf("migration table has %d rows", n)
		}
		return n
	}
}

func TestSQLiteReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "reopen.db")
	reopen(t, "sqlite:"+path, countVersions(t, "sqlite", path))
}

func TestMySQLReopen(t *testing.T) {
	dsn := newMySQLDatabase(t, mysqlServer(t))
	reopen(t, dsn, countVersions(t, "mysql", strings.TrimPrefix(dsn, "mysql://")))
}

func TestNewerSchemaRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "future.db")
	db := open(t, "sqlite:"+path, "")
	db.Close()
	raw, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	if _, err := raw.ExecContext(t.Context(),
		"INSERT INTO poosms_schema_version (version_id, is_applied) VALUES (9999, 1)"); err != nil {
		t.Fatalf("fake a newer migration: %v", err)
	}
	_, err = store.Open(t.Context(), "sqlite:"+path, "")
	if err == nil || !strings.Contains(err.Error(), "9999") {
		t.Fatalf("Open on a newer schema = %v, want an error naming version 9999", err)
	}
}

func TestMySQLConcurrentOpen(t *testing.T) {
	dsn := newMySQLDatabase(t, mysqlServer(t))
	const n = 4
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			db, err := store.Open(t.Context(), dsn, "")
			if err == nil {
				err = db.CreateAccount(t.Context(), string(rune('a'+i)), store.Credentials{})
				db.Close()
			}
			errs[i] = err
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("node %d: %v", i, err)
		}
	}
}

func TestMySQLDatabaseDropped(t *testing.T) {
	server := mysqlServer(t)
	dsn := newMySQLDatabase(t, server)
	db := open(t, dsn, "")
	if err := db.CreateAccount(t.Context(), "alice", store.Credentials{}); err != nil {
		t.Fatalf("CreateAccount: %v", err)
	}
	cfg, err := mysql.ParseDSN(strings.TrimPrefix(dsn, "mysql://"))
	if err != nil {
		t.Fatal(err)
	}
	_, admin := mysqlAdmin(t, server)
	if _, err := admin.ExecContext(t.Context(), "DROP DATABASE "+cfg.DBName); err != nil {
		t.Fatalf("drop database: %v", err)
	}
	// Ping still succeeds (the server is up); everything else must fail.
	_, err = db.Account(t.Context(), "alice")
	if err == nil || errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Account after the database was dropped = %v, want a real error", err)
	}
	t.Logf("Account: %v", err)
	if err := db.PushOffline(t.Context(), "alice", "", time.Now(), []byte("x"), 10); err == nil || errors.Is(err, store.ErrNotFound) {
		t.Errorf("PushOffline after the database was dropped = %v, want a real error", err)
	}
}

func BenchmarkPushOfflineSQLite(b *testing.B) {
	ctx := b.Context()
	db, err := store.Open(ctx, "sqlite", b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	if err := db.CreateAccount(ctx, "alice", store.Credentials{}); err != nil {
		b.Fatal(err)
	}
	stanza := []byte("<message to='alice@example.org' from='bob@example.org/x' type='chat'><body>hello there</body></message>")
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if i%100 == 0 {
			if err := db.DeleteOffline(ctx, "alice", 1<<62); err != nil {
				b.Fatal(err)
			}
		}
		if err := db.PushOffline(ctx, "alice", "", time.Now(), stanza, 1000); err != nil {
			b.Fatal(err)
		}
	}
}

// A MySQL user whose password holds @, / and : logs in with either form of
// --db: the driver's own, as written, and the URL form, percent-encoded.
func TestMySQLPasswordWithURLCharacters(t *testing.T) {
	server := mysqlServer(t)
	cfg, admin := mysqlAdmin(t, server)
	dsn := newMySQLDatabase(t, server)
	dbName := dsn[strings.LastIndex(dsn, "/")+1:]
	user := "u_" + hex.EncodeToString(randomBytes(t, 6))
	const password = "p@ss/w:rd%40?#"
	ctx := t.Context()
	if _, err := admin.ExecContext(ctx, "CREATE USER '"+user+"'@'%' IDENTIFIED BY '"+password+"'"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = admin.ExecContext(context.Background(), "DROP USER '"+user+"'@'%'") })
	if _, err := admin.ExecContext(ctx, "GRANT ALL ON "+dbName+".* TO '"+user+"'@'%'"); err != nil {
		t.Fatal(err)
	}
	for _, form := range []string{
		"mysql://" + user + ":" + password + "@tcp(" + cfg.Addr + ")/" + dbName,
		"mysql://" + user + ":" + url.QueryEscape(password) + "@" + cfg.Addr + "/" + dbName,
	} {
		db, err := store.Open(ctx, form, "")
		if err != nil {
			t.Fatalf("open with %s: %v", form, err)
		}
		name := "a" + hex.EncodeToString(randomBytes(t, 4))
		if err := db.CreateAccount(ctx, name, store.Credentials{}); err != nil {
			t.Errorf("write with %s: %v", form, err)
		}
		db.Close()
	}
	// A wrong password is refused: the test does log in as that user.
	if db, err := store.Open(ctx, "mysql://"+user+":wrong@tcp("+cfg.Addr+")/"+dbName, ""); err == nil {
		db.Close()
		t.Fatal("a wrong password was accepted")
	}
}
