package chaos

import (
	"errors"
	"fmt"
	"github.com/cairn-db/cairn/internal/cluster"
	"io/fs"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Storage failpoints (docs/testing.md, "Storage failpoints"): a node runs
// a binary built with -tags failpoints and CAIRN_FAILPOINT set, so it
// crashes (exit status 86, no cleanup) at one point of the FSM's storage
// path. It is restarted on its data without the failpoint, and the
// cluster must pass the chaos suite's checks.

// failpointExit is fsm.FailpointExitCode.
const failpointExit = 86

// startWithFailpoint starts slot i with CAIRN_FAILPOINT=spec; its exit is
// expected (the harness does not count it as an unexpected death).
func (c *chaosCluster) startWithFailpoint(i int, spec string) {
	c.t.Helper()
	m := c.Member(i)
	m.Update(func(s *cluster.Spec) { s.Env = []string{"CAIRN_FAILPOINT=" + spec} })
	c.start(i)
	m.Update(func(s *cluster.Spec) { s.Env = nil })
	m.(*cluster.ProcMember).ExpectExit()
}

// waitFailpoint waits until slot i exits at failpoint name with status 86
// and returns the last leader it saw before the exit (-1: none seen).
func (c *chaosCluster) waitFailpoint(i int, name string, within time.Duration) (leader int) {
	c.t.Helper()
	m := c.Member(i)
	exited := m.(*cluster.ProcMember).Exited()
	leader = -1
	deadline := time.After(within)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
wait:
	for {
		select {
		case <-exited:
			break wait
		case <-deadline:
			c.t.Fatalf("%s: failpoint %s not hit within %v", m.ID(), name, within)
		case <-tick.C:
			if l, _ := c.LeaderNow(); l >= 0 {
				leader = l
			}
		}
	}
	err := m.LastExit()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != failpointExit {
		c.t.Fatalf("%s: exited with %v, want status %d (failpoint %s)\n%s", m.ID(), err, failpointExit, name, cluster.Tail(m.Logs(), 4000))
	}
	if !strings.Contains(m.Logs(), "cairn: failpoint "+name) {
		c.t.Fatalf("%s: exit status %d without the failpoint message for %s", m.ID(), failpointExit, name)
	}
	return leader
}

// leftovers lists restore temporaries and unfinished raft snapshots in
// slot i's data directory.
func (c *chaosCluster) leftovers(i int) []string {
	var out []string
	_ = filepath.WalkDir(c.Config(i).DataDir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && (strings.HasPrefix(d.Name(), ".restore-") || strings.HasSuffix(d.Name(), ".tmp")) {
			out = append(out, p)
		}
		return nil
	})
	return out
}

type fpScenario struct {
	name  string   // test name
	point string   // failpoint
	opts  nodeOpts // for every node
	// Either the victim slot is started with CAIRN_FAILPOINT=spec and
	// the workload drives it there, or crash brings a node to it and
	// returns its slot.
	slot   int
	spec   string
	leader bool // the victim must lead when it crashes
	crash  func(c *chaosCluster, t *testing.T) (slot int)
}

