package store_test

import (
	"strings"
	"sync"
	"testing"
)

// TestMySQLConnectionsBounded checks that SetMaxConns holds the pool to
// its bound under concurrent use, so nodes sharing a MariaDB stay below
// its max_connections.
func TestMySQLConnectionsBounded(t *testing.T) {
	server := mysqlServer(t)
	dsn := newMySQLDatabase(t, server)
	db := open(t, dsn, "")
	const bound = 2
	db.SetMaxConns(bound)

	var wg sync.WaitGroup
	for range 32 {
		wg.Go(func() {
			for range 40 {
				if _, err := db.AccountExists(t.Context(), "nobody"); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()

	name := dsn[strings.LastIndex(dsn, "/")+1:]
	if i := strings.IndexByte(name, '?'); i >= 0 {
		name = name[:i]
	}
	_, admin := mysqlAdmin(t, server)
	var n int
	if err := admin.QueryRowContext(t.Context(),
		"SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE DB = ?", name).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n > bound {
		t.Fatalf("%d connections open to the store's database, want at most %d", n, bound)
	}
	if n == 0 {
		t.Fatal("no connection of the store's open: the count looks at the wrong database")
	}
}
