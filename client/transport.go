package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/cairn-db/cairn/api"
)

// route says which node a request should go to.
type route int

const (
	routeLeader route = iota // the leader when known, else any node
	routeSpread              // members round robin
)

// retryPolicy says which failures a request may be retried after.
type retryPolicy int

const (
	// retryAmbiguous retries every failure that may not be final: for
	// idempotent requests (reads, writes with an idempotency key).
	retryAmbiguous retryPolicy = iota
	// retrySafe retries only failures where the request certainly did
	// nothing (connection refused, not_leader).
	retrySafe
)

// Backoff between retries.
const (
	initialBackoff  = 25 * time.Millisecond
	endpointBackoff = 50 * time.Millisecond
	discoverEvery   = 250 * time.Millisecond
	maxErrorBody    = 1 << 20
	maxBody         = 256 << 20
)

// call is one logical request, sent in one or more attempts.
type call struct {
	method   string
	path     string // escaped
	query    url.Values
	body     []byte
	json     bool // body is JSON
	idemKey  string
	route    route
	endpoint string // pinned node; overrides route
	retry    retryPolicy
	// attempts caps the attempts (0: until ctx ends).
	attempts int
	// unbounded: no per-attempt RequestTimeout, ctx alone bounds the
	// attempt (an operation that takes as long as the store is large).
	unbounded bool
	// noAuth sends the call without a token (authentication itself).
	noAuth bool
	// answerBy, when not zero, is when an attempt that has no answer's
	// headers yet is given up (the call's unreachable phase ends; see
	// reach.limit). Set by do before each attempt.
	answerBy time.Time
}

// reply is a successful (2xx) answer.
type reply struct {
	header http.Header
	body   []byte
}

// revision returns the Cairn-Revision header (0 if absent).
func (r *reply) revision() uint64 {
	v, _ := strconv.ParseUint(r.header.Get(api.HeaderRevision), 10, 64)
	return v
}

func (r *reply) decode(v any) error {
	if err := json.Unmarshal(r.body, v); err != nil {
		return fmt.Errorf("client: decoding answer: %w", err)
	}
	return nil
}

// attemptError is a failed attempt with how it may be retried.
type attemptError struct {
	err error
	// safe: the request certainly had no effect; ambiguous: it may have.
	safe, ambiguous bool
	// cut: the call's context ended during the attempt, so err says
	// nothing about the endpoint.
	cut bool
	// answered: the endpoint sent an HTTP answer (an error status).
	answered bool
	// tls: err is ErrTLS, a failure to set up TLS with the endpoint that
	// retrying will not fix.
	tls bool
	// unauth: the endpoint answered 401 unauthenticated; the request was
	// not processed.
	unauth bool
	// corrupt: the endpoint's data is damaged (code corrupt): the request
	// was not served there, and asking it again is pointless.
	corrupt bool
	// unreached: the call's unreachable phase ended during the attempt
	// (call.answerBy).
	unreached bool
	// cause: the transport's own error, when there was no answer.
	cause error
}

// reach follows which endpoints one call could not reach, so that TLS
// failures end the call instead of being retried until its context ends.
type reach struct {
	tlsFailed map[string]bool // endpoints that failed with ErrTLS: not tried again
	unreached map[string]bool // endpoints that failed without answering
	answered  bool            // some endpoint answered
	tlsErr    error           // the last ErrTLS

	// The call's unreachable phase (unreachable.go).
	start time.Time
	bound time.Duration     // Config.UnreachableTimeout
	tried []string          // endpoints that failed, in order
	why   map[string]string // the last reason each failed
	noted bool              // SlowCallNote was called
	own   int               // failures not caused by the call's context ending
}

// newReach starts following a call.
func (c *Client) newReach() reach {
	return reach{start: time.Now(), bound: c.cfg.UnreachableTimeout}
}

