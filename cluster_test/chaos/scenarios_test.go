package chaos

import (
	"context"
	"fmt"
	"hash/fnv"
	mrand "math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cairn-db/cairn/api"
	"github.com/cairn-db/cairn/client"
	"github.com/cairn-db/cairn/internal/testnet"
)

// The chaos suite (docs/testing.md): named fault scenarios against a
// cluster whose raft links run through proxies, under a recorded
// concurrent workload, each followed by the full set of checks. Every
// scenario runs in two modes: against `cairn node run` processes
// (TestChaos<Name>) and against in-process nodes (TestChaosInProc/<name>);
// CAIRN_CHAOS_MODE (proc, inproc or both, the default) selects them.
//
// go test ./... runs every scenario for one brief round per mode. With
// CAIRN_CHAOS_DURATION (make chaos, make chaos-inproc) each scenario
// repeats rounds, on fresh clusters, until its share of the duration is
// used; the fault schedules come from the seed, printed at the start and
// reusable with CAIRN_CHAOS_SEED.

var (
	seedOnce sync.Once
	baseSeed uint64
)

// chaosSeed returns the run's base seed.
func chaosSeed(t *testing.T) uint64 {
	seedOnce.Do(func() {
		if s := os.Getenv("CAIRN_CHAOS_SEED"); s != "" {
			v, err := strconv.ParseUint(s, 10, 64)
			if err != nil {
				panic("CAIRN_CHAOS_SEED: " + err.Error())
			}
			baseSeed = v
		} else {
			baseSeed = uint64(time.Now().UnixNano()) % 1_000_000_000
		}
		fmt.Printf("chaos: seed %d (reproduce with CAIRN_CHAOS_SEED=%d)\n", baseSeed, baseSeed)
	})
	t.Logf("chaos seed %d (reproduce with CAIRN_CHAOS_SEED=%d)", baseSeed, baseSeed)
	return baseSeed
}

// chaosDuration is CAIRN_CHAOS_DURATION (0: brief tier).
func chaosDuration(t *testing.T) time.Duration {
	s := os.Getenv("CAIRN_CHAOS_DURATION")
	if s == "" {
		return 0
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		t.Fatalf("CAIRN_CHAOS_DURATION: %v", err)
	}
	return d
}

// chaosRun is one round of a scenario: a cluster, its workload and the
// fault schedule's state.
type chaosRun struct {
	t        *testing.T
	c        *chaosCluster
	rng      *mrand.Rand
	deadline time.Time
	began    time.Time
	faults   int
}

func (r *chaosRun) more() bool { return time.Now().Before(r.deadline) }

// hold keeps a fault in place (the one kind of sleep the suite allows).
func (r *chaosRun) hold(minMs, maxMs int) {
	time.Sleep(time.Duration(minMs+r.rng.IntN(maxMs-minMs+1)) * time.Millisecond)
}

func (r *chaosRun) fault(format string, args ...any) {
	r.faults++
	r.t.Logf("%6.2fs fault %d: %s", time.Since(r.began).Seconds(), r.faults, fmt.Sprintf(format, args...))
}

// follower returns a running, unpaused member that is not the leader.
func (r *chaosRun) follower(leader int) int {
	var fs []int
	for _, i := range r.c.members() {
		if i != leader && !r.c.Member(i).Paused() {
			fs = append(fs, i)
		}
	}
	return fs[r.rng.IntN(len(fs))]
}

// restoreAll heals every link, resumes paused processes and restarts
// killed members, then waits for a leader.
func (r *chaosRun) restoreAll() {
	r.c.Heal()
	for _, i := range r.c.Running() {
		r.c.resume(i)
	}
	for i := 0; i < r.c.N(); i++ {
		if m := r.c.Member(i); m.Starts() > 0 && !r.c.removed[i] && !m.Running() {
			r.c.start(i)
		}
	}
	for _, i := range r.c.members() {
		r.c.waitReady(i)
	}
	r.c.leader()
}

// scenario is a named fault schedule.
type scenario struct {
	name  string
	opts  nodeOpts // for every node
	fault func(r *chaosRun)
	// share is the scenario's part of a mode's CAIRN_CHAOS_DURATION
	// (nil: namedShare).
	share func(time.Duration) time.Duration
}

