package cluster_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cairn-db/cairn/api"
	"github.com/cairn-db/cairn/client"
)

// watchClient returns a client for every member, closed at the end of the
// test (before the cluster's leak check).
func watchClient(t *testing.T, c *Cluster) *client.Client {
	t.Helper()
	cfg := client.DefaultConfig()
	for i := 0; i < c.N(); i++ {
		cfg.Endpoints = append(cfg.Endpoints, c.URL(i))
	}
	cfg.RequestTimeout = 3 * time.Second
	cfg.MaxBackoff = 200 * time.Millisecond
	cl, err := client.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cl.Close() })
	return cl
}

// watchLog is what a client.Watch delivered.
type watchLog struct {
	mu       sync.Mutex
	txns     []client.WatchEvent
	last     uint64 // last revision delivered (txn or progress)
	node     string // member that served the last event
	nodes    map[string]bool
	final    error
	progress int
	done     chan struct{}
}

func collect(ch <-chan client.WatchEvent) *watchLog {
	w := &watchLog{nodes: map[string]bool{}, done: make(chan struct{})}
	go func() {
		defer close(w.done)
		for ev := range ch {
			w.mu.Lock()
			switch {
			case ev.Err != nil:
				w.final = ev.Err
			case ev.Type == api.WatchTxn:
				w.txns = append(w.txns, ev)
			case ev.Type == api.WatchProgress:
				w.progress++
			}
			if ev.Err == nil {
				w.last, w.node = ev.Revision, ev.Node
				w.nodes[ev.Node] = true
			}
			w.mu.Unlock()
		}
	}()
	return w
}

func (w *watchLog) snapshot() (last uint64, node string, txns int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.last, w.node, len(w.txns)
}

// TestWatchFailover runs a client.Watch while writers write continuously,
// through the loss of the leader and the restart of the member the watch
// is connected to. Afterwards the watch's transactions equal the log:
// every revision once, in order, with the same chain hashes.
func TestWatchFailover(t *testing.T) {
	c := StartCluster(t, 3, nil)
	cl := watchClient(t, c)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch, err := cl.Watch(ctx, "w/", 1)
	if err != nil {
		t.Fatal(err)
	}
	w := collect(ch)

	// Writers: unique keys, each write retried by the client with its
	// idempotency key until it succeeds.
	var stop atomic.Bool
	var writes atomic.Int64
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; !stop.Load(); i++ {
				wctx, wcancel := context.WithTimeout(ctx, 30*time.Second)
				_, err := cl.Put(wctx, fmt.Sprintf("w/%d/%05d", g, i), []byte("v"))
				wcancel()
				if err != nil {
					t.Errorf("writer %d: put %d: %v", g, i, err)
					return
				}
				writes.Add(1)
			}
		}()
	}
	waitWrites := func(n int64, what string) {
		t.Helper()
		target := writes.Load() + n
		waitFor(t, what, 30*time.Second, func() error {
			if got := writes.Load(); got < target {
				return fmt.Errorf("%d writes, want %d", got, target)
			}
			return nil
		})
	}
	waitWrites(50, "writes before the leader stops")

	// The leader stops; writes go on under a new one.
	l := c.Leader(t)
	t.Logf("stopping leader %s", c.Config(l).ID)
	c.Stop(t, l)
	c.Leader(t)
	waitWrites(50, "writes under the new leader")
	c.Restart(t, l)
	c.WaitReady(t, l)
	waitWrites(50, "writes after the old leader is back")

	// The member the watch is connected to restarts.
	_, node, _ := w.snapshot()
	idx := c.Index(node)
	if idx < 0 {
		t.Fatalf("watch served by unknown member %q", node)
	}
	t.Logf("restarting %s, which serves the watch", node)
	c.Stop(t, idx)
	waitWrites(30, "writes while the watched member is down")
	c.Restart(t, idx)
	c.Leader(t)
	c.WaitReady(t, idx)
	waitWrites(50, "writes after the watched member is back")

	stop.Store(true)
	wg.Wait()
	head := c.WaitConverged(t)
	waitFor(t, "watch to reach the head", 30*time.Second, func() error {
		if last, _, _ := w.snapshot(); last < head.Revision {
			return fmt.Errorf("watch at %d, head %d", last, head.Revision)
		}
		return nil
	})
	cancel()
	<-w.done
	if w.final != nil {
		t.Fatalf("watch ended with %v", w.final)
	}

	log := c.Log(t, c.Leader(t))
	if len(log) == 0 || log[len(log)-1].Revision != head.Revision {
		t.Fatalf("log has %d records, head %d", len(log), head.Revision)
	}
	if len(w.txns) != len(log) {
		t.Errorf("watch delivered %d transactions, log has %d", len(w.txns), len(log))
	}
	for i := 0; i < min(len(w.txns), len(log)); i++ {
		got, want := w.txns[i], log[i]
		if got.Revision != want.Revision || got.Hash != want.Hash || len(got.Operations) != 1 ||
			got.Operations[0].Key != want.Operations[0].Key {
			t.Fatalf("watch event %d: revision %d hash %.8s ops %v; log: revision %d hash %.8s ops %v",
				i, got.Revision, got.Hash, got.Operations, want.Revision, want.Hash, want.Operations)
		}
	}
	if len(w.nodes) < 2 {
		t.Errorf("the watch was served by %v only; it should have moved", w.nodes)
	}
	t.Logf("%d writes, %d revisions watched without gaps or repeats, served by %d members, %d progress events",
		writes.Load(), len(w.txns), len(w.nodes), w.progress)
}

