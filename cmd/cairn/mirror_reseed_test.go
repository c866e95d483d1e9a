package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cairn-db/cairn/api"
	"github.com/cairn-db/cairn/internal/cluster"
	"github.com/cairn-db/cairn/node"
)

// TestMirrorReseedIncremental re-seeds a compacted-out standby as an
// operator would, through the binary (docs/mirror.md, "Re-seeding"): a
// three-process standby follows a one-process source, then is stopped;
// the source takes a full backup and two incrementals (each continuing
// the previous one) with writes between them, and compacts past the
// standby's head once its checkpoint is released. The standby, started
// again, stops as compacted. A seed of another cluster's backup is
// refused as diverged and nothing of it is overwritten. The standby is
// then re-seeded from the full backup and the incrementals (its members'
// stores replaced: `cairn restore` into the first member's data
// directory, the others joining empty), follows the source from the last
// incremental's head on, catches up and is proved identical by `cairn
// verify --source`.
func TestMirrorReseedIncremental(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	// The source releases a checkpoint that made no progress for 2 s, so
	// that it can compact past a stopped standby within the test.
	src := cluster.New(t, cluster.Options{Kind: cluster.Proc, Configure: func(cfg *node.Config) {
		cfg.MirrorCheckpointWindow = 2 * time.Second
	}})
	src.Start(t, 1)
	dst := cluster.New(t, cluster.Options{Kind: cluster.Proc, Configure: func(cfg *node.Config) {
		cfg.MirrorReportInterval = 200 * time.Millisecond
	}})
	dst.Start(t, 3)
	other := cluster.New(t, cluster.Options{Kind: cluster.Proc})
	other.Start(t, 1)
	// Each cluster counts goroutines as it shuts down, the last started
	// first: the test's keep-alive connections to the others are closed
	// before that.
	t.Cleanup(func() {
		for _, c := range []*cluster.Cluster{src, dst, other} {
			c.HTTP.CloseIdleConnections()
		}
		http.DefaultClient.CloseIdleConnections()
	})
	srcFlag, dstFlag, otherFlag := clusterFlag(src), clusterFlag(dst), clusterFlag(other)
	source := strings.Join(src.URLs(), ",")
	dir := t.TempDir()
	run := runWant(t)
	putKeys := func(flag, prefix string, from, to int) {
		t.Helper()
		for i := from; i < to; i++ {
			run(0, flag, "put", fmt.Sprintf("%s/%03d", prefix, i), fmt.Sprintf("v%d", i))
		}
	}
	head := func(c *cluster.Cluster) api.StatusResponse {
		t.Helper()
		return statusOf(t, clusterFlag(c), c.URL(c.Leader(t)))
	}
	mirrorState := func() api.MirrorStatus {
		t.Helper()
		var st api.MirrorStatus
		out := run(0, dstFlag, "--json", "mirror", "status")
		if err := json.Unmarshal([]byte(out), &st); err != nil {
			t.Fatalf("mirror status --json: %v\n%s", err, out)
		}
		return st
	}
	// stopped stops every member of the standby; started starts them
	// again on their data directories and waits until all are ready.
	stopped := func() {
		t.Helper()
		for i := range dst.N() {
			dst.Stop(t, i)
		}
	}
	started := func() {
		t.Helper()
		for i := range dst.N() {
			dst.Restart(t, i)
		}
		for i := range dst.N() {
			dst.WaitReady(t, i)
		}
	}
	// reseed replaces the standby's stores by a restore of files: into
	// the first member's data directory (it bootstraps a new cluster from
	// it), the others empty (they join it).
	reseed := func(files ...string) {
		t.Helper()
		stopped()
		for i := range dst.N() {
			if err := os.RemoveAll(dst.Member(i).DataDir()); err != nil {
				t.Fatal(err)
			}
		}
		run(0, append([]string{"restore", "--data-dir", dst.Member(0).DataDir(), "--id", dst.Member(0).ID()}, files...)...)
		started()
	}

	// The standby follows the source, then stops (its whole site down).
	putKeys(srcFlag, "a", 0, 20)
	run(0, dstFlag, "mirror", "start", "--source", source)
	run(0, dstFlag, "--timeout=60s", "mirror", "status", "--caught-up")
	standbyHead := head(dst)
	oldID := standbyHead.ClusterID
	stopped()

	// The source goes on: a full backup, two incrementals, writes between
	// and after them.
	full, inc1, inc2 := filepath.Join(dir, "full.bak"), filepath.Join(dir, "inc1.bak"), filepath.Join(dir, "inc2.bak")
	putKeys(srcFlag, "b", 0, 10)
	run(0, srcFlag, "backup", "-q", "-o", full)
	putKeys(srcFlag, "c", 0, 10)
	run(0, srcFlag, "backup", "-q", "--since-backup", full, "-o", inc1)
	putKeys(srcFlag, "d", 0, 10)
	run(0, srcFlag, "backup", "-q", "--since-backup", inc1, "-o", inc2)
	inc2Head := head(src).Revision
	putKeys(srcFlag, "e", 0, 10)

	// It compacts as far as the last incremental's head + 1 (what a
	// re-seed from these files resumes at): held back by the stopped
	// standby's checkpoint until its window passes without progress.
	before := inc2Head + 1
	if before <= standbyHead.Revision+1 {
		t.Fatalf("compaction before %d would not pass the standby's head %d", before, standbyHead.Revision)
	}
	poll(t, "the source to compact past the stopped standby", 60*time.Second, func() error {
		var co compactOutput
		out := run(0, srcFlag, "--json", "compact", "--before", fmt.Sprint(before))
		if err := json.Unmarshal([]byte(out), &co); err != nil {
			return fmt.Errorf("compact --json: %v: %s", err, out)
		}
		if co.Requested != before || co.Before != before {
			return fmt.Errorf("compacted before %d, asked %d", co.Before, co.Requested)
		}
		return nil
	})

	// The standby comes back: its next record is gone from the source.
	started()
	var st api.MirrorStatus
	poll(t, "the standby's mirror to stop as compacted", 60*time.Second, func() error {
		if st = mirrorState(); st.State != api.MirrorCompacted {
			return fmt.Errorf("mirror state %s (%s)", st.State, st.LastError)
		}
		return nil
	})
	if st.Head != standbyHead.Revision || !strings.Contains(st.Message, "re-seed") {
		t.Fatalf("compacted standby: %+v (its head was %d)", st, standbyHead.Revision)
	}
	run(1, dstFlag, "mirror", "status", "--caught-up") // not following

	// A seed of another cluster's backup: refused as diverged when the
	// mirror starts, and nothing of it overwritten. (Its head is within
	// what the source still has: below the source's compaction point,
	// the mirror could only stop as compacted.)
	putKeys(otherFlag, "x", 0, int(inc2Head)+3)
	otherBak := filepath.Join(dir, "other.bak")
	run(0, otherFlag, "backup", "-q", "-o", otherBak)
	otherHead := head(other)
	reseed(otherBak)
	run(0, dstFlag, "mirror", "start", "--source", source)
	poll(t, "a standby seeded from another cluster to stop as diverged", 60*time.Second, func() error {
		if st = mirrorState(); st.State != api.MirrorDiverged {
			return fmt.Errorf("mirror state %s (%s)", st.State, st.LastError)
		}
		return nil
	})
	for i := range dst.N() {
		// A member that joined may still be applying what the leader has.
		poll(t, fmt.Sprintf("member %d of the wrongly seeded standby at its seed's head", i), 30*time.Second, func() error {
			if got := statusOf(t, dstFlag, dst.URL(i)); got.Revision != otherHead.Revision || got.Hash != otherHead.Hash {
				return fmt.Errorf("at %d (%s), its seed at %d (%s)", got.Revision, got.Hash, otherHead.Revision, otherHead.Hash)
			}
			return nil
		})
	}
	if out := run(1, dstFlag, "verify", "--source", source); !strings.Contains(out, "chain differs") {
		t.Fatalf("verify --source of a standby seeded from another cluster: %s", out)
	}

	// The re-seed: the full backup and the incrementals, in order.
	reseed(full, inc1, inc2)
	seeded := head(dst)
	if seeded.Revision != inc2Head {
		t.Fatalf("re-seeded standby at %d, the last incremental at %d", seeded.Revision, inc2Head)
	}
	if seeded.ClusterID == "" || seeded.ClusterID == oldID || seeded.ClusterID == head(src).ClusterID {
		t.Fatalf("re-seeded standby's cluster id %q (before %q, the source's %q): not a new cluster", seeded.ClusterID, oldID, head(src).ClusterID)
	}
	if st := mirrorState(); st.State != api.MirrorPrimary {
		t.Fatalf("a restored standby follows nothing until mirror start: %+v", st)
	}
	run(0, dstFlag, "mirror", "start", "--source", source)
	putKeys(srcFlag, "f", 0, 5) // and new writes while it catches up
	run(0, dstFlag, "--timeout=60s", "mirror", "status", "--caught-up")
	if out := run(0, dstFlag, "verify", "--source", source); !strings.Contains(out, "identical to this cluster") {
		t.Fatalf("verify --source after the re-seed: %s", out)
	}
	srcHead := head(src)
	want := chainAt(t, src.URL(0), srcHead.Revision)
	if want.StateHash == "" {
		t.Fatalf("no state hash: %+v", want)
	}
	for i := range dst.N() {
		// A follower of the standby may still be applying what its leader has.
		poll(t, fmt.Sprintf("re-seeded standby member %d at the source's head", i), 30*time.Second, func() error {
			if got := statusOf(t, dstFlag, dst.URL(i)); got.Revision < srcHead.Revision {
				return fmt.Errorf("at %d, the source at %d", got.Revision, srcHead.Revision)
			}
			return nil
		})
		if got := chainAt(t, dst.URL(i), srcHead.Revision); got.Hash != want.Hash || got.StateHash != want.StateHash {
			t.Fatalf("re-seeded standby member %d differs from the source at %d: %+v vs %+v", i, srcHead.Revision, got, want)
		}
	}
	if got := run(0, dstFlag, "get", "f/004"); got != "v4" {
		t.Fatalf("read on the re-seeded standby: %q", got)
	}
}
