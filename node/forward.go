package node

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/cairn-db/cairn/api"
)

// hopHeaders are not copied when forwarding.
var hopHeaders = map[string]bool{
	"Connection": true, "Keep-Alive": true, "Proxy-Connection": true, "Te": true,
	"Trailer": true, "Transfer-Encoding": true, "Upgrade": true,
}

// Forward sends the request to the leader and copies its answer back. body
// is the request body when the handler has already read it. A request that
// was itself forwarded is never forwarded again (ErrNotLeader), so two nodes
// with stale views cannot bounce it between them.
func (n *Node) Forward(w http.ResponseWriter, r *http.Request, body []byte) error {
	if r.Header.Get(api.HeaderForwarded) != "" {
		return fmt.Errorf("%w: request forwarded by %s reached a non-leader", ErrNotLeader, r.Header.Get(api.HeaderForwarded))
	}
	id, leaderURL := n.LeaderInfo()
	if id == "" {
		return fmt.Errorf("%w: cannot forward", ErrNoLeader)
	}
	if leaderURL == "" || id == n.cfg.ID {
		return fmt.Errorf("%w: leader %s has no known HTTP address yet", ErrNoLeader, id)
	}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	} else if r.Body != nil && r.Method != http.MethodGet {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(r.Context(), r.Method, leaderURL+r.URL.RequestURI(), rd)
	if err != nil {
		return fmt.Errorf("node: forward: %w", err)
	}
	for k, vs := range r.Header {
		if !hopHeaders[k] {
			req.Header[k] = vs
		}
	}
	req.Header.Set(api.HeaderForwarded, n.cfg.ID)
	resp, err := n.client.Do(req)
	if err != nil {
		return fmt.Errorf("%w: forwarding to leader %s: %w", ErrNoLeader, id, err)
	}
	defer resp.Body.Close()
	for k, vs := range resp.Header {
		if !hopHeaders[k] {
			w.Header()[k] = vs
		}
	}
	w.WriteHeader(resp.StatusCode)
	_, _ = io.Copy(w, resp.Body)
	return nil
}

// WaitForLeaderChange waits until a leader other than old is known with
// its HTTP address.
func (n *Node) WaitForLeaderChange(ctx context.Context, old string) error {
	ctx, cancel := context.WithTimeout(ctx, n.cfg.ApplyTimeout)
	defer cancel()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		if id, u := n.LeaderInfo(); id != "" && id != old && u != "" {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w: no new leader after transfer: %w", ErrTimeout, ctx.Err())
		case <-tick.C:
		}
	}
}

// getJSON and postJSON talk to other members.
func (n *Node) getJSON(ctx context.Context, url string, out any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	return n.doJSON(req, out)
}

func (n *Node) postJSON(ctx context.Context, url string, in, out any) error {
	b, err := json.Marshal(in)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(b))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	return n.doJSON(req, out)
}

func (n *Node) doJSON(req *http.Request, out any) error {
	resp, err := n.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		var e api.ErrorResponse
		if json.Unmarshal(body, &e) == nil && e.Error.Code != "" {
			return fmt.Errorf("%w: %s: %s", errRemote, e.Error.Code, e.Error.Message)
		}
		return fmt.Errorf("%w: HTTP %d", errRemote, resp.StatusCode)
	}
	if out == nil {
		return nil
	}
	return json.Unmarshal(body, out)
}
