package store_test

import (
	"testing"

	"poosms.org/poosms/store"
	"poosms.org/poosms/store/storetest"
)

func TestRoomsSQLite(t *testing.T) {
	storetest.RunRooms(t, func(t *testing.T) *store.DB {
		return open(t, "sqlite", t.TempDir())
	})
}

func TestRoomsMySQL(t *testing.T) {
	server := mysqlServer(t)
	storetest.RunRooms(t, func(t *testing.T) *store.DB {
		return open(t, newMySQLDatabase(t, server), "")
	})
}
