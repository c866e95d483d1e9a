package node

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/cairn-db/cairn/api"
)

// fakeClock is a clock that moves only when told: the rate reader's
// waits advance it by what they ask.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time { return c.t }

func (c *fakeClock) sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return fmt.Errorf("a wait of %v", d)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	c.t = c.t.Add(d)
	return nil
}

// burstySource returns chunks of random sizes, and now and then makes
// the clock jump while a read waits (the stream idles: a source with
// nothing to send).
type burstySource struct {
	clock *fakeClock
	rng   *rand.Rand
	left  int
}

func (s *burstySource) Read(p []byte) (int, error) {
	if s.left == 0 {
		return 0, io.EOF
	}
	if s.rng.IntN(10) == 0 {
		s.clock.t = s.clock.t.Add(time.Duration(s.rng.IntN(5000)) * time.Millisecond)
	}
	k := min(len(p), s.left, 1+s.rng.IntN(64<<10))
	for i := range k {
		p[i] = byte(s.left - i)
	}
	s.left -= k
	return k, nil
}

// TestRateReaderBound: for rate R, over any span between two reads (and
// from the start), the rate reader lets at most R*span + burst bytes
// through, whatever the read sizes and however long the stream idled
// before; it delivers every byte, in order; and it waits no longer than
// the bytes need at R. The
// clock is fake: the bound is checked exactly, with no real waiting.
func TestRateReaderBound(t *testing.T) {
	for _, rate := range []int64{100, 4096, 1 << 20, 10 << 20} {
		t.Run(fmt.Sprint(rate), func(t *testing.T) {
			clock := &fakeClock{t: time.Unix(1_000_000, 0)}
			total := int(min(rate*30, 8<<20))
			src := &burstySource{clock: clock, rng: rand.New(rand.NewPCG(uint64(rate), 7)), left: total}
			var slept time.Duration
			sleep := func(ctx context.Context, d time.Duration) error {
				slept += d
				return clock.sleep(ctx, d)
			}
			rr := newRateReaderClock(context.Background(), src, rate, clock.now, sleep)
			burst := float64(rr.burst)
			if want := max(rate/10, 512); int64(rr.burst) != want {
				t.Fatalf("burst %d, want %d", rr.burst, want)
			}
			type point struct {
				at    time.Time
				bytes int
			}
			points := []point{{at: clock.now()}} // the start
			var got bytes.Buffer
			buf := make([]byte, 256<<10)
			for {
				k, err := rr.Read(buf[:1+rand.IntN(len(buf))])
				got.Write(buf[:k])
				if k > 0 {
					points = append(points, point{at: clock.now(), bytes: points[len(points)-1].bytes + k})
				}
				if errors.Is(err, io.EOF) {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
			}
			if got.Len() != total {
				t.Fatalf("read %d bytes, want %d", got.Len(), total)
			}
			for i := range got.Len() {
				if got.Bytes()[i] != byte(total-i) {
					t.Fatalf("byte %d differs", i)
				}
			}
			for i := range points {
				for j := i + 1; j < len(points); j++ {
					span := points[j].at.Sub(points[i].at).Seconds()
					if through := float64(points[j].bytes - points[i].bytes); through > float64(rate)*span+burst+1e-6 {
						t.Fatalf("%v bytes through in %.6fs between reads %d and %d: more than %d*%.6f + %v", through, span, i, j, rate, span, burst)
					}
				}
			}
			// Not slower than needed: the waits add up to no more than
			// what the bytes beyond the first burst take at the rate, and
			// the last read's wait for a full bucket before it finds the
			// end (rounded up to a nanosecond per wait).
			need := time.Duration(float64(total) / float64(rate) * float64(time.Second))
			if slept > need+time.Duration(len(points)) {
				t.Fatalf("waited %v in all, the bytes need at most %v", slept, need)
			}
		})
	}
}

// A wait ends with the reader's context.
func TestRateReaderContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	clock := &fakeClock{t: time.Unix(0, 0)}
	rr := newRateReaderClock(ctx, strings.NewReader(strings.Repeat("x", 4096)), 512, clock.now, clock.sleep)
	buf := make([]byte, 4096)
	if k, err := rr.Read(buf); k != 512 || err != nil {
		t.Fatalf("first read %d %v, want the burst of 512", k, err)
	}
	cancel()
	if k, err := rr.Read(buf); k != 0 || !errors.Is(err, context.Canceled) {
		t.Fatalf("read after cancel: %d %v", k, err)
	}
	// With the real clock too.
	ctx, cancel = context.WithCancel(context.Background())
	rr = newRateReader(ctx, strings.NewReader(strings.Repeat("x", 4096)), 512)
	if k, err := rr.Read(buf); k != 512 || err != nil {
		t.Fatalf("first read %d %v", k, err)
	}
	cancel()
	if _, err := rr.Read(buf); !errors.Is(err, context.Canceled) {
		t.Fatalf("read after cancel: %v", err)
	}
}

