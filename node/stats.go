package node

import (
	"time"

	"github.com/cairn-db/cairn/api"
	"github.com/cairn-db/cairn/httpapi"
	"github.com/cairn-db/cairn/internal/reqstats"
)

// observeRequest is httpapi.Options.Observe: it keeps each answered read
// and write in the node's request statistics (GET /v1/stats).
func (n *Node) observeRequest(kind httpapi.RequestKind, took time.Duration, failed bool) {
	k := reqstats.Read
	if kind == httpapi.RequestWrite {
		k = reqstats.Write
	}
	n.stats.Observe(k, took, failed)
}

// Stats returns the node's request statistics: the reads and writes its
// HTTP API answered, in 5-second points over the last 15 minutes, oldest
// first.
func (n *Node) Stats() api.StatsResponse {
	return api.StatsResponse{
		Node:            n.cfg.ID,
		IntervalSeconds: int(n.stats.Interval() / time.Second),
		Points:          n.stats.Points(),
	}
}
