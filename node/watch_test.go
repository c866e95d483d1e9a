package node

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cairn-db/cairn/api"
	"github.com/cairn-db/cairn/fsm"
	"github.com/cairn-db/cairn/httpapi"
)

// startSingle starts a one-node cluster and waits until it is ready.
func startSingle(t *testing.T, mod func(*Config)) *Node {
	t.Helper()
	cfg := testConfig(t, "n1")
	cfg.Bootstrap = true
	if mod != nil {
		mod(&cfg)
	}
	n := startNode(t, cfg)
	waitFor(t, "n1 ready", 10*time.Second, n.Ready)
	return n
}

func mustWrite(t *testing.T, n *Node, ops ...fsm.Op) uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := n.Write(ctx, fsm.Txn{Ops: ops})
	if err == nil {
		err = res.Err
	}
	if err != nil {
		t.Fatalf("write %v: %v", ops, err)
	}
	return res.Revision
}

func putOp(k, v string) fsm.Op { return fsm.Op{Kind: fsm.OpPut, Key: k, Value: []byte(v)} }

// stream is an open watch answer read line by line.
type stream struct {
	t      *testing.T
	resp   *http.Response
	lines  chan api.WatchEvent
	cancel context.CancelFunc
}

func openWatch(t *testing.T, url string) *stream {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		cancel()
		resp.Body.Close()
		t.Fatalf("watch %s: HTTP %d", url, resp.StatusCode)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/x-ndjson" {
		t.Errorf("Content-Type %q", ct)
	}
	s := &stream{t: t, resp: resp, lines: make(chan api.WatchEvent, 1024), cancel: cancel}
	go func() {
		defer close(s.lines)
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(nil, 8<<20)
		for sc.Scan() {
			var ev api.WatchEvent
			if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
				t.Errorf("bad line %q: %v", sc.Text(), err)
				return
			}
			s.lines <- ev
		}
	}()
	t.Cleanup(s.close)
	return s
}

func (s *stream) close() {
	s.cancel()
	s.resp.Body.Close()
}

// next returns the next event that is not progress (or progress when
// wantProgress).
func (s *stream) next(wantProgress bool) api.WatchEvent {
	s.t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case ev, ok := <-s.lines:
			if !ok {
				s.t.Fatal("stream ended")
			}
			if ev.Type == api.WatchProgress && !wantProgress {
				continue
			}
			return ev
		case <-timeout:
			s.t.Fatal("no event within 10s")
		}
	}
}

func opsOf(ev api.WatchEvent) string {
	var out []string
	for _, o := range ev.Operations {
		out = append(out, o.Op+" "+o.Key)
	}
	return strings.Join(out, ",")
}

