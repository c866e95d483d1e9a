// Package node is one cairn cluster member: hashicorp/raft wired to the
// fsm state machine (raft-boltdb/v2 log and stable store behind a log
// cache, a file snapshot store, a TCP transport), the HTTP/JSON API under
// /v1/, forwarding to the leader, read barriers and membership.
//
// Writes go to the leader (followers forward them) and answer once the
// entry is committed and applied. Reads are linearizable by default (a
// read index confirmed by a quorum, shared by concurrent readers, and
// served by the leader), stale (any node, optionally bounded by
// max_staleness) or wait for a min_revision on any node.
//
// Each member's HTTP URL is replicated through the log, so every node can
// forward to the leader and list every member. See docs/api.md for the
// HTTP API and docs/operations.md for running a cluster.
package node
