package node

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/cairn-db/cairn/api"
	"github.com/cairn-db/cairn/fsm"
	"github.com/cairn-db/cairn/internal/mirrorstream"
)

// startStandalone starts a one-member cluster and waits until it is ready
// and named (a cluster id).
func startStandalone(t *testing.T, id string, configure func(*Config)) *Node {
	t.Helper()
	c := testConfig(t, id)
	c.Bootstrap = true
	if configure != nil {
		configure(&c)
	}
	n := startNode(t, c)
	waitFor(t, id+" ready", 10*time.Second, func() error {
		if err := n.Ready(); err != nil {
			return err
		}
		if cid, err := n.fsm.ClusterID(); err != nil || cid == "" {
			return fmt.Errorf("no cluster id yet (%v)", err)
		}
		return nil
	})
	return n
}

// putN writes count keys prefix/i through n and returns the last revision.
func putN(t *testing.T, n *Node, prefix string, count int) uint64 {
	t.Helper()
	var rev uint64
	for i := range count {
		res, err := n.Write(context.Background(), putTxn(fmt.Sprintf("%s/%d", prefix, i), []byte(fmt.Sprintf("v%d", i))))
		if err == nil {
			err = res.Err
		}
		if err != nil {
			t.Fatalf("put %s/%d: %v", prefix, i, err)
		}
		rev = res.Revision
	}
	return rev
}

// TestMirrorStreamServes reads a source's stream with mirrorstream's
// Reader: the header, the records committed before (each its stored hash
// and canonical bytes), then a record as it commits; and a from before the
// compaction point answers 410 compacted before any stream.
func TestMirrorStreamServes(t *testing.T) {
	src := startStandalone(t, "s1", nil)
	head := putN(t, src, "a", 20)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", src.HTTPURL()+"/v1/mirror/stream?from=3&id=test", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	rd := mirrorstream.NewReader(resp.Body, 1<<20)
	f, err := rd.Next()
	if err != nil {
		t.Fatal(err)
	}
	prev, _ := src.fsm.HashAt(2)
	cid, _ := src.fsm.ClusterID()
	if h := f.Header; h.From != 3 || h.PrevHash != prev.Hash.String() || h.Head != head || h.ClusterID != cid {
		t.Fatalf("header %+v; want from 3, prev %s, head %d, cluster %s", h, prev.Hash, head, cid)
	}
	raw, _, err := src.fsm.RawLog(3, 0)
	if err != nil {
		t.Fatal(err)
	}
	next := func() *mirrorstream.Record {
		for {
			f, err := rd.Next()
			if err != nil {
				t.Fatal(err)
			}
			if f.Record != nil {
				return f.Record
			}
		}
	}
	for _, want := range raw {
		got := next()
		if got.Revision != want.Revision || got.Hash != want.Hash || !bytes.Equal(got.Canonical, want.Canonical) {
			t.Fatalf("record %d differs from the stored one", want.Revision)
		}
	}
	// Pushed as it commits.
	rev := putN(t, src, "b", 1)
	if got := next(); got.Revision != rev {
		t.Fatalf("pushed record %d, want %d", got.Revision, rev)
	}
	cancel()

	if _, err := src.Compact(context.Background(), 10); err != nil {
		t.Fatal(err)
	}
	code, body := do(t, "GET", src.HTTPURL()+"/v1/mirror/stream?from=5&id=test", "")
	if code != 410 || !strings.Contains(body, `"compacted"`) {
		t.Fatalf("stream from before the compaction point: %d %s", code, body)
	}
}

// mirrorStatusOf reads GET /v1/mirror/status of n.
func mirrorStatusOf(t *testing.T, n *Node) api.MirrorStatus {
	t.Helper()
	code, body := do(t, "GET", n.HTTPURL()+"/v1/mirror/status", "")
	if code != 200 {
		t.Fatalf("mirror status of %s: %d %s", n.ID(), code, body)
	}
	var st api.MirrorStatus
	if err := json.Unmarshal([]byte(body), &st); err != nil {
		t.Fatal(err)
	}
	return st
}

