package cluster_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cairn-db/cairn/api"
	"github.com/cairn-db/cairn/internal/testnet"
	"github.com/cairn-db/cairn/internal/testutil"
)

// The chaos suite runs real `cairn node run` processes. The binary is
// built once per test run (on first use) and removed by TestMain.
var (
	binOnce sync.Once
	binDir  string
	binPath string
	binErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// cairnBinary builds cmd/cairn once and returns its path.
func cairnBinary(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		binDir, binErr = os.MkdirTemp("", "cairn-chaos-bin-")
		if binErr != nil {
			return
		}
		binPath = filepath.Join(binDir, "cairn")
		build := exec.Command("go", "build", "-o", binPath, "../cmd/cairn")
		var out bytes.Buffer
		build.Stdout, build.Stderr = &out, &out
		if err := build.Run(); err != nil {
			binErr = fmt.Errorf("building cairn: %v\n%s", err, out.String())
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

// syncBuffer is safe for a writing child process and a reading test.
type syncBuffer = testutil.SyncBuffer

// pnode is one slot of a process cluster: a member's identity, addresses
// and data directory, which survive kills and restarts.
type pnode struct {
	idx                   int
	id, dataDir           string
	raftAddr, httpAddr    string
	args                  []string // bootstrap or join
	override              []string // extra flags for the next starts
	env                   []string // extra environment (KEY=value) for the next starts
	log                   syncBuffer
	mu                    sync.Mutex
	cmd                   *exec.Cmd
	done                  chan error
	expectExit            bool // set before we signal the process
	paused                bool
	removed               bool // no longer a member; never restarted
	unexpected            []string
	starts, kills, pauses int
	lastExit              error
	waitedExit            bool
}

func (n *pnode) url() string { return "http://" + n.httpAddr }

func (n *pnode) isPaused() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.paused
}

func (n *pnode) running() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.cmd != nil
}

// pcluster is a cluster of `cairn node run` processes on loopback whose
// raft traffic flows through one proxy per directed link.
type pcluster struct {
	t       *testing.T
	bin     string
	nodes   []*pnode
	links   map[[2]int]*linkProxy
	http    *http.Client
	extra   []string // flags for every node
	baseG   int
	stopped bool
}

// maxSlots is how many members a process cluster can ever have: every
// node's dial map covers all of them, so members added later are
// reachable through proxies too.
const maxSlots = 5

// newPCluster prepares maxSlots slots and their link proxies; nothing runs
// yet. extra flags are passed to every node.
func newPCluster(t *testing.T, extra ...string) *pcluster {
	t.Helper()
	c := &pcluster{
		t:     t,
		bin:   cairnBinary(t),
		links: map[[2]int]*linkProxy{},
		http:  &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 8}},
		extra: extra,
		baseG: runtime.NumGoroutine(),
	}
	dir := t.TempDir()
	for i := 0; i < maxSlots; i++ {
		n := &pnode{idx: i, id: fmt.Sprintf("n%d", i+1), dataDir: filepath.Join(dir, fmt.Sprintf("n%d", i+1)),
			raftAddr: testnet.FreeAddr(t), httpAddr: testnet.FreeAddr(t)}
		c.nodes = append(c.nodes, n)
	}
	for i := range c.nodes {
		for j := range c.nodes {
			if i == j {
				continue
			}
			p, err := newLinkProxy(c.nodes[j].raftAddr)
			if err != nil {
				t.Fatal(err)
			}
			c.links[[2]int{i, j}] = p
		}
	}
	t.Cleanup(c.shutdown)
	return c
}

// dialMap is node i's test-only raft dial map: every peer via its proxy.
func (c *pcluster) dialMap(i int) string {
	var parts []string
	for j, n := range c.nodes {
		if j != i {
			parts = append(parts, n.raftAddr+"="+c.links[[2]int{i, j}].addr())
		}
	}
	return strings.Join(parts, ",")
}

