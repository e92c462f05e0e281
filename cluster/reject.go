package cluster

import (
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// rejectLogEvery is how often each reason is logged at most.
const rejectLogEvery = 10 * time.Second

// Rejects counts and logs what a node refused to believe: payloads and
// records from Redis that fail authentication, and claims a node made
// about sessions it does not serve. Each reason is logged at Warn at most
// once every ten seconds, with how many were refused in between, so a
// flood of forgeries cannot flood the log; the counter counts every one.
type Rejects struct {
	log     *slog.Logger
	clock   Clock
	counter *prometheus.CounterVec

	mu     sync.Mutex
	last   map[string]time.Time
	missed map[string]int
}

// NewRejects returns a Rejects logging to log. Its counter is
// poosms_cluster_rejected_total{reason}; register Collector to export it.
func NewRejects(log *slog.Logger, clock Clock) *Rejects {
	if clock == nil {
		clock = SystemClock
	}
	return &Rejects{
		log:   log,
		clock: clock,
		counter: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "poosms", Subsystem: "cluster", Name: "rejected_total",
			Help: "Payloads and records read from Redis that this node refused: not signed with the cluster secret, stale, replayed, or about a session the sending node does not serve.",
		}, []string{"reason"}),
		last:   map[string]time.Time{},
		missed: map[string]int{},
	}
}

// Collector returns the counter for the caller to register.
func (r *Rejects) Collector() prometheus.Collector { return r.counter }

// Count returns how many were refused for reason.
func (r *Rejects) Count(reason string) float64 {
	var m dto.Metric
	if err := r.counter.WithLabelValues(reason).Write(&m); err != nil {
		return 0
	}
	return m.GetCounter().GetValue()
}

// Reject counts one refusal for reason and logs it unless that reason was
// logged less than ten seconds ago. attrs describe it (sender, JID…).
func (r *Rejects) Reject(reason string, attrs ...any) {
	r.counter.WithLabelValues(reason).Inc()
	now := r.clock.Now()
	r.mu.Lock()
	if last, ok := r.last[reason]; ok && now.Sub(last) < rejectLogEvery {
		r.missed[reason]++
		r.mu.Unlock()
		return
	}
	missed := r.missed[reason]
	r.last[reason] = now
	delete(r.missed, reason)
	r.mu.Unlock()
	args := append([]any{"reason", reason}, attrs...)
	if missed > 0 {
		args = append(args, "also_refused_since_last_log", missed)
	}
	r.log.Warn("cluster: refused what was read from redis", args...)
}
