package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/cairn-db/cairn/api"
)

// Watch parameters.
const (
	// watchProgressInterval is the progress period the client asks for;
	// a stream silent for watchIdleTimeout is taken for dead and resumed
	// on another member.
	watchProgressInterval = time.Second
	watchIdleTimeout      = 5 * watchProgressInterval
	// watchStableAfter: a stream that lived this long resets the
	// reconnect backoff.
	watchStableAfter = time.Second
	watchBuffer      = 64
)

// WatchEvent is one event of a watch.
type WatchEvent struct {
	// Type is api.WatchTxn (a committed transaction with at least one
	// operation under the prefix), api.WatchProgress (every matching
	// transaction up to Revision has been delivered) or api.WatchError
	// (the last event: Err says why the watch ended).
	Type string
	// Revision is the transaction's revision (txn) or the revision the
	// watch is complete up to (progress).
	Revision uint64
	Time     time.Time
	// AuthUser is the user the server authenticated for the
	// transaction (access control on); User, Description and Meta are
	// what the client that wrote it supplied.
	AuthUser    string
	User        string
	Description string
	Meta        map[string]string
	// Operations are the transaction's operations that concern the
	// prefix: puts and deletes of keys under it, and prefix deletes that
	// overlap it.
	Operations []api.Operation
	// Hash is the chain hash at Revision, hex (txn events).
	Hash string
	// Node is the id of the member that served the event.
	Node string
	// Err is set on a final api.WatchError event: a *CompactedError
	// (errors.Is ErrCompacted) when the watch's next revision was
	// compacted away, ErrPermissionDenied when the user lost read on
	// the prefix, ErrUnauthenticated when its token was revoked and the
	// credentials no longer work (or the client has none), or another
	// definite failure (ErrBadRequest, ErrClosed, ...). It is never set
	// because ctx ended.
	Err error
}

// Watch streams the committed transactions that touch keys under prefix
// ("" for all), in revision order, starting at fromRevision (0: the next
// revision to be committed). It returns once a member has accepted the
// watch; with fromRevision 0, every write acknowledged after that is
// delivered.
//
// Events arrive on the returned channel, which is closed when ctx ends or
// after a final api.WatchError event. Progress events arrive about every
// second even when nothing matches. The watch survives member failures: when
// a stream breaks (the member stops, the connection drops, the member is
// silent for 5 s or cuts off a reader slower than its write timeout), the
// client reconnects to another member with backoff and resumes at the
// revision after the last one delivered (a transaction or a progress
// event), so no transaction is skipped or delivered twice. Members serve
// watches from their local state (followers and non-voters too); a member
// behind the resume point waits until it catches up.
//
// A watch whose start (or resume point) is before the compaction point
// ends with ErrCompacted: returned by Watch when known at once, or as the
// final event's Err. Other definite errors (bad prefix, ErrClosed) end it
// the same way; unavailable members and timeouts are retried until ctx
// ends.
//
// The caller must drain the channel: a reader that stops reading holds up
// only its own watch (the member cuts it off after its write timeout and
// the client resumes). Of the read options only Endpoint applies: it pins
// the watch to one member, which is then retried forever.
func (c *Client) Watch(ctx context.Context, prefix string, fromRevision uint64, opts ...ReadOption) (<-chan WatchEvent, error) {
	o, err := c.readOpts(opts)
	if err != nil {
		return nil, err
	}
	if o.revision != 0 || o.limit != 0 || o.consistency != "" || o.maxStaleness != 0 || o.minRevision != 0 {
		return nil, fmt.Errorf("%w: Watch takes no read options but Endpoint", ErrBadRequest)
	}
	w := &watch{c: c, prefix: prefix, next: fromRevision, endpoint: o.endpoint}
	s, err := w.connect(ctx, true)
	if err != nil {
		return nil, err
	}
	ch := make(chan WatchEvent, watchBuffer)
	go w.run(ctx, s, ch)
	return ch, nil
}

// watch is one Watch call's state.
type watch struct {
	c        *Client
	prefix   string
	endpoint string // pinned member, or "" to choose
	// next is the first revision not yet delivered: the resume point.
	next uint64
}

// watchStream is one open GET /v1/watch response.
type watchStream struct {
	ep     string
	tok    string // the token it was opened with
	node   string
	body   io.ReadCloser
	dec    *json.Decoder
	cancel context.CancelFunc
	idle   *time.Timer
	opened time.Time
}

func (s *watchStream) close() {
	s.idle.Stop()
	s.cancel()
	_ = s.body.Close()
}

