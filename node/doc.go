// Package node is one cairn cluster member: hashicorp/raft wired to the
// fsm state machine (raft-boltdb/v2 log and stable store behind a log
// cache, a file snapshot store, a TCP transport), the replicated
// operations on it, and the HTTP server that serves the API of package
// httpapi over it (*Node implements httpapi.Service).
//
// Files by job: node.go (lifecycle and raft wiring), write.go and
// batcher.go (the write path: validation, coalescing into raft entries),
// forward.go (a follower's writes and admin calls sent to the leader,
// typed), readindex.go (linearizable, stale and min_revision reads),
// membership.go (join, remove, promote, leadership, member records),
// status.go (status and readiness), watch.go (the change feed and local
// state handed to the HTTP API), snapshots.go, retention.go, recover.go,
// logcache.go, metrics.go.
//
// Writes go to the leader (followers forward them) and answer once the
// entry is committed and applied. Reads are linearizable by default (a
// read index confirmed by a quorum and shared by concurrent readers; a
// follower gets it from the leader and serves the read itself), stale (any
// member, optionally bounded by max_staleness) or wait for a min_revision
// on any member. See DESIGN.md for the reasoning, docs/api.md for the HTTP
// API and docs/operations.md for running a cluster.
package node
