package client_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cairn-db/cairn/api"
	"github.com/cairn-db/cairn/client"
	"github.com/cairn-db/cairn/node"
)

// recorder is a RoundTripper that records the host of every request by
// method.
type recorder struct {
	mu    sync.Mutex
	hosts map[string][]string
	next  http.RoundTripper
}

func (r *recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	r.mu.Lock()
	if r.hosts == nil {
		r.hosts = map[string][]string{}
	}
	r.hosts[req.Method] = append(r.hosts[req.Method], req.URL.Host)
	r.mu.Unlock()
	return r.next.RoundTrip(req)
}

func (r *recorder) get(method string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.hosts[method]...)
}

func host(u string) string {
	p, err := url.Parse(u)
	if err != nil {
		return u
	}
	return p.Host
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestConfigValidate(t *testing.T) {
	cfg := client.DefaultConfig()
	if err := cfg.Validate(); !errors.Is(err, client.ErrInvalidConfig) {
		t.Fatalf("no endpoints: %v", err)
	}
	cfg.Endpoints = []string{"127.0.0.1:1", "http://localhost:2/"}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("valid config: %v", err)
	}
	cfg.Endpoints = []string{"ftp://x"}
	if err := cfg.Validate(); !errors.Is(err, client.ErrInvalidConfig) {
		t.Fatalf("ftp endpoint: %v", err)
	}
	cfg.Endpoints, cfg.RequestTimeout = []string{"x:1"}, 0
	if err := cfg.Validate(); !errors.Is(err, client.ErrInvalidConfig) {
		t.Fatalf("zero timeout: %v", err)
	}
}

