package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/go-sql-driver/mysql"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// Dialects reported by (*DB).Dialect.
const (
	DialectSQLite = "sqlite"
	DialectMySQL  = "mysql"
)

// DefaultSQLiteFile is the database file Open uses inside the data
// directory when the DSN is "sqlite" (or empty).
const DefaultSQLiteFile = "poosms.db"

// sqliteBusyTimeout is how long an SQLite connection waits for another
// writer before giving up with "database is locked".
const sqliteBusyTimeout = 10 * time.Second

// acceptedForms is shown when a DSN is not understood.
const acceptedForms = `"sqlite" (the file poosms.db in the data directory), ` +
	`"sqlite:<file>", "sqlite::memory:" or ` +
	`"mysql://<user>:<password>@tcp(<host>:<port>)/<database>[?<params>]"`

// DB is poosms's durable state on one SQL database. It is safe for
// concurrent use.
type DB struct {
	sql     *sql.DB
	dialect string
	path    string // the SQLite file; "" in memory and on MySQL

	archiveOnce sync.Once
	archiveStop sync.Once
	archiveW    *archiveWriter // group commit of archive entries; nil until used
}

// Open connects to the database named by dsn, checks that it answers and
// brings its schema up to date. The forms of dsn are:
//
//	sqlite (or "")                  <dataDir>/poosms.db, creating dataDir (0700)
//	sqlite:/path/to/file.db         that SQLite file
//	sqlite::memory:                 a private in-memory SQLite database (tests)
//	mysql://user:pass@tcp(host:3306)/poosms?params
//	                                MySQL or MariaDB; after the prefix, a
//	                                go-sql-driver/mysql DSN
//	mysql://user:pass@host:3306/poosms?params
//	                                the same as a URL, percent-decoded (a
//	                                password "p@ss" is written p%40ss)
//
// The database named in a MySQL DSN must already exist; Open creates the
// tables.
func Open(ctx context.Context, dsn, dataDir string) (*DB, error) {
	var (
		db  *DB
		err error
	)
	switch {
	case dsn == "" || dsn == "sqlite":
		if dataDir == "" {
			return nil, errors.New("store: open sqlite: no data directory given")
		}
		if err := os.MkdirAll(dataDir, 0o700); err != nil {
			return nil, fmt.Errorf("store: create data directory: %w", err)
		}
		db, err = openSQLite(filepath.Join(dataDir, DefaultSQLiteFile))
	case strings.HasPrefix(dsn, "sqlite:"):
		path := strings.TrimPrefix(dsn, "sqlite:")
		if path == "" {
			return nil, fmt.Errorf("store: open sqlite: no file after \"sqlite:\"; accepted forms: %s", acceptedForms)
		}
		db, err = openSQLite(path)
	case strings.HasPrefix(dsn, "mysql://"):
		db, err = openMySQL(strings.TrimPrefix(dsn, "mysql://"))
	default:
		// Only the part before the first colon is echoed: the rest may
		// hold a password.
		scheme, _, _ := strings.Cut(dsn, ":")
		return nil, fmt.Errorf("store: unsupported database %q; accepted forms: %s", scheme, acceptedForms)
	}
	if err != nil {
		return nil, err
	}
	if db.dialect == DialectSQLite && db.path != "" {
		// Two processes opening a new file at once (the server and
		// "poosmsd user add", say) must not both switch it to WAL or
		// create the schema: the first connection and the migrations
		// run under a file lock.
		unlock, err := lockFile(db.path + ".migrate-lock")
		if err != nil {
			db.sql.Close()
			return nil, fmt.Errorf("store: open sqlite: %w", err)
		}
		defer unlock()
	}
	if err := db.sql.PingContext(ctx); err != nil {
		db.sql.Close()
		return nil, fmt.Errorf("store: connect to %s: %w", db.dialect, err)
	}
	if err := db.migrate(ctx); err != nil {
		db.sql.Close()
		return nil, err
	}
	return db, nil
}

