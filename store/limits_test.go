package store_test

import (
	"testing"

	"poosms.org/poosms/store"
	"poosms.org/poosms/store/storetest"
)

func TestLimitsSQLite(t *testing.T) {
	storetest.RunLimits(t, func(t *testing.T) *store.DB {
		return open(t, "sqlite", t.TempDir())
	})
}

func TestLimitsMySQL(t *testing.T) {
	server := mysqlServer(t)
	storetest.RunLimits(t, func(t *testing.T) *store.DB {
		return open(t, newMySQLDatabase(t, server), "")
	})
}
