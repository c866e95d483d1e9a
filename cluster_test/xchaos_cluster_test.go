package cluster_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/cairn-db/cairn/api"
	"github.com/cairn-db/cairn/internal/testnet"
	"github.com/cairn-db/cairn/internal/testutil"
	"github.com/cairn-db/cairn/node"
)

// The chaos suite's cluster. Its members run either as `cairn node run`
// processes (procRunner, xchaos_proc_test.go) or as node.Node values in the
// test process (inprocRunner, xchaos_inproc_test.go). Everything else is
// the same code for both: the slots, the per-link raft proxies, the HTTP
// status polling, leader detection and every check after a scenario.

// nodeRunner is the part of the cluster that differs between the modes:
// how a slot's member is started, crashed, stopped, paused and resumed.
// Each method is called with the slot's index; start must set the slot's
// process or node (so running() reports it), kill and stop must clear it.
type nodeRunner interface {
	// prepare sets up per-slot resources once, before anything starts.
	prepare(c *chaosCluster)
	// start starts slot i on its data directory and returns without
	// waiting for it to be ready.
	start(c *chaosCluster, i int)
	// kill crashes slot i: no graceful shutdown.
	kill(c *chaosCluster, i int)
	// stop stops slot i gracefully and reports a failed shutdown.
	stop(c *chaosCluster, i int) error
	// pause freezes slot i (SIGSTOP); resume lets it go on (SIGCONT).
	pause(c *chaosCluster, i int)
	resume(c *chaosCluster, i int)
	// problems lists members that died without being told to.
	problems(c *chaosCluster) []string
}

// nodeOpts are node settings a scenario gives its members, whatever runs
// them (flags for processes, node.Config fields in process). Zero fields
// keep the default.
type nodeOpts struct {
	snapshotThreshold uint64
	snapshotInterval  time.Duration
	trailingLogs      uint64
	logLevel          string // "": warn
}

// with returns o overridden by the non-zero fields of p.
func (o nodeOpts) with(p nodeOpts) nodeOpts {
	if p.snapshotThreshold != 0 {
		o.snapshotThreshold = p.snapshotThreshold
	}
	if p.snapshotInterval != 0 {
		o.snapshotInterval = p.snapshotInterval
	}
	if p.trailingLogs != 0 {
		o.trailingLogs = p.trailingLogs
	}
	if p.logLevel != "" {
		o.logLevel = p.logLevel
	}
	return o
}

func (o nodeOpts) level() string {
	if o.logLevel == "" {
		return "warn"
	}
	return o.logLevel
}

// flags returns o as `cairn node run` flags.
func (o nodeOpts) flags() []string {
	f := []string{"--log-level", o.level()}
	if o.snapshotThreshold != 0 {
		f = append(f, "--snapshot-threshold", strconv.FormatUint(o.snapshotThreshold, 10))
	}
	if o.snapshotInterval != 0 {
		f = append(f, "--snapshot-interval", o.snapshotInterval.String())
	}
	if o.trailingLogs != 0 {
		f = append(f, "--trailing-logs", strconv.FormatUint(o.trailingLogs, 10))
	}
	return f
}

// apply sets o's fields in cfg (the log level is the runner's business).
func (o nodeOpts) apply(cfg *node.Config) {
	if o.snapshotThreshold != 0 {
		cfg.SnapshotThreshold = o.snapshotThreshold
	}
	if o.snapshotInterval != 0 {
		cfg.SnapshotInterval = o.snapshotInterval
	}
	if o.trailingLogs != 0 {
		cfg.TrailingLogs = o.trailingLogs
	}
}

// Raft timings of every chaos member.
const (
	chaosHeartbeat = 300 * time.Millisecond
	chaosElection  = 300 * time.Millisecond
	chaosLease     = 150 * time.Millisecond
)

// syncBuffer is safe for a writing node and a reading test.
type syncBuffer = testutil.SyncBuffer

// bootPlan is how a slot's member first starts: it bootstraps, or joins
// through the listed HTTP URLs.
type bootPlan struct {
	bootstrap bool
	join      []string
}

// chaosNode is one slot of a chaos cluster: a member's identity, addresses
// and data directory, which survive kills and restarts.
type chaosNode struct {
	idx                int
	id, dataDir        string
	raftAddr, httpAddr string // bound
	httpURL            string // advertised: what clients and peers use
	boot               *bootPlan
	override           nodeOpts // settings for the next starts, over the cluster's
	log                syncBuffer
	mu                 sync.Mutex
	paused             bool
	removed            bool // no longer a member; never restarted
	unexpected         []string
	starts, kills      int
	pauses             int
	lastExit           error

	// Processes (procRunner).
	env        []string // extra environment (KEY=value) for the next starts
	cmd        *exec.Cmd
	done       chan error
	expectExit bool // set before we signal the process
	waitedExit bool

	// In process (inprocRunner).
	node   *node.Node
	front  *linkProxy // in front of the HTTP address (the advertised one)
	frozen func()     // releases a pause's hold on raft's log store
}

