package httpapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cairn-db/cairn/api"
	"github.com/cairn-db/cairn/fsm"
)

// leaderServer serves the API over a fake leader.
func leaderServer(t *testing.T, f *fakeService) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(New(f, Options{}))
	t.Cleanup(srv.Close)
	return srv
}

func newPeer() *Peer { return NewPeer("f1", &http.Client{Timeout: 10 * time.Second}) }

// TestForwardWrites sends a batch to a leader (the real handler over a
// fake) and gets each write's typed outcome: a result, a refusal, a
// failure to commit; the leader saw each write once, marked as forwarded.
func TestForwardWrites(t *testing.T) {
	leader := newFake()
	leader.writeFn = func(t fsm.Txn) (fsm.TxnResult, error) {
		switch t.Ops[0].Key {
		case "conflict":
			return fsm.TxnResult{Err: &fsm.ConflictError{Conflicts: []fsm.Conflict{{Key: "conflict", Kind: fsm.CondAbsent, CurrentRevision: 3}}}}, nil
		case "lost":
			return fsm.TxnResult{}, fmt.Errorf("%w: leadership lost", ErrNoLeader)
		}
		return fsm.TxnResult{Revision: 10, Time: time.Unix(5, 0).UTC(), Hash: fsm.Hash{9}, Replayed: true}, nil
	}
	srv := leaderServer(t, leader)
	txns := []fsm.Txn{{Ops: []fsm.Op{put("ok", "1")}, IdempotencyKey: "i"}, {Ops: []fsm.Op{put("conflict", "2")}}, {Ops: []fsm.Op{put("lost", "3")}}}
	out, err := newPeer().ForwardWrites(context.Background(), srv.URL, txns)
	if err != nil {
		t.Fatal(err)
	}
	if r := out[0]; r.Err != nil || r.Result.Err != nil || r.Result.Revision != 10 || r.Result.Hash != (fsm.Hash{9}) ||
		!r.Result.Replayed || !r.Result.Time.Equal(time.Unix(5, 0)) {
		t.Fatalf("committed write: %+v", r)
	}
	var ae *api.Error
	if r := out[1]; r.Err != nil || !errors.As(r.Result.Err, &ae) || ae.Code != api.CodeConflict || len(ae.Conflicts) != 1 {
		t.Fatalf("refused write: %+v", r)
	}
	if r := out[2]; !errors.As(r.Err, &ae) || ae.Code != api.CodeUnavailable || ae.Leader != "n1" {
		t.Fatalf("failed write: %+v", r)
	}
	idem := map[string]string{}
	for _, w := range leader.writes {
		idem[w.Ops[0].Key] = w.IdempotencyKey
	}
	if len(leader.writes) != 3 || len(idem) != 3 || idem["ok"] != "i" {
		t.Fatalf("leader saw %+v", leader.writes)
	}
	for _, from := range leader.forwarded {
		if from != "f1" {
			t.Fatalf("leader saw writes forwarded by %q, want f1", from)
		}
	}
}

