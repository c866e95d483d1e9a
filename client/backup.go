package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"

	"github.com/cairn-db/cairn/api"
)

// BackupOptions select a backup.
type BackupOptions struct {
	// Incremental asks for the transaction records after Since instead of
	// a full copy.
	Incremental bool
	Since       uint64
	// Endpoint pins the member to copy from ("": any member; a follower or
	// non-voter spares the leader).
	Endpoint string
	// MinRevision makes the member wait until it has applied this
	// revision, so the backup is at least that new.
	MinRevision uint64
}

// Backup streams a backup file from one member into w and returns the
// number of bytes written. The file checks itself (see docs/operations.md);
// a stream cut short fails those checks, so a partial file is never taken
// for a good one. Backups are not retried: call again to start over.
func (c *Client) Backup(ctx context.Context, w io.Writer, o BackupOptions) (int64, error) {
	ep := o.Endpoint
	if ep == "" {
		ep = c.pick(ctx, routeSpread, nil)
	} else {
		u, err := c.normalize(ep)
		if err != nil {
			return 0, fmt.Errorf("%w: %w", ErrBadRequest, err)
		}
		ep = u
	}
	q := url.Values{}
	if o.Incremental {
		q.Set("since", strconv.FormatUint(o.Since, 10))
	}
	if o.MinRevision > 0 {
		q.Set("min_revision", strconv.FormatUint(o.MinRevision, 10))
	}
	u := ep + "/v1/backup"
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	var resp *http.Response
	for reauthed := false; ; reauthed = true {
		tok, err := c.callToken(ctx, &call{})
		if err != nil {
			return 0, err
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		if err != nil {
			return 0, fmt.Errorf("%w: %w", ErrBadRequest, err)
		}
		setToken(req, tok)
		resp, err = c.hc.Do(req)
		if err != nil {
			c.markFailed(ep)
			if terr := tlsFailure(ep, err); terr != nil {
				return 0, terr
			}
			return 0, fmt.Errorf("%w: backup from %s: %w", ErrUnavailable, ep, err)
		}
		if resp.StatusCode == http.StatusOK {
			break
		}
		b, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
		_ = resp.Body.Close()
		if terr := plainToTLSAnswer(ep, resp.StatusCode, b); terr != nil {
			c.markFailed(ep)
			return 0, terr
		}
		err = errorFromResponse(resp.StatusCode, resp.Header, b)
		if !errors.Is(err, ErrUnauthenticated) || c.auth == nil || reauthed {
			return 0, err
		}
		c.auth.invalidate(tok) // as in Client.do: one new token, one more try
	}
	defer resp.Body.Close()
	n, err := io.Copy(w, resp.Body)
	if err != nil {
		return n, fmt.Errorf("%w: backup from %s cut off after %d bytes: %w", ErrUnavailable, ep, n, err)
	}
	return n, nil
}

// VerifyNode asks one member to recompute its hash chain from its stored
// records (a deep verify). A mismatch is reported in the answer (OK
// false), not as an error.
func (c *Client) VerifyNode(ctx context.Context, endpoint string) (*api.VerifyResponse, error) {
	u, err := c.normalize(endpoint)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadRequest, err)
	}
	rep, err := c.do(ctx, &call{method: http.MethodPost, path: "/v1/verify", endpoint: u, retry: retrySafe, attempts: 1})
	if err != nil {
		return nil, err
	}
	var vr api.VerifyResponse
	if err := json.Unmarshal(rep.body, &vr); err != nil {
		return nil, fmt.Errorf("client: verify answer: %w", err)
	}
	return &vr, nil
}

// Defrag asks one member (endpoint, required) to give back the free pages
// of its store (POST /v1/maintenance/defrag) and returns its sizes before
// and after. The member's reads and writes wait while it copies its pages
// in use, so defragment the members one at a time (`cairn defrag` does).
// The call is not bounded by Config.RequestTimeout (copying takes as long
// as the store is large): ctx bounds it. It is not retried.
func (c *Client) Defrag(ctx context.Context, endpoint string) (*api.DefragResponse, error) {
	if endpoint == "" {
		return nil, fmt.Errorf("%w: defrag needs the endpoint of the member to defragment", ErrBadRequest)
	}
	u, err := c.normalize(endpoint)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadRequest, err)
	}
	rep, err := c.do(ctx, &call{method: http.MethodPost, path: "/v1/maintenance/defrag", endpoint: u, retry: retrySafe, attempts: 1, unbounded: true})
	if err != nil {
		return nil, err
	}
	var dr api.DefragResponse
	if err := rep.decode(&dr); err != nil {
		return nil, err
	}
	return &dr, nil
}

// SetSpaceLimits changes one member's (endpoint, required) disk-space
// limits while it runs (PUT /v1/maintenance/space): its store's quota
// (--quota-backend-bytes, 0: none) and the free space it keeps on its
// data directory's filesystem (--min-free-bytes, 0: none); nil leaves one
// as it is. It returns both as they now are. A member that refused writes
// for lack of space takes them again at once if the new limits leave
// room. The change lasts until the member's next start: change its flags
// or config file too. A bad value is ErrBadRequest. It is not retried.
func (c *Client) SetSpaceLimits(ctx context.Context, endpoint string, quota, reserve *int64) (*api.SpaceLimits, error) {
	if endpoint == "" {
		return nil, fmt.Errorf("%w: setting space limits needs the endpoint of the member to change", ErrBadRequest)
	}
	u, err := c.normalize(endpoint)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadRequest, err)
	}
	b, err := json.Marshal(api.SpaceLimits{QuotaBackendBytes: quota, MinFreeBytes: reserve})
	if err != nil {
		return nil, err
	}
	rep, err := c.do(ctx, &call{method: http.MethodPut, path: "/v1/maintenance/space", body: b, json: true, endpoint: u, retry: retrySafe, attempts: 1})
	if err != nil {
		return nil, err
	}
	var sl api.SpaceLimits
	if err := rep.decode(&sl); err != nil {
		return nil, err
	}
	return &sl, nil
}