// Brief-tier timing (go test ./...): the faults of one round run this
// long, per mode.
var briefFaults = map[string]time.Duration{
	modeProc:   5 * time.Second,
	modeInProc: 3 * time.Second,
}

// runScenario runs sc in mode for one round (brief tier) or rounds until
// its share of CAIRN_CHAOS_DURATION is used (the duration is split evenly
// between the modes that run).
func runScenario(t *testing.T, sc scenario, mode string) {
	if testing.Short() {
		t.Skip("chaos: skipped with -short")
	}
	chaosModeOn(t, mode)
	seed := chaosSeed(t)
	h := fnv.New64a()
	h.Write([]byte(sc.name))
	seed ^= h.Sum64()
	faultTime, budget := briefFaults[mode], time.Duration(0)
	if d := chaosDuration(t); d > 0 {
		share := sc.share
		if share == nil {
			share = namedShare
		}
		budget = share(d / time.Duration(len(chaosModes(t))))
		faultTime = min(budget, 30*time.Second)
	}
	start := time.Now()
	for round := 1; ; round++ {
		ok := t.Run(fmt.Sprintf("round%d", round), func(t *testing.T) {
			runRound(t, sc, mode, seed+uint64(round), faultTime)
		})
		if !ok || time.Since(start)+faultTime > budget {
			return
		}
	}
}

func runRound(t *testing.T, sc scenario, mode string, seed uint64, faultTime time.Duration) {
	began := time.Now()
	c := newCluster(t, mode, sc.opts)
	c.startN(3)
	w, err := startWorkload(c.workloadConfig(), seed)
	if err != nil {
		t.Fatal(err)
	}
	mon := c.monitorLeaders()
	r := &chaosRun{t: t, c: c, rng: mrand.New(mrand.NewPCG(seed, 0xc4a05)), deadline: time.Now().Add(faultTime), began: time.Now()}
	func() {
		defer func() {
			if t.Failed() || recover() != nil {
				w.finish()
				mon.finish()
			}
		}()
		sc.fault(r)
		r.restoreAll()
	}()
	if t.Failed() {
		return
	}
	// Let the healed cluster serve the workload for a moment, so the
	// history ends with the cluster working (polled, not slept: until a
	// write is acknowledged after healing).
	healed := w.now()
	pollUntil(t, "a write acknowledged after healing", 20*time.Second, func() error {
		w.mu.Lock()
		defer w.mu.Unlock()
		for _, o := range w.ops[max(0, len(w.ops)-64):] {
			if o.call > healed && o.out.OK {
				return nil
			}
		}
		return fmt.Errorf("none yet")
	})
	ops := w.finish()
	changes := mon.finish()
	st := c.checkAll(t, sc.name, ops)
	result := "ok"
	if t.Failed() {
		result = "FAIL"
	}
	line := fmt.Sprintf("chaos %-6s %-20s ops %5d  acknowledged %5d (writes %d, conflicts %d, reads %d; %d writes via followers)  unknown %3d (committed %d)  increments %d  faults %2d  leader changes %2d  %5.1fs  %s",
		mode, sc.name, st.ops, st.acked+st.conflicts+st.reads, st.acked, st.conflicts, st.reads, w.viaFollowers(), st.unknown, st.unknownCommitted,
		st.incrs, r.faults, changes, time.Since(began).Seconds(), result)
	t.Log(line)
	fmt.Println(line)
}

// The named scenarios.

