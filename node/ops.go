package node

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"github.com/cairn-db/cairn/api"
	"github.com/cairn-db/cairn/fsm"
)

// limits returns the apply-time limits this node stamps into a batch.
func (n *Node) limits() fsm.Limits {
	return fsm.Limits{MaxValueSize: uint32(n.cfg.MaxValueSize), IdempotencyWindow: n.cfg.IdempotencyWindow}
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

// Write commits one transaction through raft. It must run on the leader;
// the HTTP layer forwards otherwise. The leader stamps time and limits.
// Concurrent writes share raft entries (batcher.go).
// It returns the transaction's result: Err in the result is a refusal or
// *fsm.ConflictError; the returned error is a failure to commit (not
// leader, leadership lost, timeout, shutting down), after which the write
// may or may not have been applied.
func (n *Node) Write(ctx context.Context, t fsm.Txn) (fsm.TxnResult, error) {
	if err := n.validateTxn(&t); err != nil {
		return fsm.TxnResult{}, err
	}
	if !n.IsLeader() {
		// Unambiguous: nothing was proposed.
		return fsm.TxnResult{}, fmt.Errorf("%w: %s", ErrNotLeader, n.cfg.ID)
	}
	return n.batch.submit(ctx, t)
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
	if err := n.wait(fut); err != nil {
		return nil, mapRaftErr(err)
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

// Compact compacts history before rev on every replica.
func (n *Node) Compact(ctx context.Context, rev uint64) error {
	return n.applyCommand(ctx, fsm.Command{Compact: &fsm.Compact{Revision: rev, Time: time.Now()}})
}

// ReadOptions say how current a read must be.
type ReadOptions struct {
	// Consistency is api.Linearizable (default) or api.Stale.
	Consistency string
	// MaxStaleness refuses a stale read on a follower whose last contact
	// with the leader is older (0: no bound).
	MaxStaleness time.Duration
	// MinRevision waits until this node has applied the revision.
	MinRevision uint64
}

// needsLeader reports whether the read must be served by the leader.
func (o ReadOptions) needsLeader() bool {
	return o.Consistency == api.Linearizable
}

// PrepareRead blocks until this node may serve a read with the given
// options from its local state: for linearizable reads, a read index
// confirmed with a quorum and applied here (leader only); for min_revision
// reads, that revision applied here; for bounded-stale reads, a recent
// enough contact with the leader.
func (n *Node) PrepareRead(ctx context.Context, o ReadOptions) error {
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

// linearizableBarrier implements the read index: a quorum-confirmed commit
// index (shared by concurrent readers), then a wait until it is applied.
func (n *Node) linearizableBarrier(ctx context.Context) error {
	idx, err := n.reads.get(ctx)
	if err != nil {
		return err
	}
	return n.waitApplied(ctx, idx)
}

// waitApplied waits until raft has applied index idx on this node.
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

// readIndex coalesces concurrent linearizable readers onto one leadership
// check: readers that arrive while a check is running share the next one.
type readIndex struct {
	n       *Node
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
		// This caller runs the checks for everyone waiting, including
		// groups that form while it runs; it returns once its own is done.
		r.run(g)
	}
	select {
	case <-g.done:
		return g.index, g.err
	case <-ctx.Done():
		return 0, fmt.Errorf("%w: leadership check: %w", ErrTimeout, ctx.Err())
	}
}

// run performs leadership checks until no group is pending; it returns as
// soon as mine is done, handing the remaining work to a node goroutine.
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
		g.index, g.err = r.n.confirmLeadership()
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

// LeaderInfo returns the leader's id and HTTP URL as known here (empty
// when unknown).
func (n *Node) LeaderInfo() (id, httpURL string) {
	_, lid := n.raft.LeaderWithID()
	id = string(lid)
	if id == "" {
		return "", ""
	}
	if id == n.cfg.ID {
		return id, n.httpURL
	}
	members, err := n.fsm.Members()
	if err != nil {
		return id, ""
	}
	for _, m := range members {
		if m.ID == id {
			return id, m.HTTPAddr
		}
	}
	return id, ""
}

// Join adds a member (leader only). Asking again for a current member with
// the same addresses is a no-op; a member known under the same id at
// another address, or another id at the same address, is replaced.
func (n *Node) Join(ctx context.Context, req api.JoinRequest) error {
	if req.ID == "" || req.RaftAddr == "" || req.HTTPURL == "" {
		return fmt.Errorf("%w: join needs id, raft_addr and http_url", ErrBadRequest)
	}
	req.HTTPURL = normalizeURL(req.HTTPURL)
	cf := n.raft.GetConfiguration()
	if err := cf.Error(); err != nil {
		return mapRaftErr(err)
	}
	id, addr := raft.ServerID(req.ID), raft.ServerAddress(req.RaftAddr)
	present := false
	for _, s := range cf.Configuration().Servers {
		switch {
		case s.ID == id && s.Address == addr:
			// Already a member; a voter asked to be a non-voter stays a voter
			// (demotion is not a join's job).
			present = s.Suffrage == raft.Voter || req.NonVoter
		case s.ID == id || s.Address == addr:
			if err := n.wait(n.raft.RemoveServer(s.ID, 0, n.cfg.ApplyTimeout)); err != nil {
				return mapRaftErr(err)
			}
		}
	}
	if !present {
		var fut raft.IndexFuture
		if req.NonVoter {
			fut = n.raft.AddNonvoter(id, addr, 0, n.cfg.ApplyTimeout)
		} else {
			fut = n.raft.AddVoter(id, addr, 0, n.cfg.ApplyTimeout)
		}
		if err := n.wait(fut); err != nil {
			return mapRaftErr(err)
		}
		n.log.Info("member added", "id", req.ID, "raft", req.RaftAddr, "non_voter", req.NonVoter)
	}
	return n.applyCommand(ctx, fsm.Command{SetMember: &fsm.Member{ID: req.ID, HTTPAddr: req.HTTPURL, RaftAddr: req.RaftAddr}})
}

// server returns the raft configuration entry for id.
func (n *Node) server(id string) (raft.Server, error) {
	cf := n.raft.GetConfiguration()
	if err := cf.Error(); err != nil {
		return raft.Server{}, mapRaftErr(err)
	}
	for _, s := range cf.Configuration().Servers {
		if string(s.ID) == id {
			return s, nil
		}
	}
	return raft.Server{}, fmt.Errorf("%w: %q", ErrUnknownMember, id)
}

// Remove removes a member other than this leader (leader only; the HTTP
// layer transfers leadership first when asked to remove the leader).
func (n *Node) Remove(ctx context.Context, id string) error {
	if _, err := n.server(id); err != nil {
		return err
	}
	if id == n.cfg.ID {
		return fmt.Errorf("%w: transfer leadership before removing the leader", ErrBadRequest)
	}
	if err := n.wait(n.raft.RemoveServer(raft.ServerID(id), 0, n.cfg.ApplyTimeout)); err != nil {
		return mapRaftErr(err)
	}
	n.log.Info("member removed", "id", id)
	return n.applyCommand(ctx, fsm.Command{RemoveMember: &fsm.RemoveMember{ID: id}})
}

// Promote makes a non-voter a voter (leader only); a voter stays one.
func (n *Node) Promote(_ context.Context, id string) error {
	s, err := n.server(id)
	if err != nil {
		return err
	}
	if s.Suffrage == raft.Voter {
		return nil
	}
	return mapRaftErr(n.wait(n.raft.AddVoter(s.ID, s.Address, 0, n.cfg.ApplyTimeout)))
}

// TransferLeadership hands leadership to id, or to the most up-to-date
// voter when id is empty (leader only).
func (n *Node) TransferLeadership(_ context.Context, id string) error {
	if id == "" {
		return mapRaftErr(n.wait(n.raft.LeadershipTransfer()))
	}
	if id == n.cfg.ID {
		return nil
	}
	s, err := n.server(id)
	if err != nil {
		return err
	}
	if s.Suffrage != raft.Voter {
		return fmt.Errorf("%w: %q is not a voter", ErrBadRequest, id)
	}
	return mapRaftErr(n.wait(n.raft.LeadershipTransferToServer(s.ID, s.Address)))
}

// Status describes this node.
func (n *Node) Status() (api.StatusResponse, error) {
	st, err := n.fsm.Status()
	if err != nil {
		return api.StatusResponse{}, err
	}
	lid, lurl := n.LeaderInfo()
	cid, err := n.fsm.ClusterID()
	if err != nil {
		return api.StatusResponse{}, err
	}
	s := api.StatusResponse{
		ID: n.cfg.ID, ClusterID: cid, State: n.raft.State().String(), Leader: lid, LeaderURL: lurl,
		Term: n.raft.CurrentTerm(), CommitIndex: n.raft.CommitIndex(), AppliedIndex: n.raft.AppliedIndex(),
		Revision: st.Revision, Hash: st.Head.String(), CompactRevision: st.CompactRevision,
	}
	if n.IsLeader() {
		s.LastContact = "0s"
	} else if lc := n.raft.LastContact(); !lc.IsZero() {
		s.LastContact = time.Since(lc).Round(time.Millisecond).String()
	}
	return s, nil
}

// Members lists the raft configuration with each member's replicated HTTP
// URL and, from the members that answer within a second, their progress.
func (n *Node) Members(ctx context.Context) (api.MembersResponse, error) {
	cf := n.raft.GetConfiguration()
	if err := cf.Error(); err != nil {
		return api.MembersResponse{}, mapRaftErr(err)
	}
	records, err := n.fsm.Members()
	if err != nil {
		return api.MembersResponse{}, err
	}
	urls := make(map[string]string, len(records))
	for _, m := range records {
		urls[m.ID] = m.HTTPAddr
	}
	lid, _ := n.LeaderInfo()
	resp := api.MembersResponse{Leader: lid}
	for _, s := range cf.Configuration().Servers {
		m := api.Member{ID: string(s.ID), RaftAddr: string(s.Address), HTTPURL: urls[string(s.ID)],
			Role: api.RoleVoter, Leader: string(s.ID) == lid}
		if s.Suffrage != raft.Voter {
			m.Role = api.RoleNonvoter
		}
		resp.Members = append(resp.Members, m)
	}
	slices.SortFunc(resp.Members, func(a, b api.Member) int {
		if a.ID < b.ID {
			return -1
		}
		if a.ID > b.ID {
			return 1
		}
		return 0
	})
	pctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for i := range resp.Members {
		m := &resp.Members[i]
		if m.ID == n.cfg.ID {
			if st, err := n.Status(); err == nil {
				m.Reachable, m.Revision, m.AppliedIndex, m.LastContact = true, st.Revision, st.AppliedIndex, st.LastContact
			}
			continue
		}
		if m.HTTPURL == "" {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			var st api.StatusResponse
			if err := n.getJSON(pctx, m.HTTPURL+"/v1/status", &st); err == nil {
				m.Reachable, m.Revision, m.AppliedIndex, m.LastContact = true, st.Revision, st.AppliedIndex, st.LastContact
			}
		}()
	}
	wg.Wait()
	return resp, nil
}

// Ready reports whether this node is a member, knows a leader and its
// HTTP address (so it can forward), and has applied everything it knows to
// be committed; the error says why not.
func (n *Node) Ready() error {
	if _, err := n.server(n.cfg.ID); err != nil {
		return fmt.Errorf("not a member: %w", err)
	}
	id, url := n.LeaderInfo()
	if id == "" {
		return ErrNoLeader
	}
	if url == "" {
		// Without the leader's address this member cannot forward writes.
		return fmt.Errorf("%w: leader %s has no known HTTP address yet", ErrNoLeader, id)
	}
	ci, ai := n.raft.CommitIndex(), n.raft.AppliedIndex()
	if ci == 0 || ai < ci {
		return fmt.Errorf("%w: applied index %d behind commit index %d", ErrNoLeader, ai, ci)
	}
	return nil
}

// WaitReady waits up to d (or until ctx ends) for Ready to hold and
// returns Ready's last error if it does not. Under steady writes every
// member is, for a moment after each commit, an entry or two from having
// applied what it knows to be committed; a readiness probe that caught
// such a moment would report a healthy member as not ready. A member that
// is catching up, has no leader or is not a member stays not ready.
func (n *Node) WaitReady(ctx context.Context, d time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		ch := n.fsm.Changed()
		err := n.Ready()
		if err == nil {
			return nil
		}
		select {
		case <-ch:
		case <-tick.C:
		case <-ctx.Done():
			return err
		case <-n.ctx.Done():
			return err
		}
	}
}

// joinLoop asks the configured members to add this node until one
// accepts or the node closes.
func (n *Node) joinLoop() {
	req := api.JoinRequest{ID: n.cfg.ID, RaftAddr: n.raftAddr, HTTPURL: n.httpURL, NonVoter: n.cfg.NonVoter}
	wait := 200 * time.Millisecond
	for attempt := 1; ; attempt++ {
		for _, u := range n.cfg.Join {
			ctx, cancel := context.WithTimeout(n.ctx, n.cfg.ApplyTimeout+2*time.Second)
			err := n.postJSON(ctx, normalizeURL(u)+"/v1/cluster/members", req, nil)
			cancel()
			if err == nil {
				n.log.Info("joined cluster", "via", u, "attempt", attempt)
				return
			}
			if n.ctx.Err() != nil {
				return
			}
			n.log.Debug("join attempt failed", "via", u, "err", err)
		}
		select {
		case <-n.ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = min(2*wait, 5*time.Second)
	}
}

// errRemote is an error answer from another node.
var errRemote = errors.New("node: remote error")
