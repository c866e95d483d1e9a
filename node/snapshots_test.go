package node

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestSnapshotByLogBytes writes large entries with raft's entry-count
// trigger out of reach: the log-volume trigger must take a snapshot and
// truncate the log behind it, and the node must restart from it.
func TestSnapshotByLogBytes(t *testing.T) {
	cfg := testConfig(t, "n1")
	cfg.Bootstrap = true
	cfg.SnapshotThreshold = 1 << 40 // raft's own trigger never fires
	cfg.SnapshotInterval = 50 * time.Millisecond
	cfg.SnapshotLogBytes = 256 << 10
	rec := recordLogs(&cfg)
	n := startNode(t, cfg)
	defer func() {
		if t.Failed() {
			rec.mu.Lock()
			t.Logf("logs:\n%s", rec.buf.String())
			rec.mu.Unlock()
		}
	}()
	waitApplied(t, n, 0)

	var all []kv
	var rev uint64
	value := strings.Repeat("x", 4<<10)
	for i := range 200 {
		rev++
		w := kv{key: fmt.Sprintf("big/%d", i), value: value, rev: rev}
		putKey(t, n, w.key, w.value, w.rev)
		all = append(all, w)
	}
	waitFor(t, "a snapshot and a truncated log", 15*time.Second, func() error {
		snap := newestSnapshot(t, cfg.DataDir)
		if snap == nil {
			return fmt.Errorf("no snapshot yet")
		}
		first, err := n.logStore.FirstIndex()
		if err != nil {
			return err
		}
		if first <= 1 {
			return fmt.Errorf("log starts at %d: not truncated behind snapshot %d", first, snap.Index)
		}
		return nil
	})
	head, err := n.FSM().Head()
	if err != nil {
		t.Fatal(err)
	}
	closeNode(t, n)

	n = startNode(t, cfg)
	waitApplied(t, n, rev)
	checkState(t, n, rev, head)
	checkKeys(t, n, all)
}
