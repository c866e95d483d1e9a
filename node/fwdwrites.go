package node

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/cairn-db/cairn/api"
	"github.com/cairn-db/cairn/fsm"
)

// A follower does not proxy each client write to the leader as its own
// HTTP request. The forwarder gathers the writes that arrive while earlier
// ones are on their way, as the leader's batcher does for raft entries,
// and sends them as one POST /v1/internal/writes. The leader commits each
// one exactly as if its client had sent it there (its own validation,
// idempotency key, revision and result; they go through the leader's
// batcher like any other write) and answers each one's HTTP status,
// revision and body, which the follower passes on unchanged. One request
// per batch instead of one per write is most of what forwarding cost the
// leader's HTTP server and the follower's HTTP client under load.
//
// What can fail is what could fail with one request per write: if the
// batch request fails (the leader crashed, the connection broke), every
// write in it gets an "unavailable" answer and may or may not have been
// committed; clients retry with the same idempotency key.

// forwardPath is the leader's route for forwarded writes. Only members
// call it (requests carry api.HeaderForwarded).
const forwardPath = "/v1/internal/writes"

// errProxyWrite tells the HTTP layer to proxy a write as its own request
// instead: it is too large to share a batch, or the leader is an older
// version without forwardPath.
var errProxyWrite = errors.New("node: proxy this write on its own")

// forwardReply is the leader's answer to one forwarded write.
type forwardReply struct {
	status   int
	revision uint64 // the revision header, 0 when absent
	body     []byte
}

type fwdReq struct {
	txn   fsm.Txn
	size  int
	state atomic.Int32 // reqQueued, reqProposed, reqAbandoned (batcher.go)
	done  chan fwdResult
}

type fwdResult struct {
	reply forwardReply
	err   error
}

// forwarder owns the goroutine that forms forwarded batches; Node.Close
// stops it through the node's context, and each batch's request ends with
// the node's context too.
type forwarder struct {
	n     *Node
	reqs  chan *fwdReq
	slots chan struct{} // one token per batch on its way

	// maxBytes bounds a batch's estimated size: maxBatchBytes, or a
	// quarter of the request limit when that is lower, so that a batch
	// stays well inside the leader's request limit. A write above half of
	// it is proxied alone.
	maxBytes int

	batches atomic.Uint64 // batch requests sent
	txns    atomic.Uint64 // writes sent in them
}

func newForwarder(n *Node, inflight int) *forwarder {
	return &forwarder{n: n, reqs: make(chan *fwdReq, 4*maxBatchTxns), slots: make(chan struct{}, inflight),
		maxBytes: int(min(int64(maxBatchBytes), n.cfg.MaxRequestBytes/4))}
}

// ForwardWrite sends t to the leader with other writes waiting here and
// returns the leader's answer to it. It returns errProxyWrite when t must
// be proxied on its own. Until t is sent, ctx can abandon it (certainly
// not applied); after that an error means the outcome is unknown.
func (n *Node) ForwardWrite(ctx context.Context, t fsm.Txn) (forwardReply, error) {
	f := n.fwd
	size := txnSize(&t)
	id, u := n.LeaderInfo()
	if id == "" || u == "" || id == n.cfg.ID {
		return forwardReply{}, fmt.Errorf("%w: cannot forward", ErrNoLeader)
	}
	if old, _ := n.oldLeader.Load().(string); size > f.maxBytes/2 || old == id {
		return forwardReply{}, errProxyWrite
	}
	r := &fwdReq{txn: t, size: size, done: make(chan fwdResult, 1)}
	select {
	case f.reqs <- r:
	case <-ctx.Done():
		return forwardReply{}, fmt.Errorf("%w: %w", ErrTimeout, ctx.Err())
	case <-n.ctx.Done():
		return forwardReply{}, fmt.Errorf("%w: %w", ErrShuttingDown, n.ctx.Err())
	}
	select {
	case out := <-r.done:
		return out.reply, out.err
	case <-ctx.Done():
		if r.state.CompareAndSwap(reqQueued, reqAbandoned) {
			return forwardReply{}, fmt.Errorf("%w: waiting to forward: %w", ErrTimeout, ctx.Err())
		}
		return forwardReply{}, fmt.Errorf("%w: forwarded to the leader, no answer yet (the write may have been applied): %w", ErrTimeout, ctx.Err())
	case <-n.ctx.Done():
		if r.state.CompareAndSwap(reqQueued, reqAbandoned) {
			return forwardReply{}, fmt.Errorf("%w: %w", ErrShuttingDown, n.ctx.Err())
		}
		out := <-r.done // sent: the batch's request ends with the node's context and answers it
		return out.reply, out.err
	}
}