var (
	scKillLeader = scenario{name: "kill-leader", fault: func(r *chaosRun) {
		for r.more() {
			l := r.c.leader()
			r.c.kill(l)
			r.fault("kill -9 leader %s", r.c.id(l))
			r.hold(200, 800)
			r.c.start(l)
			r.c.waitReady(l)
		}
	}}

	scPauseLeader = scenario{name: "pause-leader", fault: func(r *chaosRun) {
		for r.more() {
			l := r.c.leader()
			r.c.pause(l)
			r.fault("SIGSTOP leader %s", r.c.id(l))
			r.hold(700, 1500) // well past the 300ms election timeout
			r.c.resume(l)     // it wakes believing it leads; clients still talk to it
			r.hold(0, 300)
		}
	}}

	scPartitionLeader = scenario{name: "partition-leader", fault: func(r *chaosRun) {
		for r.more() {
			l := r.c.leader()
			mode := []testnet.Mode{testnet.Blackhole, testnet.Drop}[r.rng.IntN(2)]
			r.c.Partition([]int{l}, r.c.others(l), mode)
			r.fault("partition leader %s from the majority (%s, both directions)", r.c.id(l), mode)
			r.hold(800, 1500)
			r.c.Heal()
			r.c.leader()
		}
	}}

	scPartitionFollower = scenario{name: "partition-follower", fault: func(r *chaosRun) {
		for r.more() {
			f := r.follower(r.c.leader())
			r.c.Partition([]int{f}, r.c.others(f), testnet.Blackhole)
			r.fault("partition follower %s", r.c.id(f))
			r.hold(500, 1500)
			r.c.Heal()
		}
	}}

	scFlapping = scenario{name: "flapping-partition", fault: func(r *chaosRun) {
		for r.more() {
			i := r.c.members()[r.rng.IntN(len(r.c.members()))]
			mode := []testnet.Mode{testnet.Blackhole, testnet.Drop}[r.rng.IntN(2)]
			r.c.Partition([]int{i}, r.c.others(i), mode)
			r.fault("flap %s (%s)", r.c.id(i), mode)
			r.hold(50, 400)
			r.c.Heal()
			// Sometimes a slow link instead of a healthy one.
			if r.rng.IntN(3) == 0 {
				a, b := r.c.members()[r.rng.IntN(3)], r.c.members()[r.rng.IntN(3)]
				if a != b {
					r.c.Link(a, b).Set(testnet.Pass, time.Duration(2+r.rng.IntN(20))*time.Millisecond)
					r.fault("delay link %s->%s", r.c.id(a), r.c.id(b))
				}
			}
			r.hold(50, 300)
		}
	}}

	scSnapshotCatchup = snapshotCatchup("snapshot-catchup", nodeOpts{snapshotThreshold: 1000000, snapshotInterval: time.Hour})

	// The same, but the restarted follower keeps snapshotting itself
	// while it installs the leader's snapshot: this deadlocks it (see
	// TestChaosSnapshotCatchupWhileSnapshotting).
	scSnapshotCatchupSnapshotting = snapshotCatchup("snapshot-catchup-snapshotting", nodeOpts{})

	scKillAll = scenario{name: "kill-all", fault: func(r *chaosRun) {
		for round := 0; round == 0 || r.more(); round++ {
			r.hold(300, 800) // let writes flow
			var wg sync.WaitGroup
			for _, i := range r.c.members() {
				wg.Add(1)
				go func() {
					defer wg.Done()
					r.c.kill(i)
				}()
			}
			wg.Wait()
			r.fault("kill -9 every node")
			for i := 0; i < r.c.N(); i++ {
				if r.c.Member(i).Starts() > 0 && !r.c.removed[i] {
					r.c.start(i)
				}
			}
			r.c.leader()
		}
	}}

	// Membership under load: members are added (a slot that never ran, or
	// a removed one with its data wiped, joining afresh) and removed (the
	// leader half the time, which transfers leadership first), keeping
	// three or four voters.
	scMembership = scenario{name: "membership", fault: func(r *chaosRun) {
		admin, err := client.New(r.c.tlsConfig(r.c.URLs(), 5*time.Second, 200*time.Millisecond))
		if err != nil {
			r.t.Fatal(err)
		}
		defer admin.Close()
		add := func() {
			i := -1
			for j := 0; j < r.c.N(); j++ {
				if m := r.c.Member(j); !m.Running() && (m.Starts() == 0 || r.c.removed[j]) {
					i = j
					break
				}
			}
			if r.c.removed[i] { // rejoin as a new member: fresh data, same id
				if err := r.c.rejoin(i); err != nil {
					r.t.Fatal(err)
				}
			}
			r.c.start(i)
			r.c.waitReady(i)
			r.fault("add %s", r.c.id(i))
			waitVoters(r, admin)
		}
		remove := func(i int) {
			id := r.c.id(i)
			// A removal is not retried by the client when its outcome is
			// ambiguous (a timeout while leadership moves), as an operator
			// would retry it: ask again until the member is gone.
			pollUntil(r.t, "remove "+id, 30*time.Second, func() error {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				ms, err := admin.Members(ctx)
				if err != nil {
					return err
				}
				if !slices.ContainsFunc(ms.Members, func(m api.Member) bool { return m.ID == id }) {
					return nil
				}
				if _, err := admin.RemoveMember(ctx, id); err != nil {
					return fmt.Errorf("remove %s: %w", id, err)
				}
				return nil
			})
			r.c.removed[i] = true
			r.fault("remove %s", r.c.id(i))
			r.c.stop(i)
			waitVoters(r, admin)
		}
		for round := 0; round == 0 || r.more(); round++ {
			add()
			l := r.c.leader()
			if r.rng.IntN(2) == 0 {
				remove(l)
			} else {
				remove(r.follower(l))
			}
			r.hold(100, 500)
		}
	}}

	scRandom = scenario{name: "random", share: randomShare, fault: func(r *chaosRun) {
		for r.more() {
			l := r.c.leader()
			switch r.rng.IntN(6) {
			case 0:
				r.c.kill(l)
				r.fault("kill -9 leader %s", r.c.id(l))
				r.hold(100, 800)
				r.c.start(l)
				r.c.waitReady(l)
			case 1:
				f := r.follower(l)
				r.c.kill(f)
				r.fault("kill -9 follower %s", r.c.id(f))
				r.hold(100, 1000)
				r.c.start(f)
				r.c.waitReady(f)
			case 2:
				r.c.pause(l)
				r.fault("SIGSTOP leader %s", r.c.id(l))
				r.hold(400, 1200)
				r.c.resume(l)
			case 3:
				r.c.Partition([]int{l}, r.c.others(l), testnet.Blackhole)
				r.fault("partition leader %s", r.c.id(l))
				r.hold(400, 1200)
				r.c.Heal()
			case 4:
				f := r.follower(l)
				r.c.Partition([]int{f}, r.c.others(f), testnet.Drop)
				r.fault("partition follower %s", r.c.id(f))
				r.hold(200, 1000)
				r.c.Heal()
			case 5:
				r.c.pause(l)
				f := r.follower(l)
				r.c.Partition([]int{f}, r.c.others(f), testnet.Blackhole)
				r.fault("SIGSTOP leader %s and partition follower %s (no majority)", r.c.id(l), r.c.id(f))
				r.hold(300, 900)
				r.c.Heal()
				r.c.resume(l)
			}
			r.hold(100, 400)
		}
	}}
)

