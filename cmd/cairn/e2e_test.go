package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cairn-db/cairn/internal/cluster"
	"github.com/cairn-db/cairn/internal/testnet"
	"github.com/cairn-db/cairn/internal/testutil"
)

// These tests run the real binary as processes: clusters of `cairn node
// run` members through the shared harness (internal/cluster), which builds
// the binary once for this test binary; TestMain removes it.

func TestMain(m *testing.M) { cluster.Main(m) }

// binary returns the cairn binary's path (built on first use).
func binary(t *testing.T) string {
	t.Helper()
	return cluster.Binary(t)
}

// freePort returns a free loopback address (see internal/testnet).
func freePort(t *testing.T) string { return testnet.FreeAddr(t) }

// startCluster starts a three-process cluster (n1 bootstraps, the others
// join) and waits until every member is ready. Every member is stopped
// at cleanup and must exit with status 0.
func startCluster(t *testing.T) *cluster.Cluster {
	t.Helper()
	c := cluster.New(t, cluster.Options{Kind: cluster.Proc})
	c.Start(t, 3)
	return c
}

// clusterFlag is --cluster= with every member's URL.
func clusterFlag(c *cluster.Cluster) string {
	return "--cluster=" + strings.Join(c.URLs(), ",")
}

// poll polls cond with a deadline (see internal/testutil).
var poll = testutil.WaitFor

// runCLI runs the binary and returns stdout, stderr and the exit status.
func runCLI(t *testing.T, stdin string, args ...string) (string, string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary(t), args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr, cmd.Stdin = &out, &errb, strings.NewReader(stdin)
	err := cmd.Run()
	return out.String(), errb.String(), processExit(t, err, args)
}

// runWant returns run(want, args...): runCLI without stdin, failing the
// test unless the exit status is want, and answering stdout and stderr
// together.
func runWant(t *testing.T) func(want int, args ...string) string {
	return func(want int, args ...string) string {
		t.Helper()
		out, errOut, code := runCLI(t, "", args...)
		if code != want {
			t.Fatalf("cairn %s: exit %d, want %d\n%s%s", strings.Join(args, " "), code, want, out, errOut)
		}
		return out + errOut
	}
}

// processExit returns the exit status of a finished cairn process (0
// when err is nil), and fails the test when it could not run at all.
func processExit(t *testing.T, err error, what any) int {
	t.Helper()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	if err != nil {
		t.Fatalf("run cairn %v: %v", what, err)
	}
	return 0
}

func TestBinaryClusterCLIAndLeaderKill(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	c := startCluster(t)
	cluster := clusterFlag(c)

	// Exit statuses of the data commands.
	if out, errOut, code := runCLI(t, "", cluster, "put", "hello", "world"); code != 0 {
		t.Fatalf("put: %d %s %s", code, out, errOut)
	}
	if out, _, code := runCLI(t, "", cluster, "get", "hello"); code != 0 || out != "world" {
		t.Fatalf("get: %d %q", code, out)
	}
	if _, _, code := runCLI(t, "", cluster, "get", "missing"); code != 4 {
		t.Fatalf("get missing: exit %d, want 4", code)
	}
	if _, _, code := runCLI(t, "", cluster, "put", "--if-revision", "999", "hello", "x"); code != 3 {
		t.Fatalf("conflicting put: exit %d, want 3", code)
	}
	if _, _, code := runCLI(t, "", cluster, "put", "only-key"); code != 2 {
		t.Fatalf("put without value: exit %d, want 2", code)
	}
	if _, _, code := runCLI(t, "", cluster, "get", "--consistency", "sometimes", "hello"); code != 2 {
		t.Fatalf("bad consistency: exit %d, want 2", code)
	}
	if _, _, code := runCLI(t, "", "--cluster=http://127.0.0.1:1", "--timeout=2s", "get", "hello"); code != 5 {
		t.Fatalf("unreachable cluster: exit %d, want 5", code)
	}
	if out, _, code := runCLI(t, `{"operations":[{"op":"put","key":"t1","value":"dg=="}]}`, cluster, "txn"); code != 0 || !strings.Contains(out, "revision") {
		t.Fatalf("txn: %d %q", code, out)
	}
	if out, _, code := runCLI(t, "", cluster, "--json", "node", "list"); code != 0 || strings.Count(out, `"reachable": true`) != 3 {
		t.Fatalf("node list: %d %s", code, out)
	}

	// kill -9 the leader: a new leader serves writes; the old one restarts
	// and converges.
	old := c.Leader(t)
	c.Kill(t, old)
	if c.Member(old).LastExit() == nil {
		t.Fatalf("SIGKILLed process exited cleanly")
	}
	if newLeader := c.Leader(t); newLeader == old {
		t.Fatal("killed node still leader")
	}
	for i := 0; i < 20; i++ {
		if _, errOut, code := runCLI(t, "", cluster, "--timeout=20s", "put", fmt.Sprintf("after/%d", i), "v"); code != 0 {
			t.Fatalf("put after leader kill: %d %s", code, errOut)
		}
	}
	c.Restart(t, old)
	c.WaitReady(t, old)
	c.WaitConverged(t)
	if out, _, code := runCLI(t, "", "--cluster="+c.URL(old), "get", "--consistency", "stale", "after/19"); code != 0 || out != "v" {
		t.Fatalf("restarted node misses writes: %d %q", code, out)
	}
}

