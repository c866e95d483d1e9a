// Package cluster_test holds cairn's multi-node tests: clusters of
// in-process nodes started with the shared harness (internal/cluster;
// harness_test.go adds these tests' defaults), driven over their HTTP API.
// The chaos suite is in cluster_test/chaos, the scale soak in
// cluster_test/scale, the Docker tests (build tag docker) here.
//
// The package has no non-test code; this file only documents it.
package cluster_test
