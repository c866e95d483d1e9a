package node

import (
	"context"
	"fmt"
	"time"

	"github.com/cairn-db/cairn/api"
	"github.com/cairn-db/cairn/fsm"
	"github.com/cairn-db/cairn/httpapi"
)

// The write path: a client write is validated here, then committed by the
// leader's batcher (batcher.go), or, on a follower, forwarded to the
// leader (forward.go). Other replicated operations (compaction, member
// records, the cluster id) are proposed one per entry.

// limits returns the apply-time limits this node stamps into a batch.
func (n *Node) limits() fsm.Limits {
	return fsm.Limits{MaxValueSize: uint32(n.cfg.MaxValueSize), IdempotencyWindow: n.cfg.IdempotencyWindow}
}

// Limits returns the node's request limits (httpapi.Service).
func (n *Node) Limits() httpapi.Limits {
	return httpapi.Limits{MaxRequestBytes: n.cfg.MaxRequestBytes, MaxValueSize: n.cfg.MaxValueSize,
		WatchWriteTimeout: n.cfg.WatchWriteTimeout, MaxWatchersPerClient: n.cfg.MaxWatchersPerClient,
		RequestBodyTimeout: n.cfg.RequestBodyTimeout}
}

// validateTxn applies the node's request limits and the FSM's own rules,
// so nothing the FSM would refuse reaches raft.
func (n *Node) validateTxn(t *fsm.Txn) error {
	if len(t.Ops) > n.cfg.MaxOps || len(t.Preconditions) > n.cfg.MaxOps {
		return fmt.Errorf("%w: %d operations and %d preconditions (limit %d each)",
			ErrTooLarge, len(t.Ops), len(t.Preconditions), n.cfg.MaxOps)
	}
	return fsm.ValidateTxn(t, n.limits())
}

// Write commits one transaction through raft: on the leader through its
// batcher, which stamps time and limits; on a follower by forwarding it
// to the leader with other writes waiting here (unless ctx carries a
// request another member forwarded: that gets ErrNotLeader).
// It returns the transaction's result: Err in the result is a refusal or
// *fsm.ConflictError; the returned error is a failure to commit (not
// leader, leadership lost, timeout, shutting down), after which the write
// may or may not have been applied.
func (n *Node) Write(ctx context.Context, t fsm.Txn) (fsm.TxnResult, error) {
	if err := n.validateTxn(&t); err != nil {
		return fsm.TxnResult{}, err
	}
	if n.fsm.ReadOnly() {
		// Refused before it is proposed, on the member the client called
		// (apply refuses it anyway): nothing is written.
		return fsm.TxnResult{Err: fmt.Errorf("%w: it takes its data from its source only, until it is promoted (cairn mirror promote)", fsm.ErrReadOnly)}, nil
	}
	// Here on the member the client called and again on the leader, which
	// a follower forwards the write to (space.go).
	if err := n.space.check(&t, txnSize(&t)); err != nil {
		return fsm.TxnResult{}, err
	}
	if n.IsLeader() {
		return n.submitLocal(ctx, t)
	}
	if from := httpapi.Forwarded(ctx); from != "" {
		// Unambiguous: nothing was proposed. Never forwarded twice, so two
		// members with stale views cannot bounce a write between them.
		return fsm.TxnResult{}, fmt.Errorf("%w: write forwarded by %s reached %s", ErrNotLeader, from, n.cfg.ID)
	}
	return n.forwardWrite(ctx, t)
}

// propose appends a command to the raft log and waits until it is applied
// here. Raft answers every future (applied, leadership lost or shut down),
// so the wait is bounded without a context; ctx bounds the enqueue.
func (n *Node) propose(ctx context.Context, c fsm.Command) (interface{}, error) {
	data, err := fsm.EncodeCommand(c)
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrTimeout, err)
	}
	timeout := n.cfg.ApplyTimeout
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) < timeout {
		timeout = max(time.Until(dl), time.Millisecond)
	}
	fut := n.raft.Apply(data, timeout)
	if err := n.waitEntry(fut); err != nil {
		return nil, n.space.sawWriteError(mapRaftErr(err))
	}
	return fut.Response(), nil
}

// applyCommand proposes a non-batch command and returns its result's error.
func (n *Node) applyCommand(ctx context.Context, c fsm.Command) error {
	res, err := n.propose(ctx, c)
	if err != nil {
		return err
	}
	switch r := res.(type) {
	case *fsm.CommandResult:
		return r.Err
	case *fsm.BatchResult:
		return r.Err
	}
	return fmt.Errorf("node: unexpected apply response %T", res)
}

// Compact compacts history before rev on every replica, through the
// leader, and returns the head revision after it and the oldest revision
// available (lower than rev when a mirror's checkpoint held it back).
func (n *Node) Compact(ctx context.Context, rev uint64) (api.WriteResponse, error) {
	if !n.IsLeader() {
		u, err := n.leaderURLFor(ctx, "compact")
		if err != nil {
			return api.WriteResponse{}, err
		}
		return n.peer.Compact(ctx, u, rev)
	}
	oldest, err := n.compact(ctx, rev)
	if err != nil {
		return api.WriteResponse{}, err
	}
	return api.WriteResponse{Revision: n.fsm.Revision(), Time: time.Now().UTC(), CompactRevision: oldest}, nil
}

// compact proposes a compaction before rev (leader only) and returns the
// oldest revision available after it.
func (n *Node) compact(ctx context.Context, rev uint64) (uint64, error) {
	res, err := n.propose(ctx, fsm.Command{Compact: &fsm.Compact{Revision: rev, Time: time.Now()}})
	if err != nil {
		return 0, err
	}
	r, ok := res.(*fsm.CommandResult)
	if !ok {
		return 0, fmt.Errorf("node: unexpected apply response %T", res)
	}
	if r.Err != nil {
		return 0, r.Err
	}
	if r.CompactRevision < rev {
		n.log.Info("compaction held back by a mirror's checkpoint", "asked", rev, "oldest", r.CompactRevision)
	}
	return r.CompactRevision, nil
}
