package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/cairn-db/cairn/api"
	"github.com/cairn-db/cairn/internal/testnet"
	"github.com/cairn-db/cairn/internal/testutil"
)

// freeAddr returns a free loopback address (see internal/testnet).
func freeAddr(t *testing.T) string { return testnet.FreeAddr(t) }

func testConfig(t *testing.T, id string) Config {
	cfg := DefaultConfig()
	cfg.ID = id
	cfg.DataDir = t.TempDir()
	cfg.RaftAddr = freeAddr(t)
	cfg.HTTPAddr = freeAddr(t)
	cfg.HeartbeatTimeout = 200 * time.Millisecond
	cfg.ElectionTimeout = 200 * time.Millisecond
	cfg.LeaderLeaseTimeout = 100 * time.Millisecond
	cfg.CommitTimeout = 5 * time.Millisecond
	return cfg
}

func startNode(t *testing.T, cfg Config) *Node {
	t.Helper()
	n, err := New(cfg)
	if err != nil {
		t.Fatalf("start %s: %v", cfg.ID, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := n.Close(ctx); err != nil {
			t.Errorf("close %s: %v", cfg.ID, err)
		}
	})
	return n
}

// waitFor polls cond with a deadline (see internal/testutil).
var waitFor = testutil.WaitFor