// run forms and sends batches until the node stops.
func (f *forwarder) run() {
	ctx := f.n.ctx
	batch := make([]*fwdReq, 0, maxBatchTxns)
	for {
		var first *fwdReq
		select {
		case first = <-f.reqs:
		case <-ctx.Done():
			return
		}
		select {
		case f.slots <- struct{}{}:
		case <-ctx.Done():
			return
		}
		batch = batch[:0]
		size := 0
		take := func(r *fwdReq) bool {
			if !r.state.CompareAndSwap(reqQueued, reqProposed) {
				return true // abandoned by its caller
			}
			batch = append(batch, r)
			size += r.size
			return len(batch) < maxBatchTxns && size < f.maxBytes/2
		}
		gatherQueued(first, f.reqs, take)
		if len(batch) == 0 {
			<-f.slots
			continue
		}
		reqs := append([]*fwdReq(nil), batch...)
		f.n.goRun(func() {
			defer func() { <-f.slots }()
			id, leaderURL := f.n.LeaderInfo()
			if id == "" || leaderURL == "" || id == f.n.cfg.ID {
				answerForwarded(reqs, fwdResult{err: fmt.Errorf("%w: cannot forward", ErrNoLeader)})
				return
			}
			f.send(id, leaderURL, reqs)
		})
	}
}

func answerForwarded(reqs []*fwdReq, out fwdResult) {
	for _, r := range reqs {
		r.done <- out
	}
}

// send sends one batch to the leader (id, at leaderURL) and answers every
// request in it.
func (f *forwarder) send(id, leaderURL string, reqs []*fwdReq) {
	f.batches.Add(1)
	f.txns.Add(uint64(len(reqs)))
	answer := func(out fwdResult) { answerForwarded(reqs, out) }
	txns := make([]fsm.Txn, len(reqs))
	for i, r := range reqs {
		txns[i] = r.txn
	}
	body, err := fsm.EncodeCommand(fsm.Command{Batch: &fsm.Batch{Txns: txns}})
	if err != nil {
		answer(fwdResult{err: err})
		return
	}
	// The leader bounds each write by its apply timeout; this bounds a
	// leader that stops answering.
	ctx, cancel := context.WithTimeout(f.n.ctx, 2*f.n.cfg.ApplyTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, leaderURL+forwardPath, bytes.NewReader(body))
	if err != nil {
		answer(fwdResult{err: fmt.Errorf("node: forward: %w", err)})
		return
	}
	req.Header.Set(api.HeaderForwarded, f.n.cfg.ID)
	req.Header.Set("Content-Type", "application/octet-stream")
	resp, err := f.n.client.Do(req)
	if err != nil {
		answer(fwdResult{err: fmt.Errorf("%w: forwarding to leader %s: %w", ErrNoLeader, id, err)})
		return
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		answer(fwdResult{err: fmt.Errorf("%w: forwarding to leader %s: %w", ErrNoLeader, id, err)})
		return
	}
	switch {
	case resp.StatusCode == http.StatusNotFound || resp.StatusCode == http.StatusMethodNotAllowed:
		// A leader that predates forwardPath: proxy while it leads.
		f.n.oldLeader.Store(id)
		answer(fwdResult{err: errProxyWrite})
		return
	case resp.StatusCode == http.StatusRequestEntityTooLarge:
		// The leader's request limit is lower than this member's: the
		// batch was too large there, not its writes. Proxy them one by one.
		answer(fwdResult{err: errProxyWrite})
		return
	case resp.StatusCode != http.StatusOK:
		// The whole batch was refused (not the leader any more, shutting
		// down): every write gets that answer.
		answer(fwdResult{reply: forwardReply{status: resp.StatusCode, body: data}})
		return
	}
	replies, err := decodeForwardReplies(data, len(reqs))
	if err != nil {
		answer(fwdResult{err: err})
		return
	}
	for i, r := range reqs {
		r.done <- fwdResult{reply: replies[i]}
	}
}

