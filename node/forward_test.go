package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cairn-db/cairn/api"
	"github.com/cairn-db/cairn/fsm"
)

// startPair starts a two-member cluster and returns its leader and
// follower.
func startPair(t *testing.T) (leader, follower *Node) {
	t.Helper()
	c1 := testConfig(t, "n1")
	c1.Bootstrap = true
	n1 := startNode(t, c1)
	waitFor(t, "n1 ready", 10*time.Second, n1.Ready)
	c2 := testConfig(t, "n2")
	c2.Join = []string{n1.HTTPURL()}
	n2 := startNode(t, c2)
	waitFor(t, "n2 ready", 15*time.Second, n2.Ready)
	waitFor(t, "a leader known to both", 10*time.Second, func() error {
		id1, _ := n1.LeaderInfo()
		id2, u2 := n2.LeaderInfo()
		if id1 == "" || id1 != id2 || u2 == "" {
			return fmt.Errorf("leaders %q and %q", id1, id2)
		}
		return nil
	})
	if n2.IsLeader() {
		return n2, n1
	}
	return n1, n2
}

type httpAnswer struct {
	name   string
	status int
	rev    string // the revision header
	body   string
}

// TestForwardedWritesShareRequest queues client writes at a follower while
// its forwarding slot is taken, and checks that they reach the leader in
// one request yet each client gets the answer it would have had from the
// leader: its own revision, a conflict, a bad request, an idempotent
// replay.
func TestForwardedWritesShareRequest(t *testing.T) {
	leader, f := startPair(t)
	batches0, txns0 := f.fwd.batches.Load(), f.fwd.txns.Load()
	for range cap(f.fwd.slots) {
		f.fwd.slots <- struct{}{}
	}
	released := false
	release := func() {
		if !released {
			released = true
			for range cap(f.fwd.slots) {
				<-f.fwd.slots
			}
		}
	}
	defer release()

	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		outs = map[string]httpAnswer{}
	)
	send := func(name, method, path, body, idem string) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, err := http.NewRequest(method, f.HTTPURL()+path, strings.NewReader(body))
			if err != nil {
				t.Error(err)
				return
			}
			if idem != "" {
				req.Header.Set(api.HeaderIdempotencyKey, idem)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Errorf("%s: %v", name, err)
				return
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			mu.Lock()
			outs[name] = httpAnswer{name, resp.StatusCode, resp.Header.Get(api.HeaderRevision), string(b)}
			mu.Unlock()
		}()
	}
	const puts = 6
	for i := range puts {
		send(fmt.Sprintf("put%d", i), "PUT", fmt.Sprintf("/v1/kv/k%d", i), "v", fmt.Sprintf("key-%d", i))
	}
	send("conflict", "PUT", "/v1/kv/k0?if_revision=999999", "never", "")
	send("empty", "POST", "/v1/txn", `{"operations":[]}`, "")
	send("idem-a", "PUT", "/v1/kv/idem", "once", "same-key")
	send("idem-b", "PUT", "/v1/kv/idem", "once", "same-key")
	const total = puts + 4
	waitFor(t, "writes queued at the follower", 10*time.Second, func() error {
		// The forwarder holds the first while it waits for the slot.
		if q := len(f.fwd.reqs); q != total-1 {
			return fmt.Errorf("%d queued", q)
		}
		return nil
	})
	release()
	wg.Wait()

	if b, n := f.fwd.batches.Load()-batches0, f.fwd.txns.Load()-txns0; b != 1 || n != total {
		t.Fatalf("%d writes in %d requests to the leader, want %d in 1", n, b, total)
	}
	revs := map[uint64]string{}
	for i := range puts {
		a := outs[fmt.Sprintf("put%d", i)]
		var wr api.WriteResponse
		if a.status != 200 || json.Unmarshal([]byte(a.body), &wr) != nil || wr.Revision == 0 {
			t.Fatalf("%s: %d %s", a.name, a.status, a.body)
		}
		if a.rev != strconv.FormatUint(wr.Revision, 10) {
			t.Fatalf("%s: revision header %q, body revision %d", a.name, a.rev, wr.Revision)
		}
		if other, dup := revs[wr.Revision]; dup {
			t.Fatalf("%s and %s both at revision %d", a.name, other, wr.Revision)
		}
		revs[wr.Revision] = a.name
	}
	if a := outs["conflict"]; a.status != 409 || !strings.Contains(a.body, `"code":"conflict"`) || !strings.Contains(a.body, `"key":"k0"`) {
		t.Fatalf("conflict: %d %s", a.status, a.body)
	}
	if a := outs["empty"]; a.status != 400 || !strings.Contains(a.body, `"code":"bad_request"`) {
		t.Fatalf("empty transaction: %d %s", a.status, a.body)
	}
	var ia, ib api.WriteResponse
	a, b := outs["idem-a"], outs["idem-b"]
	if a.status != 200 || b.status != 200 || json.Unmarshal([]byte(a.body), &ia) != nil || json.Unmarshal([]byte(b.body), &ib) != nil ||
		ia.Revision != ib.Revision || ia.Replayed == ib.Replayed {
		t.Fatalf("same idempotency key twice: %d %s / %d %s: want one revision, one replayed", a.status, a.body, b.status, b.body)
	}
	// The writes are on the leader, each once.
	vs, _, err := leader.State().History("idem", fsm.HistoryOptions{})
	if err != nil || len(vs) != 1 {
		t.Fatalf("history of idem on the leader: %+v %v", vs, err)
	}
	for i := range puts {
		kv, _, err := leader.State().Get(fmt.Sprintf("k%d", i), 0)
		if err != nil || string(kv.Value) != "v" {
			t.Fatalf("k%d on the leader: %+v %v", i, kv, err)
		}
	}
}

