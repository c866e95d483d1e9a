package cluster

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/cairn-db/cairn/api"
	"github.com/cairn-db/cairn/internal/tlsutil"
)

// Resp is an HTTP answer.
type Resp struct {
	Code   int
	Body   []byte
	Header http.Header
}

func (r Resp) String() string { return fmt.Sprintf("%d %s", r.Code, bytes.TrimSpace(r.Body)) }

// Revision returns the Cairn-Revision header (0 when absent).
func (r Resp) Revision() uint64 {
	v, _ := strconv.ParseUint(r.Header.Get(api.HeaderRevision), 10, 64)
	return v
}

// HTTP is the harness's HTTP client: requests to members, and the
// conditions its waits poll (readiness, the leader, converged chains),
// which work on members of any kind, and on any cairn reachable by URL
// (the docker suite's containers).
type HTTP struct {
	c *http.Client
}

// NewHTTP returns a client whose requests time out after timeout.
func NewHTTP(timeout time.Duration) *HTTP {
	return &HTTP{c: &http.Client{Timeout: timeout, Transport: &http.Transport{MaxIdleConnsPerHost: 16}}}
}

// NewHTTPTLS returns an HTTPS client with the given TLS configuration
// (Cluster.ClientTLS) whose requests time out after timeout.
func NewHTTPTLS(timeout time.Duration, cfg *tls.Config) *HTTP {
	return &HTTP{c: &http.Client{Timeout: timeout, Transport: &http.Transport{MaxIdleConnsPerHost: 16,
		TLSClientConfig: cfg, DialTLSContext: tlsutil.DialTLSContext(cfg, nil)}}}
}

// Client is the underlying *http.Client.
func (h *HTTP) Client() *http.Client { return h.c }

// CloseIdleConnections closes the client's idle keep-alive connections.
func (h *HTTP) CloseIdleConnections() { h.c.CloseIdleConnections() }

// Do sends a request and reads the whole answer.
func (h *HTTP) Do(ctx context.Context, method, url string, body []byte, hdr http.Header) (Resp, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return Resp{}, err
	}
	for k, vs := range hdr {
		req.Header[k] = vs
	}
	resp, err := h.c.Do(req)
	if err != nil {
		return Resp{}, fmt.Errorf("%s %s: %w", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return Resp{}, fmt.Errorf("%s %s: read body: %w", method, url, err)
	}
	return Resp{Code: resp.StatusCode, Body: b, Header: resp.Header}, nil
}

// JSON sends a request (no body) and decodes a 2xx answer into v.
func (h *HTTP) JSON(ctx context.Context, method, url string, v any) error {
	r, err := h.Do(ctx, method, url, nil, nil)
	if err != nil {
		return err
	}
	if r.Code/100 != 2 {
		return fmt.Errorf("%s %s: %s", method, url, r)
	}
	return json.Unmarshal(r.Body, v)
}

// GetJSON GETs url within timeout and decodes a 2xx answer into v.
func (h *HTTP) GetJSON(url string, timeout time.Duration, v any) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return h.JSON(ctx, http.MethodGet, url, v)
}

// Status is GET base/v1/status (one second at most).
func (h *HTTP) Status(base string) (api.StatusResponse, error) {
	var st api.StatusResponse
	err := h.GetJSON(base+"/v1/status", time.Second, &st)
	return st, err
}

// Ready is nil once GET base/readyz answers 200.
func (h *HTTP) Ready(base string) error {
	var v map[string]string
	return h.GetJSON(base+"/readyz", 2*time.Second, &v)
}

// Chain is GET base/v1/chain?query.
func (h *HTTP) Chain(base, query string) (api.ChainResponse, error) {
	var ch api.ChainResponse
	url := base + "/v1/chain"
	if query != "" {
		url += "?" + query
	}
	err := h.GetJSON(url, 5*time.Second, &ch)
	return ch, err
}

// Endpoint is a member as the wait conditions see it: its id and URL.
type Endpoint struct {
	ID, URL string
}

// FindLeader is the leader condition: among eps exactly one says it
// leads, every other names it as leader (and knows its URL), and it
// answers /readyz. It returns the leader's index in eps and its term.
func (h *HTTP) FindLeader(eps []Endpoint) (int, uint64, error) {
	if len(eps) == 0 {
		return -1, 0, errors.New("no member to ask")
	}
	sts := make([]api.StatusResponse, len(eps))
	leader := -1
	for i, ep := range eps {
		st, err := h.Status(ep.URL)
		if err != nil {
			return -1, 0, err
		}
		sts[i] = st
		if st.State == "Leader" {
			if leader >= 0 {
				return -1, 0, fmt.Errorf("two leaders: %s and %s", eps[leader].ID, ep.ID)
			}
			leader = i
		}
	}
	if leader < 0 {
		return -1, 0, errors.New("no leader")
	}
	for i, st := range sts {
		if i != leader && (st.Leader != eps[leader].ID || st.LeaderURL == "") {
			return -1, 0, fmt.Errorf("%s knows leader %q (url %q), %s leads", eps[i].ID, st.Leader, st.LeaderURL, eps[leader].ID)
		}
	}
	if err := h.Ready(eps[leader].URL); err != nil {
		return -1, 0, fmt.Errorf("leader %s not ready: %w", eps[leader].ID, err)
	}
	return leader, sts[leader].Term, nil
}

// Converged is the convergence condition: every endpoint reports the same
// chain head (GET /v1/chain?consistency=stale), at least at revision
// min. It returns the head.
func (h *HTTP) Converged(eps []Endpoint, min uint64) (api.ChainResponse, error) {
	var head api.ChainResponse
	var heads []string
	equal := true
	for i, ep := range eps {
		ch, err := h.Chain(ep.URL, "consistency=stale")
		if err != nil {
			return head, fmt.Errorf("chain of %s: %w", ep.ID, err)
		}
		heads = append(heads, fmt.Sprintf("%s=%d/%.8s", ep.ID, ch.Revision, ch.Hash))
		if i == 0 {
			head = ch
		} else if ch != head {
			equal = false
		}
	}
	if !equal || head.Revision < min {
		return head, fmt.Errorf("chain heads %v, want them equal and at least at revision %d", heads, min)
	}
	return head, nil
}

// Log reads the whole transaction log from base (GET /v1/log, stale, a
// thousand records a page).
func (h *HTTP) Log(base string) ([]api.Record, error) {
	var recs []api.Record
	from := uint64(1)
	for {
		var lr api.LogResponse
		if err := h.GetJSON(base+"/v1/log?consistency=stale&limit=1000&from="+strconv.FormatUint(from, 10), 10*time.Second, &lr); err != nil {
			return nil, err
		}
		recs = append(recs, lr.Records...)
		if len(lr.Records) == 0 || lr.Records[len(lr.Records)-1].Revision >= lr.Revision {
			return recs, nil
		}
		from = lr.Records[len(lr.Records)-1].Revision + 1
	}
}
