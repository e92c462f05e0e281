package store

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"

	"github.com/pressly/goose/v3"
)

// migrations holds the versioned schema changes, one directory per
// dialect. A change is a new numbered file; applied files never change.
//
//go:embed migrations/sqlite/*.sql migrations/mysql/*.sql
var migrations embed.FS

// versionTable records which migrations a database has had.
const versionTable = "poosms_schema_version"

// migrate applies the migrations the database has not had yet. It refuses
// a database whose schema is newer than this binary knows.
func (db *DB) migrate(ctx context.Context) error {
	var (
		dialect goose.Dialect
		opts    = []goose.ProviderOption{
			goose.WithTableName(versionTable),
			goose.WithDisableGlobalRegistry(true),
		}
	)
	switch db.dialect {
	case DialectSQLite:
		// Open holds the file lock (lockSQLite) around the first
		// connection and this migration.
		dialect = goose.DialectSQLite3
	case DialectMySQL:
		dialect = goose.DialectMySQL
		// Several nodes may start at once against one database. The lock
		// is held across Up and the version check below: goose's own
		// session locker leaves windows (the version table's creation is
		// not atomic on MySQL) in which another node reads a version
		// table without its zero row.
		unlock, err := lockMySQLMigrations(ctx, db.sql)
		if err != nil {
			return fmt.Errorf("store: migrate: %w", err)
		}
		defer unlock()
	default:
		return fmt.Errorf("store: migrate: unknown dialect %q", db.dialect)
	}
	files, err := fs.Sub(migrations, "migrations/"+db.dialect)
	if err != nil {
		return fmt.Errorf("store: migrate: %w", err)
	}
	p, err := goose.NewProvider(dialect, db.sql, files, opts...)
	if err != nil {
		return fmt.Errorf("store: migrate: %w", err)
	}
	if _, err := p.Up(ctx); err != nil {
		return fmt.Errorf("store: migrate: %w", err)
	}
	// Up leaves alone a database that has migrations this binary does not
	// know; running against it could lose data.
	current, known, err := p.GetVersions(ctx)
	if err != nil {
		return fmt.Errorf("store: migrate: read schema version: %w", err)
	}
	if current > known {
		return fmt.Errorf("store: migrate: the database schema is at version %d but this binary knows only up to %d; run a newer poosms", current, known)
	}
	return nil
}

// lockMySQLMigrations serialises migrations on one MySQL database with a
// named lock held by one connection until unlock. The lock name is derived
// from the database name so that databases on one server do not wait for
// each other.
func lockMySQLMigrations(ctx context.Context, pool *sql.DB) (unlock func(), err error) {
	conn, err := pool.Conn(ctx)
	if err != nil {
		return nil, fmt.Errorf("take migration lock: %w", err)
	}
	var got sql.NullInt64
	err = conn.QueryRowContext(ctx,
		"SELECT GET_LOCK(CONCAT('poosms-migrate-', MD5(DATABASE())), ?)", mysqlLockWait).Scan(&got)
	switch {
	case err != nil:
		conn.Close()
		return nil, fmt.Errorf("take migration lock: %w", err)
	case !got.Valid || got.Int64 != 1:
		conn.Close()
		return nil, errors.New("take migration lock: timed out waiting for another node's migrations")
	}
	return func() {
		// A detached context: the lock must go even when ctx has ended.
		_, _ = conn.ExecContext(context.WithoutCancel(ctx), "DO RELEASE_LOCK(CONCAT('poosms-migrate-', MD5(DATABASE())))")
		conn.Close()
	}, nil
}

// mysqlLockWait is how long, in seconds, a node waits for another node's
// migrations to finish.
const mysqlLockWait = 300
