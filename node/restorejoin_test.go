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

// TestRestoredClusterMembersJoin restores a full backup, starts the
// restored member with --bootstrap and joins two members with empty data
// directories (docs/operations.md, "Backup, restore and verify"): they
// must get the restored data, not only what was written after the
// restore, and every member's chain must be the same afterwards, also
// once the first member was restarted.
func TestRestoredClusterMembersJoin(t *testing.T) {
	backup, all, rev := fullBackupFile(t)
	r1cfg := testConfig(t, "r1")
	r1cfg.Bootstrap = true
	if _, err := RestoreDataDir(context.Background(), r1cfg.DataDir, fsm.RestoreOptions{}, backup); err != nil {
		t.Fatal(err)
	}
	r1 := startNode(t, r1cfg)
	waitApplied(t, r1, rev)
	var members []*Node
	for _, id := range []string{"r2", "r3"} {
		c := testConfig(t, id)
		c.Join = []string{r1.HTTPURL()}
		members = append(members, startNode(t, c))
	}
	writeKeys(t, r1, "after", 5, &rev, &all)
	head, err := r1.FSM().Head()
	if err != nil {
		t.Fatal(err)
	}
	id1, err := r1.FSM().ClusterID()
	if err != nil || id1 == "" {
		t.Fatalf("r1's cluster id %q: %v", id1, err)
	}
	checkSeeded(t, r1)
	for _, m := range members {
		waitRevision(t, m, rev)
		checkState(t, m, rev, head)
		if id, err := m.FSM().ClusterID(); err != nil || id != id1 {
			t.Fatalf("%s's cluster id %q (%v), r1's %q", m.ID(), id, err, id1)
		}
	}

	// The first member restarts: its data and chain stay, and a member
	// that joins now gets them too.
	closeNode(t, r1)
	r1 = startNode(t, r1cfg)
	waitFor(t, "r1 ready", 15*time.Second, r1.Ready)
	checkState(t, r1, rev, head)
	joinAndCheck(t, "r4", r1, rev, head, all)
}

// joinAndCheck starts member id joining via leader and checks that it
// holds the data: revision, chain and keys.
func joinAndCheck(t *testing.T, id string, leader *Node, rev uint64, head fsm.ChainPoint, all []kv) {
	t.Helper()
	c := testConfig(t, id)
	c.Join = []string{leader.HTTPURL()}
	m := startNode(t, c)
	waitRevision(t, m, rev)
	checkState(t, m, rev, head)
	waitFor(t, id+" ready", 15*time.Second, m.Ready)
	checkKeys(t, m, all)
}

// waitRevision waits until the member has applied revision want.
func waitRevision(t *testing.T, m *Node, want uint64) {
	t.Helper()
	waitFor(t, m.ID()+" at the cluster's revision", 15*time.Second, func() error {
		if got := m.FSM().Revision(); got != want {
			return fmt.Errorf("revision %d, want %d", got, want)
		}
		return nil
	})
}

// fullBackupFile writes 20 keys on a single-member cluster, which it
// stops, and returns a full backup of it, the keys and the revision.
func fullBackupFile(t *testing.T) (string, []kv, uint64) {
	t.Helper()
	src := testConfig(t, "s1")
	src.Bootstrap = true
	s := startNode(t, src)
	waitApplied(t, s, 0)
	var all []kv
	var rev uint64
	writeKeys(t, s, "before", 20, &rev, &all)
	backup := filepath.Join(t.TempDir(), "full.bak")
	f, err := os.Create(backup)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.FSM().WriteFullBackup(f, time.Now()); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	closeNode(t, s)
	return backup, all, rev
}

// checkSeeded checks that the restored member, once members joined, has
// a snapshot and no log from the cluster's first entry (snapshotForJoin),
// so that a member that joins installs the snapshot.
func checkSeeded(t *testing.T, n *Node) {
	t.Helper()
	if snap := newestSnapshot(t, n.cfg.DataDir); snap == nil {
		t.Fatal("no snapshot of the restored store")
	}
	if first, err := n.logStore.FirstIndex(); err != nil || first == 1 {
		t.Fatalf("the log still starts at %d (%v)", first, err)
	}
}