// TestDevQuickStart runs the README's quick start with the binary: `cairn
// dev` in one process, then put and get against it (on free ports instead
// of 8001-8003, so the test cannot meet another cluster).
func TestDevQuickStart(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	// dev binds 127.0.0.1 and three consecutive ports from each first one.
	base := consecutivePorts(t, 6)
	httpPort, raftPort := strconv.Itoa(base), strconv.Itoa(base+3)
	dir := t.TempDir()
	cmd := exec.Command(binary(t), "dev", "--data-dir", dir, "--http-port", httpPort, "--raft-port", raftPort)
	var out syncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGINT)
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("cairn dev after Ctrl-C: %v\n%s", err, out.String())
			}
			// A clean shutdown logs no error (dev logs errors only).
			if strings.Contains(out.String(), "level=ERROR") {
				t.Errorf("cairn dev logged errors:\n%s", out.String())
			}
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			t.Errorf("cairn dev did not stop on Ctrl-C\n%s", out.String())
		}
	})
	hp, _ := strconv.Atoi(httpPort)
	var urls []string
	for i := 0; i < 3; i++ {
		urls = append(urls, fmt.Sprintf("http://127.0.0.1:%d", hp+i))
	}
	cluster := "--cluster=" + strings.Join(urls, ",")
	poll(t, "dev cluster ready", 30*time.Second, func() error {
		for _, u := range urls {
			resp, err := http.Get(u + "/readyz")
			if err != nil {
				return err
			}
			resp.Body.Close()
			if resp.StatusCode != 200 {
				return fmt.Errorf("%s readyz %d", u, resp.StatusCode)
			}
		}
		return nil
	})
	if o, e, code := runCLI(t, "", cluster, "put", "hello", "world"); code != 0 {
		t.Fatalf("put: %d %s %s", code, o, e)
	}
	if o, _, code := runCLI(t, "", cluster, "get", "hello"); code != 0 || o != "world" {
		t.Fatalf("get: %d %q", code, o)
	}
	if !strings.Contains(out.String(), "3-node cluster running") {
		t.Fatalf("dev did not print its endpoints:\n%s", out.String())
	}
	// The banner's commands work as printed (here: the binary's path and
	// --cluster, the ports not being the default ones).
	banner := out.String()
	_, try, ok := strings.Cut(banner, "Try, in another terminal (in this directory):\n")
	try, _, _ = strings.Cut(try, "\n\n")
	if !ok || len(strings.Split(try, "\n")) != 3 {
		t.Fatalf("no commands to try in the banner:\n%s", banner)
	}
	for _, line := range strings.Split(try, "\n") {
		line = strings.TrimSpace(line)
		if !strings.HasPrefix(line, binary(t)+" --cluster ") {
			t.Errorf("banner command %q does not name this binary and cluster", line)
		}
		o, err := exec.Command("sh", "-c", line).CombinedOutput()
		if err != nil {
			t.Errorf("banner command %q: %v\n%s", line, err, o)
		}
	}
}

// consecutivePorts finds n consecutive free ports on 127.0.0.1 and returns
// the first.
func consecutivePorts(t *testing.T, n int) int {
	t.Helper()
	for range 100 {
		base := 20000 + rand.IntN(40000)
		free := true
		for i := 0; i < n && free; i++ {
			ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", base+i))
			if err != nil {
				free = false
				break
			}
			ln.Close()
		}
		if free {
			return base
		}
	}
	t.Fatalf("no %d consecutive free ports on 127.0.0.1", n)
	return 0
}