// openSQLite prepares a pool on the SQLite file at path. Every connection
// runs in WAL mode with foreign keys enforced, waits for a busy writer, and
// starts its transactions with BEGIN IMMEDIATE so that a read-then-write
// transaction never fails halfway on a lock upgrade.
func openSQLite(path string) (*DB, error) {
	params := url.Values{}
	params.Add("_pragma", fmt.Sprintf("busy_timeout(%d)", sqliteBusyTimeout.Milliseconds()))
	params.Add("_pragma", "foreign_keys(1)")
	params.Add("_pragma", "journal_mode(WAL)")
	// In WAL mode, NORMAL syncs the log at checkpoints, not at every
	// commit: a commit survives a crash of the process (it is in the
	// page cache when Commit returns), not necessarily one of the
	// machine. See docs/operations.md, "Data".
	params.Add("_pragma", "synchronous(NORMAL)")
	// Statement rollback data (the subjournal of each statement inside the
	// archive's batch transaction) stays in memory, not a temporary file.
	params.Add("_pragma", "temp_store(MEMORY)")
	params.Set("_txlock", "immediate")

	memory := path == ":memory:"
	var name string
	if memory {
		name = ":memory:?" + params.Encode()
	} else {
		abs, err := filepath.Abs(path)
		if err != nil {
			return nil, fmt.Errorf("store: open sqlite: %w", err)
		}
		// The file holds password verifiers: create it readable by the
		// owner only (SQLite gives its -wal and -shm files the same mode).
		f, err := os.OpenFile(abs, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
		switch {
		case err == nil:
			f.Close()
		case !errors.Is(err, fs.ErrExist):
			return nil, fmt.Errorf("store: open sqlite: %w", err)
		}
		u := url.URL{Scheme: "file", Path: filepath.ToSlash(abs), RawQuery: params.Encode()}
		if !strings.HasPrefix(u.Path, "/") { // a Windows drive letter
			u.Path = "/" + u.Path
		}
		name = u.String()
	}
	pool, err := sql.Open("sqlite", name)
	if err != nil {
		return nil, fmt.Errorf("store: open sqlite: %w", err)
	}
	if memory {
		// Each connection to ":memory:" is a database of its own: keep
		// exactly one, forever.
		pool.SetMaxOpenConns(1)
		pool.SetMaxIdleConns(1)
		pool.SetConnMaxLifetime(0)
		pool.SetConnMaxIdleTime(0)
	}
	db := &DB{sql: pool, dialect: DialectSQLite}
	if !memory {
		db.path = path
	}
	return db, nil
}

// mysqlDriverForm matches the driver's own DSN after the scheme,
// [user[:password]@]tcp(host:port)/dbname[?params] or unix(/path): the
// address is the last "net(…)" after an "@", so the password may hold
// any character.
var mysqlDriverForm = regexp.MustCompile(`^(?s)(.*@)?(tcp|unix)\([^)]*\)/[^/?]*(\?.*)?$`)

// mysqlConfig reads what follows "mysql://": the driver's own form (see
// mysqlDriverForm), or the URL form user:password@host[:port]/dbname?params
// whose user, password and database name are percent-decoded, so that a
// password holding @, / or : is written %40, %2F or %3A. Errors never
// repeat the DSN, which holds the password.
func mysqlConfig(s string) (*mysql.Config, error) {
	if mysqlDriverForm.MatchString(s) {
		cfg, err := mysql.ParseDSN(s)
		if err != nil {
			return nil, fmt.Errorf("store: open mysql: %w; accepted forms: %s", err, acceptedForms)
		}
		return cfg, nil
	}
	u, err := url.Parse("mysql://" + s)
	if err != nil || u.Host == "" || u.Opaque != "" || u.Fragment != "" {
		return nil, fmt.Errorf("store: open mysql: not a DSN or URL (in the URL form, write @ / : %% in the user or password as %%40 %%2F %%3A %%25); accepted forms: %s", acceptedForms)
	}
	cfg, err := mysql.ParseDSN("tcp(" + u.Host + ")/?" + u.RawQuery)
	if err != nil {
		return nil, fmt.Errorf("store: open mysql: %w; accepted forms: %s", err, acceptedForms)
	}
	if u.User != nil {
		cfg.User = u.User.Username()
		cfg.Passwd, _ = u.User.Password()
	}
	cfg.DBName = strings.TrimPrefix(u.Path, "/")
	return cfg, nil
}

// openMySQL prepares a pool from what follows "mysql://" (see
// mysqlConfig), adding the parameters the store relies on.
func openMySQL(dsn string) (*DB, error) {
	cfg, err := mysqlConfig(dsn)
	if err != nil {
		return nil, err
	}
	if cfg.DBName == "" {
		return nil, fmt.Errorf("store: open mysql: no database name in the DSN; accepted forms: %s", acceptedForms)
	}
	// UPDATE reports matched rows, not changed rows, so that writing a
	// value a row already has is not mistaken for a missing row.
	cfg.ClientFoundRows = true
	cfg.ParseTime = true
	cfg.Loc = time.UTC
	cfg.MultiStatements = false
	connector, err := mysql.NewConnector(cfg)
	if err != nil {
		return nil, fmt.Errorf("store: open mysql: %w", err)
	}
	pool := sql.OpenDB(connector)
	// Servers drop idle connections (wait_timeout); retire them first.
	pool.SetConnMaxLifetime(5 * time.Minute)
	pool.SetConnMaxIdleTime(time.Minute)
	pool.SetMaxIdleConns(8)
	return &DB{sql: pool, dialect: DialectMySQL}, nil
}

// SetMaxConns bounds the connections the store opens to a MySQL database
// (n ≥ 1); a SQLite store keeps its one connection.
func (db *DB) SetMaxConns(n int) {
	if db.dialect == DialectMySQL && n > 0 {
		db.sql.SetMaxOpenConns(n)
		db.sql.SetMaxIdleConns(min(n, 8))
	}
}

// Close closes the database. Calls made after Close return an error.
func (db *DB) Close() error {
	db.stopArchive()
	if err := db.sql.Close(); err != nil {
		return fmt.Errorf("store: close: %w", err)
	}
	return nil
}

// Dialect reports which kind of database this is: DialectSQLite or
// DialectMySQL.
func (db *DB) Dialect() string { return db.dialect }

// Ping checks that the database still answers.
func (db *DB) Ping(ctx context.Context) error {
	if err := db.sql.PingContext(ctx); err != nil {
		return fmt.Errorf("store: ping %s: %w", db.dialect, err)
	}
	return nil
}

// fail turns a driver error from operation op into the store's own:
// ErrNotFound for a missing row, ErrExists for a duplicate key, and
// otherwise the error wrapped with context.
func fail(op string, err error) error {
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return ErrNotFound
	case isDuplicate(err):
		return ErrExists
	}
	return fmt.Errorf("store: %s: %w", op, err)
}

