package main

import (
	"log/slog"
)

// The open-file limit a node runs with.
//
// Every client connection is a file descriptor, so the process's
// RLIMIT_NOFILE caps the sessions a node can hold; past it, accept fails
// with "too many open files" and clients see refused or reset logins.
// No setting caps a node's sessions, so the check compares the limit with
// what a node planned for plannedSessions needs.

const (
	// plannedSessions is the sessions a node is expected to hold when the
	// operator has said nothing: one node of this size measured 19,000
	// idle TLS sessions (docs/performance.md), 10,000 leaves room.
	plannedSessions = 10_000
	// fdReserve is what a node holds besides its client connections:
	// listeners, the store, Redis, federation streams, TURN and media
	// sockets, certificates being read.
	fdReserve = 1_024
)

// fileLimit is RLIMIT_NOFILE as the process has it. Go raises the soft
// limit to the hard one when it starts, so soft is normally hard.
type fileLimit struct {
	soft, hard uint64
}

// sessionsFit is about how many client sessions the limit leaves room for.
func (l fileLimit) sessionsFit() uint64 {
	if l.soft <= fdReserve {
		return 0
	}
	return l.soft - fdReserve
}

// logFileLimit logs the limit at start, and warns when it leaves room for
// fewer than plannedSessions sessions. ok is false where the limit is not
// known (not a Unix system): nothing is logged then.
func logFileLimit(log *slog.Logger, l fileLimit, ok bool) {
	if !ok {
		return
	}
	log.Info("open-file limit", "soft", l.soft, "hard", l.hard, "sessions_fit", l.sessionsFit())
	if need := uint64(plannedSessions + fdReserve); l.soft < need {
		log.Warn("the open-file limit is low for a server: raise it (LimitNOFILE= in the systemd unit, ulimit -n in a shell; docs/operations.md)",
			"soft", l.soft, "hard", l.hard,
			"sessions_fit", l.sessionsFit(),
			"compared_with", need,
			"why", "10,000 client sessions, one descriptor each, plus 1,024 for listeners, store, Redis, federation and media")
	}
}
