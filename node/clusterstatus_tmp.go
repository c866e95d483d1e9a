package node

// TEMPORARY (issue 19, status page branch): a minimal ClusterStatus so
// that the status page can be developed and tested before the branch that
// implements GET /v1/cluster/status is merged. At the merge this file and
// httpapi/clusterstatus_tmp.go are dropped in favour of that branch's.

import (
	"context"
	"sync"
	"time"

	"github.com/cairn-db/cairn/api"
)

// ClusterStatus asks every member of the configuration for its status.
func (n *Node) ClusterStatus(ctx context.Context) (api.ClusterStatusResponse, error) {
	ms, err := n.Members(ctx)
	if err != nil {
		return api.ClusterStatusResponse{}, err
	}
	resp := api.ClusterStatusResponse{Node: n.cfg.ID, Leader: ms.Leader, Members: make([]api.MemberStatus, len(ms.Members))}
	pctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for i, m := range ms.Members {
		resp.Members[i] = api.MemberStatus{ID: m.ID, RaftAddr: m.RaftAddr, HTTPURL: m.HTTPURL, Role: m.Role, Leader: m.Leader}
		ex := &resp.Members[i]
		wg.Add(1)
		go func() {
			defer wg.Done()
			var st api.StatusResponse
			var err error
			if m.ID == n.cfg.ID {
				st, err = n.Status()
			} else if m.HTTPURL != "" {
				st, err = n.peer.Status(pctx, m.HTTPURL)
			} else {
				ex.Error, ex.Health = "no known HTTP address", "unreachable"
				return
			}
			if err != nil {
				ex.Error, ex.Health = err.Error(), "unreachable"
				return
			}
			ex.Reachable, ex.Status, ex.Health = true, &st, "ready"
			if st.Corrupt != "" {
				ex.Health = "corrupt"
			}
		}()
	}
	wg.Wait()
	var leaderRev uint64
	for _, m := range resp.Members {
		if m.Status != nil {
			resp.Term = max(resp.Term, m.Status.Term)
			if m.Leader {
				leaderRev = m.Status.Revision
			}
		}
	}
	for i := range resp.Members {
		if s := resp.Members[i].Status; s != nil && leaderRev > s.Revision {
			resp.Members[i].Lag = leaderRev - s.Revision
		}
	}
	return resp, nil
}
