package node

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/cairn-db/cairn/api"
	"github.com/cairn-db/cairn/fsm"
	"github.com/cairn-db/cairn/internal/testutil"
)

// logRecorder collects a node's JSON logs so a test can check what the
// node decided at start (restore the snapshot or not).
type logRecorder struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (r *logRecorder) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.buf.Write(p)
}

// has reports whether some log line has every one of the fragments.
func (r *logRecorder) has(fragments ...string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return testutil.HasLine(r.buf.String(), fragments...)
}

// recordLogs points cfg's logger at a fresh recorder.
func recordLogs(cfg *Config) *logRecorder {
	rec := &logRecorder{}
	cfg.Logger = slog.New(slog.NewJSONHandler(rec, &slog.HandlerOptions{Level: slog.LevelInfo}))
	return rec
}

// closeNode closes n now; the Close startNode registered runs again at
// cleanup and must return the same (nil) result.
func closeNode(t *testing.T, n *Node) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := n.Close(ctx); err != nil {
		t.Fatalf("close %s: %v", n.ID(), err)
	}
}

// putKey writes key=value and checks it committed at revision want.
func putKey(t *testing.T, n *Node, key, value string, want uint64) {
	t.Helper()
	code, body := do(t, "PUT", n.HTTPURL()+"/v1/kv/"+key, value)
	if code != http.StatusOK {
		t.Fatalf("put %s: %d %s", key, code, body)
	}
	var wr api.WriteResponse
	if err := json.Unmarshal([]byte(body), &wr); err != nil {
		t.Fatalf("put %s: decode %q: %v", key, body, err)
	}
	if wr.Revision != want {
		t.Fatalf("put %s: revision %d, want %d", key, wr.Revision, want)
	}
}

// kv is one write a test made: the key's value and the revision that
// wrote it.
type kv struct {
	key, value string
	rev        uint64
}

// writeKeys writes count keys prefix/0.. starting at revision *rev+1 and
// appends them to *all.
func writeKeys(t *testing.T, n *Node, prefix string, count int, rev *uint64, all *[]kv) {
	t.Helper()
	for i := 0; i < count; i++ {
		*rev++
		w := kv{key: fmt.Sprintf("%s/%d", prefix, i), value: fmt.Sprintf("%s-value-%d", prefix, i), rev: *rev}
		putKey(t, n, w.key, w.value, w.rev)
		*all = append(*all, w)
	}
}