func TestWatchStream(t *testing.T) {
	n := startSingle(t, nil)
	r1 := mustWrite(t, n, putOp("a/1", "x"))
	mustWrite(t, n, putOp("b/1", "x"))
	r3 := mustWrite(t, n, putOp("a/2", "y"), putOp("b/2", "y"))
	r4 := mustWrite(t, n, fsm.Op{Kind: fsm.OpDeletePrefix, Key: "a"})

	s := openWatch(t, n.HTTPURL()+"/v1/watch?prefix=a/&from_revision=1&progress_interval=50ms")
	if ev := s.next(true); ev.Type != api.WatchProgress || ev.Revision != 0 {
		t.Fatalf("first line %+v, want progress 0", ev)
	}
	want := []struct {
		rev uint64
		ops string
	}{{r1, "put a/1"}, {r3, "put a/2"}, {r4, "delete_prefix a"}}
	for _, w := range want {
		ev := s.next(false)
		if ev.Type != api.WatchTxn || ev.Revision != w.rev || opsOf(ev) != w.ops || ev.Hash == "" || ev.Time.IsZero() {
			t.Fatalf("got %+v, want revision %d ops %q", ev, w.rev, w.ops)
		}
	}
	// Caught up: progress says the head.
	for {
		ev := s.next(true)
		if ev.Type != api.WatchProgress {
			t.Fatalf("unexpected %+v", ev)
		}
		if ev.Revision == r4 {
			break
		}
	}
	// Live: a new matching write arrives, a non-matching one does not.
	mustWrite(t, n, putOp("b/3", "z"))
	r6 := mustWrite(t, n, putOp("a/3", "z"), fsm.Op{Kind: fsm.OpDelete, Key: "b/1"})
	ev := s.next(false)
	if ev.Revision != r6 || opsOf(ev) != "put a/3" || string(ev.Operations[0].Value) != "z" {
		t.Fatalf("live event %+v, want %d put a/3", ev, r6)
	}

	// Default start: only future transactions; progress with nothing
	// matching.
	s2 := openWatch(t, n.HTTPURL()+"/v1/watch?prefix=zzz/&progress_interval=50ms")
	if ev := s2.next(true); ev.Type != api.WatchProgress || ev.Revision != r6 {
		t.Fatalf("first line %+v, want progress %d", ev, r6)
	}
	r7 := mustWrite(t, n, putOp("a/4", "z"))
	for {
		ev := s2.next(true)
		if ev.Type != api.WatchProgress {
			t.Fatalf("non-matching event %+v", ev)
		}
		if ev.Revision == r7 {
			break
		}
	}

	// A start beyond the head waits for it.
	s3 := openWatch(t, fmt.Sprintf("%s/v1/watch?from_revision=%d&progress_interval=50ms", n.HTTPURL(), r7+2))
	if ev := s3.next(true); ev.Type != api.WatchProgress || ev.Revision != r7 {
		t.Fatalf("first line %+v, want progress %d", ev, r7)
	}
	mustWrite(t, n, putOp("skip", "1"))
	r9 := mustWrite(t, n, putOp("take", "1"))
	if ev := s3.next(false); ev.Revision != r9 {
		t.Fatalf("future start: got %+v, want revision %d", ev, r9)
	}
}

func TestWatchErrors(t *testing.T) {
	n := startSingle(t, func(c *Config) { c.MaxWatchers = 1 })
	for i := 0; i < 5; i++ {
		mustWrite(t, n, putOp(fmt.Sprintf("k%d", i), "v"))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := n.Compact(ctx, 4); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		query string
		code  int
		want  string
	}{
		{"progress_interval=1ms", 400, api.CodeBadRequest},
		{"progress_interval=x", 400, api.CodeBadRequest},
		{"from=1", 400, api.CodeBadRequest},
		{"from_revision=-1", 400, api.CodeBadRequest},
		{"prefix=a%00b", 400, api.CodeBadRequest},
		{"from_revision=2", 410, api.CodeCompacted},
	} {
		code, body := do(t, "GET", n.HTTPURL()+"/v1/watch?"+tc.query, "")
		var er api.ErrorResponse
		if err := json.Unmarshal([]byte(body), &er); code != tc.code || err != nil || er.Error.Code != tc.want {
			t.Errorf("%s: %d %s, want %d %s", tc.query, code, body, tc.code, tc.want)
		}
		if tc.want == api.CodeCompacted && er.Error.OldestRevision != 4 {
			t.Errorf("oldest_revision %d, want 4", er.Error.OldestRevision)
		}
	}
	if code, body := do(t, "POST", n.HTTPURL()+"/v1/watch", ""); code != 405 {
		t.Errorf("POST: %d %s", code, body)
	}
	// The compaction point itself is available.
	s := openWatch(t, n.HTTPURL()+"/v1/watch?from_revision=4")
	if ev := s.next(false); ev.Revision != 4 {
		t.Fatalf("from the compaction point: %+v", ev)
	}
	// One watcher allowed: the second is refused.
	code, body := do(t, "GET", n.HTTPURL()+"/v1/watch", "")
	if code != 503 || !strings.Contains(body, api.CodeUnavailable) {
		t.Fatalf("second watcher: %d %s", code, body)
	}
	s.close()
	waitFor(t, "watcher released", 5*time.Second, func() error {
		if w := n.Watchers(); w != 0 {
			return fmt.Errorf("%d watchers", w)
		}
		return nil
	})
}

