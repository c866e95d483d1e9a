package node

import (
	"context"
	"fmt"
	"time"

	"github.com/cairn-db/cairn/fsm"
	"github.com/cairn-db/cairn/httpapi"
	"github.com/cairn-db/cairn/internal/coalesce"
)

// A follower does not proxy each client write to the leader as its own
// HTTP request. The forwarder gathers the writes that arrive while earlier
// ones are on their way, as the leader's batcher does for raft entries
// (both are package coalesce), and sends them in one request
// (httpapi.Peer.ForwardWrites). The leader commits each one exactly as if
// its client had sent it there and answers each one's typed outcome, which
// the follower returns from Write; its HTTP handler renders it as the
// leader's would. One request per batch instead of one per write is most
// of what forwarding cost the leader's HTTP server and the follower's HTTP
// client under load.
//
// What can fail is what could fail with one request per write: if the
// batch request fails (the leader crashed, the connection broke), every
// write in it gets an "unavailable" answer and may or may not have been
// committed; clients retry with the same idempotency key.

// newForwarder returns the coalescer that forwards a follower's writes.
// A batch's estimated size stays within a quarter of the request limit
// (the leader takes twice the limit on its members-only route), and a
// write larger than that travels alone. A caller whose context ends after
// its batch left gets ErrTimeout at once: the outcome is unknown.
func (n *Node) newForwarder() *coalesce.Coalescer[fsm.Txn, httpapi.WriteOutcome] {
	return coalesce.New(coalesce.Config[fsm.Txn, httpapi.WriteOutcome]{
		Inflight: n.cfg.MaxInflightWrites,
		MaxItems: maxBatchTxns,
		MaxBytes: int(min(int64(maxBatchBytes), n.cfg.MaxRequestBytes/4)),
		Dispatch: n.forwardBatch,
		Go:       n.goRun,
	})
}

// forwardWrite sends t to the leader with other writes waiting here and
// returns the leader's answer to it.
func (n *Node) forwardWrite(ctx context.Context, t fsm.Txn) (fsm.TxnResult, error) {
	if _, err := n.leaderURLFor(ctx, "forward"); err != nil {
		return fsm.TxnResult{}, err
	}
	out, err := n.fwd.Submit(ctx, t, txnSize(&t))
	if err != nil {
		return fsm.TxnResult{}, n.coalesceErr(err, "forward to the leader")
	}
	if out.Err != nil {
		return fsm.TxnResult{}, out.Err
	}
	return out.Result, nil
}

// forwardBatch returns the request that sends one batch to the leader.
// The leader bounds each write by its apply timeout; the request's own
// deadline bounds a leader that stops answering.
func (n *Node) forwardBatch(txns []fsm.Txn) func() ([]coalesce.Outcome[httpapi.WriteOutcome], error) {
	return func() ([]coalesce.Outcome[httpapi.WriteOutcome], error) {
		ctx, cancel := context.WithTimeout(n.ctx, 2*n.cfg.ApplyTimeout)
		defer cancel()
		u, err := n.leaderURLFor(ctx, "forward")
		if err != nil {
			return nil, err
		}
		res, err := n.peer.ForwardWrites(ctx, u, txns)
		if err != nil {
			return nil, err
		}
		out := make([]coalesce.Outcome[httpapi.WriteOutcome], len(res))
		for i := range res {
			out[i].Value = res[i]
		}
		return out, nil
	}
}

// leaderURLFor returns the leader's HTTP URL for a request this follower
// passes on, or why it cannot.
func (n *Node) leaderURLFor(ctx context.Context, what string) (string, error) {
	id, u := n.LeaderInfo()
	switch {
	case id == "":
		return "", fmt.Errorf("%w: cannot %s", ErrNoLeader, what)
	case id == n.cfg.ID:
		return "", fmt.Errorf("%w: this node became the leader meanwhile", ErrNoLeader)
	case u == "":
		return "", fmt.Errorf("%w: leader %s has no known HTTP address yet", ErrNoLeader, id)
	}
	if from := httpapi.Forwarded(ctx); from != "" {
		return "", fmt.Errorf("%w: request forwarded by %s reached %s", ErrNotLeader, from, n.cfg.ID)
	}
	return u, nil
}

// WaitForLeaderChange waits until a leader other than old is known with
// its HTTP address, and returns that address.
func (n *Node) WaitForLeaderChange(ctx context.Context, old string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, n.cfg.ApplyTimeout)
	defer cancel()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		if id, u := n.LeaderInfo(); id != "" && id != old && u != "" {
			return u, nil
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("%w: no new leader after transfer: %w", ErrTimeout, ctx.Err())
		case <-tick.C:
		}
	}
}
