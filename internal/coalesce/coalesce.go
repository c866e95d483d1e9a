// Package coalesce gathers concurrent requests into batches for a slow
// shared resource with a bounded number of batches in flight: a raft
// entry (node's write batcher) or an HTTP request to the leader (node's
// forwarder). Requests that arrive while every slot is taken queue; when a
// slot frees, the next batch takes everything queued, up to the batch
// limits. A request alone on an idle coalescer is dispatched at once, so
// coalescing adds no latency when there is nothing to share.
//
// Until its batch is dispatched, a caller whose context ends abandons its
// request: it is certainly not sent. After that the outcome belongs to
// the batch: the caller either waits for it (Config.WaitDispatched) or is
// told that the outcome is unknown (ErrInFlight).
package coalesce

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// Errors returned by Submit; the caller's context error is wrapped with
// them.
var (
	// ErrAbandoned means the caller's context ended before its request
	// was dispatched: it was not sent.
	ErrAbandoned = errors.New("coalesce: abandoned before dispatch")
	// ErrInFlight means the caller's context ended after its request was
	// dispatched and before its outcome was known (Config.WaitDispatched
	// false): it may or may not take effect.
	ErrInFlight = errors.New("coalesce: no outcome yet")
	// ErrStopped means the coalescer stopped before the request was
	// dispatched: it was not sent.
	ErrStopped = errors.New("coalesce: stopped")
)

// Outcome is one request's result.
type Outcome[R any] struct {
	Value R
	Err   error
}

// Config describes a coalescer.
type Config[T, R any] struct {
	// Inflight is the number of batches dispatched at once (at least 1).
	Inflight int
	// MaxItems and MaxBytes bound a batch; the first request of a batch
	// is always taken, whatever its size.
	MaxItems int
	MaxBytes int
	// Dispatch starts one batch's work on the coalescer's goroutine (so
	// batches start in the order they formed) and returns a function that
	// waits for it, which runs on a goroutine of its own: one outcome per
	// item in order, or an error for the whole batch.
	Dispatch func(items []T) (wait func() ([]Outcome[R], error))
	// WaitDispatched makes a caller whose context ends after dispatch
	// wait for its outcome anyway (the batch's wait is bounded), instead
	// of returning ErrInFlight.
	WaitDispatched bool
	// Go runs a function on a goroutine that the coalescer's owner waits
	// for when it stops (nil: a plain goroutine).
	Go func(func())
}

// Stats counts a coalescer's work.
type Stats struct {
	Batches uint64 // batches dispatched
	Items   uint64 // requests in them
}

// Coalescer gathers requests into batches. Run forms them; Submit queues
// one and waits for its outcome.
type Coalescer[T, R any] struct {
	cfg   Config[T, R]
	reqs  chan *request[T, R]
	slots chan struct{} // one token per batch in flight

	stopping chan struct{} // closed by Stop or Drain: dispatch nothing more
	stopOnce sync.Once

	batches atomic.Uint64
	items   atomic.Uint64
}

// Request states.
const (
	queued int32 = iota
	dispatched
	abandoned
)

type request[T, R any] struct {
	item  T
	size  int
	state atomic.Int32
	done  chan Outcome[R] // buffered: never blocks the coalescer
}

// New returns a coalescer; start Run on a goroutine its owner stops.
func New[T, R any](cfg Config[T, R]) *Coalescer[T, R] {
	cfg.Inflight = max(cfg.Inflight, 1)
	cfg.MaxItems = max(cfg.MaxItems, 1)
	if cfg.Go == nil {
		cfg.Go = func(fn func()) { go fn() }
	}
	return &Coalescer[T, R]{
		cfg:      cfg,
		reqs:     make(chan *request[T, R], 4*cfg.MaxItems),
		slots:    make(chan struct{}, cfg.Inflight),
		stopping: make(chan struct{}),
	}
}

// Stats returns the batches and requests dispatched so far.
func (c *Coalescer[T, R]) Stats() Stats {
	return Stats{Batches: c.batches.Load(), Items: c.items.Load()}
}

// Queued returns the number of requests waiting in the queue (not those
// Run holds while it waits for a slot).
func (c *Coalescer[T, R]) Queued() int { return len(c.reqs) }