// caughtUp returns nil once standby's head and chain hash equal src's,
// and its state hash there too.
func caughtUp(src, standby *Node) func() error {
	return func() error {
		sh, err := src.fsm.Head()
		if err != nil {
			return err
		}
		h, err := standby.fsm.Head()
		if err != nil {
			return err
		}
		if h != sh {
			return fmt.Errorf("standby at %d (%s), source at %d (%s)", h.Revision, h.Hash, sh.Revision, sh.Hash)
		}
		a, err := src.fsm.StateHash(context.Background(), sh.Revision)
		if err != nil {
			return err
		}
		b, err := standby.fsm.StateHash(context.Background(), sh.Revision)
		if err != nil {
			return err
		}
		if a.Hash != b.Hash {
			return fmt.Errorf("state hash at %d: source %s, standby %s", sh.Revision, a.Hash, b.Hash)
		}
		return nil
	}
}

// TestMirrorFollowAndPromote: a one-member standby follows a one-member
// source through its backlog and its writes as they come, refuses client
// writes (read_only), reports its progress as a checkpoint on the source,
// then is promoted: a promotion record, writable after.
func TestMirrorFollowAndPromote(t *testing.T) {
	src := startStandalone(t, "s1", nil)
	standby := startStandalone(t, "m1", func(c *Config) { c.MirrorReportInterval = 100 * time.Millisecond })
	putN(t, src, "a", 300)
	code, body := do(t, "POST", standby.HTTPURL()+"/v1/mirror/start", `{"sources":["`+src.HTTPURL()+`"]}`)
	if code != 200 {
		t.Fatalf("mirror start: %d %s", code, body)
	}
	waitFor(t, "standby caught up with the backlog", 20*time.Second, caughtUp(src, standby))
	putN(t, src, "b", 50)
	waitFor(t, "standby caught up with new writes", 20*time.Second, caughtUp(src, standby))

	code, body = do(t, "PUT", standby.HTTPURL()+"/v1/kv/x", "y")
	if code != 409 || !strings.Contains(body, `"read_only"`) {
		t.Fatalf("write on a standby: %d %s", code, body)
	}
	st := mirrorStatusOf(t, standby)
	srcCID, _ := src.fsm.ClusterID()
	if st.State != api.MirrorFollowing || st.SourceClusterID != srcCID || st.Source != src.HTTPURL() || st.LagRevisions != 0 {
		t.Fatalf("standby status %+v", st)
	}
	ownCID, _ := standby.fsm.ClusterID()
	waitFor(t, "the standby's checkpoint on the source", 10*time.Second, func() error {
		head := src.fsm.Revision()
		for _, c := range mirrorStatusOf(t, src).Checkpoints {
			if c.ID == ownCID && c.Revision == head {
				return nil
			}
		}
		return fmt.Errorf("no checkpoint of %s at %d: %+v", ownCID, head, mirrorStatusOf(t, src).Checkpoints)
	})
	if floor := src.fsm.CompactionFloor(time.Now()); floor != src.fsm.Revision()+1 {
		t.Fatalf("compaction floor %d, want %d", floor, src.fsm.Revision()+1)
	}

	// A second start is refused: it is following already.
	code, body = do(t, "POST", standby.HTTPURL()+"/v1/mirror/start", `{"sources":["`+src.HTTPURL()+`"]}`)
	if code != 409 || !strings.Contains(body, `"mirror_state"`) {
		t.Fatalf("second start: %d %s", code, body)
	}
	// A loop: the source cannot mirror its own standby.
	code, body = do(t, "POST", src.HTTPURL()+"/v1/mirror/start", `{"sources":["`+standby.HTTPURL()+`"]}`)
	if code != 409 || !strings.Contains(body, `"mirror_state"`) {
		t.Fatalf("loop start: %d %s", code, body)
	}

	head := src.fsm.Revision()
	code, body = do(t, "POST", standby.HTTPURL()+"/v1/mirror/promote", "")
	if code != 200 {
		t.Fatalf("promote: %d %s", code, body)
	}
	if err := json.Unmarshal([]byte(body), &st); err != nil {
		t.Fatal(err)
	}
	if st.State != api.MirrorPrimary || st.PromotedAt != head+1 || st.PromotedFrom != srcCID {
		t.Fatalf("after promotion: %+v (source head %d)", st, head)
	}
	recs, _, err := standby.fsm.Log(head+1, 1)
	if err != nil || len(recs) != 1 || recs[0].Meta[fsm.MetaMirror] != "promoted" {
		t.Fatalf("promotion record: %+v %v", recs, err)
	}
	code, body = do(t, "PUT", standby.HTTPURL()+"/v1/kv/x", "y")
	if code != 200 {
		t.Fatalf("write after promotion: %d %s", code, body)
	}
}

