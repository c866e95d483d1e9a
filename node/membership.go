package node

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/hashicorp/raft"

	"github.com/cairn-db/cairn/api"
	"github.com/cairn-db/cairn/fsm"
)

// Membership: the raft configuration says who votes; each member's HTTP
// URL is replicated through the log (fsm member records) so that every
// member can reach the leader and list the others. Changes run on the
// leader; a follower forwards them (httpapi.Peer) and returns the
// leader's answer.

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

// Join adds a member through the leader and returns the members. Asking
// again for a current member with the same addresses is a no-op; a member
// known under the same id at another address, or another id at the same
// address, is replaced.
func (n *Node) Join(ctx context.Context, req api.JoinRequest) (api.MembersResponse, error) {
	if req.ID == "" || req.RaftAddr == "" || req.HTTPURL == "" {
		return api.MembersResponse{}, fmt.Errorf("%w: join needs id, raft_addr and http_url", ErrBadRequest)
	}
	if !n.IsLeader() {
		u, err := n.leaderURLFor(ctx, "join")
		if err != nil {
			return api.MembersResponse{}, err
		}
		return n.peer.Join(ctx, u, req, true)
	}
	if err := n.join(ctx, req); err != nil {
		return api.MembersResponse{}, err
	}
	return n.Members(ctx)
}

func (n *Node) join(ctx context.Context, req api.JoinRequest) error {
	req.HTTPURL = normalizeURL(req.HTTPURL, n.cfg.TLS())
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
	// Also for a member already present: one that lost its data directory
	// and joins again replays from the log's first entry.
	if err := n.snapshotForJoin(); err != nil {
		return err
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

// Remove removes a member through the leader and returns the members.
// Asked to remove itself, the leader hands leadership over and lets the
// new leader remove it.
func (n *Node) Remove(ctx context.Context, id string) (api.MembersResponse, error) {
	if !n.IsLeader() {
		u, err := n.leaderURLFor(ctx, "remove a member")
		if err != nil {
			return api.MembersResponse{}, err
		}
		return n.peer.Remove(ctx, u, id)
	}
	if _, err := n.server(id); err != nil {
		return api.MembersResponse{}, err
	}
	if id == n.cfg.ID {
		if err := mapRaftErr(n.wait(n.raft.LeadershipTransfer())); err != nil {
			return api.MembersResponse{}, err
		}
		// A new leader with a known URL is confirmed, so the request cannot
		// bounce back here.
		u, err := n.WaitForLeaderChange(ctx, id)
		if err != nil {
			return api.MembersResponse{}, err
		}
		return n.peer.Remove(ctx, u, id)
	}
	if err := n.wait(n.raft.RemoveServer(raft.ServerID(id), 0, n.cfg.ApplyTimeout)); err != nil {
		return api.MembersResponse{}, mapRaftErr(err)
	}
	n.log.Info("member removed", "id", id)
	if err := n.applyCommand(ctx, fsm.Command{RemoveMember: &fsm.RemoveMember{ID: id}}); err != nil {
		return api.MembersResponse{}, err
	}
	return n.Members(ctx)
}

// Promote makes a non-voter a voter through the leader (a voter stays
// one) and returns the members.
func (n *Node) Promote(ctx context.Context, id string) (api.MembersResponse, error) {
	if !n.IsLeader() {
		u, err := n.leaderURLFor(ctx, "promote a member")
		if err != nil {
			return api.MembersResponse{}, err
		}
		return n.peer.Promote(ctx, u, id)
	}
	s, err := n.server(id)
	if err != nil {
		return api.MembersResponse{}, err
	}
	if s.Suffrage != raft.Voter {
		if err := mapRaftErr(n.wait(n.raft.AddVoter(s.ID, s.Address, 0, n.cfg.ApplyTimeout))); err != nil {
			return api.MembersResponse{}, err
		}
	}
	return n.Members(ctx)
}

// TransferLeadership hands leadership to id, or to the most up-to-date
// voter when id is empty, through the current leader; it returns the
// members once a new leader is known.
func (n *Node) TransferLeadership(ctx context.Context, id string) (api.MembersResponse, error) {
	if !n.IsLeader() {
		u, err := n.leaderURLFor(ctx, "transfer leadership")
		if err != nil {
			return api.MembersResponse{}, err
		}
		return n.peer.TransferLeadership(ctx, u, id)
	}
	old := n.cfg.ID
	if err := n.transferLeadership(id); err != nil {
		return api.MembersResponse{}, err
	}
	if id != old {
		if _, err := n.WaitForLeaderChange(ctx, old); err != nil {
			return api.MembersResponse{}, err
		}
	}
	return n.Members(ctx)
}

func (n *Node) transferLeadership(id string) error {
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

// joinLoop asks the configured members to add this node until one
// accepts or the node closes.
func (n *Node) joinLoop() {
	req := api.JoinRequest{ID: n.cfg.ID, RaftAddr: n.raftAddr, HTTPURL: n.httpURL, NonVoter: n.cfg.NonVoter}
	wait := 200 * time.Millisecond
	for attempt := 1; ; attempt++ {
		for _, u := range n.cfg.Join {
			ctx, cancel := context.WithTimeout(n.ctx, n.cfg.ApplyTimeout+2*time.Second)
			_, err := n.peer.Join(ctx, normalizeURL(u, n.cfg.TLS()), req, false)
			cancel()
			if err == nil {
				n.log.Info("joined cluster", "via", u, "attempt", attempt)
				n.clearRepaired()
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

// clearRepaired removes the marker Repair left (repair.go) once the
// member has joined.
func (n *Node) clearRepaired() {
	err := os.Remove(filepath.Join(n.cfg.DataDir, repairedMarker))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		n.log.Warn("removing the repair marker failed", "err", err)
	}
}