func do(t *testing.T, method, url, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestThreeNodeSmoke(t *testing.T) {
	n1 := startNode(t, func() Config { c := testConfig(t, "n1"); c.Bootstrap = true; return c }())
	waitFor(t, "n1 ready", 10*time.Second, n1.Ready)
	var others []*Node
	for _, id := range []string{"n2", "n3"} {
		c := testConfig(t, id)
		c.Join = []string{n1.HTTPURL()}
		others = append(others, startNode(t, c))
	}
	for _, n := range others {
		waitFor(t, n.ID()+" ready", 15*time.Second, n.Ready)
	}
	// Write through a follower. On a loaded machine the 200 ms election
	// timeout can move leadership under the request (an unambiguous
	// not_leader or unavailable answer): retry those, as the client does.
	var code int
	var body string
	waitFor(t, "put via follower", 15*time.Second, func() error {
		code, body = do(t, "PUT", others[0].HTTPURL()+"/v1/kv/hello", "world")
		if code != 200 {
			if strings.Contains(body, `"not_leader"`) || strings.Contains(body, `"unavailable"`) {
				return fmt.Errorf("put via follower: %d %s", code, body)
			}
			t.Fatalf("put via follower: %d %s", code, body)
		}
		return nil
	})
	for _, n := range append(others, n1) {
		code, body := do(t, "GET", n.HTTPURL()+"/v1/kv/hello", "")
		if code != 200 || body != "world" {
			t.Fatalf("linearizable get from %s: %d %q", n.ID(), code, body)
		}
	}
	code, body = do(t, "PUT", n1.HTTPURL()+"/v1/kv/hello?if_revision=99", "x")
	if code != 409 || !strings.Contains(body, `"conflict"`) {
		t.Fatalf("conflict: %d %s", code, body)
	}
	code, body = do(t, "GET", others[1].HTTPURL()+"/v1/cluster/members", "")
	if code != 200 || strings.Count(body, `"reachable":true`) != 3 {
		t.Fatalf("members: %d %s", code, body)
	}
	_ = errors.New
	_ = fmt.Sprint
	_ = api.HeaderNode
}

// An advertised raft address that is a name stays a name in the raft
// configuration (raft dials it each time), so a member that comes back at
// another IP stays reachable.
func TestAdvertiseRaftName(t *testing.T) {
	var nodes []*Node
	for i, id := range []string{"n1", "n2"} {
		cfg := testConfig(t, id)
		_, port, _ := net.SplitHostPort(freeAddr(t))
		cfg.RaftAddr = "127.0.0.1:" + port
		cfg.AdvertiseRaft = "localhost:" + port
		if i == 0 {
			cfg.Bootstrap = true
		} else {
			cfg.Join = []string{nodes[0].HTTPURL()}
		}
		n := startNode(t, cfg)
		if got := n.RaftAddr(); got != cfg.AdvertiseRaft {
			t.Fatalf("raft address %q, want %q", got, cfg.AdvertiseRaft)
		}
		nodes = append(nodes, n)
		waitFor(t, id+" ready", 15*time.Second, n.Ready)
	}
	if code, body := do(t, "PUT", nodes[1].HTTPURL()+"/v1/kv/k", "v"); code != 200 {
		t.Fatalf("put through the joined node: %d %s", code, body)
	}
	cf := nodes[0].Raft().GetConfiguration()
	if err := cf.Error(); err != nil {
		t.Fatal(err)
	}
	for _, s := range cf.Configuration().Servers {
		if !strings.HasPrefix(string(s.Address), "localhost:") {
			t.Fatalf("server %s stored as %q, want the name", s.ID, s.Address)
		}
	}
}

// A request no route serves gets a JSON error like every other: 405
// method_not_allowed when another method serves the path, 404 not_found
// otherwise; the routes themselves still serve.
func TestUnroutedRequestsAnswerJSON(t *testing.T) {
	n := startSingle(t, nil)
	for _, tc := range []struct {
		method, path string
		status       int
		code         string
	}{
		{"PATCH", "/v1/kv/k", 405, api.CodeMethod},
		{"POST", "/v1/status", 405, api.CodeMethod},
		{"DELETE", "/v1/cluster/leadership", 405, api.CodeMethod},
		{"GET", "/v1/nothing", 404, api.CodeNotFound},
		{"GET", "/", 404, api.CodeNotFound},
		{"POST", "/", 404, api.CodeNotFound},
	} {
		code, body := do(t, tc.method, n.HTTPURL()+tc.path, "")
		var er api.ErrorResponse
		if err := json.Unmarshal([]byte(body), &er); code != tc.status || err != nil || er.Error.Code != tc.code {
			t.Errorf("%s %s: %d %s, want %d %s", tc.method, tc.path, code, body, tc.status, tc.code)
		}
	}
	if code, body := do(t, "PUT", n.HTTPURL()+"/v1/kv/k", "v"); code != 200 {
		t.Errorf("PUT /v1/kv/k: %d %s", code, body)
	}
	if code, body := do(t, "GET", n.HTTPURL()+"/v1/status", ""); code != 200 {
		t.Errorf("GET /v1/status: %d %s", code, body)
	}
}

// WaitReady waits for a member that is about to be ready (a new
// cluster's only member electing itself) and gives up on one that cannot
// be (a node that is no member of any cluster), with Ready's reason. GET
// /readyz answers the same way: 503 with that reason after its wait.
func TestWaitReady(t *testing.T) {
	cfg := testConfig(t, "n1")
	cfg.Bootstrap = true
	cfg.HeartbeatTimeout, cfg.ElectionTimeout = time.Second, time.Second
	n := startNode(t, cfg)
	if err := n.Ready(); err == nil {
		t.Fatal("setup: a new node is ready before its first election")
	}
	ctx := context.Background()
	if err := n.WaitReady(ctx, 20*time.Second); err != nil {
		t.Fatalf("WaitReady: %v", err)
	}
	if err := n.Ready(); err != nil {
		t.Fatalf("Ready after WaitReady: %v", err)
	}
	if code, body := do(t, "GET", n.HTTPURL()+"/readyz", ""); code != 200 {
		t.Fatalf("readyz of a ready node: %d %s", code, body)
	}

	lone := startNode(t, testConfig(t, "lone")) // neither bootstraps nor joins
	err := lone.WaitReady(ctx, 50*time.Millisecond)
	if err == nil || !strings.Contains(err.Error(), "not a member") {
		t.Fatalf("WaitReady of a non-member: %v", err)
	}
	code, body := do(t, "GET", lone.HTTPURL()+"/readyz", "")
	var er api.ErrorResponse
	if jerr := json.Unmarshal([]byte(body), &er); code != 503 || jerr != nil ||
		er.Error.Code != api.CodeUnavailable || !strings.Contains(er.Error.Message, "not a member") {
		t.Fatalf("readyz of a non-member: %d %s", code, body)
	}
}