// failed records that the attempt at ep failed with ae and returns the
// error the call should end with, or nil to go on. A call ends with ErrTLS
// when its endpoint was pinned, when every known endpoint failed with
// ErrTLS, or when no endpoint has answered, at least one failed with
// ErrTLS and every known endpoint has been tried.
func (r *reach) failed(c *Client, ep string, ae *attemptError, pinned bool) error {
	r.note(ep, ae)
	switch {
	case ae.tls:
		if r.tlsFailed == nil {
			r.tlsFailed = map[string]bool{}
		}
		r.tlsFailed[ep], r.tlsErr = true, ae.err
		if pinned {
			return ae.err
		}
	case ae.answered:
		r.answered = true
	default:
		if r.unreached == nil {
			r.unreached = map[string]bool{}
		}
		r.unreached[ep] = true
	}
	if r.tlsErr == nil {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	allTLS, untried := true, false
	for _, pool := range [][]string{c.members, c.seeds} {
		for _, e := range pool {
			allTLS = allTLS && r.tlsFailed[e]
			untried = untried || (!r.tlsFailed[e] && !r.unreached[e])
		}
	}
	if allTLS || (!r.answered && !untried) {
		return r.tlsErr
	}
	return nil
}

// do sends cl until it succeeds, fails definitely, runs out of attempts or
// ctx ends. When ctx ends, the error wraps ctx.Err() and says why the call
// had not succeeded by then: the last failed attempt's error (an
// unreachable endpoint is ErrUnavailable), or ErrTimeout when ctx ended
// during the first attempt.
//
// With credentials (Config.Username, Config.Credentials), each attempt
// carries the client's token, obtained first if needed; a 401 answer to
// an attempt gets the call one new token and one more attempt (see
// authenticator).
func (c *Client) do(ctx context.Context, cl *call) (*reply, error) {
	backoff := initialBackoff
	var last *attemptError // the last attempt that failed on its own
	r := c.newReach()
	reauthed := false
	for attempt := 1; ; attempt++ {
		if c.closed.Load() {
			return nil, ErrClosed
		}
		bctx, bcancel := r.bounded(ctx)
		tok, err := c.callToken(bctx, cl)
		if err != nil {
			bcancel()
			if ctx.Err() == nil && r.expired() {
				return nil, r.unreachableError()
			}
			return nil, err
		}
		ep := cl.endpoint
		if ep == "" {
			ep = c.pick(bctx, cl.route, &r)
		}
		bcancel()
		if r.expired() {
			return nil, r.unreachableError()
		}
		cl.answerBy = r.limit()
		rep, ae := c.attempt(ctx, ep, cl, tok)
		if ae == nil {
			c.markOK(ep)
			return rep, nil
		}
		if ctx.Err() != nil {
			if !ae.cut {
				r.note(ep, ae)
			}
			if err := r.ctxEndedUnanswered(ctx); err != nil {
				return nil, err
			}
			return nil, ctxEndedError(ctx, ep, ae, last)
		}
		last = ae
		if err := r.failed(c, ep, ae, cl.endpoint != ""); err != nil {
			return nil, err
		}
		if r.expired() {
			return nil, r.unreachableError()
		}
		if ae.unauth && c.auth != nil && !cl.noAuth && !reauthed {
			// The token expired or was revoked (or auth was enabled since
			// the cluster said it was not): one new token, one more try.
			reauthed = true
			c.auth.invalidate(tok)
			attempt--
			continue
		}
		if ae.corrupt && cl.endpoint != "" {
			return nil, ae.err // pinned to a damaged member: no other answer
		}
		retry := ae.safe || (ae.ambiguous && cl.retry == retryAmbiguous)
		if !retry || (cl.attempts > 0 && attempt >= cl.attempts) {
			return nil, ae.err
		}
		if ae.tls {
			continue // another endpoint, at once
		}
		r.slowNote(c)
		d := backoff/2 + rand.N(backoff/2+1)
		if l := r.limit(); !l.IsZero() {
			d = min(d, time.Until(l))
		}
		c.log.Debug("cairn client: retrying", "method", cl.method, "path", cl.path, "endpoint", ep,
			"attempt", attempt, "delay", d, "err", ae.err)
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			if err := r.ctxEndedUnanswered(ctx); err != nil {
				return nil, err
			}
			return nil, fmt.Errorf("%w (%w)", ae.err, ctx.Err())
		case <-t.C:
		}
		backoff = min(2*backoff, c.cfg.MaxBackoff)
	}
}