func (n *chaosNode) url() string { return n.httpURL }

func (n *chaosNode) isPaused() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.paused
}

func (n *chaosNode) running() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.cmd != nil || n.node != nil
}

// chaosCluster is a cluster on loopback whose raft traffic flows through
// one proxy per directed link.
type chaosCluster struct {
	t       *testing.T
	run     nodeRunner
	nodes   []*chaosNode
	links   map[[2]int]*linkProxy
	http    *http.Client
	opts    nodeOpts // for every node
	baseG   int
	slackG  int // goroutines that may outlive the cluster (process-wide helpers)
	stopped bool
}

// maxSlots is how many members a chaos cluster can ever have: every
// node's dial map covers all of them, so members added later are
// reachable through proxies too.
const maxSlots = 5

// newChaosCluster prepares maxSlots slots and their link proxies; nothing
// runs yet. opts apply to every node.
func newChaosCluster(t *testing.T, run nodeRunner, opts nodeOpts) *chaosCluster {
	t.Helper()
	c := &chaosCluster{
		t:     t,
		run:   run,
		links: map[[2]int]*linkProxy{},
		http:  &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 8}},
		opts:  opts,

		slackG: 2,
	}
	c.baseG, _, _ = countGoroutines()
	dir := t.TempDir()
	for i := 0; i < maxSlots; i++ {
		n := &chaosNode{idx: i, id: fmt.Sprintf("n%d", i+1), dataDir: filepath.Join(dir, fmt.Sprintf("n%d", i+1)),
			raftAddr: testnet.FreeAddr(t), httpAddr: testnet.FreeAddr(t)}
		n.httpURL = "http://" + n.httpAddr
		c.nodes = append(c.nodes, n)
	}
	// Registered before anything can fail, so proxies made so far close.
	t.Cleanup(c.shutdown)
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
	run.prepare(c)
	return c
}

// nodeOpts returns slot i's settings for its next start.
func (c *chaosCluster) nodeOpts(i int) nodeOpts { return c.opts.with(c.nodes[i].override) }

// dialMap is node i's test-only raft dial map: every peer via its proxy.
func (c *chaosCluster) dialMap(i int) map[string]string {
	m := map[string]string{}
	for j, n := range c.nodes {
		if j != i {
			m[n.raftAddr] = c.links[[2]int{i, j}].addr()
		}
	}
	return m
}

// bootPlan returns how slot i starts: slot 0's first start bootstraps,
// every other first start joins through the running members. Later starts
// reuse the plan (a member with state ignores both).
func (c *chaosCluster) bootPlan(i int) bootPlan {
	n := c.nodes[i]
	if n.boot == nil {
		if i == 0 && n.starts == 0 {
			n.boot = &bootPlan{bootstrap: true}
		} else {
			var urls []string
			for _, m := range c.nodes {
				if m != n && m.running() {
					urls = append(urls, m.url())
				}
			}
			n.boot = &bootPlan{join: urls}
		}
	}
	return *n.boot
}

// start starts slot i (it must not run) and returns without waiting.
func (c *chaosCluster) start(i int) {
	c.t.Helper()
	if c.nodes[i].running() {
		c.t.Fatalf("start %s: already running", c.nodes[i].id)
	}
	c.run.start(c, i)
}

func (c *chaosCluster) kill(i int)   { c.run.kill(c, i) }
func (c *chaosCluster) pause(i int)  { c.run.pause(c, i) }
func (c *chaosCluster) resume(i int) { c.run.resume(c, i) }

// stop stops slot i gracefully; a failed shutdown fails the test.
func (c *chaosCluster) stop(i int) {
	c.t.Helper()
	if err := c.run.stop(c, i); err != nil {
		c.t.Errorf("%s: graceful stop: %v\n%s", c.nodes[i].id, err, tail(c.nodes[i].log.String(), 4000))
	}
}

// live returns the running slots (paused ones included).
func (c *chaosCluster) live() []int {
	var out []int
	for i, n := range c.nodes {
		if n.running() {
			out = append(out, i)
		}
	}
	return out
}

// urls returns the HTTP URLs of the running slots.
func (c *chaosCluster) urls() []string {
	var out []string
	for _, i := range c.live() {
		out = append(out, c.nodes[i].url())
	}
	return out
}