// The mirror's max rate and the member's --mirror-max-rate: either alone,
// or the lower of the two.
func TestEffectiveMirrorRate(t *testing.T) {
	for _, c := range []struct {
		mirror uint64
		member int64
		want   int64
	}{
		{0, 0, 0},
		{1 << 20, 0, 1 << 20},
		{0, 5 << 20, 5 << 20},
		{1 << 20, 5 << 20, 1 << 20},
		{10 << 20, 5 << 20, 5 << 20},
		{math.MaxUint64, 0, math.MaxInt64},
	} {
		if got := effectiveMirrorRate(c.mirror, c.member); got != c.want {
			t.Errorf("mirror %d, member %d: %d, want %d", c.mirror, c.member, got, c.want)
		}
	}
}

// TestMirrorMaxRate: a mirror started with a max rate shows it in its
// status on every answer and still delivers everything; a negative one
// is refused; started again without one, it has none.
func TestMirrorMaxRate(t *testing.T) {
	src := startStandalone(t, "s1", nil)
	standby := startStandalone(t, "m1", nil)
	putN(t, src, "a", 40) // a few KB of records
	code, body := do(t, "POST", standby.HTTPURL()+"/v1/mirror/start", `{"sources":["`+src.HTTPURL()+`"],"max_rate":-5}`)
	if code != 400 || !strings.Contains(body, `"bad_request"`) {
		t.Fatalf("negative max rate: %d %s", code, body)
	}
	if _, err := standby.MirrorStart(context.Background(), api.MirrorStartRequest{Sources: []string{src.HTTPURL()}, MaxRate: -1}); !errors.Is(err, ErrBadRequest) {
		t.Fatalf("negative max rate, called directly: %v", err)
	}
	code, body = do(t, "POST", standby.HTTPURL()+"/v1/mirror/start", `{"sources":["`+src.HTTPURL()+`"],"max_rate":1048576}`)
	if code != 200 || !strings.Contains(body, `"max_rate":1048576`) {
		t.Fatalf("start with a max rate: %d %s", code, body)
	}
	waitFor(t, "caught up at 1MiB/s", 20*time.Second, caughtUp(src, standby))
	putN(t, src, "b", 20)
	waitFor(t, "caught up with new writes", 20*time.Second, caughtUp(src, standby))
	if st := mirrorStatusOf(t, standby); st.MaxRate != 1<<20 || st.State != api.MirrorFollowing {
		t.Fatalf("status %+v", st)
	}
	if ms, _ := standby.fsm.Mirror(); ms.MaxRate != 1<<20 {
		t.Fatalf("replicated max rate %d", ms.MaxRate)
	}
	if code, body := do(t, "POST", standby.HTTPURL()+"/v1/mirror/stop", ""); code != 200 || !strings.Contains(body, `"max_rate":1048576`) {
		t.Fatalf("stop: %d %s", code, body)
	}
	code, body = do(t, "POST", standby.HTTPURL()+"/v1/mirror/start", `{"sources":["`+src.HTTPURL()+`"]}`)
	if code != 200 || strings.Contains(body, `"max_rate"`) {
		t.Fatalf("start without a max rate: %d %s", code, body)
	}
	putN(t, src, "c", 5)
	waitFor(t, "caught up without a max rate", 20*time.Second, caughtUp(src, standby))
	if st := mirrorStatusOf(t, standby); st.MaxRate != 0 {
		t.Fatalf("status %+v", st)
	}
}