// start starts slot i's process (first start: bootstrap for slot 0, join
// through the running members otherwise) and returns without waiting.
func (c *pcluster) start(i int) {
	c.t.Helper()
	n := c.nodes[i]
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cmd != nil {
		c.t.Fatalf("start %s: already running", n.id)
	}
	if n.args == nil {
		if i == 0 && n.starts == 0 {
			n.args = []string{"--bootstrap"}
		} else {
			var urls []string
			for _, m := range c.nodes {
				if m != n && m.running() {
					urls = append(urls, m.url())
				}
			}
			n.args = []string{"--join", strings.Join(urls, ",")}
		}
	}
	args := append([]string{"node", "run", "--id", n.id, "--data-dir", n.dataDir,
		"--raft-addr", n.raftAddr, "--http-addr", n.httpAddr,
		"--heartbeat-timeout", "300ms", "--election-timeout", "300ms", "--leader-lease-timeout", "150ms",
		"--log-level", "warn", "--test-raft-dial-map", c.dialMap(i)}, c.extra...)
	args = append(args, n.args...)
	args = append(args, n.override...)
	cmd := exec.Command(c.bin, args...)
	cmd.Stdout, cmd.Stderr = &n.log, &n.log
	if n.env != nil {
		cmd.Env = append(os.Environ(), n.env...)
	}
	fmt.Fprintf(&n.log, "--- start %s\n", n.id)
	if err := cmd.Start(); err != nil {
		c.t.Fatalf("start %s: %v", n.id, err)
	}
	n.cmd, n.done, n.expectExit, n.paused, n.waitedExit = cmd, make(chan error, 1), false, false, false
	n.starts++
	go func(cmd *exec.Cmd, done chan error) {
		err := cmd.Wait()
		n.mu.Lock()
		if !n.expectExit {
			n.unexpected = append(n.unexpected, fmt.Sprintf("%s exited unexpectedly: %v", n.id, err))
		}
		n.mu.Unlock()
		done <- err
	}(cmd, n.done)
}

// signal sends sig to slot i; for SIGKILL and SIGTERM it waits for the
// exit and returns the process's exit error.
func (c *pcluster) signal(i int, sig syscall.Signal) error {
	c.t.Helper()
	n := c.nodes[i]
	n.mu.Lock()
	cmd, done := n.cmd, n.done
	if cmd == nil {
		n.mu.Unlock()
		return nil
	}
	switch sig {
	case syscall.SIGSTOP:
		n.paused = true
		n.pauses++
	case syscall.SIGCONT:
		n.paused = false
	default:
		n.expectExit = true
		if sig == syscall.SIGKILL {
			n.kills++
		}
	}
	paused := n.paused
	n.mu.Unlock()
	if err := cmd.Process.Signal(sig); err != nil {
		return err
	}
	if sig == syscall.SIGSTOP || sig == syscall.SIGCONT {
		return nil
	}
	if paused { // a stopped process only acts on SIGTERM once resumed
		_ = cmd.Process.Signal(syscall.SIGCONT)
	}
	var err error
	select {
	case err = <-done:
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		err = fmt.Errorf("%s did not exit within 30s of %v (killed): %v", n.id, sig, <-done)
	}
	n.mu.Lock()
	n.cmd, n.paused, n.lastExit = nil, false, err
	n.mu.Unlock()
	return err
}

func (c *pcluster) kill(i int)   { c.signal(i, syscall.SIGKILL) }
func (c *pcluster) pause(i int)  { c.signal(i, syscall.SIGSTOP) }
func (c *pcluster) resume(i int) { c.signal(i, syscall.SIGCONT) }

// stop stops slot i gracefully; a non-zero exit status fails the test.
func (c *pcluster) stop(i int) {
	c.t.Helper()
	if err := c.signal(i, syscall.SIGTERM); err != nil {
		c.t.Errorf("%s: graceful stop: %v\n%s", c.nodes[i].id, err, tail(c.nodes[i].log.String(), 4000))
	}
}

// live returns the slots whose processes run (paused ones included).
func (c *pcluster) live() []int {
	var out []int
	for i, n := range c.nodes {
		if n.running() {
			out = append(out, i)
		}
	}
	return out
}

// urls returns the HTTP URLs of the running slots.
func (c *pcluster) urls() []string {
	var out []string
	for _, i := range c.live() {
		out = append(out, c.nodes[i].url())
	}
	return out
}

// getJSON GETs url into v.
func (c *pcluster) getJSON(ctx context.Context, url string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	return c.doJSON(req, v)
}

func (c *pcluster) doJSON(req *http.Request, v any) error {
	resp, err := c.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s %s: %d %s", req.Method, req.URL, resp.StatusCode, bytes.TrimSpace(body))
	}
	return json.Unmarshal(body, v)
}

func (c *pcluster) status(i int) (api.StatusResponse, error) {
	var st api.StatusResponse
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	err := c.getJSON(ctx, c.nodes[i].url()+"/v1/status", &st)
	return st, err
}

