package cluster_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"sync"
	"testing"
	"time"
	"unsafe"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	bolt "go.etcd.io/bbolt"

	"github.com/cairn-db/cairn/node"
)

// The in-process runner: every member is a node.Node in the test process,
// on its own loopback addresses and data directory, with the same raft
// timings, the same per-link raft proxies (node.Config.RaftDialMap) and the
// same workload and checks as the processes. Faults (docs/testing.md,
// "In process"):
//
//   - kill: every raft link of the node and its HTTP front go down at
//     once: open connections are cut (the resets a killed process's
//     kernel sends) and new ones closed, so from then on nothing it sends
//     arrives and nothing reaches it. Then node.Close runs with an
//     expired context: the HTTP server closes its listener and every
//     connection without draining, raft shuts down (no snapshot, no
//     leadership transfer, no leaving the configuration) and the stores
//     close. Then the links come up again (until the node restarts, its
//     raft address refuses connections; its front accepts and closes).
//   - pause: raft's log and stable store (one bbolt database) is locked
//     by a write transaction the test holds, and a leader is handed a
//     barrier, so raft's main loop blocks at once in its next log write:
//     no lease check, no step-down, no term change, no vote. Every raft
//     link of the node and its HTTP front are held: connections are
//     accepted and kept, nothing is delivered either way. The node wakes
//     (resume) as a SIGCONTed process does: raft's loop goes on where
//     it stopped, a leader still believing it leads, and everything held
//     is delivered.
//   - stop: node.Close with 30 s to drain (a paused node is resumed
//     first, as SIGTERM needs SIGCONT).
//   - partitions and delays: the link proxies, as for processes.
type inprocRunner struct{}

// newInProcCluster returns a chaos cluster of in-process nodes.
func newInProcCluster(t *testing.T, opts nodeOpts) *chaosCluster {
	t.Helper()
	return newChaosCluster(t, inprocRunner{}, opts)
}

// prepare puts a proxy in front of every slot's HTTP address and
// advertises it: clients, forwarding followers and the harness all reach
// the node through it, so a pause can hold its HTTP traffic too.
func (inprocRunner) prepare(c *chaosCluster) {
	// Process-wide helpers the first in-process node starts (the raft
	// metrics sink, net/http's shared state) outlive the cluster.
	c.slackG = 4
	for _, n := range c.nodes {
		p, err := newLinkProxy(n.httpAddr)
		if err != nil {
			c.t.Fatal(err)
		}
		n.front = p
		n.httpURL = "http://" + p.addr()
	}
}

// config is slot i's node config: what the process runner passes as flags.
func (inprocRunner) config(c *chaosCluster, i int) node.Config {
	n := c.nodes[i]
	boot := c.bootPlan(i)
	opts := c.nodeOpts(i)
	cfg := node.DefaultConfig()
	cfg.ID, cfg.DataDir = n.id, n.dataDir
	cfg.RaftAddr, cfg.HTTPAddr, cfg.AdvertiseHTTP = n.raftAddr, n.httpAddr, n.httpURL
	cfg.RaftDialMap = c.dialMap(i)
	cfg.HeartbeatTimeout, cfg.ElectionTimeout, cfg.LeaderLeaseTimeout = chaosHeartbeat, chaosElection, chaosLease
	cfg.Bootstrap, cfg.Join = boot.bootstrap, boot.join
	opts.apply(&cfg)
	var level slog.Level
	if err := level.UnmarshalText([]byte(opts.level())); err != nil {
		c.t.Fatalf("log level %q: %v", opts.level(), err)
	}
	cfg.Logger = slog.New(slog.NewTextHandler(&n.log, &slog.HandlerOptions{Level: level}))
	return cfg
}

func (r inprocRunner) start(c *chaosCluster, i int) {
	c.t.Helper()
	n := c.nodes[i]
	cfg := r.config(c, i)
	fmt.Fprintf(&n.log, "--- start %s\n", n.id)
	var nd *node.Node
	// The addresses were free when allocated and are released by Close; a
	// restart may briefly find one still held, so retry for a moment.
	pollUntil(c.t, "start "+n.id, 10*time.Second, func() error {
		var err error
		nd, err = node.New(cfg)
		return err
	})
	n.mu.Lock()
	n.node, n.paused, n.frozen = nd, false, nil
	n.starts++
	n.mu.Unlock()
}

