package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"time"

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

// MirrorStatusFresh is MirrorStatus with the source head asked of the
// source cluster for this answer (GET /v1/mirror/status?source_head=
// fresh): a linearizable read of its committed head there, so a source
// member that lags its own leader does not make the standby look caught
// up; SourceHeadFresh is set and the lag is measured against that head.
// On a primary (or a diverged or compacted standby) it is the plain
// status. It is ErrUnavailable, not retried, when no source member
// answered (the message names each URL tried), and when no member of
// this cluster could be reached.
func (c *Client) MirrorStatusFresh(ctx context.Context) (*api.MirrorStatus, error) {
	q := url.Values{"source_head": {"fresh"}}
	return c.mirrorCall(ctx, &call{method: http.MethodGet, path: "/v1/mirror/status", query: q, route: routeLeader, retry: retrySafe})
}

// MirrorCaughtUp waits until the standby has applied everything the
// source cluster has committed: every poll (MirrorStatusFresh) asks the
// source for its committed head, and it returns that status once the
// standby has applied up to it (SourceRevision >= SourceHead, lag 0). A
// failure to reach the source, or this cluster (ErrUnavailable), is
// asked again every poll until ctx ends (then the error names the last
// failure, or the last revisions seen); another error ends the wait. A
// mirror that is not following cannot catch up: it answers that status
// with ErrMirrorState. poll <= 0 polls every 200 ms.
func (c *Client) MirrorCaughtUp(ctx context.Context, poll time.Duration) (*api.MirrorStatus, error) {
	if poll <= 0 {
		poll = 200 * time.Millisecond
	}
	tick := time.NewTicker(poll)
	defer tick.Stop()
	var last *api.MirrorStatus
	var lastErr error
	for {
		st, err := c.MirrorStatusFresh(ctx)
		switch {
		case err != nil && ctx.Err() != nil:
			// The wait's end cut this call: the failure before it, if
			// any, says more.
			if lastErr == nil && last == nil {
				lastErr = err
			}
		case errors.Is(err, ErrUnavailable):
			lastErr = err
		case err != nil:
			return nil, err
		case st.State != api.MirrorFollowing:
			return st, fmt.Errorf("%w: the mirror is %s, not following its source", ErrMirrorState, st.State)
		case st.SourceHeadFresh && st.LagRevisions == 0 && st.SourceRevision >= st.SourceHead:
			return st, nil
		default:
			last, lastErr = st, nil
		}
		select {
		case <-ctx.Done():
			if lastErr != nil {
				return nil, fmt.Errorf("waiting for the mirror to catch up: %w (last: %w)", ctx.Err(), lastErr)
			}
			if last != nil {
				return nil, fmt.Errorf("waiting for the mirror to catch up (at source revision %d, the source's committed head is %d): %w",
					last.SourceRevision, last.SourceHead, ctx.Err())
			}
			return nil, fmt.Errorf("waiting for the mirror to catch up: %w", ctx.Err())
		case <-tick.C:
		}
	}
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