// ctxEndedError is a call's error when ctx ended during or after attempt
// ae at ep: ae's own error when ep answered, else the last failed attempt's
// (if any) or ErrTimeout; it wraps ctx.Err() too.
func ctxEndedError(ctx context.Context, ep string, ae, last *attemptError) error {
	if ae.cut {
		if last != nil {
			ae = last
		} else {
			ae = &attemptError{err: fmt.Errorf("%w: %s: no answer before the call's context ended", ErrTimeout, ep)}
		}
	}
	return fmt.Errorf("%w (%w)", ae.err, ctx.Err())
}

// attempt sends cl once to ep, with token tok in the Authorization header
// when not "".
func (c *Client) attempt(ctx context.Context, ep string, cl *call, tok string) (*reply, *attemptError) {
	actx, cancel := context.WithTimeout(ctx, c.cfg.RequestTimeout)
	if cl.unbounded {
		cancel()
		actx, cancel = context.WithCancel(ctx)
	}
	defer cancel()
	u := ep + cl.path
	if len(cl.query) > 0 {
		u += "?" + cl.query.Encode()
	}
	var body io.Reader
	if cl.body != nil {
		body = bytes.NewReader(cl.body)
	}
	req, err := http.NewRequestWithContext(actx, cl.method, u, body)
	if err != nil {
		return nil, &attemptError{err: fmt.Errorf("%w: %w", ErrBadRequest, err)}
	}
	if cl.json {
		req.Header.Set("Content-Type", "application/json")
	} else if cl.body != nil {
		req.Header.Set("Content-Type", "application/octet-stream")
	}
	if cl.idemKey != "" {
		req.Header.Set(api.HeaderIdempotencyKey, cl.idemKey)
	}
	setToken(req, tok)
	resp, err := c.doBy(req, cl.answerBy, cancel)
	if errors.Is(err, errNoAnswer) {
		c.markFailed(ep)
		return nil, &attemptError{err: fmt.Errorf("%w: %s: no answer", ErrUnavailable, ep), unreached: true, ambiguous: true}
	}
	if err != nil {
		return nil, c.transportError(ctx, ep, err)
	}
	defer resp.Body.Close()
	limit := int64(maxBody)
	if resp.StatusCode/100 != 2 {
		limit = maxErrorBody
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, limit))
	if err != nil {
		return nil, c.transportError(ctx, ep, err)
	}
	c.observe(ep, resp.Header)
	if resp.StatusCode/100 == 2 {
		c.see(parseRevision(resp.Header))
		return &reply{header: resp.Header, body: b}, nil
	}
	if terr := plainToTLSAnswer(ep, resp.StatusCode, b); terr != nil {
		c.markFailed(ep)
		return nil, &attemptError{err: terr, tls: true, safe: true}
	}
	err = errorFromResponse(resp.StatusCode, resp.Header, b)
	ae := &attemptError{err: err, answered: true}
	switch {
	case errors.Is(err, ErrUnauthenticated):
		ae.unauth = true
	case errors.Is(err, ErrNotLeader):
		ae.safe = true
		c.leaderFailed(ep)
	case errors.Is(err, ErrCorrupt):
		// Like unavailable, but certain: nothing was served. The member
		// stays out of the rotation for a while (markFailed) so that the
		// next attempts, and the next calls, go elsewhere.
		ae.safe, ae.corrupt = true, true
		c.markFailed(ep)
	case errors.Is(err, ErrUnavailable), errors.Is(err, ErrTimeout):
		ae.ambiguous = true
		c.leaderFailed(ep)
	}
	return nil, ae
}