// waitReady waits until slot i answers /readyz.
func (c *pcluster) waitReady(i int) {
	c.t.Helper()
	n := c.nodes[i]
	pollUntil(c.t, n.id+" ready", 30*time.Second, func() error {
		if !n.running() {
			return fmt.Errorf("%s not running: %v", n.id, n.lastExit)
		}
		resp, err := c.http.Get(n.url() + "/readyz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("readyz %d", resp.StatusCode)
		}
		return nil
	})
}

// leader waits until exactly one running, unpaused slot says it leads and
// every other such slot agrees on it; it returns that slot.
func (c *pcluster) leader() int {
	c.t.Helper()
	leader := -1
	pollUntil(c.t, "a leader", 30*time.Second, func() error {
		leader = -1
		var ids []string
		for _, i := range c.live() {
			if c.nodes[i].isPaused() {
				continue
			}
			st, err := c.status(i)
			if err != nil {
				return err
			}
			if st.State == "Leader" {
				if leader >= 0 {
					return errors.New("two leaders")
				}
				leader = i
			}
			ids = append(ids, st.Leader)
		}
		if leader < 0 {
			return errors.New("no leader")
		}
		for _, id := range ids {
			if id != c.nodes[leader].id {
				return fmt.Errorf("members disagree on the leader: %v", ids)
			}
		}
		return nil
	})
	return leader
}

// leaderNow returns the slot that currently says it leads (-1: none), one
// poll, no waiting.
func (c *pcluster) leaderNow() (int, uint64) {
	for _, i := range c.live() {
		if c.nodes[i].isPaused() {
			continue
		}
		if st, err := c.status(i); err == nil && st.State == "Leader" {
			return i, st.Term
		}
	}
	return -1, 0
}

// startN starts slots 0..n-1 and waits until they are ready.
func (c *pcluster) startN(n int) {
	c.t.Helper()
	c.start(0)
	c.waitReady(0)
	c.leader()
	for i := 1; i < n; i++ {
		c.start(i)
	}
	for i := 1; i < n; i++ {
		c.waitReady(i)
	}
	c.leader()
}

// partition sets every link between the groups a and b (both directions)
// to mode.
func (c *pcluster) partition(a, b []int, mode linkMode) {
	for _, i := range a {
		for _, j := range b {
			if i != j {
				c.links[[2]int{i, j}].set(mode, 0)
				c.links[[2]int{j, i}].set(mode, 0)
			}
		}
	}
}

// heal passes every link again, with no delay.
func (c *pcluster) heal() {
	for _, p := range c.links {
		p.set(linkPass, 0)
	}
}

// others returns every running slot but i.
func (c *pcluster) others(i int) []int {
	var out []int
	for _, j := range c.live() {
		if j != i {
			out = append(out, j)
		}
	}
	return out
}

// unexpectedExits lists processes that exited without being told to.
func (c *pcluster) unexpectedExits() []string {
	var out []string
	for _, n := range c.nodes {
		n.mu.Lock()
		out = append(out, n.unexpected...)
		n.mu.Unlock()
	}
	return out
}

// dumpLogs logs every process's output tail (on failure).
func (c *pcluster) dumpLogs() {
	for _, n := range c.nodes {
		if n.starts > 0 {
			c.t.Logf("=== %s log (tail)\n%s", n.id, tail(n.log.String(), 6000))
		}
	}
}

// shutdown stops every process gracefully, closes the proxies and checks
// that no process died unexpectedly and no goroutine leaked.
func (c *pcluster) shutdown() {
	if c.stopped {
		return
	}
	c.stopped = true
	for i := range c.nodes {
		if c.nodes[i].running() {
			c.stop(i)
		}
	}
	for _, p := range c.links {
		p.close()
	}
	c.http.CloseIdleConnections()
	if u := c.unexpectedExits(); len(u) > 0 {
		c.t.Errorf("processes died: %v", u)
	}
	if c.t.Failed() {
		c.dumpLogs()
	}
	// Every process was waited for above; goroutines of this harness end
	// with them. Poll for stragglers (HTTP keep-alives closing).
	deadline := time.Now().Add(10 * time.Second)
	for {
		n := runtime.NumGoroutine()
		if n <= c.baseG+2 {
			return
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			buf = buf[:runtime.Stack(buf, true)]
			c.t.Errorf("goroutines leaked: %d now, %d before\n%s", n, c.baseG, buf)
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// pollUntil polls cond with a deadline (see internal/testutil).
var pollUntil = testutil.WaitFor

func tail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}
