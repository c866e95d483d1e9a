package httpapi

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cairn-db/cairn/feed"
	"github.com/cairn-db/cairn/fsm"
	"github.com/cairn-db/cairn/internal/testutil"
)

// stuckWriter is a ResponseWriter whose writes after the first block
// until unblock is closed (a reader that stopped reading); the rest
// record what was written.
type stuckWriter struct {
	hdr     http.Header
	block   bool
	unblock chan struct{}

	mu      sync.Mutex
	buf     bytes.Buffer
	writes  int
	blocked bool
}

func (w *stuckWriter) Header() http.Header { return w.hdr }
func (w *stuckWriter) WriteHeader(int)     {}

func (w *stuckWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	w.writes++
	if w.block && w.writes > 1 {
		w.blocked = true
		w.mu.Unlock()
		<-w.unblock
		return len(p), nil
	}
	defer w.mu.Unlock()
	return w.buf.Write(p)
}

func (w *stuckWriter) state() (blocked bool, out string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.blocked, w.buf.String()
}

// TestWatchSlowReaderLeavesCPU: with one catch-up CPU token, a stream
// catching up whose connection stopped taking writes (in the middle of a
// chunk) does not hold the token: another stream catching up from the
// same revision reads to the head meanwhile.
func TestWatchSlowReaderLeavesCPU(t *testing.T) {
	st := newFakeStore()
	value := []byte(strings.Repeat("v", 1<<10))
	for i := range 300 {
		st.commit(fsm.Op{Kind: fsm.OpPut, Key: fmt.Sprintf("k/%d", i), Value: value})
	}
	head := st.Revision()
	hub := feed.New(st, feed.Config{MaxSubscribers: 4, MaxDelay: time.Millisecond, CatchUpStreams: 1})
	defer hub.Shutdown()
	var wg sync.WaitGroup
	defer wg.Wait()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	run := func(w *stuckWriter) {
		sub, err := hub.Subscribe(1)
		if err != nil {
			t.Fatal(err)
		}
		wg.Go(func() {
			defer sub.Close()
			s := &stream{sub: sub, interval: time.Hour}
			req := httptest.NewRequestWithContext(ctx, http.MethodGet, "/v1/watch?from_revision=1", nil)
			if err := s.serve(w, req); err != nil {
				t.Error(err)
			}
		})
	}
	slow := &stuckWriter{hdr: http.Header{}, block: true, unblock: make(chan struct{})}
	defer close(slow.unblock)
	run(slow)
	testutil.WaitFor(t, "the slow stream's write blocks", 10*time.Second, func() error {
		if blocked, _ := slow.state(); !blocked {
			return errors.New("not blocked yet")
		}
		return nil
	})
	fast := &stuckWriter{hdr: http.Header{}}
	run(fast)
	last := fmt.Sprintf(`{"type":"txn","revision":%d,`, head)
	testutil.WaitFor(t, "the other stream reads to the head", 10*time.Second, func() error {
		if _, out := fast.state(); !strings.Contains(out, last) {
			held, waiting := hub.CatchUpCPU()
			return fmt.Errorf("%d bytes so far; CPU tokens held %d, waiting %d", len(out), held, waiting)
		}
		return nil
	})
	cancel()
}
