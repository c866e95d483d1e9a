package node

import (
	"context"
	"errors"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"github.com/cairn-db/cairn/api"
	"github.com/cairn-db/cairn/httpapi"
)

// The cluster at a glance. Members, Alarms and ClusterStatus all look at
// every member of the raft configuration through one fan-out (probe):
// this member answers for itself directly, every other member through
// its GET /v1/status (and, for ClusterStatus, its GET /readyz), all at
// once and within a bound.

// Bounds of the fan-out: Members answers within a second; Alarms and
// ClusterStatus wait longer, since a member's readiness check may take
// httpapi.ReadyWait to answer.
const (
	membersProbeWait = time.Second
	alarmsProbeWait  = 2 * time.Second
	statusProbeWait  = 2 * time.Second
)

// memberProbe is one member of the configuration and what it answered.
type memberProbe struct {
	member api.Member // the configuration's view: id, addresses, role, leader
	status *api.StatusResponse
	err    error // why status is nil
	// ready is the member's readiness check's verdict (nil: ready), when
	// asked for; readyErr is a failure to ask it.
	ready, readyErr error
}

// probe lists the raft configuration, sorted by id, with each member's
// replicated HTTP URL, the leader's id as known here and, from every
// member that answers within wait, its status; with ready, also its
// readiness (this member's WaitReady, the others' GET /readyz, the same
// check).
func (n *Node) probe(ctx context.Context, wait time.Duration, ready bool) (string, []*memberProbe, error) {
	cf, urls, err := n.memberURLs()
	if err != nil {
		return "", nil, err
	}
	lid, _ := n.LeaderInfo()
	var out []*memberProbe
	for _, s := range cf.Servers {
		m := api.Member{ID: string(s.ID), RaftAddr: string(s.Address), HTTPURL: urls[string(s.ID)],
			Role: api.RoleVoter, Leader: string(s.ID) == lid}
		if s.Suffrage != raft.Voter {
			m.Role = api.RoleNonvoter
		}
		out = append(out, &memberProbe{member: m})
	}
	slices.SortFunc(out, func(a, b *memberProbe) int { return strings.Compare(a.member.ID, b.member.ID) })
	pctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	var wg sync.WaitGroup
	for _, p := range out {
		if p.member.ID == n.cfg.ID {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if st, err := n.Status(); err != nil {
					p.err = err
				} else {
					p.status = &st
				}
				if ready {
					p.ready = n.WaitReady(pctx, httpapi.ReadyWait)
				}
			}()
			continue
		}
		if p.member.HTTPURL == "" {
			p.err = errors.New("no known HTTP address")
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if st, err := n.peer.Status(pctx, p.member.HTTPURL); err != nil {
				p.err = err
			} else {
				p.status = &st
			}
		}()
		if ready {
			wg.Add(1)
			go func() {
				defer wg.Done()
				switch err := n.peer.Ready(pctx, p.member.HTTPURL); {
				case err == nil:
				case httpapi.RemoteCode(err) == api.CodeUnavailable:
					p.ready = err
				default:
					p.readyErr = err
				}
			}()
		}
	}
	wg.Wait()
	return lid, out, nil
}

// Members lists the raft configuration with each member's replicated HTTP
// URL and, from the members that answer within a second, their progress.
func (n *Node) Members(ctx context.Context) (api.MembersResponse, error) {
	lid, probes, err := n.probe(ctx, membersProbeWait, false)
	if err != nil {
		return api.MembersResponse{}, err
	}
	resp := api.MembersResponse{Leader: lid}
	for _, p := range probes {
		m := p.member
		if st := p.status; st != nil {
			m.Reachable, m.Revision, m.AppliedIndex, m.LastContact = true, st.Revision, st.AppliedIndex, st.LastContact
		}
		resp.Members = append(resp.Members, m)
	}
	return resp, nil
}

// ClusterStatus describes every member of the raft configuration as
// this member sees it (GET /v1/cluster/status): the configuration's view
// of each, its own status when it answers within two seconds (else why
// not), how far its revision is behind the leader's, and its health: the
// verdict of its readiness check (GET /readyz), "unreachable" when it did
// not answer.
func (n *Node) ClusterStatus(ctx context.Context) (api.ClusterStatusResponse, error) {
	lid, probes, err := n.probe(ctx, statusProbeWait, true)
	if err != nil {
		return api.ClusterStatusResponse{}, err
	}
	resp := api.ClusterStatusResponse{Node: n.cfg.ID, Leader: lid, Members: make([]api.MemberStatus, 0, len(probes))}
	var leaderRev uint64
	leaderKnown := false
	for _, p := range probes {
		if p.status != nil {
			resp.Term = max(resp.Term, p.status.Term)
			if p.member.Leader {
				leaderRev, leaderKnown = p.status.Revision, true
			}
		}
	}
	for _, p := range probes {
		m := api.MemberStatus{ID: p.member.ID, RaftAddr: p.member.RaftAddr, HTTPURL: p.member.HTTPURL,
			Role: p.member.Role, Leader: p.member.Leader, Status: p.status}
		switch {
		case p.status == nil:
			m.Error, m.Health = unreachableReason(p.err), api.HealthUnreachable
		case p.readyErr != nil:
			m.Reachable, m.Health = true, "readiness unknown: "+p.readyErr.Error()
		case p.ready != nil:
			m.Reachable, m.Health = true, readyReason(p.ready)
		default:
			m.Reachable, m.Health = true, api.HealthReady
		}
		if leaderKnown && p.status != nil && !p.member.Leader && leaderRev > p.status.Revision {
			m.Lag = leaderRev - p.status.Revision
		}
		resp.Members = append(resp.Members, m)
	}
	return resp, nil
}

// readyReason is why a readiness check failed, as the member said it
// (another member's answer is an *api.Error whose message is its reason).
func readyReason(err error) string {
	var e *api.Error
	if errors.As(err, &e) {
		return e.Message
	}
	return err.Error()
}

// unreachableReason says why a member's status could not be had, without
// the request's wrapping: the member's own error answer, the network's
// error ("dial tcp ...: connection refused"), or that it did not answer
// in time.
func unreachableReason(err error) string {
	var ae *api.Error
	var ue *url.Error
	switch {
	case errors.As(err, &ae):
		return ae.Message
	case errors.Is(err, context.DeadlineExceeded):
		return "no answer in time"
	case errors.As(err, &ue):
		return ue.Err.Error()
	}
	return err.Error()
}