// gateWriter is a ResponseWriter whose first Write blocks until gate is
// closed.
type gateWriter struct {
	hdr     http.Header
	entered chan struct{}
	gate    chan struct{}
	once    sync.Once
	mu      sync.Mutex
	buf     bytes.Buffer
	status  int
}

func (g *gateWriter) Header() http.Header { return g.hdr }
func (g *gateWriter) WriteHeader(s int)   { g.status = s }
func (g *gateWriter) Flush()              {}
func (g *gateWriter) Write(p []byte) (int, error) {
	g.once.Do(func() {
		close(g.entered)
		<-g.gate
	})
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.buf.Write(p)
}

// TestWatchCompactedWhileStreaming compacts history while a stream is
// writing its first chunk: the stream sends that chunk, then ends with a
// compacted error naming the oldest revision, never a gap.
func TestWatchCompactedWhileStreaming(t *testing.T) {
	n := startSingle(t, nil)
	const writes, compactAt = 300, 290
	for i := 0; i < writes; i++ {
		mustWrite(t, n, putOp(fmt.Sprintf("k%03d", i), "v"))
	}
	g := &gateWriter{hdr: http.Header{}, entered: make(chan struct{}), gate: make(chan struct{})}
	done := make(chan struct{})
	go func() {
		defer close(done)
		httpapi.New(n, httpapi.Options{}).ServeHTTP(g, httptest.NewRequest(http.MethodGet, "/v1/watch?from_revision=1&progress_interval=10m", nil))
	}()
	// The first chunk is read; the stream is writing its first line.
	<-g.entered
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := n.Compact(ctx, compactAt); err != nil {
		t.Fatal(err)
	}
	close(g.gate)
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("stream did not end")
	}
	if g.status != http.StatusOK {
		t.Fatalf("status %d", g.status)
	}
	var evs []api.WatchEvent
	for _, line := range strings.Split(strings.TrimSpace(g.buf.String()), "\n") {
		var ev api.WatchEvent
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			t.Fatalf("line %q: %v", line, err)
		}
		evs = append(evs, ev)
	}
	if len(evs) < 3 || evs[0].Type != api.WatchProgress || evs[0].Revision != 0 {
		t.Fatalf("events: %+v", evs)
	}
	txns := evs[1 : len(evs)-1]
	if len(txns) >= compactAt {
		t.Fatalf("%d transactions sent before the compaction took effect; the first chunk should be smaller", len(txns))
	}
	for i, ev := range txns {
		if ev.Type != api.WatchTxn || ev.Revision != uint64(i+1) {
			t.Fatalf("event %d: %+v", i+1, ev)
		}
	}
	last := evs[len(evs)-1]
	if last.Type != api.WatchError || last.Error == nil || last.Error.Code != api.CodeCompacted ||
		last.Error.OldestRevision != compactAt || last.Revision != uint64(len(txns)) {
		t.Fatalf("last event %+v (error %+v), want compacted, oldest %d", last, last.Error, compactAt)
	}
}

func TestWatchEndsOnClose(t *testing.T) {
	cfg := testConfig(t, "n1")
	cfg.Bootstrap = true
	cfg.ShutdownTimeout = 10 * time.Second
	n, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close(context.Background())
	waitFor(t, "n1 ready", 10*time.Second, n.Ready)
	s := openWatch(t, n.HTTPURL()+"/v1/watch")
	s.next(true)
	start := time.Now()
	if err := n.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("Close took %s with a watch open", d)
	}
	ev := s.next(false)
	if ev.Type != api.WatchError || ev.Error == nil || ev.Error.Code != api.CodeUnavailable {
		t.Fatalf("last event %+v, want an unavailable error", ev)
	}
}

