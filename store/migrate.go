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
		dialect = goose.DialectSQLite3
		if db.path != "" {
			// Two processes opening a new file at once (the server and
			// "poosmsd user add", say) must not both create the schema.
			unlock, err := lockFile(db.path + ".migrate-lock")
			if err != nil {
				return fmt.Errorf("store: migrate: %w", err)
			}
			defer unlock()
		}
	case DialectMySQL:
		dialect = goose.DialectMySQL
		// Several nodes may start at once against one database.
		opts = append(opts, goose.WithSessionLocker(mysqlMigrationLock{}))
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

// mysqlMigrationLock serialises migrations on one MySQL database with a
// named lock held by the migrating connection. The lock name is derived
// from the database name so that databases on one server do not wait for
// each other.
type mysqlMigrationLock struct{}

// mysqlLockWait is how long, in seconds, a node waits for another node's
// migrations to finish.
const mysqlLockWait = 300

func (mysqlMigrationLock) SessionLock(ctx context.Context, conn *sql.Conn) error {
	var got sql.NullInt64
	err := conn.QueryRowContext(ctx,
		"SELECT GET_LOCK(CONCAT('poosms-migrate-', MD5(DATABASE())), ?)", mysqlLockWait).Scan(&got)
	switch {
	case err != nil:
		return fmt.Errorf("take migration lock: %w", err)
	case !got.Valid || got.Int64 != 1:
		return errors.New("take migration lock: timed out waiting for another node's migrations")
	}
	return nil
}

func (mysqlMigrationLock) SessionUnlock(ctx context.Context, conn *sql.Conn) error {
	_, err := conn.ExecContext(ctx, "DO RELEASE_LOCK(CONCAT('poosms-migrate-', MD5(DATABASE())))")
	if err != nil {
		return fmt.Errorf("release migration lock: %w", err)
	}
	return nil
}
