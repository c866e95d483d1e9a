package cluster_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cairn-db/cairn/api"
	"github.com/cairn-db/cairn/internal/testnet"
	"github.com/cairn-db/cairn/internal/testutil"
	"github.com/cairn-db/cairn/node"
)

// Default waits. Every wait polls a condition until its deadline.
const (
	waitLeader   = 15 * time.Second
	waitConverge = 20 * time.Second
)

// Cluster is a set of in-process cairn nodes on loopback ports. Members are
// addressed by index (0 is n1, the bootstrap node). Every member keeps its
// id, data directory, raft address and HTTP address across Stop/Restart.
type Cluster struct {
	t    *testing.T
	dir  string
	http *http.Client
	// Configure, when set before Start, adjusts every member's config
	// (limits, timeouts) after the harness has filled it in.
	Configure func(*node.Config)

	mu      sync.Mutex
	members []*member

	baseGoroutines int
}

type member struct {
	cfg  node.Config
	node *node.Node // nil while stopped
}

// NewCluster returns an empty cluster whose members are all stopped in
// t.Cleanup, after which it checks that no goroutines leaked.
func NewCluster(t *testing.T) *Cluster {
	t.Helper()
	c := &Cluster{
		t:              t,
		dir:            t.TempDir(),
		http:           &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 16}},
		baseGoroutines: runtime.NumGoroutine(),
	}
	// Registered after TempDir, so it runs before the directory is removed.
	t.Cleanup(c.shutdown)
	return c
}

// StartCluster starts an n-member cluster: n1 bootstraps, the others join
// through n1's HTTP URL. It returns once every member is ready.
func StartCluster(t *testing.T, n int, configure func(*node.Config)) *Cluster {
	t.Helper()
	c := NewCluster(t)
	c.Configure = configure
	c.Start(t, n)
	return c
}

// Start starts n members and waits until they are all ready.
func (c *Cluster) Start(t *testing.T, n int) {
	t.Helper()
	for i := 0; i < n; i++ {
		c.AddNode(t, false)
	}
	c.Leader(t)
}

// freeAddr returns a free loopback address (see internal/testnet).
func freeAddr(t *testing.T) string { return testnet.FreeAddr(t) }

// newConfig builds a member's config: fast raft timings, fixed ports and a
// data directory under the cluster's temp dir.
func (c *Cluster) newConfig(t *testing.T, idx int) node.Config {
	t.Helper()
	cfg := node.DefaultConfig()
	cfg.ID = fmt.Sprintf("n%d", idx+1)
	cfg.DataDir = filepath.Join(c.dir, cfg.ID)
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		t.Fatal(err)
	}
	cfg.RaftAddr = freeAddr(t)
	cfg.HTTPAddr = freeAddr(t)
	cfg.HeartbeatTimeout = 300 * time.Millisecond
	cfg.ElectionTimeout = 300 * time.Millisecond
	cfg.LeaderLeaseTimeout = 150 * time.Millisecond
	cfg.CommitTimeout = 5 * time.Millisecond
	cfg.ApplyTimeout = 5 * time.Second
	cfg.ShutdownTimeout = 5 * time.Second
	if idx == 0 {
		cfg.Bootstrap = true
	}
	if c.Configure != nil {
		c.Configure(&cfg)
	}
	return cfg
}

// AddNode starts a new member that joins through a running member's HTTP
// URL (or bootstraps, as the first member) and waits until it is ready. It
// returns the new member's index.
func (c *Cluster) AddNode(t *testing.T, nonVoter bool) int {
	t.Helper()
	c.mu.Lock()
	idx := len(c.members)
	c.mu.Unlock()
	cfg := c.newConfig(t, idx)
	if idx > 0 {
		cfg.Bootstrap = false
		cfg.NonVoter = nonVoter
		for _, n := range c.Running() {
			cfg.Join = append(cfg.Join, n.HTTPURL())
		}
		if len(cfg.Join) == 0 {
			t.Fatalf("add %s: no running member to join", cfg.ID)
		}
	}
	m := &member{cfg: cfg}
	c.mu.Lock()
	c.members = append(c.members, m)
	c.mu.Unlock()
	c.startMember(t, idx)
	c.WaitReady(t, idx)
	return idx
}