func TestWatchSlowReaderCutOff(t *testing.T) {
	n := startSingle(t, func(c *Config) { c.WatchWriteTimeout = 300 * time.Millisecond })
	// A reader that sends the request and never reads.
	conn, err := net.Dial("tcp", strings.TrimPrefix(n.HTTPURL(), "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := fmt.Fprintf(conn, "GET /v1/watch HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "watcher open", 5*time.Second, func() error {
		if n.Watchers() != 1 {
			return fmt.Errorf("%d watchers", n.Watchers())
		}
		return nil
	})
	// Far more than the socket buffers hold.
	big := strings.Repeat("x", 512<<10)
	written := 0
	for written < 64<<20 && n.Watchers() > 0 {
		mustWrite(t, n, putOp(fmt.Sprintf("big/%d", written), big))
		written += len(big)
	}
	waitFor(t, "slow watcher cut off", 10*time.Second, func() error {
		if n.Watchers() != 0 {
			return fmt.Errorf("%d watchers after %d bytes", n.Watchers(), written)
		}
		return nil
	})
	t.Logf("cut off after %d MiB written", written>>20)
	// Writes went on meanwhile, and the node still serves.
	mustWrite(t, n, putOp("after", "1"))
}

// TestWatchConcurrentBurst has writers race many watchers: every watcher
// gets every transaction exactly once, in order, and no progress event
// claims a revision before one it has not sent yet. The stream is not
// chunked: it ends with the connection.
func TestWatchConcurrentBurst(t *testing.T) {
	n := startSingle(t, nil)
	const watchers, writers, perWriter = 20, 8, 40
	streams := make([]*stream, watchers)
	for i := range streams {
		streams[i] = openWatch(t, n.HTTPURL()+"/v1/watch?prefix=burst/&progress_interval=50ms")
		if te := streams[i].resp.TransferEncoding; len(te) != 0 {
			t.Fatalf("Transfer-Encoding %q, want none", te)
		}
		if ev := streams[i].next(true); ev.Type != api.WatchProgress {
			t.Fatalf("first line %+v", ev)
		}
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var revs []uint64
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < perWriter; i++ {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				res, err := n.Write(ctx, fsm.Txn{Ops: []fsm.Op{putOp(fmt.Sprintf("burst/%d/%d", w, i), "v"), putOp("other/x", "v")}})
				cancel()
				if err == nil {
					err = res.Err
				}
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				revs = append(revs, res.Revision)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	slices.Sort(revs)
	for i, s := range streams {
		var got []uint64
		var complete uint64 // the last progress revision
		for len(got) < len(revs) {
			ev := s.next(true)
			switch ev.Type {
			case api.WatchProgress:
				complete = max(complete, ev.Revision)
				continue
			case api.WatchTxn:
			default:
				t.Fatalf("watcher %d: %+v", i, ev)
			}
			if ev.Revision <= complete {
				t.Fatalf("watcher %d: txn %d after progress %d", i, ev.Revision, complete)
			}
			if len(ev.Operations) != 1 || !strings.HasPrefix(ev.Operations[0].Key, "burst/") {
				t.Fatalf("watcher %d: operations %+v", i, ev.Operations)
			}
			got = append(got, ev.Revision)
		}
		if !slices.Equal(got, revs) {
			t.Fatalf("watcher %d: revisions %v, want %v", i, got, revs)
		}
	}
}

// TestWatchMaxDelay checks the setting's validation (package feed tests
// the wake-up interval it bounds).
func TestWatchMaxDelay(t *testing.T) {
	for _, d := range []time.Duration{-time.Millisecond, 2 * time.Second} {
		cfg := testConfig(t, "n1")
		cfg.WatchMaxDelay = d
		if err := cfg.Validate(); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("WatchMaxDelay %s: %v, want ErrInvalidConfig", d, err)
		}
	}
	cfg := testConfig(t, "n1")
	cfg.WatchMaxDelay = 0
	if err := cfg.Validate(); err != nil {
		t.Errorf("WatchMaxDelay 0: %v", err)
	}
}
