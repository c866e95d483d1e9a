package node

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/cairn-db/cairn/fsm"
)

func TestHistoryRetentionByRevisions(t *testing.T) {
	cfg := testConfig(t, "n1")
	cfg.Bootstrap = true
	cfg.RetainRevisions = 10
	cfg.RetentionInterval = 20 * time.Millisecond
	n := startNode(t, cfg)
	waitFor(t, "ready", 10*time.Second, n.Ready)
	for i := 0; i < 30; i++ {
		if code, body := do(t, "PUT", n.HTTPURL()+"/v1/kv/k", fmt.Sprint(i)); code != http.StatusOK {
			t.Fatalf("put: %d %s", code, body)
		}
	}
	waitFor(t, "compaction to revision 21", 10*time.Second, func() error {
		if st, _ := n.FSM().Status(); st.CompactRevision != 21 {
			return fmt.Errorf("compact revision %d", st.CompactRevision)
		}
		return nil
	})
	if _, _, err := n.FSM().Get("k", 20); !errors.Is(err, fsm.ErrCompacted) {
		t.Fatalf("read at 20: %v, want compacted", err)
	}
	if kv, _, err := n.FSM().Get("k", 21); err != nil || string(kv.Value) != "20" {
		t.Fatalf("read at 21: %q %v", kv.Value, err)
	}
}

func TestHistoryRetentionTarget(t *testing.T) {
	cfg := testConfig(t, "n1")
	cfg.Bootstrap = true
	cfg.RetentionInterval = time.Hour // the loop stays out of the way
	n := startNode(t, cfg)
	waitFor(t, "ready", 10*time.Second, n.Ready)
	var times []time.Time
	for i := 0; i < 10; i++ {
		code, _ := do(t, "PUT", n.HTTPURL()+"/v1/kv/k", fmt.Sprint(i))
		if code != http.StatusOK {
			t.Fatalf("put %d: %d", i, code)
		}
		recs, _, err := n.FSM().Log(uint64(i+1), 1)
		if err != nil || len(recs) != 1 {
			t.Fatalf("log %d: %v", i+1, err)
		}
		times = append(times, recs[0].Time)
	}
	n.cfg.RetainAge = time.Minute
	// Everything is younger than a minute: nothing to do.
	if got, err := n.retentionTarget(times[9]); err != nil || got != 0 {
		t.Fatalf("all young: %d %v", got, err)
	}
	// A minute after revision 4 was committed, revisions 1-3 (older) may go
	// — unless they were committed in the same instant.
	got, err := n.retentionTarget(times[3].Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	want, _ := n.FSM().FirstRevisionSince(times[3])
	if got != want || got < 2 {
		t.Fatalf("age target %d, want %d", got, want)
	}
	// Long after everything: only the newest revision is kept.
	if got, _ := n.retentionTarget(times[9].Add(time.Hour)); got != 10 {
		t.Fatalf("everything old: target %d, want 10", got)
	}
	// Both settings: the one that keeps more wins.
	n.cfg.RetainRevisions = 5
	if got, _ := n.retentionTarget(times[9].Add(time.Hour)); got != 6 {
		t.Fatalf("revisions keep more: target %d, want 6", got)
	}
	if _, err := n.Compact(context.Background(), 6); err != nil {
		t.Fatal(err)
	}
	if got, _ := n.retentionTarget(times[9].Add(time.Hour)); got != 0 {
		t.Fatalf("already compacted: target %d, want 0", got)
	}
}