// TestWatchFiltersAndProgress watches a non-voter over HTTP and with the
// client: only operations under the prefix arrive, and progress events
// arrive when nothing matches.
func TestWatchFiltersAndProgress(t *testing.T) {
	c := StartCluster(t, 3, nil)
	nv := c.AddMember(t, true)
	url := c.URL(nv) + "/v1/watch?prefix=p/&progress_interval=100ms"
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := c.HTTP.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get(api.HeaderNode) != c.Config(nv).ID {
		t.Fatalf("watch on the non-voter: %d from %q", resp.StatusCode, resp.Header.Get(api.HeaderNode))
	}
	lines := make(chan api.WatchEvent, 100)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			var ev api.WatchEvent
			if json.Unmarshal(sc.Bytes(), &ev) == nil {
				lines <- ev
			}
		}
	}()
	cl := watchClient(t, c)
	none, err := cl.Watch(ctx, "none/", 0, client.Endpoint(c.URL(nv)))
	if err != nil {
		t.Fatal(err)
	}
	pc, err := cl.Watch(ctx, "p/", 0)
	if err != nil {
		t.Fatal(err)
	}

	c.Put(t, 0, "q/1", "x", "")
	r2 := c.Put(t, 1, "p/1", "x", "").Revision()
	r3 := c.Txn(t, 2, api.TxnRequest{User: "ann", Operations: []api.Operation{
		{Op: api.OpPut, Key: "p/2", Value: []byte("y")}, {Op: api.OpPut, Key: "q/2", Value: []byte("y")}}}).Revision()
	c.Delete(t, 0, "q/", "prefix=true")
	r5 := c.Delete(t, 0, "p", "prefix=true").Revision()
	r6 := c.Delete(t, 0, "p/1", "").Revision()
	if r6 == 0 {
		t.Fatal("writes failed")
	}
	want := []string{
		fmt.Sprintf("%d put p/1", r2),
		fmt.Sprintf("%d put p/2 ann", r3),
		fmt.Sprintf("%d delete_prefix p", r5),
		fmt.Sprintf("%d delete p/1", r6),
	}
	format := func(rev uint64, ops []api.Operation, user string) string {
		var s []string
		for _, o := range ops {
			s = append(s, o.Op+" "+o.Key)
		}
		return strings.TrimSpace(fmt.Sprintf("%d %s %s", rev, strings.Join(s, ","), user))
	}
	// HTTP on the non-voter.
	var got []string
	progress := 0
	timeout := time.After(20 * time.Second)
	for len(got) < len(want) || progress < 3 {
		select {
		case ev, ok := <-lines:
			if !ok {
				t.Fatal("stream ended")
			}
			if ev.Type == api.WatchProgress {
				progress++
				continue
			}
			got = append(got, format(ev.Revision, ev.Operations, ev.User))
		case <-timeout:
			t.Fatalf("HTTP watch: got %q and %d progress events", got, progress)
		}
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("HTTP watch on the non-voter: %q, want %q", got, want)
	}
	// The client.
	got = nil
	for len(got) < len(want) {
		select {
		case ev := <-pc:
			if ev.Err != nil {
				t.Fatal(ev.Err)
			}
			if ev.Type == api.WatchTxn {
				got = append(got, format(ev.Revision, ev.Operations, ev.User))
			}
		case <-time.After(20 * time.Second):
			t.Fatalf("client watch: got %q", got)
		}
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("client watch: %q, want %q", got, want)
	}
	// Nothing matches none/: only progress, reaching the head.
	for {
		select {
		case ev := <-none:
			if ev.Type != api.WatchProgress || ev.Node != c.Config(nv).ID {
				t.Fatalf("watch of none/ got %+v", ev)
			}
			if ev.Revision >= r6 {
				return
			}
		case <-time.After(20 * time.Second):
			t.Fatal("no progress reaching the head on the none/ watch")
		}
	}
}

