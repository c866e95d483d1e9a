package reqstats

import (
	"context"
	"fmt"
	"math"
	"sync"
	"testing"
	"time"

	"github.com/cairn-db/cairn/internal/testutil"
)

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// within reports whether got is within 1% of want (two significant
// digits).
func within(got, want float64) bool { return math.Abs(got-want) <= want/100 }

// TestRotate: a closed interval's point has its counts and percentiles;
// the next interval starts empty.
func TestRotate(t *testing.T) {
	r := New(Config{})
	for i := 1; i <= 100; i++ {
		r.Observe(Read, time.Duration(i)*time.Millisecond, false)
	}
	for i := 1; i <= 1000; i++ {
		r.Observe(Write, time.Duration(i)*100*time.Microsecond, i%10 == 0)
	}
	r.Observe(Read, 0, true)
	r.Rotate(t0)
	r.Rotate(t0.Add(5 * time.Second))
	pts := r.Points()
	if len(pts) != 2 {
		t.Fatalf("%d points, want 2", len(pts))
	}
	p := pts[0]
	if !p.Time.Equal(t0) || p.Reads != 101 || p.Writes != 1000 || p.Errors != 101 {
		t.Fatalf("point %+v", p)
	}
	for _, c := range []struct {
		name      string
		got, want float64
	}{
		{"read p50", p.ReadP50Ms, 50}, {"read p99", p.ReadP99Ms, 99},
		{"write p50", p.WriteP50Ms, 50}, {"write p99", p.WriteP99Ms, 99},
	} {
		if !within(c.got, c.want) {
			t.Errorf("%s = %v ms, want %v ms within 1%%", c.name, c.got, c.want)
		}
	}
	empty := pts[1]
	if empty.Reads+empty.Writes+empty.Errors != 0 || empty.ReadP50Ms+empty.ReadP99Ms+empty.WriteP50Ms+empty.WriteP99Ms != 0 {
		t.Fatalf("empty interval: %+v", empty)
	}
}

// TestRange: latencies below a microsecond and above the range are
// counted at its ends; an unknown kind is ignored.
func TestRange(t *testing.T) {
	r := New(Config{})
	r.Observe(Write, time.Hour, false)
	r.Observe(Read, -time.Second, false)
	r.Observe(Kind(7), time.Second, true)
	r.Rotate(t0)
	p := r.Points()[0]
	if p.Writes != 1 || p.Reads != 1 || p.Errors != 0 {
		t.Fatalf("counts %+v", p)
	}
	if !within(p.WriteP99Ms, float64(maxMicros)/1000) {
		t.Fatalf("write p99 %v ms, want the range's top %v ms", p.WriteP99Ms, maxMicros/1000)
	}
	if p.ReadP50Ms != 0.001 {
		t.Fatalf("read p50 %v ms, want 1 µs", p.ReadP50Ms)
	}
}

// TestRing: the ring keeps the last Points points, oldest first.
func TestRing(t *testing.T) {
	r := New(Config{Points: 5})
	for i := range 12 {
		for range i {
			r.Observe(Write, time.Millisecond, false)
		}
		r.Rotate(t0.Add(time.Duration(i) * time.Second))
		pts := r.Points()
		if want := min(i+1, 5); len(pts) != want {
			t.Fatalf("after %d rotations: %d points, want %d", i+1, len(pts), want)
		}
		for j, p := range pts {
			k := i - len(pts) + 1 + j // the rotation that made p
			if !p.Time.Equal(t0.Add(time.Duration(k)*time.Second)) || p.Writes != uint64(k) {
				t.Fatalf("after %d rotations, point %d: %+v, want rotation %d's", i+1, j, p, k)
			}
		}
	}
}

// TestConcurrent: requests observed from many goroutines while intervals
// rotate are each counted once.
func TestConcurrent(t *testing.T) {
	r := New(Config{Points: 1000})
	const workers, each = 8, 5000
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := range 500 {
			r.Rotate(t0.Add(time.Duration(i) * time.Millisecond))
		}
	}()
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				k := Read
				if (w+i)%2 == 0 {
					k = Write
				}
				r.Observe(k, time.Duration(i)*time.Microsecond, i%100 == 0)
			}
		}()
	}
	wg.Wait()
	r.Rotate(t0.Add(time.Hour))
	var reads, writes, errs uint64
	for _, p := range r.Points() {
		reads, writes, errs = reads+p.Reads, writes+p.Writes, errs+p.Errors
	}
	if reads+writes != workers*each || writes != workers*each/2 || errs != workers*each/100 {
		t.Fatalf("reads %d writes %d errors %d, want %d requests, %d writes, %d errors",
			reads, writes, errs, workers*each, workers*each/2, workers*each/100)
	}
}

// TestRun: Run rotates at the interval's multiples of the wall clock and
// returns when its context ends.
func TestRun(t *testing.T) {
	r := New(Config{Interval: 20 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		r.Run(ctx)
	}()
	r.Observe(Read, time.Millisecond, false)
	testutil.WaitFor(t, "three points", 10*time.Second, func() error {
		if n := len(r.Points()); n < 3 {
			return fmt.Errorf("%d points", n)
		}
		return nil
	})
	cancel()
	<-stopped
	pts := r.Points()
	var reads uint64
	for i, p := range pts {
		if p.Time.UnixNano()%int64(20*time.Millisecond) != 0 {
			t.Fatalf("point %d at %v: not a multiple of the interval", i, p.Time)
		}
		if i > 0 && !p.Time.After(pts[i-1].Time) {
			t.Fatalf("point %d at %v, not after %v", i, p.Time, pts[i-1].Time)
		}
		reads += p.Reads
	}
	if reads != 1 {
		t.Fatalf("%d reads in %+v, want 1", reads, pts)
	}
}

func BenchmarkObserve(b *testing.B) {
	r := New(Config{})
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		r.Observe(Kind(i&1), time.Duration(i&0xffff)*time.Microsecond, false)
	}
}

func BenchmarkObserveParallel(b *testing.B) {
	r := New(Config{})
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			r.Observe(Kind(i&1), time.Duration(i&0xffff)*time.Microsecond, false)
			i++
		}
	})
}