// transportError classifies a failure to get an answer.
func (c *Client) transportError(ctx context.Context, ep string, err error) *attemptError {
	if ctx.Err() != nil {
		// The caller gave up, which says nothing about ep.
		return &attemptError{err: fmt.Errorf("client: %s: %w", ep, err), cut: true}
	}
	c.markFailed(ep)
	if terr := tlsFailure(ep, err); terr != nil {
		// The request was not processed: safe to send elsewhere.
		return &attemptError{err: terr, tls: true, safe: true}
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return &attemptError{err: fmt.Errorf("%w: %s: no answer within %s", ErrTimeout, ep, c.cfg.RequestTimeout), ambiguous: true, cause: err}
	}
	return &attemptError{err: fmt.Errorf("%w: %s: %w", ErrUnavailable, ep, err),
		safe: errors.Is(err, syscall.ECONNREFUSED), ambiguous: true, cause: err}
}

// errNoAnswer: doBy gave up waiting for the answer's headers.
var errNoAnswer = errors.New("no answer")

// doBy sends req and gives up (cancel, errNoAnswer) when the answer's
// headers have not arrived by `by` (zero: no limit). Once they have, the
// body may take as long as the request's context allows.
func (c *Client) doBy(req *http.Request, by time.Time, cancel context.CancelFunc) (*http.Response, error) {
	if by.IsZero() {
		return c.hc.Do(req)
	}
	var state atomic.Int32 // 0 waiting, 1 answered, 2 given up
	t := time.AfterFunc(time.Until(by), func() {
		if state.CompareAndSwap(0, 2) {
			cancel()
		}
	})
	defer t.Stop()
	resp, err := c.hc.Do(req)
	if !state.CompareAndSwap(0, 1) {
		if resp != nil {
			_ = resp.Body.Close()
		}
		return nil, errNoAnswer
	}
	return resp, err
}

func parseRevision(h http.Header) uint64 {
	v, _ := strconv.ParseUint(h.Get(api.HeaderRevision), 10, 64)
	return v
}

// see records a revision the session has observed.
func (c *Client) see(rev uint64) {
	for {
		cur := c.maxRev.Load()
		if rev <= cur || c.maxRev.CompareAndSwap(cur, rev) {
			return
		}
	}
}

// observe learns the leader from an answer's headers.
func (c *Client) observe(ep string, h http.Header) {
	lu := h.Get(api.HeaderLeaderURL)
	if lu == "" {
		return
	}
	c.mu.Lock()
	known := lu == c.leader // the usual answer: nothing to parse
	c.mu.Unlock()
	if known {
		return
	}
	lu, err := c.normalize(lu)
	if err != nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.leader = lu
	if !c.isMember(lu) {
		// A leader we do not know of: membership changed.
		c.needDiscover = true
	}
}

func (c *Client) isMember(u string) bool {
	for _, m := range c.members {
		if m == u {
			return true
		}
	}
	return false
}

// leaderFailed forgets ep as the leader after it could not serve a
// leader's request.
func (c *Client) leaderFailed(ep string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.leader == ep {
		c.leader = ""
		c.needDiscover = true
	}
}

type endpointState struct {
	failures int
	until    time.Time
}

func (c *Client) markFailed(ep string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	st := c.health[ep]
	st.failures++
	d := min(endpointBackoff<<min(st.failures-1, 10), c.cfg.MaxBackoff)
	st.until = time.Now().Add(d)
	c.health[ep] = st
	if c.leader == ep {
		c.leader = ""
	}
	c.needDiscover = true
}

func (c *Client) markOK(ep string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.health, ep)
}

// pick chooses the node for a request, discovering members first when
// needed. It avoids the endpoints in exclude (those that failed the call
// with ErrTLS) while there are others. Discovery's failures are noted in
// rc when not nil.
func (c *Client) pick(ctx context.Context, r route, rc *reach) string {
	var exclude map[string]bool
	if rc != nil {
		exclude = rc.tlsFailed
	}
	c.maybeDiscover(ctx, rc)
	c.mu.Lock()
	defer c.mu.Unlock()
	now := time.Now()
	if r == routeLeader && c.leader != "" && !exclude[c.leader] && !c.health[c.leader].until.After(now) {
		return c.leader
	}
	return c.nextLocked(now, exclude)
}