func runFailpoint(t *testing.T, sc fpScenario) {
	if testing.Short() {
		t.Skip("chaos: runs processes")
	}
	chaosModeOn(t, modeProc)
	began := time.Now()
	c := newChaosCluster(t, modeProc, sc.opts, cluster.Binary(t, "failpoints"))
	victim, spec := -1, sc.spec
	if spec != "" {
		victim = sc.slot
	}
	// As startN, but the victim starts with its failpoint armed (none of
	// them is reached before the workload runs).
	startSlot := func(i int) {
		if i == victim {
			c.startWithFailpoint(i, spec)
		} else {
			c.start(i)
		}
	}
	startSlot(0)
	c.waitReady(0)
	c.leader()
	startSlot(1)
	startSlot(2)
	c.waitReady(1)
	c.waitReady(2)
	if l := c.leader(); victim >= 0 {
		t.Logf("victim %s armed with %s; leader %s", c.id(victim), spec, c.id(l))
	}
	c.enableAuth()
	seed := chaosSeed(t)
	w, err := startWorkload(c.workloadConfig(), seed)
	if err != nil {
		t.Fatal(err)
	}
	mon := c.monitorLeaders()
	func() {
		defer func() {
			if t.Failed() || recover() != nil {
				w.finish()
				mon.finish()
			}
		}()
		if sc.crash != nil {
			victim = sc.crash(c, t)
		}
		l := c.waitFailpoint(victim, sc.point, 30*time.Second)
		t.Logf("%5.2fs %s crashed at failpoint %s; leftovers %v", time.Since(began).Seconds(), c.id(victim), sc.point, c.leftovers(victim))
		if sc.leader && l != victim {
			t.Fatalf("%s crashed, but the last leader seen was slot %d", c.id(victim), l)
		}
		logged := len(c.Member(victim).Logs())
		defer func() { // how the victim recovered (info level for the restore cases)
			for _, line := range strings.Split(c.Member(victim).Logs()[logged:], "\n") {
				if strings.Contains(line, "starting raft") || strings.Contains(line, "restored snapshot") || strings.Contains(line, "Installed remote snapshot") {
					t.Logf("%s after restart: %s", c.id(victim), line)
				}
			}
		}()
		c.start(victim) // on the same data, without the failpoint
		c.waitReady(victim)
		c.leader()
	}()
	if t.Failed() {
		return
	}
	restarted := w.now()
	pollUntil(t, "a write acknowledged after the restart", 20*time.Second, func() error {
		w.mu.Lock()
		defer w.mu.Unlock()
		for _, o := range w.ops[max(0, len(w.ops)-64):] {
			if o.call > restarted && o.out.OK {
				return nil
			}
		}
		return fmt.Errorf("none yet")
	})
	ops := w.finish()
	changes := mon.finish()
	st := c.checkAll(t, sc.name, ops)
	if l := c.leftovers(victim); len(l) > 0 {
		t.Logf("%s: leftovers after recovery (not removed on restart): %v", c.id(victim), l)
	}
	result := "ok"
	if t.Failed() {
		result = "FAIL"
	}
	line := fmt.Sprintf("failpoint %-28s ops %5d  acknowledged %5d (writes %d)  unknown %3d (committed %d)  leader changes %2d  %5.1fs  %s",
		sc.name, st.ops, st.acked+st.conflicts+st.reads, st.acked, st.unknown, st.unknownCommitted, changes, time.Since(began).Seconds(), result)
	t.Log(line)
	fmt.Println(line)
}

// restoreCrash kills a follower, writes past the snapshot threshold and
// the trailing logs, and restarts it with the failpoint, so it crashes
// while installing the leader's snapshot.
func restoreCrash(point string) func(c *chaosCluster, t *testing.T) int {
	return func(c *chaosCluster, t *testing.T) int {
		l := c.leader()
		f := 1
		if l == 1 {
			f = 2
		}
		st, err := c.Status(l)
		if err != nil {
			t.Fatal(err)
		}
		c.kill(f)
		pollUntil(t, "writes past the snapshot threshold", 30*time.Second, func() error {
			l, _ := c.LeaderNow()
			if l < 0 {
				return fmt.Errorf("no leader")
			}
			now, err := c.Status(l)
			if err != nil {
				return err
			}
			if now.Revision < st.Revision+200 {
				return fmt.Errorf("revision %d, want %d", now.Revision, st.Revision+200)
			}
			return nil
		})
		// Its own snapshots off, so the failpoint meets the leader's.
		c.override(f, nodeOpts{logLevel: "info", snapshotThreshold: 1000000, snapshotInterval: time.Hour})
		c.startWithFailpoint(f, point)
		return f
	}
}

var snapOpts = nodeOpts{snapshotThreshold: 64, trailingLogs: 16, snapshotInterval: 100 * time.Millisecond}

// The apply points crash slot 1 (a follower) or slot 0 (the bootstrap
// node, the leader unless an election moved it) on the 60th batch.
var fpScenarios = []fpScenario{
	{name: "apply-before-commit/follower", point: "apply-before-commit", slot: 1, spec: "apply-before-commit:60"},
	{name: "apply-before-commit/leader", point: "apply-before-commit", slot: 0, spec: "apply-before-commit:60", leader: true},
	{name: "apply-after-commit/follower", point: "apply-after-commit", slot: 1, spec: "apply-after-commit:60"},
	{name: "apply-after-commit/leader", point: "apply-after-commit", slot: 0, spec: "apply-after-commit:60", leader: true},
	{name: "persist-mid", point: "persist-mid", opts: snapOpts, slot: 1, spec: "persist-mid"},
	{name: "restore-before-rename", point: "restore-before-rename", opts: snapOpts, crash: restoreCrash("restore-before-rename")},
	{name: "restore-after-rename", point: "restore-after-rename", opts: snapOpts, crash: restoreCrash("restore-after-rename")},
}

// TestChaosStorageFailpoints crashes a node at each storage failpoint and
// requires the cluster, with the node restarted on its data, to pass every
// chaos check.
func TestChaosStorageFailpoints(t *testing.T) {
	for _, sc := range fpScenarios {
		t.Run(sc.name, func(t *testing.T) { runFailpoint(t, sc) })
	}
}
