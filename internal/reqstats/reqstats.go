// Package reqstats keeps a member's request statistics for its status page
// (GET /v1/stats): how many reads and writes it answered, how many failed,
// and their latencies, in fixed intervals over the last minutes. The member
// keeps them itself, so the page needs no Prometheus.
//
// A Recorder takes each request's kind, duration and outcome (Observe) into
// the current interval; Rotate closes the interval into a point (counts,
// 50th and 99th percentile latencies) in a ring of the last Points points.
// Run rotates at every multiple of Interval of the wall clock until its
// context ends, so that the points of every member line up.
//
// Observe is the hot path of every read and write: it takes one of several
// shards' locks (picked at random, so concurrent requests rarely wait for
// each other) and records into that shard's HDR histograms
// (github.com/HdrHistogram/hdrhistogram-go, two significant digits: a
// percentile is within 1% of the exact value). Rotate merges the shards.
package reqstats

import (
	"context"
	"math/rand/v2"
	"runtime"
	"sync"
	"time"

	hdr "github.com/HdrHistogram/hdrhistogram-go"

	"github.com/cairn-db/cairn/api"
)

// Defaults: 5-second intervals, the last 15 minutes.
const (
	DefaultInterval = 5 * time.Second
	DefaultPoints   = 180
)

// Latencies are recorded in microseconds from 1 µs to maxMicros (a longer
// request counts as maxMicros), with two significant digits.
const (
	maxMicros = int64(time.Minute / time.Microsecond)
	sigFigs   = 2
	maxShards = 8
)

// Kind is what a request did.
type Kind uint8

// Kinds of requests.
const (
	// Read is a read of keys or their history.
	Read Kind = iota
	// Write is a write (a put, a delete, a transaction).
	Write
	kinds
)

// Config sizes a Recorder; zero fields take the defaults.
type Config struct {
	// Interval is the length of one point (DefaultInterval).
	Interval time.Duration
	// Points is how many points the ring keeps (DefaultPoints).
	Points int
}

// Recorder keeps request statistics. Its methods are safe for concurrent
// use.
type Recorder struct {
	interval time.Duration
	shards   []shard
	mask     uint32

	// mu guards what Rotate and Points share: the merge histograms and
	// the ring.
	mu     sync.Mutex
	merged [kinds]*hdr.Histogram
	ring   []api.StatsPoint
	next   int // where the next point goes
	full   bool
}

// shard is one part of the current interval's counts, padded so that two
// shards' locks do not share a cache line.
type shard struct {
	mu     sync.Mutex
	count  [kinds]uint64
	errors uint64
	hist   [kinds]*hdr.Histogram
	_      [64]byte
}

// New returns an empty Recorder.
func New(cfg Config) *Recorder {
	if cfg.Interval <= 0 {
		cfg.Interval = DefaultInterval
	}
	if cfg.Points <= 0 {
		cfg.Points = DefaultPoints
	}
	n := 1
	for n < min(runtime.GOMAXPROCS(0), maxShards) {
		n *= 2
	}
	r := &Recorder{interval: cfg.Interval, shards: make([]shard, n), mask: uint32(n - 1), ring: make([]api.StatsPoint, cfg.Points)}
	for i := range r.shards {
		for k := range kinds {
			r.shards[i].hist[k] = newHistogram()
		}
	}
	for k := range kinds {
		r.merged[k] = newHistogram()
	}
	return r
}

func newHistogram() *hdr.Histogram { return hdr.New(1, maxMicros, sigFigs) }

// Interval returns the length of one point.
func (r *Recorder) Interval() time.Duration { return r.interval }

// Observe records one request of kind k that took d; failed says it was
// answered with a failure.
func (r *Recorder) Observe(k Kind, d time.Duration, failed bool) {
	if k >= kinds {
		return
	}
	us := min(max(d.Microseconds(), 1), maxMicros)
	s := &r.shards[rand.Uint32()&r.mask]
	s.mu.Lock()
	s.count[k]++
	if failed {
		s.errors++
	}
	_ = s.hist[k].RecordValue(us) // within the histogram's range: no error
	s.mu.Unlock()
}

// Rotate closes the current interval as the point at end (its end) and
// starts the next one. The oldest point leaves a full ring.
func (r *Recorder) Rotate(end time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	p := api.StatsPoint{Time: end.UTC()}
	var count [kinds]uint64
	for i := range r.shards {
		s := &r.shards[i]
		s.mu.Lock()
		for k := range kinds {
			count[k] += s.count[k]
			s.count[k] = 0
			if s.hist[k].TotalCount() > 0 {
				r.merged[k].Merge(s.hist[k])
				s.hist[k].Reset()
			}
		}
		p.Errors += s.errors
		s.errors = 0
		s.mu.Unlock()
	}
	p.Reads, p.Writes = count[Read], count[Write]
	p.ReadP50Ms, p.ReadP99Ms = percentiles(r.merged[Read])
	p.WriteP50Ms, p.WriteP99Ms = percentiles(r.merged[Write])
	for k := range kinds {
		r.merged[k].Reset()
	}
	r.ring[r.next] = p
	r.next++
	if r.next == len(r.ring) {
		r.next, r.full = 0, true
	}
}

// percentiles returns h's 50th and 99th percentiles in milliseconds (0
// when h is empty).
func percentiles(h *hdr.Histogram) (p50, p99 float64) {
	if h.TotalCount() == 0 {
		return 0, 0
	}
	ms := func(q float64) float64 { return float64(h.ValueAtQuantile(q)) / 1000 }
	return ms(50), ms(99)
}

// Points returns the closed intervals' points, oldest first.
func (r *Recorder) Points() []api.StatsPoint {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.full {
		return append([]api.StatsPoint(nil), r.ring[:r.next]...)
	}
	out := make([]api.StatsPoint, 0, len(r.ring))
	out = append(out, r.ring[r.next:]...)
	return append(out, r.ring[:r.next]...)
}

// Run rotates at every multiple of the interval of the wall clock (the
// first point covers only the time since Run started) until ctx ends.
func (r *Recorder) Run(ctx context.Context) {
	for {
		end := time.Now().Truncate(r.interval).Add(r.interval)
		t := time.NewTimer(time.Until(end))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
			r.Rotate(end)
		}
	}
}