// isDuplicate reports whether err is a unique or primary key violation.
func isDuplicate(err error) bool {
	var le *sqlite.Error
	if errors.As(err, &le) {
		switch le.Code() {
		case sqlite3.SQLITE_CONSTRAINT_UNIQUE, sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY:
			return true
		}
	}
	var me *mysql.MySQLError
	if errors.As(err, &me) {
		return me.Number == 1062 // ER_DUP_ENTRY
	}
	return false
}

// lockAccount returns the id of the account username inside tx, locking
// its row on MySQL so that transactions on one account's rows (and only
// that account's) are serialised; SQLite transactions begin IMMEDIATE and
// hold the database's write lock already. A missing account is
// sql.ErrNoRows.
func (db *DB) lockAccount(ctx context.Context, tx *sql.Tx, username string) (int64, error) {
	lookup := `SELECT id FROM accounts WHERE username = ?`
	if db.dialect == DialectMySQL {
		lookup += ` FOR UPDATE`
	}
	var id int64
	err := tx.QueryRowContext(ctx, lookup, username).Scan(&id)
	return id, err
}

// rollback ends a transaction that did not commit. Its error is of no
// interest: the caller already has the error that made it roll back.
func rollback(tx *sql.Tx) { _ = tx.Rollback() }

// blob returns b, or an empty non-nil slice for nil, for NOT NULL BLOB
// columns.
func blob(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

// unblob returns nil for an empty slice read back from a BLOB column, so
// that what was stored as nil reads back as nil.
func unblob(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	return b
}

// micros and fromMicros convert times to and from the Unix microseconds
// stored in the database.
func micros(t time.Time) int64 { return t.UnixMicro() }

func fromMicros(us int64) time.Time { return time.UnixMicro(us).UTC() }
