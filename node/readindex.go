package node

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/cairn-db/cairn/api"
	"github.com/cairn-db/cairn/httpapi"
)

// Reads. A linearizable read is served from local state once the member
// has applied everything committed before the read began:
//   - the leader confirms its leadership with a quorum (a read index:
//     the commit index while it was confirmed leader, in a term with a
//     completed barrier) and waits until it has applied that index;
//   - a follower asks the leader for a read index (httpapi.Peer.ReadIndex,
//     which answers the leader's applied index after the above) and waits
//     until it has applied as much itself.
// Concurrent readers share one leadership check, or one request to the
// leader (readIndex). Stale reads are served at once, optionally bounded
// by the time since the last contact with the leader; min_revision waits
// for a revision to be applied here.

// PrepareRead blocks until this node may serve a read with the given
// options from its local state.
func (n *Node) PrepareRead(ctx context.Context, o httpapi.ReadOptions) error {
	if err := n.corruptErr(); err != nil {
		return err // nothing is read from damaged data
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, n.cfg.ReadTimeout)
		defer cancel()
	}
	switch o.Consistency {
	case api.Linearizable:
		if err := n.linearizableBarrier(ctx); err != nil {
			return err
		}
	case api.Stale:
		if o.MaxStaleness > 0 && !n.IsLeader() {
			lc := n.raft.LastContact()
			if lc.IsZero() || time.Since(lc) > o.MaxStaleness {
				return fmt.Errorf("%w: last contact %s ago exceeds max staleness %s",
					ErrTooStale, time.Since(lc).Round(time.Millisecond), o.MaxStaleness)
			}
		}
	default:
		return fmt.Errorf("%w: unknown consistency %q (use %s or %s)", ErrBadRequest, o.Consistency, api.Linearizable, api.Stale)
	}
	if o.MinRevision > 0 {
		if err := n.fsm.WaitRevision(ctx, o.MinRevision); err != nil {
			return fmt.Errorf("%w: %w", ErrTimeout, err)
		}
	}
	return nil
}

// linearizableBarrier waits until this node may serve a linearizable read.
func (n *Node) linearizableBarrier(ctx context.Context) error {
	if n.IsLeader() {
		idx, err := n.reads.get(ctx)
		if err != nil {
			return err
		}
		return n.waitApplied(ctx, idx)
	}
	idx, err := n.remoteReads.get(ctx)
	if err != nil {
		return err
	}
	return n.waitFSMApplied(ctx, idx)
}

// ReadIndex confirms this leader's leadership, waits until it has applied
// everything committed before the call, and returns its FSM's applied
// index: a follower that has applied as much may serve a linearizable
// read (httpapi.Service).
func (n *Node) ReadIndex(ctx context.Context) (uint64, error) {
	if !n.IsLeader() {
		return 0, fmt.Errorf("%w: %s cannot give a read index", ErrNotLeader, n.cfg.ID)
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, n.cfg.ReadTimeout)
		defer cancel()
	}
	idx, err := n.reads.get(ctx)
	if err != nil {
		return 0, err
	}
	if err := n.waitApplied(ctx, idx); err != nil {
		return 0, err
	}
	return n.fsm.LastApplied(), nil
}

// leaderReadIndex asks the leader for a read index (a follower's reads).
func (n *Node) leaderReadIndex() (uint64, error) {
	ctx, cancel := context.WithTimeout(n.ctx, n.cfg.ReadTimeout)
	defer cancel()
	u, err := n.leaderURLFor(ctx, "ask the leader for a read index")
	if err != nil {
		return 0, err
	}
	return n.peer.ReadIndex(ctx, u)
}

// waitApplied waits until raft has applied index idx on this leader.
func (n *Node) waitApplied(ctx context.Context, idx uint64) error {
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for {
		ch := n.fsm.Changed()
		if n.fsm.LastApplied() >= idx {
			return nil
		}
		// raft counts an entry applied once it is queued for the FSM, and
		// never hands no-op or barrier entries to a BatchingFSM, so raft's
		// index alone proves nothing about the store. A barrier completes
		// only after the FSM has applied everything before it.
		if n.raft.AppliedIndex() >= idx {
			timeout := n.cfg.ApplyTimeout
			if dl, ok := ctx.Deadline(); ok {
				timeout = max(time.Until(dl), time.Millisecond)
			}
			return mapRaftErr(n.wait(n.raft.Barrier(timeout)))
		}
		select {
		case <-ch:
		case <-tick.C:
		case <-ctx.Done():
			return fmt.Errorf("%w: waiting for index %d to apply: %w", ErrTimeout, idx, ctx.Err())
		}
	}
}

// waitFSMApplied waits until this node's FSM has applied index idx, an
// index the leader's FSM applied (so one this FSM will apply too).
func (n *Node) waitFSMApplied(ctx context.Context, idx uint64) error {
	for {
		ch := n.fsm.Changed()
		if n.fsm.LastApplied() >= idx {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("%w: waiting for index %d to apply: %w", ErrTimeout, idx, ctx.Err())
		case <-n.ctx.Done():
			return fmt.Errorf("%w: %w", ErrShuttingDown, n.ctx.Err())
		}
	}
}

// readIndex coalesces concurrent linearizable readers onto one fetch of a
// read index: readers that arrive while a fetch is running share the
// next one.
type readIndex struct {
	n       *Node
	fetch   func() (uint64, error)
	mu      sync.Mutex
	pending *readGroup
	running bool
}

type readGroup struct {
	done  chan struct{}
	index uint64
	err   error
}

func (r *readIndex) get(ctx context.Context) (uint64, error) {
	r.mu.Lock()
	g := r.pending
	if g == nil {
		g = &readGroup{done: make(chan struct{})}
		r.pending = g
	}
	start := !r.running
	r.running = true
	r.mu.Unlock()
	if start {
		// This caller runs the fetches for everyone waiting, including
		// groups that form while it runs; it returns once its own is done.
		r.run(g)
	}
	select {
	case <-g.done:
		return g.index, g.err
	case <-ctx.Done():
		return 0, fmt.Errorf("%w: read index: %w", ErrTimeout, ctx.Err())
	}
}

// run performs fetches until no group is pending; it returns as soon as
// mine is done, handing the remaining work to a node goroutine.
func (r *readIndex) run(mine *readGroup) {
	for {
		r.mu.Lock()
		g := r.pending
		r.pending = nil
		if g == nil {
			r.running = false
			r.mu.Unlock()
			return
		}
		r.mu.Unlock()
		g.index, g.err = r.fetch()
		close(g.done)
		if g == mine {
			r.mu.Lock()
			more := r.pending != nil
			if !more {
				r.running = false
			}
			r.mu.Unlock()
			if more {
				r.n.goRun(func() { r.run(nil) })
			}
			return
		}
	}
}

// confirmLeadership returns a commit index that was current while this
// node was confirmed leader by a quorum, in a term with a completed
// barrier.
func (n *Node) confirmLeadership() (uint64, error) {
	if !n.IsLeader() {
		return 0, ErrNotLeader
	}
	ctx, cancel := context.WithTimeout(n.ctx, n.cfg.ReadTimeout)
	defer cancel()
	if err := n.ensureBarrier(ctx); err != nil {
		return 0, err
	}
	term := n.raft.CurrentTerm()
	ci := n.raft.CommitIndex()
	if err := n.wait(n.raft.VerifyLeader()); err != nil {
		return 0, mapRaftErr(err)
	}
	if n.raft.CurrentTerm() != term || !n.IsLeader() {
		return 0, fmt.Errorf("%w: leadership changed during read", ErrNoLeader)
	}
	return ci, nil
}
