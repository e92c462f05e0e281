package store

import (
	"context"
	"time"
)

// CreateAccount adds the local user username with credentials c. It
// returns ErrExists if the name is taken. Usernames are compared byte for
// byte: callers pass the normalised localpart.
func (db *DB) CreateAccount(ctx context.Context, username string, c Credentials) error {
	_, err := db.sql.ExecContext(ctx, `
		INSERT INTO accounts (username, created_us, salt, iterations,
			stored_key_sha1, server_key_sha1, stored_key_sha256, server_key_sha256)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
		username, micros(time.Now()), blob(c.Salt), c.Iterations,
		blob(c.StoredKeySHA1), blob(c.ServerKeySHA1), blob(c.StoredKeySHA256), blob(c.ServerKeySHA256))
	if err != nil {
		return fail("create account", err)
	}
	return nil
}

// Account returns the user username, or ErrNotFound.
func (db *DB) Account(ctx context.Context, username string) (Account, error) {
	var (
		a       Account
		created int64
	)
	err := db.sql.QueryRowContext(ctx, `
		SELECT username, created_us, salt, iterations,
			stored_key_sha1, server_key_sha1, stored_key_sha256, server_key_sha256
		FROM accounts WHERE username = ?`, username).Scan(
		&a.Username, &created, &a.Salt, &a.Iterations,
		&a.StoredKeySHA1, &a.ServerKeySHA1, &a.StoredKeySHA256, &a.ServerKeySHA256)
	if err != nil {
		return Account{}, fail("load account", err)
	}
	a.Created = fromMicros(created)
	a.Salt = unblob(a.Salt)
	a.StoredKeySHA1 = unblob(a.StoredKeySHA1)
	a.ServerKeySHA1 = unblob(a.ServerKeySHA1)
	a.StoredKeySHA256 = unblob(a.StoredKeySHA256)
	a.ServerKeySHA256 = unblob(a.ServerKeySHA256)
	return a, nil
}

// SetCredentials replaces the credentials of username (a password
// change). It returns ErrNotFound if there is no such user.
func (db *DB) SetCredentials(ctx context.Context, username string, c Credentials) error {
	return db.setCredentials(ctx, "set credentials", username, c, nil)
}

// UpgradeCredentials replaces the credentials of username with c only if
// the stored ones are still old (same salt and iteration count): a
// verifier upgrade at login must never undo a password change made
// meanwhile. It returns ErrNotFound when there is no such user or its
// credentials changed.
func (db *DB) UpgradeCredentials(ctx context.Context, username string, old, c Credentials) error {
	return db.setCredentials(ctx, "upgrade credentials", username, c, &old)
}

// setCredentials writes c for username, only over old when it is given.
func (db *DB) setCredentials(ctx context.Context, what, username string, c Credentials, old *Credentials) error {
	query := `
		UPDATE accounts SET salt = ?, iterations = ?,
			stored_key_sha1 = ?, server_key_sha1 = ?, stored_key_sha256 = ?, server_key_sha256 = ?
		WHERE username = ?`
	args := []any{blob(c.Salt), c.Iterations,
		blob(c.StoredKeySHA1), blob(c.ServerKeySHA1), blob(c.StoredKeySHA256), blob(c.ServerKeySHA256),
		username}
	if old != nil {
		query += ` AND salt = ? AND iterations = ?`
		args = append(args, blob(old.Salt), old.Iterations)
	}
	res, err := db.sql.ExecContext(ctx, query, args...)
	if err != nil {
		return fail(what, err)
	}
	// MySQL connections are opened with clientFoundRows, so this counts
	// matched rows even when the credentials did not change.
	n, err := res.RowsAffected()
	if err != nil {
		return fail(what, err)
	}
	if n == 0 {
		return ErrNotFound
	}
	return nil
}

// Accounts returns every username, sorted byte-wise (which for UTF-8 is
// the order of code points).
func (db *DB) Accounts(ctx context.Context) ([]string, error) {
	rows, err := db.sql.QueryContext(ctx, `SELECT username FROM accounts ORDER BY username`)
	if err != nil {
		return nil, fail("list accounts", err)
	}
	defer rows.Close()
	var names []string
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			return nil, fail("list accounts", err)
		}
		names = append(names, name)
	}
	if err := rows.Err(); err != nil {
		return nil, fail("list accounts", err)
	}
	return names, nil
}

// AccountExists reports whether username is a local user.
func (db *DB) AccountExists(ctx context.Context, username string) (bool, error) {
	var n int
	err := db.sql.QueryRowContext(ctx,
		`SELECT COUNT(*) FROM accounts WHERE username = ?`, username).Scan(&n)
	if err != nil {
		return false, fail("check account", err)
	}
	return n > 0, nil
}