// nextLocked returns the next healthy member round robin, or the one whose
// backoff ends first, not in exclude if it can.
func (c *Client) nextLocked(now time.Time, exclude map[string]bool) string {
	pool := c.members
	if len(pool) == 0 {
		pool = c.seeds
	}
	if len(exclude) > 0 {
		var rest []string
		for _, ep := range append(append([]string(nil), pool...), c.seeds...) {
			if !exclude[ep] && !slices.Contains(rest, ep) {
				rest = append(rest, ep)
			}
		}
		if len(rest) > 0 {
			pool = rest
		}
	}
	start := c.rr
	c.rr++
	best := ""
	var bestUntil time.Time
	for i := range pool {
		ep := pool[(start+uint64(i))%uint64(len(pool))]
		until := c.health[ep].until
		if !until.After(now) {
			return ep
		}
		if best == "" || until.Before(bestUntil) {
			best, bestUntil = ep, until
		}
	}
	return best
}

// maybeDiscover refreshes the member list when it is unknown or suspect,
// at most every discoverEvery, one caller at a time.
func (c *Client) maybeDiscover(ctx context.Context, rc *reach) {
	c.mu.Lock()
	need := c.needDiscover && time.Since(c.lastDiscover) >= discoverEvery
	c.mu.Unlock()
	if !need || !c.discoverMu.TryLock() {
		return
	}
	defer c.discoverMu.Unlock()
	c.mu.Lock()
	if !c.needDiscover || time.Since(c.lastDiscover) < discoverEvery {
		c.mu.Unlock()
		return
	}
	c.lastDiscover = time.Now()
	// Healthy candidates first, then the rest.
	var cands, later []string
	now := time.Now()
	seen := map[string]bool{}
	for _, ep := range append(append([]string(nil), c.members...), c.seeds...) {
		if seen[ep] {
			continue
		}
		seen[ep] = true
		if c.health[ep].until.After(now) {
			later = append(later, ep)
		} else {
			cands = append(cands, ep)
		}
	}
	c.mu.Unlock()
	for _, ep := range append(cands, later...) {
		if ctx.Err() != nil {
			return
		}
		rep, ae := c.attempt(ctx, ep, &call{method: http.MethodGet, path: "/v1/cluster/members"}, c.currentToken())
		if ae != nil {
			c.log.Debug("cairn client: discovery failed", "endpoint", ep, "err", ae.err)
			if rc != nil {
				rc.discoveryFailed(ep, ae)
			}
			switch {
			case errors.Is(ae.err, ErrPermissionDenied):
				// The member list is not for this user (it needs admin
				// with access control on): the others would say the same.
				// Work from the configured endpoints and the leader
				// named in answers until a failure calls for discovery.
				c.mu.Lock()
				c.needDiscover = false
				c.mu.Unlock()
				return
			case errors.Is(ae.err, ErrUnauthenticated):
				return // no token yet (or a stale one): again later, with one
			}
			continue
		}
		var mr api.MembersResponse
		if err := rep.decode(&mr); err != nil {
			continue
		}
		c.learn(&mr)
		c.log.Debug("cairn client: discovered members", "via", ep, "members", len(mr.Members), "leader", mr.Leader)
		return
	}
}

// learn takes a member list.
func (c *Client) learn(mr *api.MembersResponse) {
	var members []string
	leader := ""
	for _, m := range mr.Members {
		u, err := c.normalize(m.HTTPURL)
		if m.HTTPURL == "" || err != nil {
			continue
		}
		members = append(members, u)
		if m.Leader || (mr.Leader != "" && m.ID == mr.Leader) {
			leader = u
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(members) > 0 {
		// Members advertise the URLs they use among themselves, which the
		// client may not be able to reach (container names behind a
		// published port, say): keep the configured endpoints in the
		// rotation too, so a client always has a way in.
		for _, s := range c.seeds {
			if !slices.Contains(members, s) {
				members = append(members, s)
			}
		}
		c.members = members
	}
	if leader != "" {
		c.leader = leader
	}
	c.needDiscover = false
}
