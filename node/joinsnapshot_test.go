package node

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/cairn-db/cairn/fsm"
)

// TestJoinRestoredCluster: a cluster started from a restored backup (a
// full backup and an incremental) by one member, which others then join
// with empty data directories, as docs/operations.md says. The members
// that join have the restored state, not just the new cluster's log:
// each reaches the backup's head with the same chain hash and state hash.
func TestJoinRestoredCluster(t *testing.T) {
	src := startStandalone(t, "s1", nil)
	putN(t, src, "a", 30)
	dir := t.TempDir()
	full, inc := filepath.Join(dir, "full.bak"), filepath.Join(dir, "inc.bak")
	writeBackup := func(name string, f func(*os.File) (fsm.BackupHeader, error)) fsm.BackupHeader {
		t.Helper()
		fh, err := os.Create(name)
		if err != nil {
			t.Fatal(err)
		}
		defer fh.Close()
		h, err := f(fh)
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	fh := writeBackup(full, func(w *os.File) (fsm.BackupHeader, error) { return src.fsm.WriteFullBackup(w, time.Now()) })
	putN(t, src, "b", 10)
	ih := writeBackup(inc, func(w *os.File) (fsm.BackupHeader, error) {
		return src.fsm.WriteIncrementalBackup(w, fh.Revision, time.Now())
	})

	c1 := testConfig(t, "n1")
	c1.Bootstrap = true
	if _, err := RestoreDataDir(context.Background(), c1.DataDir, fsm.RestoreOptions{}, full, inc); err != nil {
		t.Fatal(err)
	}
	n1 := startNode(t, c1)
	waitFor(t, "n1 ready", 10*time.Second, n1.Ready)
	nodes := []*Node{n1}
	for _, id := range []string{"n2", "n3"} {
		c := testConfig(t, id)
		c.Join = []string{n1.HTTPURL()}
		n := startNode(t, c)
		waitFor(t, id+" ready", 15*time.Second, n.Ready)
		nodes = append(nodes, n)
	}
	want, err := n1.fsm.StateHash(context.Background(), ih.Revision)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes {
		waitFor(t, n.ID()+" at the backup's head", 15*time.Second, func() error {
			h, err := n.fsm.Head()
			if err != nil {
				return err
			}
			if h.Revision != ih.Revision || h.Hash.String() != ih.Hash {
				return fmt.Errorf("head %d %s, the backup's %d %s", h.Revision, h.Hash, ih.Revision, ih.Hash)
			}
			return nil
		})
		got, err := n.fsm.StateHash(context.Background(), ih.Revision)
		if err != nil || got.Hash != want.Hash || got.Keys != 40 {
			t.Fatalf("%s: state hash %s over %d keys (%v), n1's %s over %d", n.ID(), got.Hash, got.Keys, err, want.Hash, want.Keys)
		}
	}
}

// TestJoinRestoredClusterAfterSnapshot: the restored member has already
// taken a snapshot of its own, with the log behind it kept (raft's
// trailing logs), so its log still starts at the first entry and nothing
// was applied since the snapshot: a member that joins must still get the
// restored state (snapshotForJoin snapshots again at the same index, with
// no trailing log, rather than trusting the snapshot that exists).
func TestJoinRestoredClusterAfterSnapshot(t *testing.T) {
	src := startStandalone(t, "s1", nil)
	putN(t, src, "a", 20)
	full := filepath.Join(t.TempDir(), "full.bak")
	f, err := os.Create(full)
	if err != nil {
		t.Fatal(err)
	}
	h, err := src.fsm.WriteFullBackup(f, time.Now())
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}
	c1 := testConfig(t, "n1")
	c1.Bootstrap = true
	if _, err := RestoreDataDir(context.Background(), c1.DataDir, fsm.RestoreOptions{}, full); err != nil {
		t.Fatal(err)
	}
	n1 := startNode(t, c1)
	waitFor(t, "n1 ready", 10*time.Second, n1.Ready)
	if err := n1.wait(n1.raft.Snapshot()); err != nil {
		t.Fatal(err)
	}
	if first, err := n1.logStore.FirstIndex(); err != nil || first != 1 {
		t.Fatalf("after n1's own snapshot the log starts at %d (%v), want 1 (trailing logs kept)", first, err)
	}
	c2 := testConfig(t, "n2")
	c2.Join = []string{n1.HTTPURL()}
	n2 := startNode(t, c2)
	waitFor(t, "n2 at the backup's head", 15*time.Second, func() error {
		got, err := n2.fsm.Head()
		if err != nil {
			return err
		}
		if got.Revision != h.Revision || got.Hash.String() != h.Hash {
			return fmt.Errorf("head %d %s, the backup's %d %s", got.Revision, got.Hash, h.Revision, h.Hash)
		}
		return nil
	})
}
