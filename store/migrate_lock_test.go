package store_test

import (
	"context"
	"path/filepath"
	"sync"
	"testing"

	"poosms.org/poosms/store"
)

// Several processes (here: pools) opening one new SQLite file at once all
// succeed: only one creates the schema.
func TestConcurrentOpenOfNewSQLiteFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "new.db")
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			db, err := store.Open(context.Background(), "sqlite:"+path, "")
			if err != nil {
				errs <- err
				return
			}
			db.Close()
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("open: %v", err)
	}
}
