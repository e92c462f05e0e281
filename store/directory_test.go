package store_test

import (
	"testing"

	"poosms.org/poosms/store"
	"poosms.org/poosms/store/storetest"
)

func TestDirectorySQLite(t *testing.T) {
	storetest.RunDirectory(t, func(t *testing.T) *store.DB {
		return open(t, "sqlite", t.TempDir())
	})
}

func TestDirectoryMySQL(t *testing.T) {
	server := mysqlServer(t)
	storetest.RunDirectory(t, func(t *testing.T) *store.DB {
		return open(t, newMySQLDatabase(t, server), "")
	})
}
