package main

import (
	"bytes"
	"context"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/cairn-db/cairn/internal/testnet"
	"github.com/cairn-db/cairn/node"
)

// startOneNode starts a one-member in-process cluster and returns its
// --cluster flag.
func startOneNode(t *testing.T) string {
	t.Helper()
	cfg := node.DefaultConfig()
	cfg.ID, cfg.DataDir, cfg.Bootstrap = "s1", t.TempDir(), true
	cfg.RaftAddr, cfg.HTTPAddr = testnet.FreeAddr(t), testnet.FreeAddr(t)
	cfg.HeartbeatTimeout, cfg.ElectionTimeout, cfg.LeaderLeaseTimeout = 200*time.Millisecond, 200*time.Millisecond, 100*time.Millisecond
	cfg.CommitTimeout = 5 * time.Millisecond
	n, err := node.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = n.Close(context.Background()) })
	poll(t, "node ready", 10*time.Second, n.Ready)
	return "--cluster=" + n.HTTPURL()
}

// runIn runs the CLI in process with stdin, returning stdout, stderr and
// the exit status.
func runIn(t *testing.T, stdin io.Reader, args ...string) (string, string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out, errOut bytes.Buffer
	_ = stdin // STDIN
	err := Run(ctx, append([]string{"cairn"}, args...), &out, &errOut)
	return out.String(), errOut.String(), exitCode(err)
}

// setTerminal makes the CLI take its stdout for a terminal (or not) for
// the rest of the test.
func setTerminal(t *testing.T, tty bool) {
	old := isTerminal
	isTerminal = func(io.Writer) bool { return tty }
	t.Cleanup(func() { isTerminal = old })
}

// TestGetNewlineOnTerminal: a value gets a newline on a terminal only;
// on a pipe the bytes are exact.
func TestGetNewlineOnTerminal(t *testing.T) {
	cl := startOneNode(t)
	if _, e, code := runIn(t, nil, cl, "put", "k", "v"); code != 0 {
		t.Fatalf("put: %d %s", code, e)
	}
	setTerminal(t, false)
	if out, _, _ := runIn(t, nil, cl, "get", "k"); out != "v" {
		t.Errorf("pipe: %q, want exactly %q", out, "v")
	}
	setTerminal(t, true)
	if out, _, _ := runIn(t, nil, cl, "get", "k"); out != "v\n" {
		t.Errorf("terminal: %q, want %q", out, "v\n")
	}
}

// TestReplayedWriteSaysSo: a write whose idempotency key was used before
// says `replayed` in text mode, for put, del and txn.
func TestReplayedWriteSaysSo(t *testing.T) {
	cl := startOneNode(t)
	out, e, code := runIn(t, nil, cl, "put", "--idempotency-key", "k1", "a", "one")
	if code != 0 || strings.Contains(out, "replayed") {
		t.Fatalf("first put: %q %s exit %d", out, e, code)
	}
	out, _, code = runIn(t, nil, cl, "put", "--idempotency-key", "k1", "a", "two")
	if code != 0 || !strings.HasPrefix(out, "revision ") ||
		!strings.Contains(out, "(replayed: an earlier write with this idempotency key; this one's value was not written)") {
		t.Errorf("replayed put: %q exit %d", out, code)
	}
	if got, _, _ := runIn(t, nil, cl, "get", "a"); got != "one" {
		t.Errorf("value after the replay %q", got)
	}
	for _, args := range [][]string{{"del", "--idempotency-key", "k2", "a"}, {"del", "--idempotency-key", "k2", "a"}} {
		out, _, _ = runIn(t, nil, append([]string{cl}, args...)...)
	}
	if !strings.Contains(out, "(replayed: an earlier write with this idempotency key; this one was not applied)") {
		t.Errorf("replayed del: %q", out)
	}
	out, _, _ = runIn(t, nil, cl, "--json", "put", "--idempotency-key", "k1", "a", "three")
	if strings.Contains(out, "(replayed:") || !strings.Contains(strings.ToLower(out), `"replayed": true`) {
		t.Errorf("--json: %q", out)
	}
}
