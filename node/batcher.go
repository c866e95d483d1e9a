package node

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/cairn-db/cairn/fsm"
	"github.com/cairn-db/cairn/internal/coalesce"
)

// The batcher coalesces concurrent client transactions into one raft log
// entry. A raft entry costs the same fixed work however many transactions
// it carries (its log record on every member, its replication, its decode
// in every FSM), so under load one entry per transaction wastes the CPU
// that a two-core machine is short of.
//
// At most MaxInflightWrites entries from the batcher are in raft at once
// (package coalesce does the gathering). While they are all in flight,
// new writes queue; when one completes, the next entry takes everything
// queued (up to the entry limits). An idle node proposes a lone write at
// once, so coalescing adds no latency. Each transaction still gets its own
// revision, result and idempotency record: the FSM applies the entry's
// transactions one after another, exactly as if they had been separate
// entries.

// Entry limits for a coalesced batch. A transaction larger than
// maxBatchBytes travels alone.
const (
	maxBatchTxns  = 512
	maxBatchBytes = 1 << 20
)

// newBatcher returns the coalescer that proposes client writes as raft
// entries. Once a transaction is in an entry, its caller waits for raft's
// answer, which comes for every entry (applied, leadership lost, shut
// down) within the apply timeout.
func (n *Node) newBatcher() *coalesce.Coalescer[fsm.Txn, fsm.TxnResult] {
	return coalesce.New(coalesce.Config[fsm.Txn, fsm.TxnResult]{
		Inflight:       n.cfg.MaxInflightWrites,
		MaxItems:       maxBatchTxns,
		MaxBytes:       maxBatchBytes,
		Dispatch:       n.proposeBatch,
		WaitDispatched: true,
		Go:             n.goRun,
	})
}

// proposeBatch proposes one entry carrying txns and returns the wait for
// its outcome.
func (n *Node) proposeBatch(txns []fsm.Txn) func() ([]coalesce.Outcome[fsm.TxnResult], error) {
	data, err := fsm.EncodeCommand(fsm.Command{Batch: &fsm.Batch{Time: time.Now(), Limits: n.limits(), Txns: txns}})
	if err != nil {
		return func() ([]coalesce.Outcome[fsm.TxnResult], error) { return nil, err }
	}
	fut := n.raft.Apply(data, n.cfg.ApplyTimeout)
	return func() ([]coalesce.Outcome[fsm.TxnResult], error) {
		if err := n.waitEntry(fut); err != nil {
			return nil, n.space.sawWriteError(mapRaftErr(err))
		}
		br, ok := fut.Response().(*fsm.BatchResult)
		switch {
		case !ok || (br.Err == nil && len(br.Txns) != len(txns)):
			return nil, fmt.Errorf("node: unexpected apply response %T", fut.Response())
		case br.Err != nil:
			return nil, br.Err
		}
		out := make([]coalesce.Outcome[fsm.TxnResult], len(br.Txns))
		for i, res := range br.Txns {
			out[i].Value = res
		}
		return out, nil
	}
}

// coalesceErr turns the coalescer's own errors into the node's.
func (n *Node) coalesceErr(err error, what string) error {
	switch {
	case errors.Is(err, coalesce.ErrStopped):
		return fmt.Errorf("%w: %s", ErrShuttingDown, what)
	case errors.Is(err, coalesce.ErrAbandoned):
		if n.ctx.Err() != nil {
			return fmt.Errorf("%w: %w", ErrShuttingDown, err)
		}
		return fmt.Errorf("%w: waiting to %s: %w", ErrTimeout, what, err)
	case errors.Is(err, coalesce.ErrInFlight):
		return fmt.Errorf("%w: %s, no answer yet (the write may have been applied): %w", ErrTimeout, what, err)
	}
	return err
}

// txnSize estimates a transaction's encoded size.
func txnSize(t *fsm.Txn) int {
	s := len(t.User) + len(t.Description) + len(t.IdempotencyKey) + 16
	for _, o := range t.Ops {
		s += len(o.Key) + len(o.Value) + 8
	}
	for _, p := range t.Preconditions {
		s += len(p.Key) + len(p.Value) + 16
	}
	for k, v := range t.Meta {
		s += len(k) + len(v) + 4
	}
	return s
}

// submitLocal queues t for the batcher and waits for its outcome.
func (n *Node) submitLocal(ctx context.Context, t fsm.Txn) (fsm.TxnResult, error) {
	res, err := n.batch.Submit(ctx, t, txnSize(&t))
	if err != nil {
		return res, n.coalesceErr(err, "propose")
	}
	return res, nil
}
