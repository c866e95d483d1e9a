package coalesce

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"
)

// run starts c.Run until the test ends.
func run[T, R any](t *testing.T, c *Coalescer[T, R]) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
}

func waitQueued[T, R any](t *testing.T, c *Coalescer[T, R], n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for c.Queued() != n {
		if time.Now().After(deadline) {
			t.Fatalf("%d queued, want %d", c.Queued(), n)
		}
		time.Sleep(time.Millisecond)
	}
}

// doubler answers each item doubled, recording the batches it saw.
type doubler struct {
	mu      sync.Mutex
	batches [][]int
}

func (d *doubler) dispatch(items []int) func() ([]Outcome[int], error) {
	d.mu.Lock()
	d.batches = append(d.batches, append([]int(nil), items...))
	d.mu.Unlock()
	return func() ([]Outcome[int], error) {
		out := make([]Outcome[int], len(items))
		for i, v := range items {
			if v < 0 {
				out[i].Err = fmt.Errorf("negative %d", v)
				continue
			}
			out[i].Value = 2 * v
		}
		return out, nil
	}
}

// TestCoalesces queues requests while the slot is taken: they go out in
// one batch, each caller gets its own outcome.
func TestCoalesces(t *testing.T) {
	d := &doubler{}
	c := New(Config[int, int]{Inflight: 1, MaxItems: 100, Dispatch: d.dispatch})
	run(t, c)
	release := c.Hold()
	var wg sync.WaitGroup
	got := make([]Outcome[int], 6)
	for i := range got {
		wg.Add(1)
		go func() {
			defer wg.Done()
			v := i
			if i == 3 {
				v = -3
			}
			got[i].Value, got[i].Err = c.Submit(context.Background(), v, 1)
		}()
	}
	waitQueued(t, c, 5) // Run holds the first while it waits for a slot
	release()
	wg.Wait()
	if len(d.batches) != 1 || len(d.batches[0]) != 6 {
		t.Fatalf("batches %v, want one of 6", d.batches)
	}
	for i, o := range got {
		if i == 3 {
			if o.Err == nil {
				t.Fatalf("item 3: %+v, want its own error", o)
			}
			continue
		}
		if o.Err != nil || o.Value != 2*i {
			t.Fatalf("item %d: %+v", i, o)
		}
	}
	if st := c.Stats(); st.Batches != 1 || st.Items != 6 {
		t.Fatalf("stats %+v", st)
	}
}

// TestLimits splits a queue by MaxItems and MaxBytes; a large first item
// still goes (alone).
func TestLimits(t *testing.T) {
	d := &doubler{}
	c := New(Config[int, int]{Inflight: 1, MaxItems: 3, MaxBytes: 10, Dispatch: d.dispatch})
	run(t, c)
	release := c.Hold()
	var wg sync.WaitGroup
	sizes := []int{1, 1, 1, 1, 50, 1}
	for i, size := range sizes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := c.Submit(context.Background(), i, size); err != nil {
				t.Error(err)
			}
		}()
		if i > 0 {
			waitQueued(t, c, i) // keep the order (Run holds one of the first two)
		}
	}
	release()
	wg.Wait()
	want := [][]int{{0, 1, 2}, {3, 4}, {5}}
	for _, b := range d.batches {
		slices.Sort(b)
	}
	if fmt.Sprint(d.batches) != fmt.Sprint(want) {
		t.Fatalf("batches %v, want %v", d.batches, want)
	}
}

// TestAbandoned: a caller whose context ends while queued is not sent.
func TestAbandoned(t *testing.T) {
	d := &doubler{}
	c := New(Config[int, int]{Inflight: 1, MaxItems: 10, Dispatch: d.dispatch})
	run(t, c)
	release := c.Hold()
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		_, err := c.Submit(ctx, 1, 1)
		errc <- err
	}()
	waitQueued(t, c, 0) // taken by Run, which waits for a slot
	cancel()
	if err := <-errc; !errors.Is(err, ErrAbandoned) || !errors.Is(err, context.Canceled) {
		t.Fatalf("abandoned: %v", err)
	}
	release()
	if v, err := c.Submit(context.Background(), 2, 1); err != nil || v != 4 {
		t.Fatalf("next: %d %v", v, err)
	}
	if fmt.Sprint(d.batches) != "[[2]]" {
		t.Fatalf("batches %v: the abandoned item was sent", d.batches)
	}
}

// TestInFlight: a caller whose context ends after dispatch gets
// ErrInFlight, or waits with WaitDispatched.
func TestInFlight(t *testing.T) {
	for _, waitDispatched := range []bool{false, true} {
		t.Run(fmt.Sprint("wait=", waitDispatched), func(t *testing.T) {
			gate := make(chan struct{})
			c := New(Config[int, int]{Inflight: 1, MaxItems: 10, WaitDispatched: waitDispatched,
				Dispatch: func(items []int) func() ([]Outcome[int], error) {
					return func() ([]Outcome[int], error) {
						<-gate
						return []Outcome[int]{{Value: items[0]}}, nil
					}
				}})
			run(t, c)
			ctx, cancel := context.WithCancel(context.Background())
			errc := make(chan error, 1)
			go func() {
				_, err := c.Submit(ctx, 1, 1)
				errc <- err
			}()
			for c.Stats().Batches == 0 {
				time.Sleep(time.Millisecond)
			}
			cancel()
			if !waitDispatched {
				if err := <-errc; !errors.Is(err, ErrInFlight) {
					t.Fatalf("after dispatch: %v, want ErrInFlight", err)
				}
				close(gate)
				return
			}
			select {
			case err := <-errc:
				t.Fatalf("returned %v before its outcome", err)
			case <-time.After(20 * time.Millisecond):
			}
			close(gate)
			if err := <-errc; err != nil {
				t.Fatalf("outcome: %v", err)
			}
		})
	}
}

// TestStop: queued requests end with ErrStopped when Run ends; later
// ones are refused at once.
func TestStop(t *testing.T) {
	d := &doubler{}
	c := New(Config[int, int]{Inflight: 1, MaxItems: 10, Dispatch: d.dispatch})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.Run(ctx)
	}()
	c.Hold()
	errs := make(chan error, 3)
	for i := range 3 {
		go func() {
			_, err := c.Submit(context.Background(), i, 1)
			errs <- err
		}()
	}
	waitQueued(t, c, 2)
	cancel()
	<-done
	for range 3 {
		if err := <-errs; !errors.Is(err, ErrStopped) {
			t.Fatalf("queued at stop: %v", err)
		}
	}
	if _, err := c.Submit(context.Background(), 9, 1); !errors.Is(err, ErrStopped) {
		t.Fatalf("after stop: %v", err)
	}
	if len(d.batches) != 0 {
		t.Fatalf("sent after stop: %v", d.batches)
	}
}

// TestBatchError gives every request the whole batch's error.
func TestBatchError(t *testing.T) {
	boom := errors.New("boom")
	c := New(Config[int, int]{Inflight: 1, MaxItems: 10, Dispatch: func([]int) func() ([]Outcome[int], error) {
		return func() ([]Outcome[int], error) { return nil, boom }
	}})
	run(t, c)
	if _, err := c.Submit(context.Background(), 1, 1); !errors.Is(err, boom) {
		t.Fatalf("%v, want the batch's error", err)
	}
}
