package node

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cairn-db/cairn/api"
	"github.com/cairn-db/cairn/fsm"
)

func TestAlarmsRaiseClearList(t *testing.T) {
	a := newAlarms("n1")
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	a.now = func() time.Time { return t0 }
	if !a.raise(api.AlarmStateMismatch, "one") || !a.raise(api.AlarmCorrupt, "bad") {
		t.Fatal("new alarms not reported new")
	}
	a.now = func() time.Time { return t0.Add(time.Hour) }
	if a.raise(api.AlarmCorrupt, "worse") {
		t.Fatal("raising a raised alarm reported new")
	}
	got := a.list()
	want := []api.Alarm{{Member: "n1", Type: api.AlarmCorrupt, Message: "worse", Since: t0},
		{Member: "n1", Type: api.AlarmStateMismatch, Message: "one", Since: t0}}
	if len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("alarms %+v, want %+v", got, want)
	}
	if !a.clear(api.AlarmCorrupt) || a.clear(api.AlarmCorrupt) || a.has(api.AlarmCorrupt) || !a.has(api.AlarmStateMismatch) {
		t.Fatal("clear")
	}
}

func startThree(t *testing.T) []*Node {
	t.Helper()
	c1 := testConfig(t, "n1")
	c1.Bootstrap = true
	n1 := startNode(t, c1)
	waitFor(t, "n1 ready", 10*time.Second, n1.Ready)
	nodes := []*Node{n1}
	for _, id := range []string{"n2", "n3"} {
		c := testConfig(t, id)
		c.Join = []string{n1.HTTPURL()}
		nodes = append(nodes, startNode(t, c))
	}
	for _, n := range nodes {
		waitFor(t, n.ID()+" ready", 15*time.Second, n.Ready)
	}
	return nodes
}

func leaderOf(t *testing.T, nodes []*Node) *Node {
	t.Helper()
	var l *Node
	waitFor(t, "a leader", 15*time.Second, func() error {
		for _, n := range nodes {
			if n.IsLeader() {
				l = n
				return nil
			}
		}
		return errors.New("no leader")
	})
	return l
}