// TestForwardAnswers checks how a follower treats the leader's answer to
// a batch: passed on per write, the whole batch's refusal given to each,
// a leader without the route (an older version) or with a lower request
// limit makes it proxy instead, and a garbled answer is an error, not a made-up result.
func TestForwardAnswers(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	n := &Node{cfg: Config{ID: "f1", ApplyTimeout: 5 * time.Second, MaxRequestBytes: 4 << 20},
		client: &http.Client{}, ctx: ctx}
	f := newForwarder(n, 1)
	var answer func(w http.ResponseWriter, r *http.Request)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != forwardPath || r.Header.Get(api.HeaderForwarded) != "f1" {
			http.Error(w, "unexpected request", http.StatusTeapot)
			return
		}
		answer(w, r)
	}))
	defer srv.Close()
	batch := func() []*fwdReq {
		return []*fwdReq{
			{txn: fsm.Txn{Ops: []fsm.Op{putOp("a", "1")}}, done: make(chan fwdResult, 1)},
			{txn: fsm.Txn{Ops: []fsm.Op{putOp("b", "2")}}, done: make(chan fwdResult, 1)},
		}
	}
	results := func(reqs []*fwdReq) []fwdResult {
		var out []fwdResult
		for _, r := range reqs {
			out = append(out, <-r.done)
		}
		return out
	}

	// Per-write answers, in order.
	answer = func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		cmd, err := fsm.DecodeCommand(body)
		if err != nil || cmd.Batch == nil || len(cmd.Batch.Txns) != 2 || cmd.Batch.Txns[1].Ops[0].Key != "b" {
			http.Error(w, fmt.Sprintf("bad batch %+v %v", cmd, err), http.StatusTeapot)
			return
		}
		_, _ = w.Write(encodeForwardReplies([]forwardReply{
			{status: 200, revision: 7, body: []byte(`{"revision":7}`)},
			{status: 409, body: []byte(`{"error":{"code":"conflict"}}`)},
		}))
	}
	reqs := batch()
	f.send("l1", srv.URL, reqs)
	got := results(reqs)
	if got[0].err != nil || got[0].reply.status != 200 || got[0].reply.revision != 7 || string(got[0].reply.body) != `{"revision":7}` ||
		got[1].err != nil || got[1].reply.status != 409 || got[1].reply.revision != 0 {
		t.Fatalf("per-write answers: %+v", got)
	}

	// A refusal of the whole batch reaches every write.
	answer = func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = w.Write([]byte(`{"error":{"code":"not_leader"}}`))
	}
	reqs = batch()
	f.send("l1", srv.URL, reqs)
	for _, g := range results(reqs) {
		if g.err != nil || g.reply.status != 503 || !strings.Contains(string(g.reply.body), "not_leader") {
			t.Fatalf("batch refused: %+v", g)
		}
	}

	// A garbled answer.
	answer = func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte{0xc8, 0x01, 0x00, 0x09, 'x'}) }
	reqs = batch()
	f.send("l1", srv.URL, reqs)
	for _, g := range results(reqs) {
		if g.err == nil {
			t.Fatalf("garbled answer taken as %+v", g.reply)
		}
	}

	// A leader with a lower request limit refuses the batch as too
	// large: its writes are proxied one by one, and the leader is not
	// taken for an older version.
	answer = func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusRequestEntityTooLarge)
		_, _ = w.Write([]byte(`{"error":{"code":"too_large"}}`))
	}
	reqs = batch()
	f.send("l1", srv.URL, reqs)
	for _, g := range results(reqs) {
		if !errors.Is(g.err, errProxyWrite) {
			t.Fatalf("batch too large for the leader: %+v", g)
		}
	}
	if old, _ := n.oldLeader.Load().(string); old != "" {
		t.Fatalf("leader with a lower limit recorded as old: %q", old)
	}

	// An older leader without the route: proxy while it leads.
	answer = func(w http.ResponseWriter, r *http.Request) { http.NotFound(w, r) }
	reqs = batch()
	f.send("l1", srv.URL, reqs)
	for _, g := range results(reqs) {
		if !errors.Is(g.err, errProxyWrite) {
			t.Fatalf("leader without the route: %+v", g)
		}
	}
	if old, _ := n.oldLeader.Load().(string); old != "l1" {
		t.Fatalf("old leader recorded as %q", old)
	}

	// The leader stops answering: the writes fail as unavailable.
	srv.Close()
	reqs = batch()
	f.send("l2", srv.URL, reqs)
	for _, g := range results(reqs) {
		if !errors.Is(g.err, ErrNoLeader) {
			t.Fatalf("leader gone: %+v", g)
		}
	}
}

