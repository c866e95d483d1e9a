package node

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/cairn-db/cairn/api"
	"github.com/cairn-db/cairn/fsm"
)

// TestWithLiveHead: the lag is measured against the live head when it is
// of the mirror's source cluster and above the replicated head, for a
// standby following or stopped only.
func TestWithLiveHead(t *testing.T) {
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	base := fsm.MirrorState{Mode: fsm.MirrorFollowing, SourceClusterID: "src", SourceRevision: 40, SourceHead: 40,
		SourceHeadTime: t0, LastApplied: t0}
	live := liveHead{Cluster: "src", Head: 140, Time: t0.Add(2500 * time.Millisecond)}
	cases := []struct {
		name     string
		mode     fsm.MirrorMode
		live     liveHead
		wantHead uint64
		wantLag  time.Duration
	}{
		{"following, live above", fsm.MirrorFollowing, live, 140, 2500 * time.Millisecond},
		{"stopped, live above", fsm.MirrorStopped, live, 140, 2500 * time.Millisecond},
		{"live of another cluster", fsm.MirrorFollowing, liveHead{Cluster: "other", Head: 140, Time: live.Time}, 40, 0},
		{"live below the replicated head", fsm.MirrorFollowing, liveHead{Cluster: "src", Head: 30, Time: live.Time}, 40, 0},
		{"nothing heard", fsm.MirrorFollowing, liveHead{}, 40, 0},
		{"diverged", fsm.MirrorDiverged, live, 40, 0},
		{"primary", fsm.MirrorNone, live, 40, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ms := base
			ms.Mode = c.mode
			got := withLiveHead(ms, c.live)
			if got.SourceHead != c.wantHead || got.LagRevisions() != c.wantHead-40 {
				t.Fatalf("source head %d, lag %d; want %d, %d", got.SourceHead, got.LagRevisions(), c.wantHead, c.wantHead-40)
			}
			if lag, ok := got.LagTime(); !ok || lag != c.wantLag {
				t.Fatalf("lag time %s (%v), want %s", lag, ok, c.wantLag)
			}
		})
	}
}

// TestMirrorLiveLag: on the standby's leader, the status and the lag
// gauges count the source revisions its follower has received and not
// yet applied (a live head above the replicated one), in revisions and
// in seconds from the live head's time.
func TestMirrorLiveLag(t *testing.T) {
	src := startStandalone(t, "s1", nil)
	standby := startStandalone(t, "m1", nil)
	putN(t, src, "a", 20)
	mirrorControl(t, standby, "start", `{"sources":["`+src.HTTPURL()+`"]}`)
	waitFor(t, "caught up", 20*time.Second, caughtUp(src, standby))
	waitFor(t, "the replicated source head at the head", 10*time.Second, func() error {
		if st := mirrorStatusOf(t, standby); st.SourceHead != st.SourceRevision || st.SourceRevision != src.fsm.Revision() || st.LagRevisions != 0 {
			return fmt.Errorf("status %+v", st)
		}
		return nil
	})
	ms, err := standby.fsm.Mirror()
	if err != nil {
		t.Fatal(err)
	}
	// What the follower would have heard of records still on their way
	// through the pipeline and raft: 7 revisions, 3 s after the last one
	// applied.
	standby.mirrorRun.heard(ms.SourceClusterID, ms.SourceRevision+7, ms.LastApplied.Add(3*time.Second))
	st := mirrorStatusOf(t, standby)
	if st.SourceHead != ms.SourceRevision+7 || st.LagRevisions != 7 || st.LagSeconds != 3 || st.SourceHeadFresh {
		t.Fatalf("status with a live head 7 above: %+v", st)
	}
	_, metrics := do(t, "GET", standby.HTTPURL()+"/metrics", "")
	for _, want := range []string{"\ncairn_mirror_lag_revisions 7\n", "\ncairn_mirror_lag_seconds 3\n"} {
		if !strings.Contains(metrics, want) {
			t.Fatalf("metrics lack %q", strings.TrimSpace(want))
		}
	}
	// The fresh status asks the source, whose committed head is what the
	// standby applied: no lag.
	code, body := do(t, "GET", standby.HTTPURL()+"/v1/mirror/status?source_head=fresh", "")
	if code != 200 || !strings.Contains(body, `"source_head_fresh":true`) || !strings.Contains(body, `"lag_revisions":0`) ||
		!strings.Contains(body, fmt.Sprintf(`"source_head":%d,`, ms.SourceRevision)) {
		t.Fatalf("fresh status: %d %s", code, body)
	}
	// No source answering: unavailable, naming what was tried, never lag 0.
	closeNode(t, src)
	code, body = do(t, "GET", standby.HTTPURL()+"/v1/mirror/status?source_head=fresh", "")
	if code != 503 || !strings.Contains(body, `"unavailable"`) || !strings.Contains(body, src.HTTPURL()) {
		t.Fatalf("fresh status without a source: %d %s", code, body)
	}
}

// TestMirrorDivergedExportCompactedSource: the diverged export's search
// for the last shared revision starts at the higher of the two clusters'
// compaction points, so a source that compacted its older history still
// gets a correct export; when it compacted past the last shared
// revision, the message says no shared revision is left.
func TestMirrorDivergedExportCompactedSource(t *testing.T) {
	for _, c := range []struct {
		name    string
		compact uint64 // after the promotion point
		want    string
	}{
		{"compacted up to the shared revision", 1, "last revision in common is %d"},
		{"compacted past the shared revision", 5, "no shared revision is left"},
	} {
		t.Run(c.name, func(t *testing.T) {
			a := startStandalone(t, "a1", nil)
			b := startStandalone(t, "b1", nil)
			putN(t, a, "a", 10)
			point := followThenPromote(t, a, b)
			putN(t, b, "b", 10)
			putN(t, a, "unfenced", 5) // the old primary was not fenced
			// The new primary compacts its history, before the old
			// primary asks to follow it.
			resp, err := b.Compact(context.Background(), point+c.compact)
			if err != nil || resp.CompactRevision != point+c.compact {
				t.Fatalf("compact b to %d: %+v %v", point+c.compact, resp, err)
			}
			mirrorControl(t, a, "start", `{"sources":["`+b.HTTPURL()+`"]}`)
			var st api.MirrorStatus
			waitFor(t, "diverged", 20*time.Second, func() error {
				st = mirrorStatusOf(t, a)
				if st.State != api.MirrorDiverged {
					return fmt.Errorf("state %s (%s)", st.State, st.LastError)
				}
				return nil
			})
			want := c.want
			if strings.Contains(want, "%d") {
				want = fmt.Sprintf(want, point)
			}
			if !strings.Contains(st.Message, want) || strings.Contains(st.Message, "compacted:") {
				t.Fatalf("diverged message %q, want %q", st.Message, want)
			}
			if c.compact == 1 && st.DivergedFile == "" {
				t.Fatalf("no export: %+v", st)
			}
			if h := a.fsm.Revision(); h != point+5 {
				t.Fatalf("old primary at %d, want %d: nothing overwritten", h, point+5)
			}
		})
	}
}
