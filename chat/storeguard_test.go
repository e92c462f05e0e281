package chat

import "poosms.org/poosms/store"

// The real database implements chat's Store.
var _ Store = (*store.DB)(nil)
