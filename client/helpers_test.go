package client_test

import (
	"context"
	"net"
	"time"

	"github.com/cairn-db/cairn/client"
	"github.com/cairn-db/cairn/internal/testutil"
	"github.com/cairn-db/cairn/node"
)

// tb is what the helpers need from a test, a benchmark or an example.
type tb interface {
	Helper()
	TempDir() string
	Fatalf(format string, args ...any)
	Cleanup(func())
}

// freeAddr returns a loopback address with a free port.
func freeAddr(t tb) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func testConfig(t tb, id string) node.Config {
	cfg := node.DefaultConfig()
	cfg.ID = id
	cfg.DataDir = t.TempDir()
	cfg.RaftAddr = freeAddr(t)
	cfg.HTTPAddr = "127.0.0.1:0"
	cfg.HeartbeatTimeout = 200 * time.Millisecond
	cfg.ElectionTimeout = 200 * time.Millisecond
	cfg.LeaderLeaseTimeout = 100 * time.Millisecond
	cfg.CommitTimeout = 5 * time.Millisecond
	cfg.ShutdownTimeout = 2 * time.Second
	// BenchmarkWritesWithWatchers opens 100 streams from one address.
	cfg.MaxWatchersPerClient = cfg.MaxWatchers
	return cfg
}

func startNode(t tb, cfg node.Config) *node.Node {
	t.Helper()
	n, err := node.New(cfg)
	if err != nil {
		t.Fatalf("start %s: %v", cfg.ID, err)
	}
	t.Cleanup(func() { closeNode(n) })
	return n
}

func closeNode(n *node.Node) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = n.Close(ctx) // idempotent; errors after a deliberate kill are expected
}

// waitFor polls cond with a deadline (see internal/testutil).
var waitFor = testutil.WaitFor

// startCluster starts n in-process nodes (n1 bootstraps, the rest join)
// and waits until all are ready.
func startCluster(t tb, n int) []*node.Node {
	t.Helper()
	c1 := testConfig(t, "n1")
	c1.Bootstrap = true
	nodes := []*node.Node{startNode(t, c1)}
	waitFor(t, "n1 ready", 10*time.Second, nodes[0].Ready)
	for i := 2; i <= n; i++ {
		c := testConfig(t, "n"+string(rune('0'+i)))
		c.Join = []string{nodes[0].HTTPURL()}
		nodes = append(nodes, startNode(t, c))
	}
	for _, nd := range nodes[1:] {
		waitFor(t, nd.ID()+" ready", 15*time.Second, nd.Ready)
	}
	return nodes
}

func newClient(t tb, mod func(*client.Config), endpoints ...string) *client.Client {
	t.Helper()
	cfg := client.DefaultConfig()
	cfg.Endpoints = endpoints
	cfg.RequestTimeout = 3 * time.Second
	cfg.MaxBackoff = 200 * time.Millisecond
	if mod != nil {
		mod(&cfg)
	}
	c, err := client.New(cfg)
	if err != nil {
		t.Fatalf("client: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func leaderOf(nodes []*node.Node) *node.Node {
	for _, n := range nodes {
		if n.IsLeader() {
			return n
		}
	}
	return nil
}
