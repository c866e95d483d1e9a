package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cairn-db/cairn/api"
	"github.com/cairn-db/cairn/internal/testnet"
	"github.com/cairn-db/cairn/internal/testutil"
)

// These tests build the real binary and run it as separate processes.

var binPath string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "cairn-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binPath = filepath.Join(dir, "cairn")
	build := exec.Command("go", "build", "-o", binPath, ".")
	build.Stderr = os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building cairn:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// freePort returns a free loopback address (see internal/testnet).
func freePort(t *testing.T) string { return testnet.FreeAddr(t) }

// proc is one `cairn node run` process.
type proc struct {
	id, dataDir, raftAddr, httpAddr string
	args                            []string
	cmd                             *exec.Cmd
	log                             *bytes.Buffer
	done                            chan error
}

func (p *proc) url() string { return "http://" + p.httpAddr }

func (p *proc) start(t *testing.T) {
	t.Helper()
	args := append([]string{"node", "run", "--id", p.id, "--data-dir", p.dataDir, "--raft-addr", p.raftAddr,
		"--http-addr", p.httpAddr, "--heartbeat-timeout", "300ms", "--election-timeout", "300ms",
		"--leader-lease-timeout", "150ms", "--log-level", "warn"}, p.args...)
	p.cmd = exec.Command(binPath, args...)
	p.log = &bytes.Buffer{}
	p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", p.id, err)
	}
	p.done = make(chan error, 1)
	go func(c *exec.Cmd, done chan error) { done <- c.Wait() }(p.cmd, p.done)
}

// stop sends sig and waits for the process to exit.
func (p *proc) stop(t *testing.T, sig syscall.Signal) error {
	t.Helper()
	if p.cmd == nil {
		return nil
	}
	_ = p.cmd.Process.Signal(sig)
	select {
	case err := <-p.done:
		p.cmd = nil
		return err
	case <-time.After(30 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
		p.cmd = nil
		return errors.New("did not exit within 30s")
	}
}

func startCluster(t *testing.T) []*proc {
	t.Helper()
	var ps []*proc
	for i := 1; i <= 3; i++ {
		p := &proc{id: fmt.Sprintf("n%d", i), dataDir: t.TempDir(), raftAddr: freePort(t), httpAddr: freePort(t)}
		if i == 1 {
			p.args = []string{"--bootstrap"}
		} else {
			p.args = []string{"--join", ps[0].url()}
		}
		ps = append(ps, p)
	}
	t.Cleanup(func() {
		for _, p := range ps {
			if err := p.stop(t, syscall.SIGTERM); err != nil {
				t.Errorf("%s exit: %v\n%s", p.id, err, p.log)
			}
		}
	})
	for _, p := range ps {
		p.start(t)
	}
	for _, p := range ps {
		waitReady(t, p)
	}
	return ps
}

func waitReady(t *testing.T, p *proc) {
	t.Helper()
	poll(t, p.id+" ready", 30*time.Second, func() error {
		resp, err := http.Get(p.url() + "/readyz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("readyz %d", resp.StatusCode)
		}
		return nil
	})
}

// poll polls cond with a deadline (see internal/testutil).
var poll = testutil.WaitFor

// runCLI runs the binary and returns stdout, stderr and the exit status.
func runCLI(t *testing.T, stdin string, args ...string) (string, string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, binPath, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr, cmd.Stdin = &out, &errb, strings.NewReader(stdin)
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("run cairn %v: %v", args, err)
	}
	return out.String(), errb.String(), code
}

func status(t *testing.T, p *proc) (api.StatusResponse, error) {
	var st api.StatusResponse
	resp, err := http.Get(p.url() + "/v1/status")
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	return st, json.NewDecoder(resp.Body).Decode(&st)
}

func leaderOf(t *testing.T, ps []*proc) *proc {
	t.Helper()
	var leader *proc
	poll(t, "a leader", 30*time.Second, func() error {
		for _, p := range ps {
			if p.cmd == nil {
				continue
			}
			if st, err := status(t, p); err == nil && st.State == "Leader" {
				leader = p
				return nil
			}
		}
		return errors.New("no leader")
	})
	return leader
}

func TestBinaryClusterCLIAndLeaderKill(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	ps := startCluster(t)
	cluster := "--cluster=" + ps[0].url() + "," + ps[1].url() + "," + ps[2].url()

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
	old := leaderOf(t, ps)
	if err := old.stop(t, syscall.SIGKILL); err == nil {
		t.Fatalf("SIGKILLed process exited cleanly")
	}
	var live []*proc
	for _, p := range ps {
		if p != old {
			live = append(live, p)
		}
	}
	newLeader := leaderOf(t, live)
	if newLeader == old {
		t.Fatal("killed node still leader")
	}
	for i := 0; i < 20; i++ {
		if _, errOut, code := runCLI(t, "", cluster, "--timeout=20s", "put", fmt.Sprintf("after/%d", i), "v"); code != 0 {
			t.Fatalf("put after leader kill: %d %s", code, errOut)
		}
	}
	old.start(t)
	waitReady(t, old)
	poll(t, "chain heads equal", 30*time.Second, func() error {
		var heads []string
		for _, p := range ps {
			st, err := status(t, p)
			if err != nil {
				return err
			}
			heads = append(heads, fmt.Sprintf("%d/%s", st.Revision, st.Hash))
		}
		if heads[0] != heads[1] || heads[1] != heads[2] {
			return fmt.Errorf("heads differ: %v", heads)
		}
		return nil
	})
	if out, _, code := runCLI(t, "", "--cluster="+old.url(), "get", "--consistency", "stale", "after/19"); code != 0 || out != "v" {
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
	cmd := exec.Command(binPath, "dev", "--data-dir", dir, "--http-port", httpPort, "--raft-port", raftPort)
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