// connect opens a stream at w.next, retrying members with backoff until
// one accepts, a definite error, or ctx ends; with first, also until
// Config.UnreachableTimeout passes with no member answering (a reconnect
// of a running watch waits for the cluster to come back).
func (w *watch) connect(ctx context.Context, first bool) (*watchStream, error) {
	c := w.c
	backoff := initialBackoff
	var last *attemptError // as in Client.do
	r := c.newReach()
	if !first {
		r.bound = 0
	}
	reauthed := false
	for {
		if c.closed.Load() {
			return nil, ErrClosed
		}
		bctx, bcancel := r.bounded(ctx)
		tok, err := c.callToken(bctx, &call{})
		if err != nil {
			bcancel()
			if ctx.Err() == nil && r.expired() {
				return nil, r.unreachableError()
			}
			return nil, err
		}
		ep := w.endpoint
		if ep == "" {
			ep = c.pick(bctx, routeSpread, &r)
		}
		bcancel()
		if r.expired() {
			return nil, r.unreachableError()
		}
		s, ae := w.open(ctx, ep, tok, r.limit())
		if ae == nil {
			c.markOK(ep)
			return s, nil
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
		if err := r.failed(c, ep, ae, w.endpoint != ""); err != nil {
			return nil, err
		}
		if r.expired() {
			return nil, r.unreachableError()
		}
		if ae.unauth && c.auth != nil && !reauthed {
			reauthed = true // as in Client.do: one new token, one more try
			c.auth.invalidate(tok)
			continue
		}
		if !ae.safe && !ae.ambiguous {
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
		c.log.Debug("cairn client: watch reconnecting", "endpoint", ep, "from", w.next, "delay", d, "err", ae.err)
		if !sleepCtx(ctx, d) {
			if err := r.ctxEndedUnanswered(ctx); err != nil {
				return nil, err
			}
			return nil, fmt.Errorf("%w (%w)", ae.err, ctx.Err())
		}
		backoff = min(2*backoff, c.cfg.MaxBackoff)
	}
}

// open sends one watch request to ep with token tok (none when "") and
// reads the stream's first line (a progress event), which fixes the start
// when w.next is 0. Without a first line by answerBy (when not zero), the
// attempt fails as unreached.
func (w *watch) open(ctx context.Context, ep, tok string, answerBy time.Time) (*watchStream, *attemptError) {
	c := w.c
	q := url.Values{"progress_interval": {watchProgressInterval.String()}}
	if w.prefix != "" {
		q.Set("prefix", w.prefix)
	}
	if w.next > 0 {
		q.Set("from_revision", strconv.FormatUint(w.next, 10))
	}
	sctx, cancel := context.WithCancel(ctx)
	// Until the first line, the request's timeout applies; after it, the
	// idle timeout.
	first := c.cfg.RequestTimeout
	if !answerBy.IsZero() {
		first = min(first, time.Until(answerBy))
	}
	idle := time.AfterFunc(first, cancel)
	fail := func(ae *attemptError) (*watchStream, *attemptError) {
		idle.Stop()
		cancel()
		if ctx.Err() == nil && !answerBy.IsZero() && !time.Now().Before(answerBy) && !ae.answered {
			ae.unreached = true
		}
		return nil, ae
	}
	req, err := http.NewRequestWithContext(sctx, http.MethodGet, ep+"/v1/watch?"+q.Encode(), nil)
	if err != nil {
		return fail(&attemptError{err: fmt.Errorf("%w: %w", ErrBadRequest, err)})
	}
	req.Header.Set("Accept", "application/x-ndjson")
	setToken(req, tok)
	resp, err := c.hc.Do(req)
	if err != nil {
		return fail(c.transportError(ctx, ep, err))
	}
	c.observe(ep, resp.Header)
	if resp.StatusCode/100 != 2 {
		b, rerr := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
		_ = resp.Body.Close()
		if rerr != nil {
			return fail(c.transportError(ctx, ep, rerr))
		}
		if terr := plainToTLSAnswer(ep, resp.StatusCode, b); terr != nil {
			c.markFailed(ep)
			return fail(&attemptError{err: terr, tls: true, safe: true})
		}
		err := errorFromResponse(resp.StatusCode, resp.Header, b)
		ae := &attemptError{err: err, answered: true, unauth: errors.Is(err, ErrUnauthenticated)}
		if errors.Is(err, ErrNotLeader) || errors.Is(err, ErrUnavailable) || errors.Is(err, ErrTimeout) || errors.Is(err, ErrCorrupt) {
			// A corrupt member serves no watch: another member does.
			ae.ambiguous = true
			c.markFailed(ep)
		}
		return fail(ae)
	}
	s := &watchStream{ep: ep, tok: tok, node: resp.Header.Get(api.HeaderNode), body: resp.Body,
		dec: json.NewDecoder(resp.Body), cancel: cancel, idle: idle, opened: time.Now()}
	if err := w.first(s); err != nil {
		_ = resp.Body.Close()
		return fail(c.transportError(ctx, ep, err))
	}
	idle.Reset(watchIdleTimeout)
	return s, nil
}

// first reads a stream's first line, a progress event, which fixes the
// start when w.next is 0.
func (w *watch) first(s *watchStream) error {
	var ev api.WatchEvent
	if err := s.dec.Decode(&ev); err != nil {
		return err
	}
	if ev.Type != api.WatchProgress {
		return fmt.Errorf("stream began with a %q event, not progress", ev.Type)
	}
	if ev.Revision == math.MaxUint64 {
		return fmt.Errorf("stream began at revision %d, past the last", ev.Revision)
	}
	if w.next == 0 {
		w.next = ev.Revision + 1
	}
	return nil
}

// nextEvent reads the stream's lines until one to deliver: a transaction not
// yet delivered, a progress event, or a final error event (final true:
// the watch ends after it). Any other error means the stream broke (it
// ended, or sent what is not a watch event, or an error the watch
// resumes from): the watch resumes elsewhere at w.next.
func (w *watch) nextEvent(s *watchStream) (ev WatchEvent, final bool, err error) {
	c := w.c
	for {
		var line api.WatchEvent
		if err := s.dec.Decode(&line); err != nil {
			return WatchEvent{}, false, err
		}
		s.idle.Reset(watchIdleTimeout)
		switch line.Type {
		case api.WatchTxn, api.WatchProgress:
			if line.Revision == math.MaxUint64 {
				// w.next would wrap to 0 ("from now").
				return WatchEvent{}, false, fmt.Errorf("stream sent revision %d, past the last", line.Revision)
			}
		}
		switch line.Type {
		case api.WatchTxn:
			if line.Revision < w.next {
				continue // already delivered
			}
			w.next = line.Revision + 1
			c.see(line.Revision)
			return WatchEvent{Type: line.Type, Revision: line.Revision, Time: line.Time, AuthUser: line.AuthUser, User: line.User,
				Description: line.Description, Meta: line.Meta, Operations: line.Operations, Hash: line.Hash, Node: s.node}, false, nil
		case api.WatchProgress:
			// A member behind the resume point reports less than has
			// been delivered; the resume point never goes back.
			w.next = max(w.next, line.Revision+1)
			return WatchEvent{Type: line.Type, Revision: w.next - 1, Node: s.node}, false, nil
		case api.WatchError:
			if line.Error == nil {
				return WatchEvent{}, false, fmt.Errorf("%w: the stream ended with an error event that names no error", ErrUnavailable)
			}
			status := api.Status(line.Error.Code)
			ae := &APIError{Code: line.Error.Code, Message: line.Error.Message, Status: status, Node: s.node,
				sentinel: sentinelFor(line.Error.Code, status)}
			final := WatchEvent{Type: api.WatchError, Revision: w.next - 1, Node: s.node, Err: ae}
			switch line.Error.Code {
			case api.CodeCompacted:
				final.Err = &CompactedError{Oldest: line.Error.OldestRevision, Err: ae}
				return final, true, nil
			case api.CodePermissionDenied:
				// The user lost the permission (a role revoked).
				return final, true, nil
			case api.CodeUnauthenticated:
				if c.auth == nil {
					return final, true, nil
				}
				// The token was revoked (the password changed, say):
				// resume with a new one, if the credentials still work.
				c.auth.invalidate(s.tok)
			}
			return WatchEvent{}, false, ae
		}
		// A newer server's event type.
	}
}

// run reads streams, delivers events and reconnects until ctx ends or a
// definite error.
func (w *watch) run(ctx context.Context, s *watchStream, ch chan<- WatchEvent) {
	defer close(ch)
	defer func() {
		if s != nil {
			s.close()
		}
	}()
	c := w.c
	deliver := func(ev WatchEvent) bool {
		// A consumer that is slow holds the stream, not the timer.
		s.idle.Stop()
		defer s.idle.Reset(watchIdleTimeout)
		select {
		case ch <- ev:
			return true
		case <-ctx.Done():
			return false
		}
	}
	backoff := initialBackoff
	for {
		ev, final, err := w.nextEvent(s)
		if err == nil {
			if !deliver(ev) || final {
				return
			}
			continue
		}
		if ctx.Err() != nil {
			return
		}
		// The stream broke: resume elsewhere from w.next.
		lived := time.Since(s.opened)
		c.log.Debug("cairn client: watch stream ended", "endpoint", s.ep, "next", w.next, "err", err)
		c.markFailed(s.ep)
		s.close()
		s = nil
		if lived >= watchStableAfter {
			backoff = initialBackoff
		} else {
			// A member that ends streams at once is not hammered.
			if !sleepCtx(ctx, backoff/2+rand.N(backoff/2+1)) {
				return
			}
			backoff = min(2*backoff, c.cfg.MaxBackoff)
		}
		ns, err := w.connect(ctx, false)
		if err != nil {
			if ctx.Err() == nil {
				select {
				case ch <- WatchEvent{Type: api.WatchError, Revision: w.next - 1, Err: err}:
				case <-ctx.Done():
				}
			}
			return
		}
		s = ns
	}
}

// sleepCtx sleeps for d; false when ctx ended first.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
