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
