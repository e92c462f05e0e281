//go:build !unix

package store

// lockFile is a no-op where advisory file locks are not available: two
// processes migrating one new SQLite file at once may then collide.
func lockFile(string) (func(), error) { return func() {}, nil }
