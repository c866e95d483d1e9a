package chaos

import (
	"errors"
	"fmt"
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

// In process (docs/testing.md, "In process"), the harness emulates what
// the rest of the cluster and the clients see of a process's faults: a
// kill takes every raft link and the HTTP front of the node down, closes
// the node with an expired context and brings the links up again; a
// graceful stop is node.Close with 30 s to drain. A pause needs raft
// frozen where a SIGSTOP would freeze it, which only node internals
// allow: freezeRaft below is the harness's Freezer; the harness holds the
// node's links and front while it is paused and releases them on resume.

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
	c := newCluster(t, modeInProc, nodeOpts{})
	c.startN(3)
	l := c.leader()
	old := c.node(l).Raft()
	term := old.CurrentTerm()
	c.pause(l)
	paused := time.Now()
	nl := c.leader() // among the others
	if nl == l {
		t.Fatalf("paused %s still counted as leader", c.id(l))
	}
	st, err := c.Status(nl)
	if err != nil {
		t.Fatal(err)
	}
	if st.Term <= term {
		t.Fatalf("new leader %s in term %d, the paused one led in %d", c.id(nl), st.Term, term)
	}
	if state, now := old.State(), old.CurrentTerm(); state != raft.Leader || now != term {
		t.Fatalf("%s paused %v ago (lease %v, election timeout %v): %v in term %d; a frozen leader stays leader in term %d",
			c.id(l), time.Since(paused), chaosLease, chaosElection, state, now, term)
	}
	if _, err := c.Status(l); err == nil {
		t.Fatalf("paused %s answered over HTTP", c.id(l))
	}
	t.Logf("%s paused for %v: still leader in term %d; %s leads in term %d", c.id(l),
		time.Since(paused).Round(time.Millisecond), term, c.id(nl), st.Term)
	c.resume(l)
	pollUntil(t, "the resumed leader to step down and follow", 10*time.Second, func() error {
		if state, now := old.State(), old.CurrentTerm(); state != raft.Follower || now < st.Term {
			return fmt.Errorf("%v in term %d", state, now)
		}
		if _, id := old.LeaderWithID(); string(id) != c.id(nl) {
			return fmt.Errorf("follows %q", id)
		}
		return nil
	})
	// The resumed member must not take leadership back. Another election
	// among the others may follow on a loaded machine (a missed
	// heartbeat), which is no fault of the pause.
	if got := c.leader(); got == l {
		t.Fatalf("the resumed %s leads again", c.id(got))
	} else if got != nl {
		t.Logf("leader %s after resume (%s before it): another election among the others", c.id(got), c.id(nl))
	}
}