func TestForwardRepliesRoundTrip(t *testing.T) {
	in := []forwardReply{{status: 200, revision: 1 << 40, body: []byte("x")}, {status: 400}, {status: 503, body: []byte("{}")}}
	out, err := decodeForwardReplies(encodeForwardReplies(in), len(in))
	if err != nil || len(out) != 3 || out[0].revision != 1<<40 || string(out[0].body) != "x" || out[1].status != 400 || string(out[2].body) != "{}" {
		t.Fatalf("round trip: %+v %v", out, err)
	}
	if _, err := decodeForwardReplies(encodeForwardReplies(in), 2); err == nil {
		t.Fatal("trailing answers accepted")
	}
	if _, err := decodeForwardReplies(encodeForwardReplies(in), 4); err == nil {
		t.Fatal("missing answer accepted")
	}
}

// TestForwardWriteEndsOnClose checks that a write waiting at a follower to
// be forwarded ends when the node closes, instead of waiting for its
// client's deadline.
func TestForwardWriteEndsOnClose(t *testing.T) {
	_, f := startPair(t)
	for range cap(f.fwd.slots) {
		f.fwd.slots <- struct{}{} // nothing is sent: writes stay queued
	}
	done := make(chan error, 2)
	for i := range 2 {
		go func() {
			_, err := f.ForwardWrite(context.Background(), fsm.Txn{Ops: []fsm.Op{putOp(fmt.Sprintf("k%d", i), "v")}})
			done <- err
		}()
	}
	waitFor(t, "writes queued", 10*time.Second, func() error {
		if q := len(f.fwd.reqs); q != 1 { // the forwarder holds the other
			return fmt.Errorf("%d queued", q)
		}
		return nil
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := f.Close(ctx); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		select {
		case err := <-done:
			if !errors.Is(err, ErrShuttingDown) {
				t.Fatalf("queued write after close: %v, want ErrShuttingDown", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("a queued write still waits 10 s after the node closed")
		}
	}
}
