package node

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"

	"github.com/cairn-db/cairn/internal/testutil"
)

// TestRaftServerListsReadable: the server lists raft logs (with
// hclog.Fmt("%+v", servers), as raft's "updating configuration" does)
// come out as id=address (suffrage).
func TestRaftServerListsReadable(t *testing.T) {
	var buf bytes.Buffer
	l := hclogAdapter(slog.New(slog.NewTextHandler(&buf, nil)), "raft", nil)
	servers := []raft.Server{
		{Suffrage: raft.Voter, ID: "n1", Address: "127.0.0.1:7001"},
		{Suffrage: raft.Nonvoter, ID: "n2", Address: "127.0.0.1:7002"},
	}
	l.Info("updating configuration", "command", "AddNonvoter", "servers", hclog.Fmt("%+v", servers))
	l.Info("initial configuration", "index", 1, "servers", hclog.Fmt("%+v", []raft.Server(nil)))
	l.Info("other", "n", hclog.Fmt("%d items", 3))
	l.Warn("appendEntries rejected, sending older logs", "peer", servers[1], "next", 1)
	out := buf.String()
	for _, want := range []string{
		`servers="n1=127.0.0.1:7001 (voter), n2=127.0.0.1:7002 (nonvoter)"`,
		`servers=(none)`,
		`peer="n2=127.0.0.1:7002 (nonvoter)" next=1`,
		`n="3 items"`,
		`command=AddNonvoter`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("missing %s in\n%s", want, out)
		}
	}
	if strings.Contains(out, "Suffrage:") {
		t.Errorf("Go syntax left in\n%s", out)
	}
}

// TestCleanShutdownLogsNoError: a member closed on its own logs no
// error, nor do the rest when they are all shut down together (ShuttingDown
// on each first, as cairn dev does).
func TestCleanShutdownLogsNoError(t *testing.T) {
	var bufs [3]*testutil.SyncBuffer
	var nodes []*Node
	for i, id := range []string{"n1", "n2", "n3"} {
		c := testConfig(t, id)
		bufs[i] = &testutil.SyncBuffer{}
		c.Logger = slog.New(slog.NewTextHandler(bufs[i], &slog.HandlerOptions{Level: slog.LevelInfo}))
		if i == 0 {
			c.Bootstrap = true
		} else {
			c.Join = []string{nodes[0].HTTPURL()}
		}
		n, err := New(c)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = n.Close(context.Background()) })
		nodes = append(nodes, n)
		waitFor(t, id+" ready", 15*time.Second, n.Ready)
	}
	for i := 0; i < 20; i++ {
		if code, body := do(t, "PUT", nodes[0].HTTPURL()+"/v1/kv/k", "v"); code != 200 {
			t.Logf("put: %d %s", code, body)
		}
	}
	// One member, as `cairn node run` stops on Ctrl-C.
	if err := nodes[2].Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if out := bufs[2].String(); strings.Contains(out, "level=ERROR") {
		t.Errorf("n3 logged errors closing on its own:\n%s", out)
	}
	// The rest together, as `cairn dev` stops. Until they are told, the
	// leader may still log its failed heartbeats to n3, which stopped
	// (a member that went away is worth an error): only what they log
	// once closing counts.
	for _, n := range nodes[:2] {
		n.ShuttingDown()
	}
	mark := [2]int{len(bufs[0].String()), len(bufs[1].String())}
	for _, n := range []*Node{nodes[1], nodes[0]} {
		if err := n.Close(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 2 {
		if out := bufs[i].String()[mark[i]:]; strings.Contains(out, "level=ERROR") {
			t.Errorf("n%d logged errors closing with the others:\n%s", i+1, out)
		}
	}
}