// eachLink applies f to every raft link from and to slot i and to its
// HTTP front.
func (c *chaosCluster) eachLink(i int, f func(*linkProxy)) {
	for j := range c.nodes {
		if j != i {
			f(c.links[[2]int{i, j}])
			f(c.links[[2]int{j, i}])
		}
	}
	if fr := c.nodes[i].front; fr != nil {
		f(fr)
	}
}

func (c *chaosCluster) holdLinks(i int)    { c.eachLink(i, (*linkProxy).hold) }
func (c *chaosCluster) releaseLinks(i int) { c.eachLink(i, (*linkProxy).release) }
func (c *chaosCluster) downLinks(i int)    { c.eachLink(i, (*linkProxy).down) }
func (c *chaosCluster) upLinks(i int)      { c.eachLink(i, (*linkProxy).up) }

// kill: see inprocRunner. It may run concurrently for several slots
// (kill-all), so it reports with Errorf, never Fatalf.
func (inprocRunner) kill(c *chaosCluster, i int) {
	n := c.nodes[i]
	n.mu.Lock()
	nd, paused, thaw := n.node, n.paused, n.frozen
	if nd != nil {
		n.kills++
	}
	n.mu.Unlock()
	if nd == nil {
		return
	}
	// The moment of the kill: its connections are reset, and from here
	// nothing it sends arrives and nothing reaches it (its raft RPCs fail
	// now, not at their deadline, so raft's shutdown need not wait).
	c.downLinks(i)
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // no draining
	err := closeNode(nd, ctx, thaw)
	n.mu.Lock()
	n.node, n.paused, n.frozen, n.lastExit = nil, false, nil, err
	n.mu.Unlock()
	c.upLinks(i)
	if paused {
		c.releaseLinks(i)
	}
	if err != nil {
		c.t.Errorf("kill %s: closing the node: %v", n.id, err)
	}
}

// closeNode closes nd. A paused node's raft loop may be blocked on its held
// log store, and raft's shutdown waits for it: thaw lets it go, but only
// once raft has been told to shut down (its state says so at once), so it
// wakes only to stop.
func closeNode(nd *node.Node, ctx context.Context, thaw func()) error {
	done := make(chan error, 1)
	go func() { done <- nd.Close(ctx) }()
	if thaw != nil {
		deadline := time.Now().Add(10 * time.Second)
		for nd.Raft().State() != raft.Shutdown && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
		thaw()
	}
	select {
	case err := <-done:
		return err
	case <-time.After(60 * time.Second):
		return errors.New("node.Close did not return within 60s")
	}
}

func (inprocRunner) pause(c *chaosCluster, i int) {
	c.t.Helper()
	n := c.nodes[i]
	n.mu.Lock()
	nd, paused := n.node, n.paused
	n.mu.Unlock()
	if nd == nil || paused {
		return
	}
	thaw, err := freezeRaft(nd)
	if err != nil {
		c.t.Fatalf("pause %s: %v", n.id, err)
	}
	c.holdLinks(i)
	n.mu.Lock()
	n.paused, n.frozen = true, thaw
	n.pauses++
	n.mu.Unlock()
}

func (inprocRunner) resume(c *chaosCluster, i int) {
	n := c.nodes[i]
	n.mu.Lock()
	paused, thaw := n.paused, n.frozen
	n.paused, n.frozen = false, nil
	n.mu.Unlock()
	if !paused {
		return
	}
	thaw()
	c.releaseLinks(i)
}

func (r inprocRunner) stop(c *chaosCluster, i int) error {
	n := c.nodes[i]
	r.resume(c, i) // a stopped process acts on SIGTERM once resumed
	n.mu.Lock()
	nd := n.node
	n.mu.Unlock()
	if nd == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := closeNode(nd, ctx, nil)
	n.mu.Lock()
	n.node, n.lastExit = nil, err
	n.mu.Unlock()
	// Peers' connections to it end, as with an exited process.
	c.downLinks(i)
	c.upLinks(i)
	return err
}

// problems: an in-process node cannot exit, but its raft can shut down on
// its own (a member that was removed behind the harness's back).
func (inprocRunner) problems(c *chaosCluster) []string {
	var out []string
	for _, n := range c.nodes {
		n.mu.Lock()
		if n.node != nil && !n.removed && n.node.Raft().State() == raft.Shutdown {
			out = append(out, n.id+": raft shut down on its own")
		}
		n.mu.Unlock()
	}
	return out
}

