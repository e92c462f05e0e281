package turn

import (
	"net"
	"sync"
	"time"
)

// reservationTTL bounds how long a quota slot granted to an Allocate
// request stays reserved when the allocation then fails to come up.
const reservationTTL = 10 * time.Second

// quota counts allocations per user (the USER part of the credential
// username) across all listeners. The TURN engine asks allow before it
// creates an allocation and reports created and deleted allocations
// afterwards; a slot is reserved between the two so that concurrent
// requests on different listeners cannot overshoot the limit.
type quota struct {
	max int
	now func() time.Time

	mu       sync.Mutex
	active   map[string]int                  // user → live allocations
	reserved map[string]map[string]time.Time // user → client address → reserved at
	total    int                             // live allocations, all users
	idle     chan struct{}                   // closed while total == 0
}

func newQuota(max int, now func() time.Time) *quota {
	q := &quota{
		max:      max,
		now:      now,
		active:   make(map[string]int),
		reserved: make(map[string]map[string]time.Time),
		idle:     make(chan struct{}),
	}
	close(q.idle)
	return q
}

// allow reserves a slot for user's new allocation from client, or reports
// that the user is at the limit.
func (q *quota) allow(user string, client net.Addr) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	now := q.now()
	res := q.reserved[user]
	for addr, at := range res {
		if now.Sub(at) > reservationTTL {
			delete(res, addr)
		}
	}
	if q.active[user]+len(res) >= q.max {
		return false
	}
	if res == nil {
		res = make(map[string]time.Time)
		q.reserved[user] = res
	}
	res[client.String()] = now
	return true
}

// created turns the reservation for client into a live allocation.
func (q *quota) created(user string, client net.Addr) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if res := q.reserved[user]; res != nil {
		delete(res, client.String())
		if len(res) == 0 {
			delete(q.reserved, user)
		}
	}
	q.active[user]++
	if q.total == 0 {
		q.idle = make(chan struct{})
	}
	q.total++
}

// deleted releases a live allocation's slot.
func (q *quota) deleted(user string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.active[user] == 0 {
		return
	}
	q.active[user]--
	if q.active[user] == 0 {
		delete(q.active, user)
	}
	q.total--
	if q.total == 0 {
		close(q.idle)
	}
}

// count returns the number of live allocations for user.
func (q *quota) count(user string) int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.active[user]
}

// idleCh returns a channel closed once no allocation is live.
func (q *quota) idleCh() <-chan struct{} {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.idle
}