// TestMirrorDivergedExport: a standby whose chain differs from its
// source's after a common revision stops as diverged, never overwriting,
// and exports its records after that revision as an incremental backup,
// whose file and member the status names, also after a restart.
func TestMirrorDivergedExport(t *testing.T) {
	src := startStandalone(t, "s1", nil)
	standby := startStandalone(t, "m1", nil)
	putN(t, src, "a", 10)
	// Promote (writable), write there, and write differently on the
	// source: the chains part after the common head.
	common := followThenPromote(t, src, standby)
	putN(t, standby, "mine", 3)
	putN(t, src, "theirs", 6)
	mirrorControl(t, standby, "start", `{"sources":["`+src.HTTPURL()+`"]}`)
	var st api.MirrorStatus
	waitFor(t, "diverged", 20*time.Second, func() error {
		st = mirrorStatusOf(t, standby)
		if st.State != api.MirrorDiverged {
			return fmt.Errorf("state %s (%s)", st.State, st.LastError)
		}
		return nil
	})
	if st.DivergedFile == "" || st.DivergedMember != "m1" || !strings.Contains(st.Message, fmt.Sprintf("last revision in common is %d", common)) {
		t.Fatalf("diverged status: %+v", st)
	}
	if ms, _ := standby.fsm.Mirror(); ms.DivergedFile != st.DivergedFile || ms.DivergedMember != "m1" {
		t.Fatalf("replicated mirror state %+v", ms)
	}
	// The file and its member are in the replicated state: a restarted
	// member (nothing of the follower left in memory) still names them.
	cfg := standby.cfg
	closeNode(t, standby)
	standby = startNode(t, cfg)
	waitFor(t, "standby back", 10*time.Second, standby.Ready)
	if again := mirrorStatusOf(t, standby); again.State != api.MirrorDiverged || again.DivergedFile != st.DivergedFile ||
		again.DivergedMember != "m1" || again.Message != st.Message || again.LastError != "" {
		t.Fatalf("after a restart: %+v, want the file %s on m1", again, st.DivergedFile)
	}
	// Nothing of the standby was overwritten: its own records are there.
	if h := standby.fsm.Revision(); h != common+4 {
		t.Fatalf("standby head %d, want %d (promotion and 3 writes after %d)", h, common+4, common)
	}
	data, err := os.ReadFile(st.DivergedFile)
	if err != nil {
		t.Fatal(err)
	}
	r := bytes.NewReader(data)
	hdr, err := fsm.ReadBackupHeader(r)
	if err != nil {
		t.Fatal(err)
	}
	var revs []uint64
	if err := fsm.ReadIncremental(r, hdr, func(rr fsm.RawRecord) error {
		want, err := standby.fsm.HashAt(rr.Revision)
		if err != nil || want.Hash != rr.Hash {
			return fmt.Errorf("record %d: hash %s, the standby has %s (%v)", rr.Revision, rr.Hash, want.Hash, err)
		}
		revs = append(revs, rr.Revision)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(revs) != 4 || revs[0] != common+1 || revs[3] != common+4 {
		t.Fatalf("export holds revisions %v, want %d..%d", revs, common+1, common+4)
	}
}

// TestMirrorCheckpointHoldsCompaction: a standby's checkpoint on its
// source holds compaction (manual and retention) at its resume point
// while live, the answer saying where it stopped, and lets it pass once
// the window went by without progress.
func TestMirrorCheckpointHoldsCompaction(t *testing.T) {
	src := startStandalone(t, "s1", func(c *Config) {
		c.MirrorCheckpointWindow = time.Second
		c.RetainRevisions = 1
		c.RetentionInterval = time.Hour // the test asks retentionTarget itself
	})
	standby := startStandalone(t, "m1", func(c *Config) { c.MirrorReportInterval = 50 * time.Millisecond })
	putN(t, src, "a", 20)
	mirrorControl(t, standby, "start", `{"sources":["`+src.HTTPURL()+`"]}`)
	waitFor(t, "caught up", 20*time.Second, caughtUp(src, standby))
	held := src.fsm.Revision()
	waitFor(t, "the checkpoint at the source's head", 10*time.Second, func() error {
		if f := src.fsm.CompactionFloor(time.Now()); f != held+1 {
			return fmt.Errorf("compaction floor %d, want %d", f, held+1)
		}
		return nil
	})
	// The standby stops: no more progress from now on.
	mirrorControl(t, standby, "stop", "")
	head := putN(t, src, "b", 20)
	if target, err := src.retentionTarget(time.Now()); err != nil || target > held+1 {
		t.Fatalf("retention target %d (%v) past the checkpoint's floor %d", target, err, held+1)
	}
	code, body := do(t, "POST", src.HTTPURL()+"/v1/compact", fmt.Sprintf(`{"revision":%d}`, head))
	var wr api.WriteResponse
	if code != 200 || json.Unmarshal([]byte(body), &wr) != nil || wr.CompactRevision > held+1 || wr.Revision != head {
		t.Fatalf("compact while held: %d %s (floor %d)", code, body, held+1)
	}
	if _, _, err := src.fsm.RawLog(held+1, 1); err != nil {
		t.Fatalf("the standby's next record is gone while its checkpoint is live: %v", err)
	}
	waitFor(t, "the checkpoint released after its window", 20*time.Second, func() error {
		resp, err := src.Compact(context.Background(), head)
		if err != nil {
			return err
		}
		if resp.CompactRevision != head {
			return fmt.Errorf("compacted to %d, want %d", resp.CompactRevision, head)
		}
		return nil
	})
	var released bool
	for _, c := range mirrorStatusOf(t, src).Checkpoints {
		released = released || c.Released
	}
	if !released {
		t.Fatalf("checkpoints %+v: none released", mirrorStatusOf(t, src).Checkpoints)
	}
}

// TestMirrorFailback: after a standby's promotion, the old primary, with
// no write since, becomes a standby of the new primary and follows it
// through the promotion record (its chain matches up to there).
func TestMirrorFailback(t *testing.T) {
	a := startStandalone(t, "a1", nil)
	b := startStandalone(t, "b1", nil)
	putN(t, a, "a", 30)
	mirrorControl(t, b, "start", `{"sources":["`+a.HTTPURL()+`"]}`)
	waitFor(t, "caught up", 20*time.Second, caughtUp(a, b))
	mirrorControl(t, b, "promote", "")
	putN(t, b, "b", 10)
	mirrorControl(t, a, "start", `{"sources":["`+b.HTTPURL()+`"]}`)
	waitFor(t, "the old primary follows the new one", 20*time.Second, caughtUp(b, a))
	if st := mirrorStatusOf(t, a); st.State != api.MirrorFollowing {
		t.Fatalf("old primary: %+v", st)
	}
}

// TestMirrorCompactedSource: a standby whose resume point the source has
// compacted away stops as compacted, saying how to re-seed, and keeps
// what it has.
func TestMirrorCompactedSource(t *testing.T) {
	src := startStandalone(t, "s1", nil)
	standby := startStandalone(t, "m1", nil)
	head := putN(t, src, "a", 20)
	if _, err := src.Compact(context.Background(), head); err != nil {
		t.Fatal(err)
	}
	mirrorControl(t, standby, "start", `{"sources":["`+src.HTTPURL()+`"]}`)
	waitFor(t, "compacted", 20*time.Second, func() error {
		st := mirrorStatusOf(t, standby)
		if st.State != api.MirrorCompacted {
			return fmt.Errorf("state %s (%s)", st.State, st.LastError)
		}
		if !strings.Contains(st.Message, "re-seed") {
			return fmt.Errorf("message %q says nothing of re-seeding", st.Message)
		}
		return nil
	})
	if r := standby.fsm.Revision(); r != 0 {
		t.Fatalf("a compacted standby wrote %d revisions", r)
	}
}

func mirrorStart(sources ...string) api.MirrorStartRequest {
	return api.MirrorStartRequest{Sources: sources}
}

func errorf(format string, args ...any) error { return fmt.Errorf(format, args...) }

// TestMirrorFailbackDiverged: an old primary that took writes after the
// standby's promotion (more of them than the new primary has since) is
// refused as a standby of the new primary: diverged, its records after
// the promotion point exported.
func TestMirrorFailbackDiverged(t *testing.T) {
	a := startStandalone(t, "a1", nil)
	b := startStandalone(t, "b1", nil)
	putN(t, a, "a", 10)
	point := followThenPromote(t, a, b)
	putN(t, a, "unfenced", 5) // the old primary was not fenced
	mirrorControl(t, a, "start", `{"sources":["`+b.HTTPURL()+`"]}`)
	var st api.MirrorStatus
	waitFor(t, "diverged", 20*time.Second, func() error {
		st = mirrorStatusOf(t, a)
		if st.State != api.MirrorDiverged {
			return fmt.Errorf("state %s (%s)", st.State, st.LastError)
		}
		return nil
	})
	if !strings.Contains(st.Message, fmt.Sprintf("last revision in common is %d", point)) || st.DivergedFile == "" {
		t.Fatalf("diverged status %+v", st)
	}
	if h := a.fsm.Revision(); h != point+5 {
		t.Fatalf("old primary at %d, want %d: nothing overwritten", h, point+5)
	}
}

// TestMirrorDivergedFileOnEveryMember: the diverged export's file and
// the member holding it are in the replicated state, so every member of
// a three-member standby names them, not only the leader that wrote it.
func TestMirrorDivergedFileOnEveryMember(t *testing.T) {
	src := startStandalone(t, "s1", nil)
	nodes := startThree(t)
	leader := leaderOf(t, nodes)
	putN(t, src, "a", 10)
	mirrorControl(t, nodes[0], "start", `{"sources":["`+src.HTTPURL()+`"]}`)
	waitFor(t, "caught up", 20*time.Second, caughtUp(src, leader))
	mirrorControl(t, nodes[0], "promote", "")
	putN(t, leader, "mine", 2)
	putN(t, src, "theirs", 5)
	mirrorControl(t, nodes[1], "start", `{"sources":["`+src.HTTPURL()+`"]}`)
	var file, member string
	waitFor(t, "diverged with an export", 20*time.Second, func() error {
		ms, err := leader.fsm.Mirror()
		if err != nil || ms.Mode != fsm.MirrorDiverged || ms.DivergedFile == "" {
			return fmt.Errorf("leader's mirror state %+v (%v)", ms, err)
		}
		file, member = ms.DivergedFile, ms.DivergedMember
		return nil
	})
	if member != leader.ID() {
		t.Fatalf("export on %s, want the leader %s", member, leader.ID())
	}
	if _, err := os.Stat(file); err != nil {
		t.Fatalf("the export: %v", err)
	}
	for _, n := range nodes {
		waitFor(t, n.ID()+" names the export", 10*time.Second, func() error {
			st := mirrorStatusOf(t, n)
			if st.Node != n.ID() {
				return fmt.Errorf("answered by %s, not %s", st.Node, n.ID())
			}
			if st.State != api.MirrorDiverged || st.DivergedFile != file || st.DivergedMember != member {
				return fmt.Errorf("%s: state %s, file %q on %q", n.ID(), st.State, st.DivergedFile, st.DivergedMember)
			}
			return nil
		})
	}
}

// mirrorControl posts body to n's POST /v1/mirror/{op} (start, stop,
// promote) and fails the test unless it answers 200.
func mirrorControl(t *testing.T, n *Node, op, body string) {
	t.Helper()
	if code, resp := do(t, "POST", n.HTTPURL()+"/v1/mirror/"+op, body); code != 200 {
		t.Fatalf("mirror %s on %s: %d %s", op, n.ID(), code, resp)
	}
}

// followThenPromote makes standby follow src until it has src's head,
// then promotes it, and returns that head: the promotion point, the last
// revision the two chains share.
func followThenPromote(t *testing.T, src, standby *Node) uint64 {
	t.Helper()
	mirrorControl(t, standby, "start", `{"sources":["`+src.HTTPURL()+`"]}`)
	waitFor(t, "caught up", 20*time.Second, caughtUp(src, standby))
	point := src.fsm.Revision()
	mirrorControl(t, standby, "promote", "")
	return point
}
