package node

import (
	"context"
	"fmt"
	"time"

	"github.com/cairn-db/cairn/api"
	"github.com/cairn-db/cairn/internal/buildinfo"
)

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
		TLS: n.tls != nil, Insecure: n.tls == nil, // no TLS: nobody is authenticated
	}
	if err := n.corrupt(); err != nil {
		s.Corrupt = err.Error()
	}
	s.Alarms = n.alarmList()
	s.Version = buildinfo.Get().Version
	s.Watchers = n.Watchers()
	s.LastScrub = n.scrubs.lastScrub()
	s.Mirror = n.mirrorSummary()
	r := n.space.reading()
	s.StoreBytes, s.StoreInUseBytes = r.usage.FileBytes, r.usage.InUseBytes
	s.QuotaBytes, s.MinFreeBytes = n.space.quota.Load(), n.space.reserve.Load()
	s.FreeBytes = max(r.free, 0)
	if n.IsLeader() {
		s.LastContact = "0s"
	} else if lc := n.raft.LastContact(); !lc.IsZero() {
		s.LastContact = time.Since(lc).Round(time.Millisecond).String()
	}
	return s, nil
}

// Ready reports whether this node's data is sound (not corrupt), it is a
// member, knows a leader and its
// HTTP address (so it can forward), and has applied everything it knows to
// be committed; the error says why not.
func (n *Node) Ready() error {
	if err := n.corruptErr(); err != nil {
		return err
	}
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
