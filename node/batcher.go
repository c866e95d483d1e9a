package node

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cairn-db/cairn/fsm"
)

// The batcher coalesces concurrent client transactions into one raft log
// entry. A raft entry costs the same fixed work however many transactions
// it carries (its log record on every member, its replication, its decode
// in every FSM), so under load one entry per transaction wastes the CPU
// that a two-core machine is short of.
//
// At most MaxProposalsInFlight entries from the batcher are in raft at
// once. While they are all in flight, new writes queue; when one
// completes, the next entry takes everything queued (up to the entry
// limits). An idle node proposes a lone write at once, so coalescing adds
// no latency. Each transaction still gets its own revision, result and
// idempotency record: the FSM applies the entry's transactions one after
// another, exactly as if they had been separate entries.

// Entry limits for a coalesced batch. A transaction larger than
// maxBatchBytes travels alone.
const (
	maxBatchTxns  = 512
	maxBatchBytes = 1 << 20
)

// Write request states.
const (
	reqQueued int32 = iota
	reqProposed
	reqAbandoned
)

// writeReq is one transaction waiting for the batcher.
type writeReq struct {
	txn   fsm.Txn
	size  int
	state atomic.Int32
	done  chan writeResult // buffered: the batcher never blocks on it
}

type writeResult struct {
	res fsm.TxnResult
	err error
}

// batcher owns the goroutine that forms entries; Node.Close stops it
// through the node's context.
type batcher struct {
	n     *Node
	reqs  chan *writeReq
	slots chan struct{} // one token per entry in flight

	stopping chan struct{} // closed by drain: propose nothing more
	stopOnce sync.Once

	entries atomic.Uint64 // entries proposed
	txns    atomic.Uint64 // transactions proposed
}

func newBatcher(n *Node, inflight int) *batcher {
	return &batcher{
		n:        n,
		reqs:     make(chan *writeReq, 4*maxBatchTxns),
		slots:    make(chan struct{}, inflight),
		stopping: make(chan struct{}),
	}
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

// submit queues t and waits for its outcome. Until the transaction is in
// a raft entry, ctx can abandon it (certainly not applied); after that the
// wait is raft's, which answers every entry (applied, leadership lost,
// shut down).
func (b *batcher) submit(ctx context.Context, t fsm.Txn) (fsm.TxnResult, error) {
	r := &writeReq{txn: t, size: txnSize(&t), done: make(chan writeResult, 1)}
	select {
	case b.reqs <- r:
	case <-ctx.Done():
		return fsm.TxnResult{}, fmt.Errorf("%w: %w", ErrTimeout, ctx.Err())
	case <-b.n.ctx.Done():
		return fsm.TxnResult{}, fmt.Errorf("%w: %w", ErrShuttingDown, b.n.ctx.Err())
	}
	select {
	case out := <-r.done:
		return out.res, out.err
	case <-ctx.Done():
		if r.state.CompareAndSwap(reqQueued, reqAbandoned) {
			return fsm.TxnResult{}, fmt.Errorf("%w: waiting to propose: %w", ErrTimeout, ctx.Err())
		}
	case <-b.n.ctx.Done():
		if r.state.CompareAndSwap(reqQueued, reqAbandoned) {
			return fsm.TxnResult{}, fmt.Errorf("%w: %w", ErrShuttingDown, b.n.ctx.Err())
		}
	}
	out := <-r.done // proposed: the batcher answers it
	return out.res, out.err
}

// run forms and proposes entries until the node stops.
func (b *batcher) run() {
	ctx := b.n.ctx
	batch := make([]*writeReq, 0, maxBatchTxns)
	for {
		var first *writeReq
		select {
		case first = <-b.reqs:
		case <-b.stopping:
			return
		case <-ctx.Done():
			return
		}
		// Wait for an entry to leave raft; writes queue meanwhile.
		select {
		case b.slots <- struct{}{}:
		case <-b.stopping:
			return // first's caller sees the node stop
		case <-ctx.Done():
			return
		}
		batch = batch[:0]
		bytes := 0
		take := func(r *writeReq) bool {
			if !r.state.CompareAndSwap(reqQueued, reqProposed) {
				return true // abandoned by its caller
			}
			batch = append(batch, r)
			bytes += r.size
			return len(batch) < maxBatchTxns && bytes < maxBatchBytes
		}
		gatherQueued(first, b.reqs, take)
		if len(batch) == 0 {
			<-b.slots
			continue
		}
		b.propose(batch)
	}
}

// propose sends one entry for batch and hands its outcome to a goroutine
// that answers every request in it and frees the slot.
func (b *batcher) propose(batch []*writeReq) {
	reqs := make([]*writeReq, len(batch))
	copy(reqs, batch)
	txns := make([]fsm.Txn, len(reqs))
	for i, r := range reqs {
		txns[i] = r.txn
	}
	b.entries.Add(1)
	b.txns.Add(uint64(len(txns)))
	data, err := fsm.EncodeCommand(fsm.Command{Batch: &fsm.Batch{
		Time: time.Now(), Limits: b.n.limits(), Txns: txns}})
	if err != nil {
		<-b.slots
		answerAll(reqs, writeResult{err: err})
		return
	}
	fut := b.n.raft.Apply(data, b.n.cfg.ApplyTimeout)
	b.n.goRun(func() {
		defer func() { <-b.slots }()
		if err := b.n.wait(fut); err != nil {
			answerAll(reqs, writeResult{err: mapRaftErr(err)})
			return
		}
		br, ok := fut.Response().(*fsm.BatchResult)
		switch {
		case !ok || (br.Err == nil && len(br.Txns) != len(reqs)):
			answerAll(reqs, writeResult{err: fmt.Errorf("node: unexpected apply response %T", fut.Response())})
		case br.Err != nil:
			answerAll(reqs, writeResult{err: br.Err})
		default:
			for i, r := range reqs {
				r.done <- writeResult{res: br.Txns[i]}
			}
		}
	})
}

// drain stops proposing and waits, up to d, until raft has answered every
// entry the batcher has in flight. hashicorp/raft never answers an Apply
// future still queued when it shuts down, so shutting it down first would
// leave their waiters blocked for good.
func (b *batcher) drain(d time.Duration) {
	b.stopOnce.Do(func() { close(b.stopping) })
	t := time.NewTimer(d)
	defer t.Stop()
	for range cap(b.slots) {
		select {
		case b.slots <- struct{}{}:
		case <-t.C:
			return
		}
	}
}

// gatherQueued hands take first and then what is already queued on ch,
// without waiting, until take reports the batch full.
func gatherQueued[T any](first T, ch <-chan T, take func(T) bool) {
	for more := take(first); more; {
		select {
		case r := <-ch:
			more = take(r)
		default:
			return
		}
	}
}

func answerAll(reqs []*writeReq, out writeResult) {
	for _, r := range reqs {
		r.done <- out
	}
}