// TestForwardedAnswerRenderedAsLeader checks typed forwarding end to end
// through two handlers: what a client gets from a follower is what the
// leader would have answered (status, body, revision header).
func TestForwardedAnswerRenderedAsLeader(t *testing.T) {
	leader := newFake()
	leader.writeFn = func(t fsm.Txn) (fsm.TxnResult, error) {
		if t.Ops[0].Key == "c" {
			return fsm.TxnResult{Err: &fsm.ConflictError{Conflicts: []fsm.Conflict{{Key: "c", Kind: fsm.CondRevision, CurrentRevision: 8}}}}, nil
		}
		if t.Ops[0].Key == "big" {
			return fsm.TxnResult{Err: fmt.Errorf("%w: 9 bytes", fsm.ErrValueTooLarge)}, nil
		}
		if t.Ops[0].Key == "full" {
			return fsm.TxnResult{}, fmt.Errorf("%w: the store reached its quota", ErrNoSpace)
		}
		return fsm.TxnResult{Revision: 12, Time: time.Unix(7, 0).UTC(), Hash: fsm.Hash{4}}, nil
	}
	srv := leaderServer(t, leader)
	peer := newPeer()
	follower := newFake()
	follower.id, follower.leaderID, follower.leaderURL = "f1", "n1", srv.URL
	follower.writeFn = func(t fsm.Txn) (fsm.TxnResult, error) {
		out, err := peer.ForwardWrites(context.Background(), srv.URL, []fsm.Txn{t})
		if err != nil {
			return fsm.TxnResult{}, err
		}
		return out[0].Result, out[0].Err
	}
	for _, target := range []string{"/v1/kv/ok", "/v1/kv/c?if_revision=2", "/v1/kv/big", "/v1/kv/full"} {
		direct := call(newFakeLike(leader), "PUT", target, "v", nil)
		via := call(follower, "PUT", target, "v", nil)
		if direct.Code != via.Code || direct.Body.String() != via.Body.String() ||
			direct.Header().Get(api.HeaderRevision) != via.Header().Get(api.HeaderRevision) ||
			direct.Header().Get("Content-Type") != via.Header().Get("Content-Type") {
			t.Fatalf("%s: leader answers %d %q %v, follower %d %q %v", target, direct.Code, direct.Body, direct.Header(),
				via.Code, via.Body, via.Header())
		}
		if target == "/v1/kv/full" && via.Code != 507 {
			t.Fatalf("%s: follower answers %d %q, want 507 no_space", target, via.Code, via.Body)
		}
	}
}

// newFakeLike is a fake leader answering writes as f does.
func newFakeLike(f *fakeService) *fakeService {
	g := newFake()
	g.writeFn = f.writeFn
	return g
}

// TestForwardWritesFailures: an older leader without the route, an
// unreachable leader, a garbled answer, a refusal of the whole batch, and
// a leader with a lower request limit.
func TestForwardWritesFailures(t *testing.T) {
	txns := []fsm.Txn{{Ops: []fsm.Op{put("a", "1")}}, {Ops: []fsm.Op{put("b", "2")}}}
	serve := func(fn http.HandlerFunc) string {
		srv := httptest.NewServer(fn)
		t.Cleanup(srv.Close)
		return srv.URL
	}
	ctx := context.Background()
	p := newPeer()

	// An older leader (no such route: plain or JSON 404): not_leader, so
	// the follower's clients go to the leader themselves.
	for _, old := range []http.HandlerFunc{http.NotFound, func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, 404, api.ErrorResponse{Error: api.Error{Code: api.CodeNotFound, Message: "no route"}})
	}} {
		if _, err := p.ForwardWrites(ctx, serve(old), txns); !errors.Is(err, ErrNotLeader) {
			t.Fatalf("older leader: %v, want ErrNotLeader", err)
		}
	}
	// Unreachable.
	dead := httptest.NewServer(http.NotFoundHandler())
	dead.Close()
	if _, err := p.ForwardWrites(ctx, dead.URL, txns); !errors.Is(err, ErrNoLeader) {
		t.Fatalf("unreachable leader: %v, want ErrNoLeader", err)
	}
	// Garbled answers are errors, not made-up results.
	for _, body := range []string{`{"outcomes":[{}]}`, `{"outcomes":[{"result":{"hash":"zz"}},{}]}`, `not json`,
		`{"outcomes":[{"result":{"hash":""},"error":{"code":"x"}},{}]}`} {
		u := serve(func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte(body)) })
		if out, err := p.ForwardWrites(ctx, u, txns); err == nil {
			t.Fatalf("garbled answer %s taken as %+v", body, out)
		}
	}
	// The whole batch refused: the leader's error.
	u := serve(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, 503, api.ErrorResponse{Error: api.Error{Code: api.CodeNotLeader, Message: "lost it", LeaderURL: "http://x"}})
	})
	var ae *api.Error
	if _, err := p.ForwardWrites(ctx, u, txns); !errors.As(err, &ae) || ae.Code != api.CodeNotLeader || ae.LeaderURL != "http://x" {
		t.Fatalf("refused batch: %v", err)
	}
	// A leader with a lower request limit: the batch is too large there,
	// so its writes go one by one.
	leader := newFake()
	leader.limits.MaxRequestBytes = 30 // 60 on the members' route: one write fits, two do not
	var requests atomic.Int32
	h := New(leader, Options{})
	u = serve(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		h.ServeHTTP(w, r)
	})
	out, err := p.ForwardWrites(ctx, u, []fsm.Txn{{Ops: []fsm.Op{put("a", strings.Repeat("x", 30))}}, {Ops: []fsm.Op{put("b", strings.Repeat("y", 30))}}})
	if err != nil || out[0].Err != nil || out[1].Err != nil || out[0].Result.Revision != 7 || requests.Load() != 3 {
		t.Fatalf("one by one: %+v %v after %d requests", out, err, requests.Load())
	}
}