// TestCluster runs every call against one three-node cluster.
func TestCluster(t *testing.T) {
	nodes := startCluster(t, 3)
	leader := leaderOf(nodes)
	if leader == nil {
		t.Fatal("no leader")
	}
	var follower *node.Node
	for _, n := range nodes {
		if n != leader {
			follower = n
			break
		}
	}
	rec := &recorder{next: http.DefaultTransport}
	c := newClient(t, func(cfg *client.Config) {
		cfg.HTTPClient = &http.Client{Transport: rec}
	}, follower.HTTPURL())
	ctx := ctxT(t)

	t.Run("discovery", func(t *testing.T) {
		for i := range 3 {
			if _, err := c.Put(ctx, fmt.Sprintf("disc/%d", i), []byte("v")); err != nil {
				t.Fatal(err)
			}
		}
		for _, h := range rec.get(http.MethodPut) {
			if h != host(leader.HTTPURL()) {
				t.Fatalf("write sent to %s, leader is %s", h, leader.HTTPURL())
			}
		}
		if got := c.Leader(); got != leader.HTTPURL() {
			t.Fatalf("tracked leader %q, want %q", got, leader.HTTPURL())
		}
		ms, err := c.Members(ctx)
		if err != nil || len(ms.Members) != 3 || ms.Leader != leader.ID() {
			t.Fatalf("members: %+v %v", ms, err)
		}
	})

	t.Run("put get delete", func(t *testing.T) {
		w, err := c.Put(ctx, "a/b c?#%", []byte("hello"))
		if err != nil {
			t.Fatal(err)
		}
		if w.Revision == 0 || w.Hash == "" || w.Time.IsZero() || w.Replayed {
			t.Fatalf("write result %+v", w)
		}
		kv, err := c.Get(ctx, "a/b c?#%")
		if err != nil {
			t.Fatal(err)
		}
		if string(kv.Value) != "hello" || kv.ModRevision != w.Revision || kv.CreateRevision != w.Revision || kv.Revision < w.Revision {
			t.Fatalf("get: %+v (write %d)", kv, w.Revision)
		}
		for _, k := range []string{"/lead", "a//b", "../x", ""} {
			if k == "" {
				continue
			}
			if _, err := c.Put(ctx, k, []byte(k)); err != nil {
				t.Fatalf("put %q: %v", k, err)
			}
			if kv, err := c.Get(ctx, k); err != nil || string(kv.Value) != k || kv.Key != k {
				t.Fatalf("get %q: %+v %v", k, kv, err)
			}
		}
		// Empty value.
		if _, err := c.Put(ctx, "empty", nil); err != nil {
			t.Fatal(err)
		}
		if kv, err := c.Get(ctx, "empty"); err != nil || len(kv.Value) != 0 {
			t.Fatalf("empty: %+v %v", kv, err)
		}
		d, err := c.Delete(ctx, "a/b c?#%", client.IfRevision(w.Revision))
		if err != nil || d.Revision <= w.Revision {
			t.Fatalf("delete: %+v %v", d, err)
		}
		if _, err := c.Get(ctx, "a/b c?#%"); !errors.Is(err, client.ErrNotFound) {
			t.Fatalf("get deleted: %v", err)
		}
		// Read at the old revision.
		kv, err = c.Get(ctx, "a/b c?#%", client.AtRevision(w.Revision))
		if err != nil || string(kv.Value) != "hello" {
			t.Fatalf("get at %d: %+v %v", w.Revision, kv, err)
		}
		for i := range 5 {
			if _, err := c.Put(ctx, fmt.Sprintf("del/%d", i), []byte("x")); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := c.DeletePrefix(ctx, "del/"); err != nil {
			t.Fatal(err)
		}
		if lr, err := c.ListPage(ctx, "del/", "", 0); err != nil || len(lr.KVs) != 0 {
			t.Fatalf("after delete prefix: %+v %v", lr, err)
		}
		if _, err := c.DeletePrefix(ctx, "del/", client.IfExists()); !errors.Is(err, client.ErrBadRequest) {
			t.Fatalf("delete prefix with condition: %v", err)
		}
	})

	t.Run("conditional writes", func(t *testing.T) {
		w, err := c.Put(ctx, "cond", []byte("1"), client.IfAbsent())
		if err != nil {
			t.Fatal(err)
		}
		_, err = c.Put(ctx, "cond", []byte("2"), client.IfAbsent())
		var ce *client.ConflictError
		if !errors.Is(err, client.ErrConflict) || !errors.As(err, &ce) {
			t.Fatalf("if absent on existing key: %v", err)
		}
		if len(ce.Conflicts) != 1 || ce.Conflicts[0].Key != "cond" || ce.Conflicts[0].CurrentRevision != w.Revision {
			t.Fatalf("conflicts %+v, want cond at %d", ce.Conflicts, w.Revision)
		}
		var ae *client.APIError
		if !errors.As(err, &ae) || ae.Status != http.StatusConflict || ae.Code != api.CodeConflict {
			t.Fatalf("api error: %+v", ae)
		}
		if _, err := c.Put(ctx, "cond", []byte("2"), client.IfRevision(w.Revision+100)); !errors.Is(err, client.ErrConflict) {
			t.Fatalf("if revision: %v", err)
		}
		if _, err := c.Put(ctx, "cond", []byte("2"), client.IfRevision(w.Revision)); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Delete(ctx, "nope", client.IfExists()); !errors.Is(err, client.ErrConflict) {
			t.Fatalf("delete if exists: %v", err)
		}
	})

	t.Run("txn", func(t *testing.T) {
		w, err := c.Txn().If(client.Absent("t/a")).Put("t/a", []byte("A")).Put("t/b", []byte("B")).
			User("alice").Description("two keys").Meta("app", "test").Commit(ctx)
		if err != nil {
			t.Fatal(err)
		}
		_, err = c.Txn().If(client.KeyAtRevision("t/a", w.Revision), client.ValueEquals("t/b", []byte("X")), client.Exists("t/zz")).
			Delete("t/a").Commit(ctx)
		var ce *client.ConflictError
		if !errors.As(err, &ce) || len(ce.Conflicts) != 2 {
			t.Fatalf("txn conflict: %v %+v", err, ce)
		}
		w2, err := c.Txn().If(client.KeyAtRevision("t/a", w.Revision), client.ValueEquals("t/b", []byte("B")), client.Exists("t/a")).
			Delete("t/a").DeletePrefix("t/b").Commit(ctx)
		if err != nil {
			t.Fatal(err)
		}
		lg, err := c.Log(ctx, w.Revision, 2)
		if err != nil || len(lg.Records) != 2 {
			t.Fatalf("log: %+v %v", lg, err)
		}
		r := lg.Records[0]
		if r.Revision != w.Revision || r.User != "alice" || r.Description != "two keys" || r.Meta["app"] != "test" || len(r.Operations) != 2 {
			t.Fatalf("record %+v", r)
		}
		if lg.Records[1].Revision != w2.Revision || lg.Records[1].IdempotencyKey == "" {
			t.Fatalf("record 2 %+v", lg.Records[1])
		}
		ch, err := c.Chain(ctx, w.Revision)
		if err != nil || ch.Revision != w.Revision || ch.Hash != w.Hash {
			t.Fatalf("chain at %d: %+v %v (write hash %s)", w.Revision, ch, err, w.Hash)
		}
		head, err := c.Chain(ctx, 0)
		if err != nil || head.Revision < w2.Revision {
			t.Fatalf("chain head: %+v %v", head, err)
		}
		if _, err := c.Txn().Commit(ctx); !errors.Is(err, client.ErrBadRequest) {
			t.Fatalf("empty txn: %v", err)
		}
	})

	t.Run("list", func(t *testing.T) {
		const n = 25
		for i := range n {
			if _, err := c.Put(ctx, fmt.Sprintf("list/%03d", i), []byte{byte(i)}); err != nil {
				t.Fatal(err)
			}
		}
		it := c.List(ctx, "list/", client.Limit(7))
		first := true
		var got []string
		for it.Next() {
			if first {
				// A write after the first page must not show up.
				first = false
				if _, err := c.Put(ctx, "list/zzz", []byte("late")); err != nil {
					t.Fatal(err)
				}
			}
			kv := it.KV()
			if kv.Revision != it.Revision() {
				t.Fatalf("kv revision %d, listing %d", kv.Revision, it.Revision())
			}
			got = append(got, kv.Key)
		}
		if err := it.Err(); err != nil {
			t.Fatal(err)
		}
		if len(got) != n || got[0] != "list/000" || got[n-1] != fmt.Sprintf("list/%03d", n-1) {
			t.Fatalf("listed %d keys: %v", len(got), got)
		}
		lr, err := c.ListPage(ctx, "list/", "list/023", 10)
		if err != nil || len(lr.KVs) != 2 || lr.KVs[1].Key != "list/zzz" || lr.More {
			t.Fatalf("page: %+v %v", lr, err)
		}
		// Stale listing from a follower.
		it = c.List(ctx, "list/", client.Consistency(api.Stale), client.Endpoint(follower.HTTPURL()), client.MinRevision(c.Revision()), client.Limit(10))
		count := 0
		for it.Next() {
			count++
		}
		if it.Err() != nil || count != n+1 {
			t.Fatalf("stale list: %d %v", count, it.Err())
		}
	})

	t.Run("history", func(t *testing.T) {
		var revs []uint64
		for i := range 3 {
			w, err := c.Put(ctx, "hist", []byte{byte('a' + i)})
			if err != nil {
				t.Fatal(err)
			}
			revs = append(revs, w.Revision)
		}
		vs, err := c.History(ctx, "hist")
		if err != nil || len(vs) != 3 || vs[0].Revision != revs[2] || string(vs[2].Value) != "a" {
			t.Fatalf("history: %+v %v", vs, err)
		}
		vs, err = c.History(ctx, "hist", client.Limit(1))
		if err != nil || len(vs) != 1 || vs[0].Revision != revs[2] {
			t.Fatalf("history limit 1: %+v %v", vs, err)
		}
		if _, err := c.History(ctx, "hist", client.AtRevision(1)); !errors.Is(err, client.ErrBadRequest) {
			t.Fatalf("history at revision: %v", err)
		}
	})

	t.Run("errors", func(t *testing.T) {
		_, err := c.Get(ctx, "missing")
		var ae *client.APIError
		if !errors.Is(err, client.ErrNotFound) || !errors.As(err, &ae) || ae.Status != 404 || ae.Code != api.CodeNotFound {
			t.Fatalf("not found: %v", err)
		}
		if _, err := c.Put(ctx, "big", bytes.Repeat([]byte("x"), 2<<20)); !errors.Is(err, client.ErrTooLarge) {
			t.Fatalf("too large value: %v", err)
		}
		if _, err := c.Put(ctx, strings.Repeat("k", 2000), []byte("x")); !errors.Is(err, client.ErrTooLarge) {
			t.Fatalf("too large key: %v", err)
		}
		if _, err := c.Get(ctx, "x", client.Consistency("bogus")); !errors.Is(err, client.ErrBadRequest) {
			t.Fatalf("bad consistency: %v", err)
		}
		if _, err := c.Put(ctx, "nul\x00key", []byte("x")); !errors.Is(err, client.ErrBadRequest) {
			t.Fatalf("NUL key: %v", err)
		}
		if _, err := c.Get(ctx, "hist", client.AtRevision(1<<40)); !errors.Is(err, client.ErrFutureRevision) {
			t.Fatalf("future revision: %v", err)
		}
	})

	t.Run("read your writes", func(t *testing.T) {
		fc := newClient(t, func(cfg *client.Config) { cfg.ReadYourWrites = true }, follower.HTTPURL())
		for i := range 20 {
			k := fmt.Sprintf("ryw/%d", i)
			w, err := fc.Put(ctx, k, []byte("v"))
			if err != nil {
				t.Fatal(err)
			}
			kv, err := fc.Get(ctx, k, client.Consistency(api.Stale), client.Endpoint(follower.HTTPURL()))
			if err != nil || string(kv.Value) != "v" || kv.Revision < w.Revision {
				t.Fatalf("stale read of own write %s@%d from follower: %+v %v", k, w.Revision, kv, err)
			}
		}
		// Spread stale reads (no endpoint pin) too.
		for i := range 20 {
			if _, err := fc.Get(ctx, fmt.Sprintf("ryw/%d", i), client.Consistency(api.Stale)); err != nil {
				t.Fatal(err)
			}
		}
	})

	t.Run("idempotency", func(t *testing.T) {
		key := "idem-" + fmt.Sprint(time.Now().UnixNano())
		w1, err := c.Put(ctx, "idem", []byte("once"), client.WithIdempotencyKey(key))
		if err != nil || w1.Replayed {
			t.Fatalf("first: %+v %v", w1, err)
		}
		w2, err := c.Put(ctx, "idem", []byte("once"), client.WithIdempotencyKey(key))
		if err != nil || !w2.Replayed || w2.Revision != w1.Revision {
			t.Fatalf("second: %+v %v (first %+v)", w2, err, w1)
		}
		vs, err := c.History(ctx, "idem")
		if err != nil || len(vs) != 1 {
			t.Fatalf("history: %+v %v", vs, err)
		}
		// Transactions too.
		tk := key + "-txn"
		t1, err := c.Txn().Put("idem-t", []byte("x")).Commit(ctx, client.WithIdempotencyKey(tk))
		if err != nil {
			t.Fatal(err)
		}
		t2, err := c.Txn().Put("idem-t", []byte("x")).Commit(ctx, client.WithIdempotencyKey(tk))
		if err != nil || !t2.Replayed || t2.Revision != t1.Revision {
			t.Fatalf("txn replay: %+v %v", t2, err)
		}
	})

	t.Run("status and health", func(t *testing.T) {
		for _, n := range nodes {
			st, err := c.Status(ctx, n.HTTPURL())
			if err != nil || st.ID != n.ID() || st.Leader != leader.ID() {
				t.Fatalf("status of %s: %+v %v", n.ID(), st, err)
			}
			if err := c.Health(ctx, strings.TrimPrefix(n.HTTPURL(), "http://")); err != nil {
				t.Fatalf("health of %s: %v", n.ID(), err)
			}
		}
		if st, err := c.Status(ctx, ""); err != nil || st.ID == "" {
			t.Fatalf("status of any: %+v %v", st, err)
		}
		if err := c.Health(ctx, ""); err != nil {
			t.Fatal(err)
		}
		dead := "http://" + freeAddr(t)
		if err := c.Health(ctx, dead); !errors.Is(err, client.ErrUnavailable) {
			t.Fatalf("health of a dead endpoint: %v", err)
		}
	})

	t.Run("membership", func(t *testing.T) {
		n4 := startNode(t, testConfig(t, "n4"))
		ms, err := c.AddMember(ctx, api.JoinRequest{ID: "n4", RaftAddr: n4.RaftAddr(), HTTPURL: n4.HTTPURL(), NonVoter: true})
		if err != nil {
			t.Fatal(err)
		}
		if !hasMember(ms, "n4", api.RoleNonvoter) {
			t.Fatalf("after add: %+v", ms)
		}
		waitFor(t, "n4 ready", 15*time.Second, n4.Ready)
		if ms, err = c.Promote(ctx, "n4"); err != nil || !hasMember(ms, "n4", api.RoleVoter) {
			t.Fatalf("promote: %+v %v", ms, err)
		}
		if ms, err = c.RemoveMember(ctx, "n4"); err != nil || hasMember(ms, "n4", "") {
			t.Fatalf("remove: %+v %v", ms, err)
		}
		if _, err = c.RemoveMember(ctx, "n4"); !errors.Is(err, client.ErrNotFound) {
			t.Fatalf("remove again: %v", err)
		}
		old := leader.ID()
		if ms, err = c.TransferLeadership(ctx, ""); err != nil || ms.Leader == old || ms.Leader == "" {
			t.Fatalf("transfer: %+v %v", ms, err)
		}
		// Writes follow the new leader.
		w, err := c.Put(ctx, "after-transfer", []byte("x"))
		if err != nil {
			t.Fatal(err)
		}
		if kv, err := c.Get(ctx, "after-transfer"); err != nil || kv.ModRevision != w.Revision {
			t.Fatalf("get after transfer: %+v %v", kv, err)
		}
	})

	t.Run("compact", func(t *testing.T) {
		w1, err := c.Put(ctx, "cmp", []byte("old"))
		if err != nil {
			t.Fatal(err)
		}
		w2, err := c.Put(ctx, "cmp", []byte("new"))
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Compact(ctx, w2.Revision); err != nil {
			t.Fatal(err)
		}
		_, err = c.Get(ctx, "cmp", client.AtRevision(w1.Revision))
		var ce *client.CompactedError
		if !errors.Is(err, client.ErrCompacted) || !errors.As(err, &ce) || ce.Oldest != w2.Revision {
			t.Fatalf("read before compaction: %v (%+v), want oldest %d", err, ce, w2.Revision)
		}
		if kv, err := c.Get(ctx, "cmp"); err != nil || string(kv.Value) != "new" {
			t.Fatalf("current after compaction: %+v %v", kv, err)
		}
		if _, err := c.Log(ctx, 1, 1); !errors.Is(err, client.ErrCompacted) {
			t.Fatalf("log before compaction: %v", err)
		}
	})

	t.Run("closed", func(t *testing.T) {
		cc := newClient(t, nil, leader.HTTPURL())
		_ = cc.Close()
		if _, err := cc.Get(ctx, "x"); !errors.Is(err, client.ErrClosed) {
			t.Fatalf("after close: %v", err)
		}
	})
}

func hasMember(ms *api.MembersResponse, id, role string) bool {
	for _, m := range ms.Members {
		if m.ID == id && (role == "" || m.Role == role) {
			return true
		}
	}
	return false
}

// TestUnreachable checks that a call with no reachable endpoint ends with
// the context and says why.
func TestUnreachable(t *testing.T) {
	c := newClient(t, nil, freeAddr(t))
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	_, err := c.Put(ctx, "k", []byte("v"))
	if !errors.Is(err, client.ErrUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v", err)
	}
}

// TestContextEndsDuringAttempt checks the error of a call whose context
// ends while its only endpoint has not answered: a timeout, not a bare
// transport error, and the context's own error.
func TestContextEndsDuringAttempt(t *testing.T) {
	hung := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-hung:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(hung) })
	c := newClient(t, nil, srv.URL)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	_, err := c.Put(ctx, "k", []byte("v"))
	if !errors.Is(err, client.ErrTimeout) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Put: err = %v, want ErrTimeout and context.DeadlineExceeded", err)
	}
	wctx, wcancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer wcancel()
	if _, err := c.Watch(wctx, "", 0); !errors.Is(err, client.ErrTimeout) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Watch: err = %v, want ErrTimeout and context.DeadlineExceeded", err)
	}
}

