package cluster_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/cairn-db/cairn/api"
	"github.com/cairn-db/cairn/internal/cluster"
	"github.com/cairn-db/cairn/node"
)

// The cluster tests use the shared harness (internal/cluster) with
// in-process members; this file only adds their defaults and assertions.

// Default waits. Every wait polls a condition until its deadline.
const (
	waitLeader   = 15 * time.Second
	waitConverge = 20 * time.Second
)

// Cluster is the shared harness's cluster; Resp an HTTP answer.
type (
	Cluster = cluster.Cluster
	Resp    = cluster.Resp
)

// StartCluster starts an n-member in-process cluster: n1 bootstraps, the
// others join. configure (may be nil) adjusts every member's config after
// the harness and these tests' defaults. It returns once every member is
// ready and they agree on a leader.
func StartCluster(t *testing.T, n int, configure func(*node.Config)) *Cluster {
	t.Helper()
	c := cluster.New(t, cluster.Options{Kind: cluster.InProc, Configure: func(cfg *node.Config) {
		cfg.CommitTimeout = 5 * time.Millisecond
		cfg.ApplyTimeout = 5 * time.Second
		cfg.ShutdownTimeout = 5 * time.Second
		if configure != nil {
			configure(cfg)
		}
	}})
	c.Start(t, n)
	return c
}

// waitFor polls cond with a deadline.
var waitFor = cluster.WaitFor

// decode unmarshals a response body.
func decode(t *testing.T, r Resp, v any) {
	t.Helper()
	if err := json.Unmarshal(r.Body, v); err != nil {
		t.Fatalf("decode %s: %v", r, err)
	}
}

// expectError checks that r is an error answer with the given status and
// code in the shape {"error":{"code":...,"message":...}} and returns it.
func expectError(t *testing.T, r Resp, status int, code string) api.Error {
	t.Helper()
	if r.Code != status {
		t.Fatalf("want HTTP %d %s, got %s", status, code, r)
	}
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("error answer Content-Type %q, want application/json", ct)
	}
	var shape map[string]json.RawMessage
	decode(t, r, &shape)
	if len(shape) != 1 || shape["error"] == nil {
		t.Fatalf("error answer is not {\"error\": {...}}: %s", r.Body)
	}
	var inner map[string]json.RawMessage
	if err := json.Unmarshal(shape["error"], &inner); err != nil {
		t.Fatalf("error object: %v: %s", err, r.Body)
	}
	var gotCode, msg string
	if err := json.Unmarshal(inner["code"], &gotCode); err != nil {
		t.Fatalf("error.code missing or not a string: %s", r.Body)
	}
	if err := json.Unmarshal(inner["message"], &msg); err != nil || msg == "" {
		t.Fatalf("error.message missing or empty: %s", r.Body)
	}
	if gotCode != code {
		t.Fatalf("error code %q, want %q: %s", gotCode, code, r.Body)
	}
	var e api.ErrorResponse
	decode(t, r, &e)
	return e.Error
}