// TestReadIndexAndAdmin: the read index and the admin calls a follower
// makes on the leader, typed both ways.
func TestReadIndexAndAdmin(t *testing.T) {
	leader := newFake()
	leader.readIndex = 42
	srv := leaderServer(t, leader)
	p := newPeer()
	ctx := context.Background()
	if idx, err := p.ReadIndex(ctx, srv.URL); err != nil || idx != 42 {
		t.Fatalf("read index %d %v", idx, err)
	}
	leader.readIndexErr = fmt.Errorf("%w: lost", ErrNotLeader)
	if _, err := p.ReadIndex(ctx, srv.URL); RemoteCode(err) != api.CodeNotLeader {
		t.Fatalf("read index from a deposed leader: %v", err)
	}
	if resp, err := p.Compact(ctx, srv.URL, 2); err != nil || resp.Revision != 9 || resp.CompactRevision != 2 {
		t.Fatalf("compact: %+v %v", resp, err)
	}
	if _, err := p.Join(ctx, srv.URL, api.JoinRequest{ID: "n4", RaftAddr: "r", HTTPURL: "h"}, true); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Remove(ctx, srv.URL, "n2"); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Promote(ctx, srv.URL, "n3"); err != nil {
		t.Fatal(err)
	}
	if m, err := p.TransferLeadership(ctx, srv.URL, ""); err != nil || m.Leader != "n1" {
		t.Fatalf("transfer: %+v %v", m, err)
	}
	if st, err := p.Status(ctx, srv.URL); err != nil || st.ID != "n1" {
		t.Fatalf("status: %+v %v", st, err)
	}
	want := []string{"join n4 r h false", "remove n2", "promote n3", "transfer "}
	if fmt.Sprint(leader.admin) != fmt.Sprint(want) {
		t.Fatalf("leader saw %q, want %q", leader.admin, want)
	}
	// Compaction and changes are marked forwarded (never forwarded again).
	for _, from := range leader.forwarded {
		if from != "f1" {
			t.Fatalf("forwarded by %q", from)
		}
	}
	leader.adminErr = fmt.Errorf("%w: n9", ErrUnknownMember)
	if _, err := p.Remove(ctx, srv.URL, "n9"); RemoteCode(err) != api.CodeNotFound {
		t.Fatalf("remove unknown: %v", err)
	}
}

// TestInternalRoutes: the members-only routes refuse requests without the
// member mark and garbage.
func TestInternalRoutes(t *testing.T) {
	f := newFake()
	fwd := map[string]string{api.HeaderForwarded: "n2"}
	for _, c := range []struct {
		target, body string
		hdr          map[string]string
		status       int
	}{
		{ForwardWritesPath, "x", nil, 400},
		{ForwardWritesPath, "\xff\xff", fwd, 400},
		{ReadIndexPath, "", nil, 400},
		{ReadIndexPath, "", fwd, 200},
	} {
		rec := call(f, "POST", c.target, c.body, c.hdr)
		if rec.Code != c.status {
			t.Errorf("%s %q %v: %d %s, want %d", c.target, c.body, c.hdr, rec.Code, rec.Body, c.status)
		}
	}
	if len(f.writes) != 0 {
		t.Fatalf("refused requests wrote %+v", f.writes)
	}
}
