package store_test

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"poosms.org/poosms/internal/testenv"
	"poosms.org/poosms/store"
)

// BenchmarkArchiveConcurrent archives one-to-one messages (two entries
// each, under the default caps) from 64 concurrent senders among 2,000
// accounts, as a busy server does. Besides the time per message it
// reports the process's CPU time per message (cpu-µs/msg, from
// getrusage), which holds up better than the time on a shared machine.
func BenchmarkArchiveConcurrent(b *testing.B) {
	b.Run("SQLite", func(b *testing.B) {
		db, err := store.Open(context.Background(), "sqlite:"+filepath.Join(b.TempDir(), "bench.db"), "")
		if err != nil {
			b.Fatal(err)
		}
		defer db.Close()
		benchArchiveConcurrent(b, db)
	})
	b.Run("MySQL", func(b *testing.B) {
		db, err := store.Open(context.Background(), testenv.MySQLDSN(b), "")
		if err != nil {
			b.Fatal(err)
		}
		defer db.Close()
		benchArchiveConcurrent(b, db)
	})
}

func benchArchiveConcurrent(b *testing.B, db *store.DB) {
	ctx := context.Background()
	const users, senders = 2000, 64
	for i := range users {
		if err := db.CreateAccount(ctx, fmt.Sprintf("u%d", i), store.Credentials{Iterations: 4096}); err != nil {
			b.Fatal(err)
		}
	}
	lim := store.ArchiveLimit{Messages: 100000, Bytes: 256 << 20}
	stanza := []byte("<message from='a@localhost/r' to='b@localhost/r' type='chat' id='x'><body>hello there, how are you today?</body></message>")
	var next atomic.Int64
	cpu0 := cpuTime()
	b.ResetTimer()
	var wg sync.WaitGroup
	for w := range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1)
				if i > int64(b.N) {
					return
				}
				from, to := fmt.Sprintf("u%d", (int(i)*7+w)%users), fmt.Sprintf("u%d", (int(i)*13+w+1)%users)
				if from == to {
					to = fmt.Sprintf("u%d", (int(i)*13+w+2)%users)
				}
				id := fmt.Sprintf("m%d", i)
				now := time.Now()
				err := db.ArchiveMessages(ctx, []store.ArchiveEntry{
					{Owner: from, Limit: lim, Message: store.ArchivedMessage{ID: id, With: to + "@localhost/r", Stamp: now, Stanza: stanza}},
					{Owner: to, Limit: lim, Message: store.ArchivedMessage{ID: id, With: from + "@localhost/r", Stamp: now, Stanza: stanza}},
				})
				if err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	b.StopTimer()
	b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/float64(b.N), "cpu-µs/msg")
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