// TestFailover kills the leader while writers run: every acknowledged
// write must be readable afterwards, and no write is applied twice.
func TestFailover(t *testing.T) {
	nodes := startCluster(t, 3)
	var urls []string
	for _, n := range nodes {
		urls = append(urls, n.HTTPURL())
	}
	retries := &countHandler{}
	c := newClient(t, func(cfg *client.Config) {
		cfg.RequestTimeout = time.Second
		cfg.Logger = slog.New(retries)
	}, urls...)
	leader := leaderOf(nodes)

	var (
		acked   sync.Map // key -> revision
		nAcked  atomic.Int64
		stop    atomic.Bool
		wg      sync.WaitGroup
		errs    = make(chan error, 8)
		started = make(chan struct{})
	)
	var once sync.Once
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; !stop.Load(); i++ {
				key := fmt.Sprintf("fo/%d/%d", g, i)
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				w, err := c.Put(ctx, key, []byte(key))
				cancel()
				if err != nil {
					errs <- fmt.Errorf("put %s: %w", key, err)
					return
				}
				acked.Store(key, w.Revision)
				if nAcked.Add(1) >= 40 {
					once.Do(func() { close(started) })
				}
			}
		}()
	}
	select {
	case <-started:
	case err := <-errs:
		t.Fatal(err)
	case <-time.After(10 * time.Second):
		t.Fatal("writers made no progress")
	}
	before := nAcked.Load()
	closeNode(leader)
	// Keep writing until the new leader has taken some writes.
	waitFor(t, "writes after failover", 15*time.Second, func() error {
		select {
		case err := <-errs:
			stop.Store(true)
			return err
		default:
		}
		if n := nAcked.Load(); n < before+100 {
			return fmt.Errorf("%d acknowledged writes (%d before the kill)", n, before)
		}
		return nil
	})
	stop.Store(true)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if c.Leader() == leader.HTTPURL() {
		t.Fatalf("client still tracks the dead leader")
	}
	ctx := ctxT(t)
	revs := map[uint64]string{}
	acked.Range(func(k, v any) bool {
		key, rev := k.(string), v.(uint64)
		if other, dup := revs[rev]; dup {
			t.Errorf("revision %d acknowledged for %s and %s", rev, key, other)
		}
		revs[rev] = key
		var kv *client.KeyValue
		waitFor(t, "read "+key, 10*time.Second, func() error {
			var err error
			kv, err = c.Get(ctx, key)
			return err
		})
		if string(kv.Value) != key || kv.ModRevision != rev {
			t.Errorf("%s: got %q at %d, acknowledged at %d", key, kv.Value, kv.ModRevision, rev)
		}
		// Written once: one version in its history.
		if vs, err := c.History(ctx, key); err != nil || len(vs) != 1 {
			t.Errorf("%s history: %+v %v", key, vs, err)
		}
		return true
	})
	t.Logf("%d writes acknowledged, %d before the leader was killed; %d retries", nAcked.Load(), before, retries.n.Load())
}