// Submit queues item (of estimated size bytes) and waits for its outcome.
func (c *Coalescer[T, R]) Submit(ctx context.Context, item T, size int) (R, error) {
	var zero R
	r := &request[T, R]{item: item, size: size, done: make(chan Outcome[R], 1)}
	select {
	case <-c.stopping:
		return zero, ErrStopped
	default:
	}
	select {
	case c.reqs <- r:
	case <-ctx.Done():
		return zero, fmt.Errorf("%w: %w", ErrAbandoned, ctx.Err())
	case <-c.stopping:
		return zero, ErrStopped
	}
	select {
	case out := <-r.done:
		return out.Value, out.Err
	case <-ctx.Done():
		if r.state.CompareAndSwap(queued, abandoned) {
			return zero, fmt.Errorf("%w: %w", ErrAbandoned, ctx.Err())
		}
		if !c.cfg.WaitDispatched {
			return zero, fmt.Errorf("%w: %w", ErrInFlight, ctx.Err())
		}
	case <-c.stopping:
		if r.state.CompareAndSwap(queued, abandoned) {
			return zero, ErrStopped
		}
	}
	out := <-r.done // dispatched: its batch answers it
	return out.Value, out.Err
}

// Run forms and dispatches batches until ctx ends or Stop is called.
func (c *Coalescer[T, R]) Run(ctx context.Context) {
	batch := make([]*request[T, R], 0, c.cfg.MaxItems)
	for {
		var first *request[T, R]
		select {
		case first = <-c.reqs:
		case <-c.stopping:
			c.refuseQueued()
			return
		case <-ctx.Done():
			c.Stop()
			c.refuseQueued()
			return
		}
		// Wait for a batch to finish; requests queue meanwhile.
		select {
		case c.slots <- struct{}{}:
		case <-c.stopping:
			c.refuse(first)
			c.refuseQueued()
			return
		case <-ctx.Done():
			c.Stop()
			c.refuse(first)
			c.refuseQueued()
			return
		}
		batch = batch[:0]
		bytes := 0
		for r, more := first, true; more; {
			if r.state.CompareAndSwap(queued, dispatched) {
				batch = append(batch, r)
				bytes += r.size
			} // else abandoned by its caller
			if len(batch) >= c.cfg.MaxItems || (c.cfg.MaxBytes > 0 && bytes >= c.cfg.MaxBytes) {
				break
			}
			select {
			case r = <-c.reqs:
			default:
				more = false
			}
		}
		if len(batch) == 0 {
			<-c.slots
			continue
		}
		c.dispatch(append([]*request[T, R](nil), batch...))
	}
}

// refuse answers a request taken from the queue but never dispatched.
func (c *Coalescer[T, R]) refuse(r *request[T, R]) {
	if r.state.CompareAndSwap(queued, dispatched) {
		r.done <- Outcome[R]{Err: ErrStopped}
	}
}

// refuseQueued answers what is left in the queue once Run stops. A
// request queued later sees stopping in Submit.
func (c *Coalescer[T, R]) refuseQueued() {
	for {
		select {
		case r := <-c.reqs:
			c.refuse(r)
		default:
			return
		}
	}
}

func (c *Coalescer[T, R]) dispatch(reqs []*request[T, R]) {
	items := make([]T, len(reqs))
	for i, r := range reqs {
		items[i] = r.item
	}
	c.batches.Add(1)
	c.items.Add(uint64(len(reqs)))
	wait := c.cfg.Dispatch(items)
	c.cfg.Go(func() {
		defer func() { <-c.slots }()
		outs, err := wait()
		if err == nil && len(outs) != len(reqs) {
			err = fmt.Errorf("coalesce: %d outcomes for a batch of %d", len(outs), len(reqs))
		}
		for i, r := range reqs {
			if err != nil {
				r.done <- Outcome[R]{Err: err}
			} else {
				r.done <- outs[i]
			}
		}
	})
}

// Hold takes every in-flight slot, as if that many batches were on their
// way, so that requests queue until release is called. Tests use it to
// queue requests deterministically.
func (c *Coalescer[T, R]) Hold() (release func()) {
	for range cap(c.slots) {
		c.slots <- struct{}{}
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			for range cap(c.slots) {
				<-c.slots
			}
		})
	}
}

// Stop makes Run dispatch nothing more; queued requests end with
// ErrStopped, dispatched ones still get their outcome.
func (c *Coalescer[T, R]) Stop() {
	c.stopOnce.Do(func() { close(c.stopping) })
}

// Drain stops dispatching and waits, up to d, until every dispatched
// batch has its outcome.
func (c *Coalescer[T, R]) Drain(d time.Duration) {
	c.Stop()
	t := time.NewTimer(d)
	defer t.Stop()
	for range cap(c.slots) {
		select {
		case c.slots <- struct{}{}:
		case <-t.C:
			return
		}
	}
}
