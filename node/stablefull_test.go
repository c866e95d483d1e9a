//go:build linux

package node

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/cairn-db/cairn/internal/testutil"
	"github.com/hashicorp/raft"
)

// TestTermChangesOnFullDisks: three members, each on a filesystem of its
// own filled to the last byte, go through several elections (leadership
// transfers, each a new term that every member saves). No member panics,
// which raft does when it cannot save a term (a panic in raft's
// goroutines would kill the test binary), and once the filler files are
// deleted the cluster takes writes again.
func TestTermChangesOnFullDisks(t *testing.T) {
	ids := []string{"n1", "n2", "n3"}
	var (
		nodes   []*Node
		disks   []string
		fillers []string
	)
	for i, id := range ids {
		disk := testutil.MountTmpfs(t, 24<<20)
		cfg := testConfig(t, id)
		cfg.DataDir = filepath.Join(disk, id)
		cfg.MinFreeBytes = 0 // no reserve: the disk really fills
		cfg.ApplyTimeout = 2 * time.Second
		if i == 0 {
			cfg.Bootstrap = true
		} else {
			cfg.Join = []string{nodes[0].HTTPURL()}
		}
		n := startNode(t, cfg)
		waitFor(t, id+" ready", 15*time.Second, n.Ready)
		nodes, disks = append(nodes, n), append(disks, disk)
		fillers = append(fillers, filepath.Join(disk, "filler"))
	}
	ctx := context.Background()
	write := func(key string) error {
		for _, n := range nodes {
			if !n.IsLeader() {
				continue
			}
			wctx, cancel := context.WithTimeout(ctx, 3*time.Second)
			defer cancel()
			_, err := n.Write(wctx, putTxn(key, []byte("v")))
			return err
		}
		return errors.New("no leader")
	}
	waitFor(t, "a put before the disks fill", 15*time.Second, func() error { return write("before") })
	waitFor(t, "every member has the put", 15*time.Second, func() error {
		for _, n := range nodes {
			if _, _, err := n.FSM().Get("before", 0); err != nil {
				return fmt.Errorf("%s: %w", n.ID(), err)
			}
		}
		return nil
	})
	// The stable files exist: raft saved its first terms in them.
	for _, n := range nodes {
		if st, err := os.Stat(filepath.Join(n.cfg.DataDir, stableFile)); err != nil || st.Size() == 0 {
			t.Fatalf("%s: %s: %v", n.ID(), stableFile, err)
		}
	}

	for i := range nodes {
		testutil.FillDisk(t, fillers[i])
	}
	start := uint64(0)
	for _, n := range nodes {
		start = max(start, n.Raft().CurrentTerm())
	}
	// Transfer leadership until every member has saved five new terms:
	// each transfer makes its target start an election in a new term.
	target := start + 5
	transfers := 0
	waitFor(t, fmt.Sprintf("every member at term %d or later (from %d)", target, start), 90*time.Second, func() error {
		lowest := uint64(0)
		for i, n := range nodes {
			if st := n.Raft().State(); st == raft.Shutdown {
				t.Fatalf("%s: raft shut down", n.ID())
			}
			if term := n.Raft().CurrentTerm(); i == 0 || term < lowest {
				lowest = term
			}
		}
		if lowest >= target {
			return nil
		}
		for _, n := range nodes {
			if n.IsLeader() {
				transfers++
				_ = n.Raft().LeadershipTransfer().Error() // may fail: the next poll tries again
				break
			}
		}
		return fmt.Errorf("lowest term %d", lowest)
	})
	t.Logf("terms %d -> %d+ on full disks after %d leadership transfers", start, target, transfers)
	for _, d := range disks {
		testutil.DiskIsFull(t, d) // the elections really ran on full filesystems
	}

	// The operator frees room: the cluster elects a leader and takes
	// writes again, on every member.
	for _, f := range fillers {
		if err := os.Remove(f); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "a put after room was freed", 60*time.Second, func() error { return write("after") })
	waitFor(t, "every member has the put", 30*time.Second, func() error {
		for _, n := range nodes {
			if _, _, err := n.FSM().Get("after", 0); err != nil {
				return fmt.Errorf("%s: %w", n.ID(), err)
			}
		}
		return nil
	})
}