// freezeRaft stops nd's raft where a SIGSTOP would: it takes the write
// lock of raft's log and stable store, so raft's main loop blocks at its
// next log, term or vote write, and hands a leader a barrier so that its
// loop blocks now (before its next leader-lease check, which would make
// it step down). Raft's other goroutines read the log and carry on;
// whatever they send is held by the link proxies. The returned function
// lets raft go on.
func freezeRaft(nd *node.Node) (thaw func(), err error) {
	db, err := raftLogDB(nd)
	if err != nil {
		return nil, err
	}
	tx, err := db.Begin(true)
	if err != nil {
		return nil, fmt.Errorf("lock raft's log store: %w", err)
	}
	if nd.IsLeader() {
		// Its answer does not matter: the entry is a no-op, committed if
		// the node still leads when it wakes, overwritten if not.
		nd.Raft().Barrier(100 * time.Millisecond)
	}
	var once sync.Once
	return func() { once.Do(func() { _ = tx.Rollback() }) }, nil
}

// raftLogDB returns the bbolt database under nd's raft log and stable
// store. node.Node keeps it in an unexported field (logStore, a
// raft-boltdb BoltStore, whose database is its unexported field conn), and
// a test must not change node/ for this, so it is read by reflection. If
// either field is renamed this fails loudly and the in-process pause needs
// updating.
func raftLogDB(nd *node.Node) (*bolt.DB, error) {
	store, ok := unexported(reflect.ValueOf(nd).Elem(), "logStore").(*raftboltdb.BoltStore)
	if !ok || store == nil {
		return nil, errors.New("in-process pause: node.Node.logStore is not a *raftboltdb.BoltStore any more; update raftLogDB")
	}
	db, ok := unexported(reflect.ValueOf(store).Elem(), "conn").(*bolt.DB)
	if !ok || db == nil {
		return nil, errors.New("in-process pause: raftboltdb.BoltStore.conn is not a *bbolt.DB any more; update raftLogDB")
	}
	return db, nil
}

// unexported reads struct field name of the addressable struct v (nil
// when there is no such field).
func unexported(v reflect.Value, name string) any {
	f := v.FieldByName(name)
	if !f.IsValid() {
		return nil
	}
	return reflect.NewAt(f.Type(), unsafe.Pointer(f.UnsafeAddr())).Elem().Interface()
}

// TestChaosInProcPauseFreezesLeader checks the in-process pause itself: a
// paused leader answers nothing and does not notice it is paused (it
// still leads, in its old term, while the others elect a new leader long
// after its lease ran out), and once resumed it steps down and follows
// the new leader.
func TestChaosInProcPauseFreezesLeader(t *testing.T) {
	if testing.Short() {
		t.Skip("chaos: skipped with -short")
	}
	chaosModeOn(t, modeInProc)
	c := newInProcCluster(t, nodeOpts{})
	c.startN(3)
	l := c.leader()
	old := c.nodes[l].node.Raft()
	term := old.CurrentTerm()
	c.pause(l)
	paused := time.Now()
	nl := c.leader() // among the others
	if nl == l {
		t.Fatalf("paused %s still counted as leader", c.nodes[l].id)
	}
	st, err := c.status(nl)
	if err != nil {
		t.Fatal(err)
	}
	if st.Term <= term {
		t.Fatalf("new leader %s in term %d, the paused one led in %d", c.nodes[nl].id, st.Term, term)
	}
	if state, now := old.State(), old.CurrentTerm(); state != raft.Leader || now != term {
		t.Fatalf("%s paused %v ago (lease %v, election timeout %v): %v in term %d; a frozen leader stays leader in term %d",
			c.nodes[l].id, time.Since(paused), chaosLease, chaosElection, state, now, term)
	}
	if _, err := c.status(l); err == nil {
		t.Fatalf("paused %s answered over HTTP", c.nodes[l].id)
	}
	t.Logf("%s paused for %v: still leader in term %d; %s leads in term %d", c.nodes[l].id,
		time.Since(paused).Round(time.Millisecond), term, c.nodes[nl].id, st.Term)
	c.resume(l)
	pollUntil(t, "the resumed leader to step down and follow", 10*time.Second, func() error {
		if state, now := old.State(), old.CurrentTerm(); state != raft.Follower || now < st.Term {
			return fmt.Errorf("%v in term %d", state, now)
		}
		if _, id := old.LeaderWithID(); string(id) != c.nodes[nl].id {
			return fmt.Errorf("follows %q", id)
		}
		return nil
	})
	if got := c.leader(); got != nl {
		t.Fatalf("leader %s after resume, want %s", c.nodes[got].id, c.nodes[nl].id)
	}
}
