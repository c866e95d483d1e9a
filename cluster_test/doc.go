// Package cluster_test holds cairn's multi-node tests: an in-process
// harness (harness_test.go) that starts real nodes on loopback ports, finds
// the leader, stops, restarts and adds members, and waits by polling; and
// the tests that drive a cluster over its HTTP API.
//
// The package has no non-test code; this file only documents it.
package cluster_test