// snapshotCatchup kills a follower, writes past the snapshot threshold
// and the trailing logs while it is down, restarts it (with restart)
// and requires it to catch up by installing the leader's snapshot.
func snapshotCatchup(name string, restart nodeOpts) scenario {
	return scenario{name: name,
		opts: snapOpts,
		fault: func(r *chaosRun) {
			for round := 0; round == 0 || r.more(); round++ {
				l := r.c.leader()
				f := r.follower(l)
				st, err := r.c.Status(l)
				if err != nil {
					r.t.Fatal(err)
				}
				r.c.kill(f)
				r.fault("kill -9 follower %s at revision %d", r.c.id(f), st.Revision)
				pollUntil(r.t, "writes past the snapshot threshold", 60*time.Second, func() error {
					l, _ := r.c.LeaderNow()
					if l < 0 {
						return fmt.Errorf("no leader")
					}
					now, err := r.c.Status(l)
					if err != nil {
						return err
					}
					if now.Revision < st.Revision+200 {
						return fmt.Errorf("revision %d, want %d", now.Revision, st.Revision+200)
					}
					return nil
				})
				n := r.c.Member(f)
				before := strings.Count(n.Logs(), "Installed remote snapshot")
				r.c.override(f, restart.with(nodeOpts{logLevel: "info"}))
				r.c.start(f)
				r.c.waitReady(f)
				pollUntil(r.t, n.ID()+" to install a snapshot", 30*time.Second, func() error {
					if strings.Count(n.Logs(), "Installed remote snapshot") > before {
						return nil
					}
					return fmt.Errorf("no snapshot installed yet")
				})
				r.t.Logf("%s caught up by installing a snapshot", n.ID())
			}
		}}
}