// WaitReady waits until member idx answers Ready.
func (c *Cluster) WaitReady(t *testing.T, idx int) {
	t.Helper()
	n := c.Node(idx)
	if n == nil {
		t.Fatalf("%s is stopped", c.Config(idx).ID)
	}
	waitFor(t, n.ID()+" ready", waitConverge, n.Ready)
}

func (c *Cluster) startMember(t *testing.T, idx int) {
	t.Helper()
	c.mu.Lock()
	m := c.members[idx]
	c.mu.Unlock()
	if m.node != nil {
		t.Fatalf("start %s: already running", m.cfg.ID)
	}
	var n *node.Node
	// The fixed ports were free when allocated; a restart may briefly find
	// one still held, so retry for a moment.
	waitFor(t, "start "+m.cfg.ID, 10*time.Second, func() error {
		var err error
		n, err = node.New(m.cfg)
		return err
	})
	c.mu.Lock()
	m.node = n
	c.mu.Unlock()
}

// N returns the number of members ever started (running or stopped).
func (c *Cluster) N() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.members)
}

// Node returns member idx's running node (nil while stopped).
func (c *Cluster) Node(idx int) *node.Node {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.members[idx].node
}

// Config returns member idx's config.
func (c *Cluster) Config(idx int) node.Config {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.members[idx].cfg
}

// URL returns member idx's HTTP URL (stable across restarts).
func (c *Cluster) URL(idx int) string {
	return "http://" + c.Config(idx).HTTPAddr
}

// Index returns the index of the member with the given id, or -1.
func (c *Cluster) Index(id string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, m := range c.members {
		if m.cfg.ID == id {
			return i
		}
	}
	return -1
}

// Running returns the running nodes.
func (c *Cluster) Running() []*node.Node {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []*node.Node
	for _, m := range c.members {
		if m.node != nil {
			out = append(out, m.node)
		}
	}
	return out
}

// Leader waits until exactly one running node is leader and ready, and
// every running node knows it, and returns its index.
func (c *Cluster) Leader(t *testing.T) int {
	t.Helper()
	leader := -1
	waitFor(t, "a single leader", waitLeader, func() error {
		leader = -1
		var leaders []string
		c.mu.Lock()
		ms := append([]*member(nil), c.members...)
		c.mu.Unlock()
		for i, m := range ms {
			if m.node != nil && m.node.IsLeader() {
				leaders = append(leaders, m.cfg.ID)
				leader = i
			}
		}
		if len(leaders) != 1 {
			return fmt.Errorf("leaders: %v", leaders)
		}
		if err := ms[leader].node.Ready(); err != nil {
			return fmt.Errorf("leader %s not ready: %w", leaders[0], err)
		}
		for _, m := range ms {
			if m.node == nil {
				continue
			}
			if id, u := m.node.LeaderInfo(); id != leaders[0] || u == "" {
				return fmt.Errorf("%s knows leader %q (url %q), want %s", m.cfg.ID, id, u, leaders[0])
			}
		}
		return nil
	})
	return leader
}

// Followers returns the indexes of running members other than the leader.
func (c *Cluster) Followers(t *testing.T) []int {
	t.Helper()
	l := c.Leader(t)
	var out []int
	for i := 0; i < c.N(); i++ {
		if i != l && c.Node(i) != nil {
			out = append(out, i)
		}
	}
	return out
}

// Stop closes member idx gracefully, keeping its data directory.
func (c *Cluster) Stop(t *testing.T, idx int) {
	t.Helper()
	c.mu.Lock()
	m := c.members[idx]
	n := m.node
	m.node = nil
	c.mu.Unlock()
	if n == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := n.Close(ctx); err != nil {
		t.Errorf("close %s: %v", m.cfg.ID, err)
	}
}