// countHandler counts the client's retry log records.
type countHandler struct{ n atomic.Int64 }

func (h *countHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *countHandler) Handle(_ context.Context, r slog.Record) error {
	if strings.Contains(r.Message, "retrying") {
		h.n.Add(1)
	}
	return nil
}
func (h *countHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *countHandler) WithGroup(string) slog.Handler      { return h }

// lossy is a RoundTripper that sends the first PUT but loses its answer,
// as if the connection broke after the server committed.
type lossy struct {
	next http.RoundTripper
	lost atomic.Int32
	keys sync.Map // idempotency keys seen, in order of PUTs
	puts atomic.Int32
}

func (l *lossy) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := l.next.RoundTrip(req)
	if req.Method != http.MethodPut {
		return resp, err
	}
	l.keys.Store(l.puts.Add(1), req.Header.Get(api.HeaderIdempotencyKey))
	if err == nil && l.lost.Add(1) == 1 {
		resp.Body.Close()
		return nil, fmt.Errorf("simulated: %w", errors.New("connection reset after the request was sent"))
	}
	return resp, err
}

// TestRetryAfterLostAnswer checks exactly-once: a write whose answer is
// lost is retried with the same idempotency key, and the server replays
// the stored result instead of writing again.
func TestRetryAfterLostAnswer(t *testing.T) {
	nodes := startCluster(t, 1)
	l := &lossy{next: http.DefaultTransport}
	c := newClient(t, func(cfg *client.Config) { cfg.HTTPClient = &http.Client{Transport: l} }, nodes[0].HTTPURL())
	ctx := ctxT(t)
	w, err := c.Put(ctx, "once", []byte("v"))
	if err != nil {
		t.Fatal(err)
	}
	if !w.Replayed {
		t.Fatalf("write result %+v: want Replayed after a lost answer", w)
	}
	k1, _ := l.keys.Load(int32(1))
	k2, _ := l.keys.Load(int32(2))
	if l.puts.Load() != 2 || k1 != k2 || k1 == "" {
		t.Fatalf("%d PUTs with keys %v, %v: want 2 with one key", l.puts.Load(), k1, k2)
	}
	vs, err := c.History(ctx, "once")
	if err != nil || len(vs) != 1 || vs[0].Revision != w.Revision {
		t.Fatalf("history %+v %v: want one version at %d", vs, err, w.Revision)
	}
}

