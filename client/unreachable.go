package client

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"syscall"
	"time"
)

// A call's unreachable phase: from its start until some endpoint sends an
// HTTP answer (any status). Config.UnreachableTimeout bounds that phase
// only; once a member has answered, the call goes on until its context
// ends, so a long write retried across an election, or a restore or a
// watch that streams for hours, is never cut off by it.

// limit returns when the unreachable phase of a call tracked by r ends
// (zero: no bound, or some endpoint has answered).
func (r *reach) limit() time.Time {
	if r.bound <= 0 || r.answered {
		return time.Time{}
	}
	return r.start.Add(r.bound)
}

// expired reports whether the call has gone unanswered for its whole bound.
func (r *reach) expired() bool {
	l := r.limit()
	return !l.IsZero() && !time.Now().Before(l)
}

// bounded returns ctx limited to the unreachable phase, for requests whose
// answers are small (discovery, authentication).
func (r *reach) bounded(ctx context.Context) (context.Context, context.CancelFunc) {
	if l := r.limit(); !l.IsZero() {
		return context.WithDeadline(ctx, l)
	}
	return ctx, func() {}
}

// note records why the attempt at ep failed, for the messages of
// unreachableError and the slow-call note.
func (r *reach) note(ep string, ae *attemptError) {
	if r.why == nil {
		r.why = map[string]string{}
	}
	if _, ok := r.why[ep]; !ok {
		r.tried = append(r.tried, ep)
	} else if ae.cut || ae.unreached {
		// Cut short by the call's end: the earlier reason says more.
		if !ae.cut {
			r.own++
		}
		return
	}
	r.why[ep] = failureReason(ae)
	if !ae.cut {
		r.own++
	}
}

// reasons lists the endpoints tried, each with why it failed last.
func (r *reach) reasons() string {
	var b strings.Builder
	for i, ep := range r.tried {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s: %s", ep, r.why[ep])
	}
	return b.String()
}

// unreachableError is the error of a call no endpoint answered within its
// bound.
func (r *reach) unreachableError() error {
	if len(r.tried) == 0 {
		return fmt.Errorf("%w: no member answered within %s", ErrUnavailable, r.bound)
	}
	return fmt.Errorf("%w: no member answered within %s (tried %s)", ErrUnavailable, r.bound, r.reasons())
}

// slowNote tells Config.SlowCallNote, once a call, that the call has been
// retrying for Config.SlowCallAfter.
func (r *reach) slowNote(c *Client) {
	if r.noted || c.cfg.SlowCallNote == nil || c.cfg.SlowCallAfter <= 0 || time.Since(r.start) < c.cfg.SlowCallAfter {
		return
	}
	r.noted = true
	what := "waiting for a member to answer"
	if r.answered {
		what = "waiting for a leader"
	}
	c.cfg.SlowCallNote(fmt.Sprintf("%s (%s)", what, r.reasons()))
}

// failureReason says in a few words why an attempt failed.
func failureReason(ae *attemptError) string {
	var apiErr *APIError
	var dnsErr *net.DNSError
	err := ae.cause
	if err == nil {
		err = ae.err
	}
	switch {
	case ae.unreached, ae.cut:
		return "no answer"
	case errors.As(ae.err, &apiErr) && apiErr.Code != "":
		return apiErr.Code
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, syscall.EHOSTUNREACH):
		return "host unreachable"
	case errors.Is(err, syscall.ENETUNREACH):
		return "network unreachable"
	case errors.As(err, &dnsErr):
		return "unknown host " + dnsErr.Name
	case errors.Is(ae.err, ErrTimeout), errors.Is(err, context.DeadlineExceeded):
		return "no answer"
	case ae.tls:
		return "TLS failure"
	}
	return err.Error()
}

// boundSlack is how close to the unreachable bound a context deadline
// counts as the bound itself (ctxEndedUnanswered).
const boundSlack = 250 * time.Millisecond

// ctxEndedUnanswered is the error of a call whose context ended before any
// endpoint answered, naming the endpoints tried and why they failed, or
// nil when some endpoint answered or none failed on its own (only the
// context cut attempts short: ctxEndedError says ErrTimeout).
func (r *reach) ctxEndedUnanswered(ctx context.Context) error {
	if r.answered || r.own == 0 {
		return nil
	}
	if r.bound > 0 && errors.Is(ctx.Err(), context.DeadlineExceeded) && time.Since(r.start) >= r.bound-boundSlack {
		// The context's deadline and the unreachable bound ended together
		// (the CLI sets both from --timeout): one answer whichever
		// fired first.
		return r.unreachableError()
	}
	return fmt.Errorf("%w: no member answered within %s (tried %s) (%w)",
		ErrUnavailable, time.Since(r.start).Round(100*time.Millisecond), r.reasons(), ctx.Err())
}

// discoveryFailed notes a failed discovery attempt of the call.
func (r *reach) discoveryFailed(ep string, ae *attemptError) {
	r.note(ep, ae)
	if ae.answered {
		r.answered = true
	}
}