// TestCorruptLeaderOutOfService: a leader whose FSM is marked corrupt
// raises the alarm, shows it in status and metrics, fails readiness,
// answers reads with corrupt (never a value), still forwards writes, and
// hands leadership over; the other members serve, and their scrub names
// it as not answering.
func TestCorruptLeaderOutOfService(t *testing.T) {
	nodes := startThree(t)
	bad := leaderOf(t, nodes)
	if code, body := do(t, "PUT", bad.HTTPURL()+"/v1/kv/k", "v1"); code != 200 {
		t.Fatalf("put: %d %s", code, body)
	}
	if err := bad.FSM().MarkCorrupt("test: marked by hand"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "leadership leaves the corrupt member", 15*time.Second, func() error {
		for _, n := range nodes {
			if n != bad && n.IsLeader() && !bad.IsLeader() {
				return nil
			}
		}
		return errors.New("the corrupt member still leads, or no other leader yet")
	})
	// Made leader again, it hands leadership over again.
	for _, n := range nodes {
		if n.IsLeader() {
			if _, err := n.TransferLeadership(context.Background(), bad.ID()); err != nil {
				t.Logf("transfer back to the corrupt member: %v", err) // it may already be handing it on
			}
			break
		}
	}
	waitFor(t, "leadership leaves the corrupt member again", 15*time.Second, func() error {
		for _, n := range nodes {
			if n != bad && n.IsLeader() && !bad.IsLeader() {
				return nil
			}
		}
		return errors.New("the corrupt member still leads, or no other leader yet")
	})
	st, err := bad.Status()
	if err != nil || !strings.Contains(st.Corrupt, "test: marked by hand") {
		t.Fatalf("status corrupt %q (%v)", st.Corrupt, err)
	}
	if len(st.Alarms) != 1 || st.Alarms[0].Type != api.AlarmCorrupt || st.Alarms[0].Member != bad.ID() {
		t.Fatalf("status alarms %+v", st.Alarms)
	}
	if err := bad.Ready(); !errors.Is(err, fsm.ErrCorrupt) {
		t.Fatalf("ready of a corrupt member: %v", err)
	}
	code, body := do(t, "GET", bad.HTTPURL()+"/readyz", "")
	if code != 503 || !strings.Contains(body, "corrupt") {
		t.Fatalf("readyz: %d %s", code, body)
	}
	for _, q := range []string{"", "?consistency=stale"} {
		code, body := do(t, "GET", bad.HTTPURL()+"/v1/kv/k"+q, "")
		if code != 503 || !strings.Contains(body, `"corrupt"`) || strings.Contains(body, "v1") {
			t.Fatalf("read%s on the corrupt member: %d %s", q, code, body)
		}
	}
	if code, body := do(t, "GET", bad.HTTPURL()+"/v1/watch?prefix=k", ""); code != 503 || !strings.Contains(body, `"corrupt"`) {
		t.Fatalf("watch on the corrupt member: %d %s", code, body)
	}
	_, metrics := do(t, "GET", bad.HTTPURL()+"/metrics", "")
	if !strings.Contains(metrics, "\ncairn_corrupt 1\n") {
		t.Fatal("cairn_corrupt is not 1")
	}
	// Writes through it are forwarded: the log is intact.
	waitFor(t, "put through the corrupt member", 15*time.Second, func() error {
		if code, body := do(t, "PUT", bad.HTTPURL()+"/v1/kv/k", "v2"); code != 200 {
			return errors.New(body)
		}
		return nil
	})
	for _, n := range nodes {
		if n == bad {
			continue
		}
		waitFor(t, n.ID()+" serves v2", 15*time.Second, func() error {
			if code, body := do(t, "GET", n.HTTPURL()+"/v1/kv/k", ""); code != 200 || body != "v2" {
				return errors.New(body)
			}
			return nil
		})
		_, metrics := do(t, "GET", n.HTTPURL()+"/metrics", "")
		if !strings.Contains(metrics, "\ncairn_corrupt 0\n") {
			t.Fatalf("%s: cairn_corrupt is not 0", n.ID())
		}
	}
	var good *Node
	for _, n := range nodes {
		if n != bad {
			good = n
			break
		}
	}
	ar, err := good.Alarms(context.Background())
	if err != nil || len(ar.Alarms) != 1 || ar.Alarms[0].Member != bad.ID() || ar.Alarms[0].Type != api.AlarmCorrupt || len(ar.Unreachable) != 0 {
		t.Fatalf("alarms from %s: %+v %v", good.ID(), ar, err)
	}
	sr, err := good.Scrub(context.Background())
	if err != nil || !sr.OK || len(sr.Agree) != 1 || len(sr.Unreachable) != 1 || sr.Unreachable[0] != bad.ID() || sr.StateHash == "" {
		t.Fatalf("scrub on %s: %+v %v", good.ID(), sr, err)
	}
	sr, err = bad.Scrub(context.Background())
	if err != nil || sr.OK || !strings.Contains(sr.Error, "corrupt") {
		t.Fatalf("scrub on the corrupt member: %+v %v", sr, err)
	}
	_, metrics = do(t, "GET", good.HTTPURL()+"/metrics", "")
	if !strings.Contains(metrics, "\ncairn_scrubs_total 1\n") || !strings.Contains(metrics, "\ncairn_scrub_failures_total 0\n") {
		t.Fatal("scrub metrics")
	}
}