// keyRecorder is a RoundTripper that records the idempotency key of every
// write it sends.
type keyRecorder struct {
	next http.RoundTripper
	mu   sync.Mutex
	keys []string
}

func (k *keyRecorder) RoundTrip(req *http.Request) (*http.Response, error) {
	if key := req.Header.Get(api.HeaderIdempotencyKey); key != "" {
		k.mu.Lock()
		k.keys = append(k.keys, key)
		k.mu.Unlock()
	}
	return k.next.RoundTrip(req)
}

// TestGeneratedIdempotencyKeys checks the keys a client makes up: unique,
// each client's id apart from every other client's, and ordered by the
// time they were made across clients, so the server's idempotency table
// grows at its end however many clients write.
func TestGeneratedIdempotencyKeys(t *testing.T) {
	nodes := startCluster(t, 1)
	ctx := ctxT(t)
	var recs [2]*keyRecorder
	var clients [2]*client.Client
	for i := range recs {
		recs[i] = &keyRecorder{next: http.DefaultTransport}
		clients[i] = newClient(t, func(cfg *client.Config) { cfg.HTTPClient = &http.Client{Transport: recs[i]} }, nodes[0].HTTPURL())
	}
	const rounds = 3
	before := time.Now().UnixMilli()
	for r := range rounds {
		for i, c := range clients {
			if r == rounds-1 {
				if _, err := c.Txn().Put("t", []byte("v")).Commit(ctx); err != nil {
					t.Fatal(err)
				}
			} else if _, err := c.Put(ctx, fmt.Sprintf("k%d-%d", i, r), []byte("v")); err != nil {
				t.Fatal(err)
			}
		}
		// The next round's keys are made in a later millisecond.
		for now := time.Now().UnixMilli(); time.Now().UnixMilli() == now; {
			runtime.Gosched()
		}
	}
	after := time.Now().UnixMilli()
	seen := map[string]bool{}
	for i, r := range recs {
		if len(r.keys) != rounds {
			t.Fatalf("client %d sent %d keyed writes, want %d: %q", i, len(r.keys), rounds, r.keys)
		}
		for j, k := range r.keys {
			if len(k) != 32 || strings.Trim(k, "0123456789abcdef") != "" {
				t.Fatalf("client %d key %q: want 32 lower-case hex digits", i, k)
			}
			if seen[k] {
				t.Fatalf("key %q used twice", k)
			}
			seen[k] = true
			ms, err := strconv.ParseInt(k[:12], 16, 64)
			if err != nil || ms < before || ms > after {
				t.Fatalf("client %d key %q: time %d (%v), want within [%d, %d]", i, k, ms, err, before, after)
			}
			if j > 0 && (k[12:24] != r.keys[0][12:24] || k <= r.keys[j-1]) {
				t.Fatalf("client %d keys %q: want one id, ascending", i, r.keys)
			}
		}
	}
	if recs[0].keys[0][12:24] == recs[1].keys[0][12:24] {
		t.Fatalf("two clients share the id %q", recs[0].keys[0][12:24])
	}
	// Across clients, every key of a round sorts after every key of the
	// rounds before it.
	for r := 1; r < rounds; r++ {
		for _, a := range recs {
			for _, b := range recs {
				if a.keys[r] <= b.keys[r-1] {
					t.Fatalf("key %q (round %d) sorts before %q (round %d) of another client", a.keys[r], r, b.keys[r-1], r-1)
				}
			}
		}
	}
}
