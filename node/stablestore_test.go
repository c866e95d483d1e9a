package node

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/cairn-db/cairn/fsm"
)

// TestStableFileMigration: a data directory without raft-stable.dat (as
// an earlier build left it, with the term and vote in raft.db) starts
// from raft.db's term, not from zero, and gets the file.
func TestStableFileMigration(t *testing.T) {
	cfg := testConfig(t, "n1")
	cfg.Bootstrap = true
	// Each start elects the member in a new term: three make a term that
	// starting from zero would not reach.
	var before uint64
	for i := range 3 {
		n := startNode(t, cfg)
		waitFor(t, "n1 leader", 10*time.Second, func() error {
			if !n.IsLeader() {
				return errors.New("not leader")
			}
			return nil
		})
		if i == 0 {
			putKey(t, n, "k", "v", 1)
		}
		before = n.Raft().CurrentTerm()
		closeNode(t, n)
	}
	if before < 3 {
		t.Fatalf("term %d after three starts", before)
	}
	stable := filepath.Join(cfg.DataDir, stableFile)
	if err := os.Remove(stable); err != nil {
		t.Fatal(err)
	}

	n2, err := New(cfg)
	if err != nil {
		t.Fatalf("restart without %s: %v", stableFile, err)
	}
	t.Cleanup(func() { _ = n2.Close(context.Background()) })
	if got := n2.Raft().CurrentTerm(); got < before {
		t.Fatalf("term after the migration %d, before %d", got, before)
	}
	waitFor(t, "n1 leader again", 10*time.Second, func() error {
		if !n2.IsLeader() {
			return fmt.Errorf("state %s", n2.Raft().State())
		}
		return nil
	})
	if got := n2.Raft().CurrentTerm(); got <= before {
		t.Fatalf("elected in term %d, not after %d", got, before)
	}
	if _, err := os.Stat(stable); err != nil {
		t.Fatalf("no %s after the start: %v", stableFile, err)
	}
	if kv, _, err := n2.FSM().Get("k", 0); err != nil || string(kv.Value) != "v" {
		t.Fatalf("k after the restart: %+v %v", kv, err)
	}
}

// TestRestoreRefusesStableFile: a restore needs an empty directory, and a
// leftover raft-stable.dat (a term) would keep --bootstrap from founding
// the restored cluster.
func TestRestoreRefusesStableFile(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, stableFile), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := RestoreDataDir(context.Background(), dir, fsm.RestoreOptions{}, filepath.Join(dir, "missing.bak"))
	if !errors.Is(err, ErrBadRequest) {
		t.Fatalf("restore into a directory holding %s: %v, want ErrBadRequest", stableFile, err)
	}
}
