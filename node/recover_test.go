package node

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// TestRecoverAfterLosingMajority: a three-node cluster loses two members
// for good; the survivor's configuration is rewritten to itself alone and
// it serves again with all its data.
func TestRecoverAfterLosingMajority(t *testing.T) {
	c1 := testConfig(t, "n1")
	c1.Bootstrap = true
	n1 := startNode(t, c1)
	waitFor(t, "n1 ready", 10*time.Second, n1.Ready)
	var others []*Node
	for _, id := range []string{"n2", "n3"} {
		c := testConfig(t, id)
		c.Join = []string{n1.HTTPURL()}
		n := startNode(t, c)
		waitFor(t, id+" ready", 15*time.Second, n.Ready)
		others = append(others, n)
	}
	for i := 0; i < 20; i++ {
		if code, body := do(t, "PUT", n1.HTTPURL()+fmt.Sprintf("/v1/kv/k%d", i), "v"); code != http.StatusOK {
			t.Fatalf("put: %d %s", code, body)
		}
	}
	head, err := n1.FSM().Head()
	if err != nil {
		t.Fatal(err)
	}
	// The majority is gone for good; the survivor is stopped too.
	ctx := context.Background()
	for _, n := range others {
		if err := n.Close(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if err := n1.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if err := Recover(ctx, c1.DataDir, "n1", []raft.Server{{ID: "n1", Address: raft.ServerAddress(n1.RaftAddr()), Suffrage: raft.Voter}}, nil); err != nil {
		t.Fatalf("recover: %v", err)
	}
	c1.Bootstrap = false
	n1 = startNode(t, c1)
	waitFor(t, "recovered n1 ready", 15*time.Second, n1.Ready)
	if got, _ := n1.FSM().Head(); got != head {
		t.Fatalf("head after recovery %+v, want %+v", got, head)
	}
	if code, body := do(t, "PUT", n1.HTTPURL()+"/v1/kv/after", "x"); code != http.StatusOK {
		t.Fatalf("write after recovery: %d %s", code, body)
	}
	if code, body := do(t, "GET", n1.HTTPURL()+"/v1/kv/k19", ""); code != http.StatusOK || body != "v" {
		t.Fatalf("old data after recovery: %d %q", code, body)
	}
	// A server list without this member is refused.
	if err := Recover(ctx, t.TempDir(), "n1", []raft.Server{{ID: "n9", Address: "x:1"}}, nil); err == nil {
		t.Fatal("recover without this member accepted")
	}
}
