// Package cluster lets several poosmsd nodes act as one service: it keeps
// the list of live nodes, the directory of which node serves each full JID,
// carries stanzas between nodes and places each room or conference on one
// node.
//
// A single node uses Local, which needs nothing outside the process; a
// cluster uses Redis (NewRedis), which keeps that state in a shared Redis
// server. Both satisfy the same small interfaces (Membership, Directory,
// Router, Placer), so callers do not know which one they hold.
//
// Redis is not trusted: every payload a node reads from a stream, every
// node record and every session directory value carries an HMAC made
// with the cluster secret (auth.go), and what fails the check, is stale
// or is replayed is dropped, counted and logged (Rejects). Someone who
// can write to Redis can still deny service; see docs/operations.md.
package cluster