// waitVoters waits until the cluster's voters are exactly the running
// members that were not removed.
func waitVoters(r *chaosRun, admin *client.Client) {
	want := map[string]bool{}
	for _, i := range r.c.members() {
		want[r.c.id(i)] = true
	}
	pollUntil(r.t, "membership to settle", 30*time.Second, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		ms, err := admin.Members(ctx)
		if err != nil {
			return err
		}
		got := 0
		for _, m := range ms.Members {
			if m.Role != api.RoleVoter || !want[m.ID] {
				return fmt.Errorf("members %+v, want voters %v", ms.Members, want)
			}
			got++
		}
		if got != len(want) {
			return fmt.Errorf("members %+v, want voters %v", ms.Members, want)
		}
		return nil
	})
}

// Each scenario's share of a mode's CAIRN_CHAOS_DURATION: the random
// schedule gets a third, the nine named ones split the rest.
func namedShare(d time.Duration) time.Duration  { return d * 2 / 3 / 9 }
func randomShare(d time.Duration) time.Duration { return d / 3 }

// The scenarios against processes, one test each.

func TestChaosKillLeader(t *testing.T)        { runScenario(t, scKillLeader, modeProc) }
func TestChaosPauseLeader(t *testing.T)       { runScenario(t, scPauseLeader, modeProc) }
func TestChaosPartitionLeader(t *testing.T)   { runScenario(t, scPartitionLeader, modeProc) }
func TestChaosPartitionFollower(t *testing.T) { runScenario(t, scPartitionFollower, modeProc) }
func TestChaosFlappingPartition(t *testing.T) { runScenario(t, scFlapping, modeProc) }
func TestChaosSnapshotCatchup(t *testing.T)   { runScenario(t, scSnapshotCatchup, modeProc) }

// TestChaosSnapshotCatchupWhileSnapshotting is a regression test. A
// follower that took its own snapshot while installing the leader's
// deadlocked: raft's snapshot goroutine held the FSM snapshot's bbolt read
// transaction while it waited for raft's main loop, the main loop waited
// in installSnapshot for the FSM's Restore, and Restore waited in db.Close
// for that read transaction. Found by this suite (seed 542430352, -race);
// fixed by Restore aborting open snapshots (fsm.ErrSnapshotAborted).
func TestChaosSnapshotCatchupWhileSnapshotting(t *testing.T) {
	runScenario(t, scSnapshotCatchupSnapshotting, modeProc)
}

func TestChaosKillAll(t *testing.T)    { runScenario(t, scKillAll, modeProc) }
func TestChaosMembership(t *testing.T) { runScenario(t, scMembership, modeProc) }
func TestChaosRandom(t *testing.T)     { runScenario(t, scRandom, modeProc) }

// allScenarios is every named scenario, in the order the process tests
// run them.
var allScenarios = []scenario{scKillLeader, scPauseLeader, scPartitionLeader, scPartitionFollower, scFlapping,
	scSnapshotCatchup, scSnapshotCatchupSnapshotting, scKillAll, scMembership, scRandom}

// TestChaosInProc runs every scenario against in-process nodes
// (TestChaosInProc/<name>/round<n>); see inprocRunner for what each fault
// means there.
func TestChaosInProc(t *testing.T) {
	for _, sc := range allScenarios {
		t.Run(sc.name, func(t *testing.T) { runScenario(t, sc, modeInProc) })
	}
}

// Which modes the chaos scenarios run in: CAIRN_CHAOS_MODE is proc, inproc
// or both (the default).
const (
	modeProc   = "proc"
	modeInProc = "inproc"
)

func chaosModes(t *testing.T) []string {
	switch m := strings.TrimSpace(os.Getenv("CAIRN_CHAOS_MODE")); m {
	case "", "both":
		return []string{modeProc, modeInProc}
	case modeProc, modeInProc:
		return []string{m}
	default:
		t.Fatalf("CAIRN_CHAOS_MODE=%q: want proc, inproc or both", m)
		return nil
	}
}

// chaosModeOn skips t unless CAIRN_CHAOS_MODE selects mode.
func chaosModeOn(t *testing.T, mode string) {
	t.Helper()
	for _, m := range chaosModes(t) {
		if m == mode {
			return
		}
	}
	t.Skipf("chaos: CAIRN_CHAOS_MODE=%s does not select %s", os.Getenv("CAIRN_CHAOS_MODE"), mode)
}