// TestScrubAgrees: on a healthy cluster every member's scrub checks its
// data and finds the others agree, at the state hash the FSM computes.
func TestScrubAgrees(t *testing.T) {
	nodes := startThree(t)
	l := leaderOf(t, nodes)
	rev := mustWrite(t, l, fsm.Op{Kind: fsm.OpPut, Key: "a", Value: []byte("1")}, fsm.Op{Kind: fsm.OpPut, Key: "b", Value: []byte("2")})
	for _, n := range nodes {
		waitFor(t, n.ID()+" applied", 10*time.Second, func() error {
			if n.FSM().Revision() < rev {
				return errors.New("behind")
			}
			return nil
		})
	}
	for _, n := range nodes {
		sr, err := n.Scrub(context.Background())
		if err != nil || !sr.OK || len(sr.Agree) != 2 || len(sr.Disagree)+len(sr.Unreachable) != 0 {
			t.Fatalf("scrub on %s: %+v %v", n.ID(), sr, err)
		}
		d, err := n.FSM().StateHash(context.Background(), sr.Revision)
		if err != nil || d.Hash.String() != sr.StateHash || d.Keys != sr.Keys || sr.Keys != 2 || sr.Versions < 2 {
			t.Fatalf("%s scrub %+v, state hash %+v %v", n.ID(), sr, d, err)
		}
	}
	// With a member down, the other two are still a majority; the alarms
	// list names the member it could not ask.
	down := nodes[2]
	if err := down.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	sr, err := nodes[0].Scrub(context.Background())
	if err != nil || !sr.OK || len(sr.Agree) != 1 || len(sr.Unreachable) != 1 || sr.Unreachable[0] != down.ID() {
		t.Fatalf("scrub with %s down: %+v %v", down.ID(), sr, err)
	}
	ar, err := nodes[0].Alarms(context.Background())
	if err != nil || len(ar.Alarms) != 0 || len(ar.Unreachable) != 1 || ar.Unreachable[0] != down.ID() {
		t.Fatalf("alarms with %s down: %+v %v", down.ID(), ar, err)
	}
}

// TestRepairStoppedMember: Repair refuses a running member; on a stopped
// one it removes the member through the callback and moves its stores
// aside, keeping them; the member then starts only with --join.
func TestRepairStoppedMember(t *testing.T) {
	cfg := testConfig(t, "n1")
	cfg.Bootstrap = true
	n, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "ready", 10*time.Second, n.Ready)
	mustWrite(t, n, fsm.Op{Kind: fsm.OpPut, Key: "k", Value: []byte("v")})
	var removed []string
	remove := func(_ context.Context, id string) error { removed = append(removed, id); return nil }
	ctx := context.Background()
	if _, err := Repair(ctx, RepairOptions{DataDir: cfg.DataDir, ID: "n1", Remove: remove}); !errors.Is(err, ErrBadRequest) ||
		!strings.Contains(err.Error(), "stop the member") || len(removed) != 0 {
		t.Fatalf("repair of a running member: %v (removed %v)", err, removed)
	}
	if err := n.Close(ctx); err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 12, 6, 18, 0, 0, 0, time.UTC)
	res, err := Repair(ctx, RepairOptions{DataDir: cfg.DataDir, ID: "n1", Remove: remove, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	wantDir := filepath.Join(cfg.DataDir, "damaged-20261206T180000Z")
	if res.MovedTo != wantDir || len(removed) != 1 || removed[0] != "n1" {
		t.Fatalf("repair: %+v, removed %v", res, removed)
	}
	for _, name := range []string{fsmFile, raftFile, stableFile, snapDir} {
		if _, err := os.Stat(filepath.Join(wantDir, name)); err != nil {
			t.Fatalf("%s not kept: %v", name, err)
		}
		if _, err := os.Stat(filepath.Join(cfg.DataDir, name)); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("%s still in the data dir: %v", name, err)
		}
	}
	// The kept store is intact.
	f, err := fsm.Open(fsm.Config{Path: filepath.Join(wantDir, fsmFile), CompactChunk: 1000})
	if err != nil {
		t.Fatal(err)
	}
	if kv, _, err := f.Get("k", 0); err != nil || string(kv.Value) != "v" {
		t.Fatalf("kept store: %+v %v", kv, err)
	}
	if err := f.Close(ctx); err != nil {
		t.Fatal(err)
	}
	// Bootstrapping or starting without --join is refused.
	for _, c := range []Config{cfg, func() Config { c := cfg; c.Bootstrap = false; return c }()} {
		if n, err := New(c); !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), "--join") {
			if n != nil {
				_ = n.Close(ctx)
			}
			t.Fatalf("start of a repaired member with bootstrap=%v join=%v: %v", c.Bootstrap, c.Join, err)
		}
	}
	// Repair of a missing data dir fails; of bad options too.
	if _, err := Repair(ctx, RepairOptions{DataDir: filepath.Join(cfg.DataDir, "nope"), ID: "n1", Remove: remove}); err == nil {
		t.Fatal("repair of a missing dir")
	}
	if _, err := Repair(ctx, RepairOptions{DataDir: cfg.DataDir, Remove: remove}); !errors.Is(err, ErrBadRequest) {
		t.Fatalf("repair without an id: %v", err)
	}
	// A failed removal moves nothing.
	cfg2 := testConfig(t, "n2")
	if err := os.WriteFile(filepath.Join(cfg2.DataDir, fsmFile), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = Repair(ctx, RepairOptions{DataDir: cfg2.DataDir, ID: "n2", Remove: func(context.Context, string) error { return ErrNoLeader }})
	if !errors.Is(err, ErrNoLeader) {
		t.Fatalf("repair with a failed removal: %v", err)
	}
	if _, err := os.Stat(filepath.Join(cfg2.DataDir, fsmFile)); err != nil {
		t.Fatalf("moved after a failed removal: %v", err)
	}
}

