package testfake_test

import (
	"testing"

	"poosms.org/poosms/internal/testfake"
	"poosms.org/poosms/store/storetest"
)

// The in-memory store meets the contract the databases meet, in what chat
// asks of a store.
func TestStoreContract(t *testing.T) {
	storetest.RunChat(t, func(t *testing.T) storetest.ChatStore {
		return testfake.NewStore()
	})
}