// Restart starts a stopped member again with the same id, data directory
// and addresses. It does not wait for readiness (a member restarted alone
// cannot be ready until a quorum is back); use WaitReady or Leader.
func (c *Cluster) Restart(t *testing.T, idx int) {
	t.Helper()
	c.startMember(t, idx)
}

func (c *Cluster) shutdown() {
	t := c.t
	var wg sync.WaitGroup
	for i := 0; i < c.N(); i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.Stop(t, i)
		}()
	}
	wg.Wait()
	c.http.CloseIdleConnections()
	c.checkLeaks(t)
}

// checkLeaks polls until the goroutine count is back near what it was
// before the cluster started. The tolerance covers process-wide helpers
// that start once (the raft metrics sink, net/http's shared state).
func (c *Cluster) checkLeaks(t *testing.T) {
	const tolerance = 4
	deadline := time.Now().Add(10 * time.Second)
	for {
		n := runtime.NumGoroutine()
		if n <= c.baseGoroutines+tolerance {
			return
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			buf = buf[:runtime.Stack(buf, true)]
			t.Errorf("goroutine leak: %d goroutines after shutdown, %d before start\n%s", n, c.baseGoroutines, buf)
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// WaitConverged waits until every running member reports the same chain
// head (revision and hash) on GET /v1/chain?consistency=stale, and returns
// it.
func (c *Cluster) WaitConverged(t *testing.T) api.ChainResponse {
	t.Helper()
	var head api.ChainResponse
	waitFor(t, "chain heads to converge", waitConverge, func() error {
		var heads []string
		first := true
		equal := true
		for i := 0; i < c.N(); i++ {
			if c.Node(i) == nil {
				continue
			}
			ch, err := c.chain(i, "consistency=stale")
			if err != nil {
				return err
			}
			heads = append(heads, fmt.Sprintf("%s=%d/%.8s", c.Config(i).ID, ch.Revision, ch.Hash))
			if first {
				head, first = ch, false
			} else if ch != head {
				equal = false
			}
		}
		if !equal {
			return fmt.Errorf("heads differ: %v", heads)
		}
		return nil
	})
	return head
}

// Chain returns member idx's chain head as GET /v1/chain?query answers it.
func (c *Cluster) Chain(t *testing.T, idx int, query string) api.ChainResponse {
	t.Helper()
	ch, err := c.chain(idx, query)
	if err != nil {
		t.Fatal(err)
	}
	return ch
}

func (c *Cluster) chain(idx int, query string) (api.ChainResponse, error) {
	var ch api.ChainResponse
	r, err := c.do(http.MethodGet, c.URL(idx)+"/v1/chain?"+query, nil, nil)
	if err != nil {
		return ch, err
	}
	if r.Code != http.StatusOK {
		return ch, fmt.Errorf("chain from %s: %d %s", c.Config(idx).ID, r.Code, r.Body)
	}
	if err := json.Unmarshal(r.Body, &ch); err != nil {
		return ch, fmt.Errorf("chain from %s: %w", c.Config(idx).ID, err)
	}
	return ch, nil
}

// Resp is an HTTP answer.
type Resp struct {
	Code   int
	Body   []byte
	Header http.Header
}

func (r Resp) String() string { return fmt.Sprintf("%d %s", r.Code, bytes.TrimSpace(r.Body)) }

// Revision returns the Cairn-Revision header (0 when absent).
func (r Resp) Revision() uint64 {
	v, _ := strconv.ParseUint(r.Header.Get(api.HeaderRevision), 10, 64)
	return v
}

func (c *Cluster) do(method, url string, body []byte, hdr http.Header) (Resp, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		return Resp{}, err
	}
	for k, vs := range hdr {
		req.Header[k] = vs
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return Resp{}, fmt.Errorf("%s %s: %w", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return Resp{}, fmt.Errorf("%s %s: read body: %w", method, url, err)
	}
	return Resp{Code: resp.StatusCode, Body: b, Header: resp.Header}, nil
}

// Do sends a request to member idx; path includes the query string.
func (c *Cluster) Do(t *testing.T, idx int, method, path string, body []byte, hdr http.Header) Resp {
	t.Helper()
	r, err := c.do(method, c.URL(idx)+path, body, hdr)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// withQuery appends a query string when there is one.
func withQuery(path, query string) string {
	if query == "" {
		return path
	}
	return path + "?" + query
}

// Put writes key=value through member idx.
func (c *Cluster) Put(t *testing.T, idx int, key, value, query string) Resp {
	t.Helper()
	return c.Do(t, idx, http.MethodPut, withQuery("/v1/kv/"+key, query), []byte(value), nil)
}

// Get reads key from member idx.
func (c *Cluster) Get(t *testing.T, idx int, key, query string) Resp {
	t.Helper()
	return c.Do(t, idx, http.MethodGet, withQuery("/v1/kv/"+key, query), nil, nil)
}

// Delete deletes key through member idx.
func (c *Cluster) Delete(t *testing.T, idx int, key, query string) Resp {
	t.Helper()
	return c.Do(t, idx, http.MethodDelete, withQuery("/v1/kv/"+key, query), nil, nil)
}

// Txn posts a transaction (any JSON-encodable value, or raw []byte) to
// member idx.
func (c *Cluster) Txn(t *testing.T, idx int, txn any) Resp {
	t.Helper()
	body, ok := txn.([]byte)
	if !ok {
		var err error
		if body, err = json.Marshal(txn); err != nil {
			t.Fatal(err)
		}
	}
	return c.Do(t, idx, http.MethodPost, "/v1/txn", body, http.Header{"Content-Type": {"application/json"}})
}

// PostJSON posts a JSON body to member idx.
func (c *Cluster) PostJSON(t *testing.T, idx int, path string, v any) Resp {
	t.Helper()
	body, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return c.Do(t, idx, http.MethodPost, path, body, http.Header{"Content-Type": {"application/json"}})
}

// Members returns GET /v1/cluster/members from member idx.
func (c *Cluster) Members(t *testing.T, idx int) api.MembersResponse {
	t.Helper()
	r := c.Do(t, idx, http.MethodGet, "/v1/cluster/members", nil, nil)
	if r.Code != http.StatusOK {
		t.Fatalf("members from %s: %s", c.Config(idx).ID, r)
	}
	var m api.MembersResponse
	decode(t, r, &m)
	return m
}

// WriteKeys writes count keys prefix0000.. with values "v<i>" through the
// running members in turn, from a few concurrent writers, and returns the
// highest revision acknowledged.
func (c *Cluster) WriteKeys(t *testing.T, prefix string, count int) uint64 {
	t.Helper()
	var idxs []int
	for i := 0; i < c.N(); i++ {
		if c.Node(i) != nil {
			idxs = append(idxs, i)
		}
	}
	const writers = 6
	var (
		mu      sync.Mutex
		maxRev  uint64
		firstEr error
		wg      sync.WaitGroup
	)
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := w; k < count; k += writers {
				idx := idxs[k%len(idxs)]
				url := fmt.Sprintf("%s/v1/kv/%s%04d", c.URL(idx), prefix, k)
				r, err := c.do(http.MethodPut, url, []byte(fmt.Sprintf("v%d", k)), nil)
				if err == nil && r.Code != http.StatusOK {
					err = fmt.Errorf("put %s: %s", url, r)
				}
				mu.Lock()
				if err != nil && firstEr == nil {
					firstEr = err
				}
				if rev := r.Revision(); rev > maxRev {
					maxRev = rev
				}
				stop := firstEr != nil
				mu.Unlock()
				if stop {
					return
				}
			}
		}()
	}
	wg.Wait()
	if firstEr != nil {
		t.Fatal(firstEr)
	}
	return maxRev
}

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

// waitFor polls cond with a deadline (see internal/testutil).
var waitFor = testutil.WaitFor