// checkKeys reads every key linearizably and checks its value and the
// revision that last wrote it.
func checkKeys(t *testing.T, n *Node, all []kv) {
	t.Helper()
	for _, w := range all {
		resp, err := http.Get(n.HTTPURL() + "/v1/kv/" + w.key)
		if err != nil {
			t.Fatalf("get %s: %v", w.key, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || string(b) != w.value {
			t.Fatalf("get %s: %d %q, want 200 %q", w.key, resp.StatusCode, b, w.value)
		}
		if got := resp.Header.Get(api.HeaderModRevision); got != strconv.FormatUint(w.rev, 10) {
			t.Fatalf("get %s: mod revision %s, want %d", w.key, got, w.rev)
		}
	}
}

// checkState checks the FSM's revision, chain head and chain.
func checkState(t *testing.T, n *Node, wantRev uint64, wantHead fsm.ChainPoint) {
	t.Helper()
	if got := n.FSM().Revision(); got != wantRev {
		t.Fatalf("revision %d, want %d", got, wantRev)
	}
	head, err := n.FSM().Head()
	if err != nil {
		t.Fatal(err)
	}
	if head != wantHead {
		t.Fatalf("chain head %d/%s, want %d/%s", head.Revision, head.Hash, wantHead.Revision, wantHead.Hash)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rep, err := n.FSM().Verify(ctx)
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	if rep.Head != head || rep.To != wantRev {
		t.Fatalf("verify report %+v, head %+v", rep, head)
	}
}

// waitApplied waits until the node is ready and a linearizable read has
// gone through (so every entry of earlier terms is applied) and then until
// the FSM's revision reaches want.
func waitApplied(t *testing.T, n *Node, want uint64) {
	t.Helper()
	waitFor(t, n.ID()+" ready", 15*time.Second, n.Ready)
	waitFor(t, n.ID()+" leader", 15*time.Second, func() error {
		if !n.IsLeader() {
			return fmt.Errorf("state %s", n.Raft().State())
		}
		return nil
	})
	waitFor(t, "linearizable read", 15*time.Second, func() error {
		resp, err := http.Get(n.HTTPURL() + "/v1/kv?prefix=")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("list: %d", resp.StatusCode)
		}
		return nil
	})
	waitFor(t, fmt.Sprintf("revision %d", want), 15*time.Second, func() error {
		if got := n.FSM().Revision(); got < want {
			return fmt.Errorf("revision %d", got)
		}
		return nil
	})
}

func copyFile(t *testing.T, src, dst string) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// fsmFileState opens a scratch copy of an FSM database (so the file itself
// stays byte for byte what the node wrote) and returns its applied index
// and revision.
func fsmFileState(t *testing.T, path string) (applied, rev uint64) {
	t.Helper()
	scratch := filepath.Join(t.TempDir(), "scratch.db")
	copyFile(t, path, scratch)
	cfg := fsm.DefaultConfig(scratch)
	cfg.InitialMmapSize = 0
	f, err := fsm.Open(cfg)
	if err != nil {
		t.Fatalf("open %s: %v", path, err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := f.Close(ctx); err != nil {
			t.Errorf("close %s: %v", scratch, err)
		}
	}()
	applied, _, err = f.AppliedIndex()
	if err != nil {
		t.Fatal(err)
	}
	return applied, f.Revision()
}

// newestSnapshot returns the newest snapshot in the node's data dir.
func newestSnapshot(t *testing.T, dataDir string) *raft.SnapshotMeta {
	t.Helper()
	store, err := raft.NewFileSnapshotStore(filepath.Join(dataDir, snapDir), retainSnp, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	list, err := store.List()
	if err != nil {
		t.Fatal(err)
	}
	if len(list) == 0 {
		return nil
	}
	return list[0]
}

// TestRestartRestoresSnapshotAheadOfFSM simulates a crash after raft
// installed a snapshot but before the FSM caught up: the FSM's database is
// older than the newest snapshot. On restart the node must restore the
// snapshot (raft would otherwise skip every entry up to the snapshot's
// index) and then replay the log after it.
func TestRestartRestoresSnapshotAheadOfFSM(t *testing.T) {
	cfg := testConfig(t, "n1")
	cfg.Bootstrap = true
	cfg.SnapshotThreshold = 4
	cfg.TrailingLogs = 2 // the snapshot also truncates the log before it
	fsmPath := filepath.Join(cfg.DataDir, fsmFile)
	oldFSM := filepath.Join(t.TempDir(), "old-fsm.db")

	var all []kv
	var rev uint64

	// 1: a few writes; keep the FSM as it is now.
	n := startNode(t, cfg)
	waitApplied(t, n, 0)
	writeKeys(t, n, "old", 5, &rev, &all)
	closeNode(t, n)
	copyFile(t, fsmPath, oldFSM)

	// 2: more writes, a snapshot, and writes after it.
	n = startNode(t, cfg)
	waitApplied(t, n, rev)
	writeKeys(t, n, "mid", 6, &rev, &all)
	if err := n.Raft().Snapshot().Error(); err != nil {
		t.Fatalf("snapshot: %v", err)
	}
	writeKeys(t, n, "new", 3, &rev, &all)
	head, err := n.FSM().Head()
	if err != nil {
		t.Fatal(err)
	}
	if head.Revision != rev {
		t.Fatalf("head revision %d, want %d", head.Revision, rev)
	}
	closeNode(t, n)

	snap := newestSnapshot(t, cfg.DataDir)
	if snap == nil {
		t.Fatal("no snapshot in the data dir")
	}
	curApplied, curRev := fsmFileState(t, fsmPath)
	if curApplied < snap.Index || curRev != rev {
		t.Fatalf("untouched FSM: applied index %d (snapshot %d), revision %d (want %d)", curApplied, snap.Index, curRev, rev)
	}
	oldApplied, oldRev := fsmFileState(t, oldFSM)
	if oldApplied >= snap.Index {
		t.Fatalf("old FSM applied index %d is not below the snapshot's %d: the test would not exercise the restore", oldApplied, snap.Index)
	}
	if oldRev != 5 {
		t.Fatalf("old FSM revision %d, want 5", oldRev)
	}

	// 3: crash image: the FSM is behind the newest snapshot.
	copyFile(t, oldFSM, fsmPath)
	rec := recordLogs(&cfg)
	n = startNode(t, cfg)
	waitApplied(t, n, rev)
	checkKeys(t, n, all)
	checkState(t, n, rev, head)
	if !rec.has(`"msg":"starting raft"`, `"restore_snapshot":true`) {
		t.Errorf("node did not decide to restore the snapshot")
	}
	if !rec.has(`"msg":"restored snapshot"`) {
		t.Errorf("FSM did not log a restore")
	}
	if applied, _, err := n.FSM().AppliedIndex(); err != nil || applied < snap.Index {
		t.Fatalf("applied index after restart %d (%v), want >= %d", applied, err, snap.Index)
	}
	// Writes go on from the next revision.
	writeKeys(t, n, "after", 2, &rev, &all)
	checkKeys(t, n, all)
	if got := n.FSM().Revision(); got != rev {
		t.Fatalf("revision %d, want %d", got, rev)
	}
}

// startWritten bootstraps a single node and writes keys a0.. (count of
// them); withSnapshot then takes a snapshot and writes four keys b0.. after
// it. It returns the node's config, the node, the keys written and the
// last revision.
func startWritten(t *testing.T, count int, withSnapshot bool) (Config, *Node, []kv, uint64) {
	t.Helper()
	cfg := testConfig(t, "n1")
	cfg.Bootstrap = true
	var all []kv
	var rev uint64
	n := startNode(t, cfg)
	waitApplied(t, n, 0)
	writeKeys(t, n, "a", count, &rev, &all)
	if withSnapshot {
		if err := n.Raft().Snapshot().Error(); err != nil {
			t.Fatalf("snapshot: %v", err)
		}
		writeKeys(t, n, "b", 4, &rev, &all)
	}
	return cfg, n, all, rev
}

// TestRestartSkipsReplay restarts a node whose FSM is up to date: raft
// replays its log (all of it without a snapshot, the tail after one) and
// the persistent FSM must skip what it already applied.
func TestRestartSkipsReplay(t *testing.T) {
	for _, tc := range []struct {
		name                       string
		withSnapshot, afterBarrier bool
	}{{"no snapshot", false, false}, {"snapshot", true, false}, {"snapshot after a barrier", true, true}} {
		withSnapshot := tc.withSnapshot
		t.Run(tc.name, func(t *testing.T) {
			cfg, n, all, rev := startWritten(t, 8, withSnapshot)
			if tc.afterBarrier {
				// The barrier never reaches the FSM, so the snapshot after
				// it sits above the FSM's applied index with nothing more
				// in it: the restart must still not restore it.
				if err := n.Raft().Barrier(5 * time.Second).Error(); err != nil {
					t.Fatalf("barrier: %v", err)
				}
				if err := n.Raft().Snapshot().Error(); err != nil {
					t.Fatalf("snapshot after barrier: %v", err)
				}
				snap := newestSnapshot(t, cfg.DataDir)
				if applied, _, _ := n.FSM().AppliedIndex(); snap == nil || applied >= snap.Index {
					t.Fatalf("setup: want a snapshot above the FSM's applied index %d, got %+v", applied, snap)
				}
			}
			head, err := n.FSM().Head()
			if err != nil {
				t.Fatal(err)
			}
			if head.Revision != rev {
				t.Fatalf("head revision %d, want %d", head.Revision, rev)
			}
			closeNode(t, n)
			if snap := newestSnapshot(t, cfg.DataDir); (snap != nil) != withSnapshot {
				t.Fatalf("snapshot in data dir: %v, want %v", snap != nil, withSnapshot)
			}

			for restart := 1; restart <= 2; restart++ {
				rec := recordLogs(&cfg)
				n = startNode(t, cfg)
				waitApplied(t, n, rev)
				if !rec.has(`"msg":"starting raft"`, `"restore_snapshot":false`) {
					t.Errorf("restart %d: node did not skip the snapshot restore", restart)
				}
				if rec.has(`"msg":"restored snapshot"`) {
					t.Errorf("restart %d: FSM restored a snapshot", restart)
				}
				checkState(t, n, rev, head)
				checkKeys(t, n, all)
				// Every key has exactly one version: nothing applied twice.
				for _, w := range all {
					code, body := do(t, "GET", n.HTTPURL()+"/v1/history/"+w.key, "")
					var h api.HistoryResponse
					if code != http.StatusOK || json.Unmarshal([]byte(body), &h) != nil {
						t.Fatalf("history %s: %d %s", w.key, code, body)
					}
					if len(h.Versions) != 1 {
						t.Fatalf("history %s: %d versions, want 1: %s", w.key, len(h.Versions), body)
					}
				}
				// New writes continue at the next revision.
				writeKeys(t, n, fmt.Sprintf("r%d", restart), 2, &rev, &all)
				if head, err = n.FSM().Head(); err != nil {
					t.Fatal(err)
				}
				checkState(t, n, rev, head)
				closeNode(t, n)
			}
		})
	}
}

// TestRestartAfterReboot restarts a node whose object store took unsynced
// commits during an earlier boot of the machine (the marker names another
// boot): the store is discarded and rebuilt from raft's snapshot and the
// log after it, to the same revision and chain head.
func TestRestartAfterReboot(t *testing.T) {
	for _, withSnapshot := range []bool{false, true} {
		t.Run(fmt.Sprintf("snapshot=%v", withSnapshot), func(t *testing.T) {
			cfg, n, all, rev := startWritten(t, 6, withSnapshot)
			head, err := n.FSM().Head()
			if err != nil {
				t.Fatal(err)
			}
			closeNode(t, n)
			marker := filepath.Join(cfg.DataDir, fsmFile+".unsynced")
			if err := os.WriteFile(marker, []byte("an-earlier-boot\n"), 0o600); err != nil {
				t.Fatal(err)
			}

			rec := recordLogs(&cfg)
			n = startNode(t, cfg)
			waitApplied(t, n, rev)
			if !rec.has(`"msg":"discarded a database that was not fsynced before the machine restarted`) {
				t.Error("the store from an earlier boot was not discarded")
			}
			if withSnapshot && !rec.has(`"msg":"restored snapshot"`) {
				t.Error("the rebuilt store did not start from the snapshot")
			}
			checkState(t, n, rev, head)
			checkKeys(t, n, all)
			writeKeys(t, n, "c", 2, &rev, &all)
			checkKeys(t, n, all)
		})
	}
}