// The answer to a batch: for each write in order, uvarint status, uvarint
// revision (0: none), uvarint body length and the body.

func encodeForwardReplies(replies []forwardReply) []byte {
	size := 0
	for _, r := range replies {
		size += 3*binary.MaxVarintLen64 + len(r.body)
	}
	b := make([]byte, 0, size)
	for _, r := range replies {
		b = binary.AppendUvarint(b, uint64(r.status))
		b = binary.AppendUvarint(b, r.revision)
		b = binary.AppendUvarint(b, uint64(len(r.body)))
		b = append(b, r.body...)
	}
	return b
}

func decodeForwardReplies(b []byte, n int) ([]forwardReply, error) {
	out := make([]forwardReply, 0, n)
	next := func() (uint64, bool) {
		v, k := binary.Uvarint(b)
		if k <= 0 {
			return 0, false
		}
		b = b[k:]
		return v, true
	}
	for len(out) < n {
		status, ok1 := next()
		rev, ok2 := next()
		size, ok3 := next()
		if !ok1 || !ok2 || !ok3 || size > uint64(len(b)) {
			return nil, fmt.Errorf("node: malformed answer to %d forwarded writes (%d decoded)", n, len(out))
		}
		out = append(out, forwardReply{status: int(status), revision: rev, body: b[:size:size]})
		b = b[size:]
	}
	if len(b) != 0 {
		return nil, fmt.Errorf("node: %d bytes after the answers to %d forwarded writes", len(b), n)
	}
	return out, nil
}

// replyRecorder is an http.ResponseWriter that keeps one write's answer
// for the batch reply.
type replyRecorder struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (rr *replyRecorder) Header() http.Header {
	if rr.header == nil {
		rr.header = http.Header{}
	}
	return rr.header
}

func (rr *replyRecorder) WriteHeader(status int) {
	if rr.status == 0 {
		rr.status = status
	}
}

func (rr *replyRecorder) Write(p []byte) (int, error) {
	rr.WriteHeader(http.StatusOK)
	return rr.body.Write(p)
}

// forwardedWrites serves forwardPath on the leader: it commits each write
// of a follower's batch concurrently, as the follower's clients would
// have, and answers every one's HTTP answer in order.
func (h *handler) forwardedWrites(w http.ResponseWriter, r *http.Request) error {
	if r.Header.Get(api.HeaderForwarded) == "" {
		return badRequest("%s is for members forwarding writes", forwardPath)
	}
	if !h.svc.IsLeader() {
		return fmt.Errorf("%w: writes forwarded by %s reached %s", ErrNotLeader, r.Header.Get(api.HeaderForwarded), h.svc.ID())
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return err
	}
	cmd, err := fsm.DecodeCommand(body)
	if err != nil {
		return badRequest("forwarded writes: %v", err)
	}
	if cmd.Batch == nil {
		return badRequest("forwarded writes: not a batch")
	}
	txns := cmd.Batch.Txns
	recs := make([]replyRecorder, len(txns))
	var wg sync.WaitGroup
	for i := range txns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := h.svc.Write(r.Context(), txns[i])
			if err == nil {
				err = h.answerWrite(&recs[i], res)
			}
			if err != nil {
				h.writeError(&recs[i], err)
			}
		}()
	}
	wg.Wait()
	replies := make([]forwardReply, len(txns))
	for i := range recs {
		rep := forwardReply{status: recs[i].status, body: recs[i].body.Bytes()}
		if v := recs[i].Header().Get(api.HeaderRevision); v != "" {
			rep.revision, _ = strconv.ParseUint(v, 10, 64) // written by setRevision
		}
		replies[i] = rep
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(encodeForwardReplies(replies))
	return nil
}
