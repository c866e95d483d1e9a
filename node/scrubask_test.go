package node

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cairn-db/cairn/api"
	"github.com/cairn-db/cairn/fsm"
	"github.com/cairn-db/cairn/internal/testutil"
)

// TestScrubAsksDisagreeingMember: three members, one holding a wrong
// value with a valid checksum, none scrubbing by itself (an hour's
// interval, clean starts). A healthy member's scrub run at another
// member's request finds the majority on its side and asks nobody; its
// own scrub asks the disagreeing member, whose own scrub then marks it
// corrupt.
func TestScrubAsksDisagreeingMember(t *testing.T) {
	nodes := startThree(t)
	l := leaderOf(t, nodes)
	rev := mustWrite(t, l, fsm.Op{Kind: fsm.OpPut, Key: "k", Value: []byte("the-right-value")},
		fsm.Op{Kind: fsm.OpPut, Key: "other", Value: []byte("x")})
	for _, n := range nodes {
		waitFor(t, n.ID()+" applied", 10*time.Second, func() error {
			if n.FSM().Revision() < rev {
				return errors.New("behind")
			}
			return nil
		})
	}
	var victim, good *Node
	for _, n := range nodes {
		switch {
		case n != l && victim == nil:
			victim = n
		case good == nil:
			good = n
		}
	}
	cfg := victim.cfg
	if err := victim.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	testutil.RewriteValue(t, filepath.Join(cfg.DataDir, fsmFile), "k", "a-wrong-value")
	victim = startNode(t, cfg)
	waitFor(t, victim.ID()+" ready again", 15*time.Second, victim.Ready)
	if runs, _, _ := victim.scrubs.get(); runs != 0 {
		t.Fatalf("%s scrubbed by itself (%d)", victim.ID(), runs)
	}

	// Asked by another member: it judges itself only.
	ctx := context.Background()
	sr, err := good.runScrub(ctx, false)
	if err != nil || !sr.OK || !slices.Equal(sr.Disagree, []string{victim.ID()}) || len(sr.Asked) != 0 {
		t.Fatalf("asked scrub on %s: %+v %v", good.ID(), sr, err)
	}
	if victim.corrupt() != nil || len(victim.scrubs.asks()) != 0 {
		t.Fatalf("%s asked on: corrupt %v, %d asks queued", good.ID(), victim.corrupt(), len(victim.scrubs.asks()))
	}

	sr, err = good.Scrub(ctx)
	if err != nil || !sr.OK || !slices.Equal(sr.Disagree, []string{victim.ID()}) || !slices.Equal(sr.Asked, []string{victim.ID()}) {
		t.Fatalf("scrub on %s: %+v %v", good.ID(), sr, err)
	}
	waitFor(t, victim.ID()+" marks itself corrupt and records its scrub", 15*time.Second, func() error {
		err := victim.corrupt()
		if err == nil {
			return errors.New("not corrupt yet")
		}
		if !strings.Contains(err.Error(), "majority of voters") {
			t.Fatalf("corrupt for another reason: %v", err)
		}
		if runs, failed, _ := victim.scrubs.get(); runs != 1 || failed != 1 {
			return fmt.Errorf("%d scrubs, %d failed", runs, failed)
		}
		return nil
	})
	ar, err := good.Alarms(ctx)
	if err != nil || len(ar.Alarms) != 1 || ar.Alarms[0].Member != victim.ID() || ar.Alarms[0].Type != api.AlarmCorrupt {
		t.Fatalf("alarms from %s: %+v %v", good.ID(), ar, err)
	}
	if err := victim.Ready(); !errors.Is(err, fsm.ErrCorrupt) {
		t.Fatalf("ready of the corrupt member: %v", err)
	}
}

// TestAskScrubQueuesOne: a member queues at most one scrub asked for by
// other members beyond the one running; each queued ask runs once.
func TestAskScrubQueuesOne(t *testing.T) {
	n := startSingle(t, nil)
	mustWrite(t, n, fsm.Op{Kind: fsm.OpPut, Key: "k", Value: []byte("v")})
	n.scrubMu <- struct{}{} // hold off every scrub
	held := true
	defer func() {
		if held {
			<-n.scrubMu
		}
	}()
	if ok, err := n.AskScrub("n2", 1); !ok || err != nil {
		t.Fatalf("first ask: %v %v", ok, err)
	}
	waitFor(t, "the scrub loop takes the ask", 10*time.Second, func() error {
		if len(n.scrubs.asks()) != 0 {
			return errors.New("still queued")
		}
		return nil
	})
	if ok, err := n.AskScrub("n2", 1); !ok || err != nil {
		t.Fatalf("second ask: %v %v", ok, err)
	}
	if ok, err := n.AskScrub("n3", 1); ok || err != nil {
		t.Fatalf("third ask, with one queued: %v %v", ok, err)
	}
	<-n.scrubMu
	held = false
	waitFor(t, "two scrubs", 10*time.Second, func() error {
		if runs, failed, _ := n.scrubs.get(); runs != 2 || failed != 0 || len(n.scrubs.asks()) != 0 {
			return fmt.Errorf("%d scrubs, %d failed, %d queued", runs, failed, len(n.scrubs.asks()))
		}
		return nil
	})
}
