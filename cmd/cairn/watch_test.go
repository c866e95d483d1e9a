package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/cairn-db/cairn/internal/testutil"

	"github.com/cairn-db/cairn/api"
	"github.com/cairn-db/cairn/client"
	"github.com/cairn-db/cairn/internal/testnet"
	"github.com/cairn-db/cairn/node"
)

// syncBuffer is safe for a writing child process and a reading test.
type syncBuffer = testutil.SyncBuffer

// TestWatchCommand runs `cairn watch` in process against a one-node
// cluster: the people's format until Ctrl-C (exit 0), --json until
// --timeout (exit 0), and a compacted start (exit 1).
func TestWatchCommand(t *testing.T) {
	cfg := node.DefaultConfig()
	cfg.ID, cfg.DataDir, cfg.Bootstrap = "w1", t.TempDir(), true
	cfg.RaftAddr, cfg.HTTPAddr = testnet.FreeAddr(t), testnet.FreeAddr(t)
	cfg.HeartbeatTimeout, cfg.ElectionTimeout, cfg.LeaderLeaseTimeout = 200*time.Millisecond, 200*time.Millisecond, 100*time.Millisecond
	cfg.CommitTimeout = 5 * time.Millisecond
	n, err := node.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = n.Close(context.Background()) })
	poll(t, "node ready", 10*time.Second, n.Ready)
	ccfg := client.DefaultConfig()
	ccfg.Endpoints = []string{n.HTTPURL()}
	cl, err := client.New(ccfg)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx := context.Background()
	for _, k := range []string{"a/1", "b/1", "a/2"} {
		if _, err := cl.Put(ctx, k, []byte("v")); err != nil {
			t.Fatal(err)
		}
	}
	cluster := "--cluster=" + n.HTTPURL()

	// Until Ctrl-C (the context Run gets is cancelled by the signal).
	var out, errOut syncBuffer
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- Run(rctx, []string{"cairn", cluster, "watch", "--from", "1", "a/"}, &out, &errOut) }()
	poll(t, "watch output", 10*time.Second, func() error {
		if !strings.Contains(out.String(), "3 put a/2\n") {
			return errorString(out.String())
		}
		return nil
	})
	if _, err := cl.Put(ctx, "a/3", []byte("v")); err != nil {
		t.Fatal(err)
	}
	poll(t, "live watch output", 10*time.Second, func() error {
		if !strings.Contains(out.String(), "4 put a/3\n") {
			return errorString(out.String())
		}
		return nil
	})
	cancel()
	if err := <-done; exitCode(err) != 0 {
		t.Fatalf("watch after Ctrl-C: %v (exit %d), stderr %s", err, exitCode(err), errOut.String())
	}
	if got := out.String(); got != "1 put a/1\n3 put a/2\n4 put a/3\n" {
		t.Errorf("output %q", got)
	}

	// --json until --timeout.
	var jout, jerr syncBuffer
	err = Run(ctx, []string{"cairn", cluster, "--timeout", "1s", "watch", "--json", "--from", "2"}, &jout, &jerr)
	if exitCode(err) != 0 {
		t.Fatalf("watch --json: %v, stderr %s", err, jerr.String())
	}
	var revs []uint64
	for _, line := range strings.Split(strings.TrimSpace(jout.String()), "\n") {
		var ev api.WatchEvent
		if err := json.Unmarshal([]byte(line), &ev); err != nil || ev.Type != api.WatchTxn || len(ev.Operations) != 1 {
			t.Fatalf("line %q: %v", line, err)
		}
		revs = append(revs, ev.Revision)
	}
	if len(revs) != 3 || revs[0] != 2 || revs[2] != 4 {
		t.Errorf("--json revisions %v, want [2 3 4]", revs)
	}

	// A compacted start: exit 1 with the oldest revision named.
	if err := cl.Compact(ctx, 3); err != nil {
		t.Fatal(err)
	}
	err = Run(ctx, []string{"cairn", cluster, "watch", "--from", "1"}, &out, &errOut)
	if code := exitCode(err); code != exitError || !strings.Contains(err.Error(), "--from 3") {
		t.Fatalf("compacted start: exit %d, %v", code, err)
	}
	if err := Run(ctx, []string{"cairn", cluster, "watch", "a", "b"}, &out, &errOut); exitCode(err) != exitUsage {
		t.Errorf("two prefixes: %v", err)
	}
}

type errorString string

func (e errorString) Error() string { return "output so far: " + string(e) }
