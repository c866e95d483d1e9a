package node

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

// TestRaftServerListsReadable: the server lists raft logs (with
// hclog.Fmt("%+v", servers), as raft's "updating configuration" does)
// come out as id=address (suffrage).
func TestRaftServerListsReadable(t *testing.T) {
	var buf bytes.Buffer
	l := hclogAdapter(slog.New(slog.NewTextHandler(&buf, nil)), "raft")
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
