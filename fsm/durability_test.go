package fsm

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fakeBoot points the boot id at a file the test controls.
func fakeBoot(t *testing.T, id string) (set func(string)) {
	t.Helper()
	p := filepath.Join(t.TempDir(), "boot_id")
	old := bootIDPath
	bootIDPath = p
	t.Cleanup(func() { bootIDPath = old })
	set = func(id string) {
		if err := os.WriteFile(p, []byte(id+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	set(id)
	return set
}

func markerOf(t *testing.T, path string) (string, bool) {
	t.Helper()
	b, err := os.ReadFile(path + unsyncedSuffix)
	if os.IsNotExist(err) {
		return "", false
	}
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b)), true
}

// TestUnsyncedCommits covers the life of the unsynced marker: written
// before the first unsynced commit, removed by a clean close, trusted after
// a process crash in the same boot and fatal to the database after a
// reboot (raft then rebuilds the state).
func TestUnsyncedCommits(t *testing.T) {
	setBoot := fakeBoot(t, "boot-a")
	path := filepath.Join(t.TempDir(), "fsm.db")

	tf := openTestFSMAt(t, path)
	if !tf.unsynced {
		t.Fatal("default config with a boot id: commits are fsynced, want unsynced")
	}
	if id, ok := markerOf(t, path); !ok || id != "boot-a" {
		t.Fatalf("marker while open: %q %v, want boot-a", id, ok)
	}
	tf.mustCommit(ops(put("k", "v1")))
	tf.close()
	if _, ok := markerOf(t, path); ok {
		t.Fatal("marker left after a clean close")
	}

	// A process crash leaves the marker of the same boot: the database is
	// intact (the page cache kept every commit) and is kept.
	tf = openTestFSMAt(t, path)
	tf.mustCommit(ops(put("k", "v2")))
	rev := tf.Revision()
	tf.close()
	if err := os.WriteFile(path+unsyncedSuffix, []byte("boot-a\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tf = openTestFSMAt(t, path)
	if got := tf.Revision(); got != rev {
		t.Fatalf("after a crash in the same boot: revision %d, want %d", got, rev)
	}
	tf.close()

	// The machine restarted while unsynced commits were open: the
	// database may be torn, so it is discarded.
	if err := os.WriteFile(path+unsyncedSuffix, []byte("boot-a\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	setBoot("boot-b")
	tf = openTestFSMAt(t, path)
	if got, applied := tf.Revision(), tf.LastApplied(); got != 0 || applied != 0 {
		t.Fatalf("after a reboot with unsynced commits: revision %d, applied index %d; want an empty store", got, applied)
	}
	if id, ok := markerOf(t, path); !ok || id != "boot-b" {
		t.Fatalf("marker after reopening: %q %v, want boot-b", id, ok)
	}
	tf.close()
}

func TestSyncEveryCommit(t *testing.T) {
	fakeBoot(t, "boot-a")
	path := filepath.Join(t.TempDir(), "fsm.db")
	// Left by an unsynced run of this boot that crashed: the synced run
	// fsyncs the database once and removes the marker.
	tf := openTestFSMAt(t, path)
	tf.mustCommit(ops(put("k", "v")))
	tf.close()
	if err := os.WriteFile(path+unsyncedSuffix, []byte("boot-a\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig(path)
	cfg.InitialMmapSize = 0
	cfg.SyncEveryCommit = true
	f, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close(t.Context())
	if f.unsynced {
		t.Fatal("SyncEveryCommit: commits are unsynced")
	}
	if _, ok := markerOf(t, path); ok {
		t.Fatal("SyncEveryCommit: marker still there after open")
	}
	if f.Revision() != 1 {
		t.Fatalf("revision %d, want 1", f.Revision())
	}
}

func TestNoBootIDSyncs(t *testing.T) {
	old := bootIDPath
	bootIDPath = filepath.Join(t.TempDir(), "missing")
	t.Cleanup(func() { bootIDPath = old })
	path := filepath.Join(t.TempDir(), "fsm.db")
	tf := openTestFSMAt(t, path)
	if tf.unsynced {
		t.Fatal("without a boot id the FSM must fsync every commit")
	}
	if _, ok := markerOf(t, path); ok {
		t.Fatal("marker written without a boot id")
	}
}
