package client

import (
	"context"
	"encoding/json"
	"net/http"

	"github.com/cairn-db/cairn/api"
)

// Mirrors (docs/mirror.md): a cluster is made a standby of a source
// cluster, follows it, and can be promoted. Start, stop and promote go to
// the leader (any member forwards them); the status is the answering
// member's view (the connected source and the last stream error are
// known on the standby's leader only).

// MirrorStart makes the cluster a standby of the source cluster whose
// members' HTTP URLs are req.Sources (with req.Include or req.Exclude, a
// filtered mirror; with req.MaxRate, a bound in bytes per second on what
// the standby's leader reads from the source, kept with the mirror;
// ErrBadRequest when negative). It answers the mirror status after the start;
// ErrMirrorState when the cluster is already following, or the source
// would make a loop.
func (c *Client) MirrorStart(ctx context.Context, req api.MirrorStartRequest) (*api.MirrorStatus, error) {
	b, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	return c.mirrorCall(ctx, &call{method: http.MethodPost, path: "/v1/mirror/start", body: b, json: true,
		route: routeLeader, retry: retrySafe})
}

// MirrorStop stops following the source: the cluster stays read-only.
func (c *Client) MirrorStop(ctx context.Context) (*api.MirrorStatus, error) {
	return c.mirrorCall(ctx, &call{method: http.MethodPost, path: "/v1/mirror/stop", route: routeLeader, retry: retrySafe})
}

// MirrorPromote makes a standby writable from its head: the promotion is
// a record in its chain. ErrMirrorState on a primary or a filtered
// mirror.
func (c *Client) MirrorPromote(ctx context.Context) (*api.MirrorStatus, error) {
	return c.mirrorCall(ctx, &call{method: http.MethodPost, path: "/v1/mirror/promote", route: routeLeader, retry: retrySafe})
}

// MirrorStatus returns the cluster's mirror state, as a standby and as a
// source (its mirrors' checkpoints), from the leader when it is known.
func (c *Client) MirrorStatus(ctx context.Context) (*api.MirrorStatus, error) {
	return c.mirrorCall(ctx, &call{method: http.MethodGet, path: "/v1/mirror/status", route: routeLeader, retry: retryAmbiguous})
}

func (c *Client) mirrorCall(ctx context.Context, cl *call) (*api.MirrorStatus, error) {
	rep, err := c.do(ctx, cl)
	if err != nil {
		return nil, err
	}
	var st api.MirrorStatus
	if err := rep.decode(&st); err != nil {
		return nil, err
	}
	return &st, nil
}