// getJSON GETs url into v.
func (c *chaosCluster) getJSON(ctx context.Context, url string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	return c.doJSON(req, v)
}

func (c *chaosCluster) doJSON(req *http.Request, v any) error {
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

func (c *chaosCluster) status(i int) (api.StatusResponse, error) {
	var st api.StatusResponse
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	err := c.getJSON(ctx, c.nodes[i].url()+"/v1/status", &st)
	return st, err
}

// waitReady waits until slot i answers /readyz.
func (c *chaosCluster) waitReady(i int) {
	c.t.Helper()
	n := c.nodes[i]
	pollUntil(c.t, n.id+" ready", 30*time.Second, func() error {
		if !n.running() {
			return fmt.Errorf("%s not running: %v", n.id, n.lastExit)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, n.url()+"/readyz", nil)
		if err != nil {
			return err
		}
		resp, err := c.http.Do(req)
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
func (c *chaosCluster) leader() int {
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
func (c *chaosCluster) leaderNow() (int, uint64) {
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
func (c *chaosCluster) startN(n int) {
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
func (c *chaosCluster) partition(a, b []int, mode linkMode) {
	for _, i := range a {
		for _, j := range b {
			if i != j {
				c.links[[2]int{i, j}].set(mode, 0)
				c.links[[2]int{j, i}].set(mode, 0)
			}
		}
	}
}

// heal passes every link again, with no delay. (A paused member's links
// stay held until it resumes: healing does not wake a stopped process.)
func (c *chaosCluster) heal() {
	for _, p := range c.links {
		p.set(linkPass, 0)
	}
}

// others returns every running slot but i.
func (c *chaosCluster) others(i int) []int {
	var out []int
	for _, j := range c.live() {
		if j != i {
			out = append(out, j)
		}
	}
	return out
}

// unexpectedExits lists members that died without being told to.
func (c *chaosCluster) unexpectedExits() []string {
	var out []string
	for _, n := range c.nodes {
		n.mu.Lock()
		out = append(out, n.unexpected...)
		n.mu.Unlock()
	}
	return append(out, c.run.problems(c)...)
}

// dumpLogs logs every member's output tail (on failure).
func (c *chaosCluster) dumpLogs() {
	for _, n := range c.nodes {
		if n.starts > 0 {
			c.t.Logf("=== %s log (tail)\n%s", n.id, tail(n.log.String(), 6000))
		}
	}
}

// shutdown stops every member gracefully, closes the proxies and checks
// that no member died unexpectedly and no goroutine leaked.
func (c *chaosCluster) shutdown() {
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
	for _, n := range c.nodes {
		if n.front != nil {
			n.front.close()
		}
	}
	c.http.CloseIdleConnections()
	if u := c.unexpectedExits(); len(u) > 0 {
		c.t.Errorf("members died: %v", u)
	}
	if c.t.Failed() {
		c.dumpLogs()
	}
	// Every member was stopped above; goroutines of this harness end with
	// them. Poll for stragglers (HTTP keep-alives closing).
	deadline := time.Now().Add(10 * time.Second)
	for {
		n, abandoned, stacks := countGoroutines()
		if n <= c.baseG+c.slackG {
			if abandoned > 0 {
				c.t.Logf("%d goroutines left waiting on raft futures that raft never answered (node.(*Node).wait; see countGoroutines)", abandoned)
			}
			return
		}
		if time.Now().After(deadline) {
			c.t.Errorf("goroutines leaked: %d now, %d before\n%s", n, c.baseG, stacks)
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// countGoroutines returns the number of goroutines, not counting those
// node.(*Node).wait abandoned: hashicorp/raft v1.7.2 never answers a
// future still queued when it shuts down (its issue #498), so a node
// closed with requests in flight (the in-process kill) leaves one
// goroutine per such future blocked for good; a killed process takes them
// with it. It also returns their number and every goroutine's stack.
func countGoroutines() (n, abandoned int, stacks []byte) {
	buf := make([]byte, 1<<20)
	for {
		stacks = buf[:runtime.Stack(buf, true)]
		if len(stacks) < len(buf) {
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	for _, g := range bytes.Split(stacks, []byte("\n\n")) {
		if len(bytes.TrimSpace(g)) == 0 {
			continue
		}
		if bytes.Contains(g, []byte("github.com/hashicorp/raft.(*deferError).Error")) &&
			bytes.Contains(g, []byte("github.com/cairn-db/cairn/node.(*Node).wait.func1")) {
			abandoned++
			continue
		}
		n++
	}
	return n, abandoned, stacks
}

// pollUntil polls cond with a deadline (see internal/testutil).
var pollUntil = testutil.WaitFor

func tail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}
