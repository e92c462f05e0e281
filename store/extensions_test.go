package store_test

import (
	"testing"

	"poosms.org/poosms/store"
	"poosms.org/poosms/store/storetest"
)

func TestExtensionsSQLite(t *testing.T) {
	storetest.RunExtensions(t, func(t *testing.T) *store.DB {
		return open(t, "sqlite", t.TempDir())
	})
}

func TestExtensionsMySQL(t *testing.T) {
	server := mysqlServer(t)
	storetest.RunExtensions(t, func(t *testing.T) *store.DB {
		return open(t, newMySQLDatabase(t, server), "")
	})
}
