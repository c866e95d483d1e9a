package httpapi

// TEMPORARY (issue 19, status page branch): a stand-in for GET
// /v1/cluster/status so that the status page can be developed and tested
// before the branch that implements the endpoint is merged. At the merge
// this file and node/clusterstatus_tmp.go are dropped in favour of that
// branch's handler (same name, clusterStatus) and Service method
// (ClusterStatus); the route line in routes() is the same.

import (
	"context"
	"fmt"
	"net/http"

	"github.com/cairn-db/cairn/api"
)

func (h *handler) clusterStatus(w http.ResponseWriter, r *http.Request) error {
	cs, ok := h.svc.(interface {
		ClusterStatus(ctx context.Context) (api.ClusterStatusResponse, error)
	})
	if !ok {
		return fmt.Errorf("httpapi: this member cannot gather the cluster's status")
	}
	resp, err := cs.ClusterStatus(r.Context())
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, resp)
	return nil
}
