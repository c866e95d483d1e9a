package httpapi

// TEMPORARY (issue 19, status page branch): the fake's ClusterStatus for
// the stand-in route of clusterstatus_tmp.go; dropped with it at the merge.

import (
	"context"

	"github.com/cairn-db/cairn/api"
)

func (f *fakeService) ClusterStatus(context.Context) (api.ClusterStatusResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	resp := api.ClusterStatusResponse{Node: f.id, Leader: f.members.Leader, Term: f.status.Term}
	for _, m := range f.members.Members {
		resp.Members = append(resp.Members, api.MemberStatus{ID: m.ID, RaftAddr: m.RaftAddr, HTTPURL: m.HTTPURL, Role: m.Role, Leader: m.Leader})
	}
	return resp, f.adminErr
}