// TestWatchCompacted: a watch from before the compaction point is refused
// with compacted, over HTTP on every member and with the client.
func TestWatchCompacted(t *testing.T) {
	c := StartCluster(t, 3, nil)
	last := c.WriteKeys(t, "c/", 20)
	if r := c.PostJSON(t, 0, "/v1/compact", api.CompactRequest{Revision: 10}); r.Code != http.StatusOK {
		t.Fatalf("compact: %s", r)
	}
	// Compaction moves no chain head: wait for every member to apply it.
	for i := 0; i < c.N(); i++ {
		waitFor(t, c.Config(i).ID+" compacted", waitConverge, func() error {
			st, err := c.Status(i)
			if err == nil && st.CompactRevision < 10 {
				err = fmt.Errorf("compact revision %d", st.CompactRevision)
			}
			return err
		})
	}
	for i := 0; i < c.N(); i++ {
		r := c.Do(t, i, http.MethodGet, "/v1/watch?from_revision=5", nil, nil)
		e := expectError(t, r, http.StatusGone, api.CodeCompacted)
		if e.OldestRevision != 10 {
			t.Errorf("%s: oldest_revision %d, want 10", c.Config(i).ID, e.OldestRevision)
		}
	}
	cl := watchClient(t, c)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	_, err := cl.Watch(ctx, "c/", 5)
	var ce *client.CompactedError
	if !errors.Is(err, client.ErrCompacted) || !errors.As(err, &ce) || ce.Oldest != 10 {
		t.Fatalf("client watch from 5: %v, want ErrCompacted with oldest 10", err)
	}
	// From the compaction point on, the watch works.
	ch, err := cl.Watch(ctx, "c/", 10)
	if err != nil {
		t.Fatal(err)
	}
	next := uint64(10)
	for next <= last {
		select {
		case ev := <-ch:
			if ev.Type != api.WatchTxn {
				continue
			}
			if ev.Revision != next {
				t.Fatalf("got revision %d, want %d", ev.Revision, next)
			}
			next++
		case <-time.After(20 * time.Second):
			t.Fatalf("watch from 10 stuck before %d", next)
		}
	}
}
