// Package cluster lets several poosmsd nodes act as one service: it keeps
// the list of live nodes, the directory of which node serves each full JID,
// carries stanzas between nodes and places each room or conference on one
// node.
//
// A single node uses Local, which needs nothing outside the process; a
// cluster uses Redis (NewRedis), which keeps that state in a shared Redis
// server. Both satisfy the same small interfaces (Membership, Directory,
// Router, Placer), so callers do not know which one they hold.
package cluster