// TestCorruptSurvivesRestart: a member marked corrupt starts corrupt: the
// alarm, status, readiness and reads say so from the start.
func TestCorruptSurvivesRestart(t *testing.T) {
	cfg := testConfig(t, "n1")
	cfg.Bootstrap = true
	n, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "ready", 10*time.Second, n.Ready)
	mustWrite(t, n, fsm.Op{Kind: fsm.OpPut, Key: "k", Value: []byte("v")})
	if err := n.FSM().MarkCorrupt("test: before the restart"); err != nil {
		t.Fatal(err)
	}
	if err := n.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	n = startNode(t, cfg)
	st, err := n.Status()
	if err != nil || !strings.Contains(st.Corrupt, "test: before the restart") || len(st.Alarms) != 1 || st.Alarms[0].Type != api.AlarmCorrupt {
		t.Fatalf("status after restart: %+v %v", st, err)
	}
	if err := n.Ready(); !errors.Is(err, fsm.ErrCorrupt) {
		t.Fatalf("ready: %v", err)
	}
	code, body := do(t, "GET", n.HTTPURL()+"/v1/kv/k?consistency=stale", "")
	if code != 503 || !strings.Contains(body, `"corrupt"`) {
		t.Fatalf("read: %d %s", code, body)
	}
}

// TestPeriodicScrub: a member scrubs every ScrubInterval, counted in its
// metrics.
func TestPeriodicScrub(t *testing.T) {
	n := startSingle(t, func(c *Config) { c.ScrubInterval = 20 * time.Millisecond })
	mustWrite(t, n, fsm.Op{Kind: fsm.OpPut, Key: "k", Value: []byte("v")})
	waitFor(t, "two periodic scrubs", 10*time.Second, func() error {
		if runs, failed, last := n.scrubs.get(); runs < 2 || failed != 0 || last.IsZero() {
			return fmt.Errorf("%d scrubs, %d failed", runs, failed)
		}
		return nil
	})
	_, metrics := do(t, "GET", n.HTTPURL()+"/metrics", "")
	if !strings.Contains(metrics, "\ncairn_scrub_failures_total 0\n") || strings.Contains(metrics, "\ncairn_last_scrub_timestamp_seconds 0\n") {
		t.Fatal("scrub metrics")
	}
}
