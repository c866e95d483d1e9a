package httpapi

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"reflect"
	"testing"
	"time"

	"github.com/cairn-db/cairn/api"
	"github.com/cairn-db/cairn/fsm"
)

func decodeBody(t *testing.T, rec *httptest.ResponseRecorder, v any) {
	t.Helper()
	if err := json.Unmarshal(rec.Body.Bytes(), v); err != nil {
		t.Fatalf("decode %d %q: %v", rec.Code, rec.Body, err)
	}
}

// TestChainState: state=true adds the state hash and its key count at
// the revision asked for (or the head); without it the answer is as
// before.
func TestChainState(t *testing.T) {
	f := newFake()
	want := fsm.Hash{0xee, 2}.String()
	rec := call(f, "GET", "/v1/chain?revision=2&state=true", "", nil)
	var cr api.ChainResponse
	decodeBody(t, rec, &cr)
	if rec.Code != 200 || cr.Revision != 2 || cr.Hash != (fsm.Hash{2}).String() || cr.StateHash != want || cr.Keys != 3 {
		t.Fatalf("chain with state: %d %+v", rec.Code, cr)
	}
	rec = call(f, "GET", "/v1/chain?state=true", "", nil)
	cr = api.ChainResponse{}
	decodeBody(t, rec, &cr)
	if cr.Revision != 3 || cr.StateHash != (fsm.Hash{0xee, 3}).String() {
		t.Fatalf("head with state: %+v", cr)
	}
	rec = call(f, "GET", "/v1/chain?revision=2", "", nil)
	cr = api.ChainResponse{}
	decodeBody(t, rec, &cr)
	if cr.StateHash != "" || cr.Keys != 0 || cr.Hash != (fsm.Hash{2}).String() {
		t.Fatalf("chain without state: %+v", cr)
	}
	if rec := call(f, "GET", "/v1/chain?state=maybe", "", nil); rec.Code != 400 {
		t.Fatalf("state=maybe: %d %s", rec.Code, rec.Body)
	}
	f.store.stateErr = &fsm.CorruptError{File: "fsm.db", Key: "a/1", Revision: 2, Reason: "checksum mismatch"}
	rec = call(f, "GET", "/v1/chain?revision=2&state=true", "", nil)
	if e := errorOf(t, rec); rec.Code != 503 || e.Code != api.CodeCorrupt {
		t.Fatalf("corrupt state hash: %d %+v", rec.Code, e)
	}
}

// TestCorruptCode: a read that meets damaged data (fsm.ErrCorrupt, from
// the store or from PrepareRead) answers 503 corrupt and never a value.
func TestCorruptCode(t *testing.T) {
	ce := &fsm.CorruptError{File: "fsm.db", Key: "a/1", Revision: 1, Reason: "checksum mismatch"}
	for _, target := range []string{"/v1/kv/a/1", "/v1/kv?prefix=a/", "/v1/history/a/1", "/v1/log", "/v1/chain"} {
		f := newFake()
		f.store.err = ce
		rec := call(f, "GET", target, "", nil)
		e := errorOf(t, rec)
		if rec.Code != http.StatusServiceUnavailable || e.Code != api.CodeCorrupt {
			t.Fatalf("%s on corrupt data: %d %+v", target, rec.Code, e)
		}
		if e.Leader != "n1" || e.LeaderURL != "http://leader.test" {
			t.Fatalf("%s: corrupt answer names no leader: %+v", target, e)
		}
		f = newFake()
		f.readErr = fmt.Errorf("member n1: data corrupt: %w", ce)
		rec = call(f, "GET", target, "", nil)
		if e := errorOf(t, rec); rec.Code != 503 || e.Code != api.CodeCorrupt {
			t.Fatalf("%s refused by PrepareRead: %d %+v", target, rec.Code, e)
		}
	}
	// A deep verify of damaged data reports it (OK false), as a chain
	// mismatch.
	f := newFake()
	f.store.verifyErr = ce
	rec := call(f, "POST", "/v1/verify", "", nil)
	var vr api.VerifyResponse
	decodeBody(t, rec, &vr)
	if rec.Code != 200 || vr.OK || vr.Error == "" {
		t.Fatalf("verify of corrupt data: %d %+v", rec.Code, vr)
	}
	// Readiness fails with the reason.
	f = newFake()
	f.readyErr = fmt.Errorf("member n1: data corrupt: %w", ce)
	rec = call(f, "GET", "/readyz", "", nil)
	if e := errorOf(t, rec); rec.Code != 503 || e.Message != f.readyErr.Error() {
		t.Fatalf("readyz of a corrupt member: %d %+v", rec.Code, e)
	}
}

// TestVerifyState: a deep verify answers the recomputed state hash and
// how many version checksums were checked.
func TestVerifyState(t *testing.T) {
	f := newFake()
	rec := call(f, "POST", "/v1/verify", "", nil)
	var vr api.VerifyResponse
	decodeBody(t, rec, &vr)
	if !vr.OK || vr.StateHash != (fsm.Hash{0xee, 3}).String() || vr.Keys != 3 || vr.Versions != 3 {
		t.Fatalf("verify: %+v", vr)
	}
}

// TestStateHashRoute: the members-only state-hash route waits for the
// revision (a stale read with min_revision) and answers both hashes.
func TestStateHashRoute(t *testing.T) {
	f := newFake()
	fwd := map[string]string{api.HeaderForwarded: "n2"}
	rec := call(f, "GET", StateHashPath+"?revision=2", "", fwd)
	var cr api.ChainResponse
	decodeBody(t, rec, &cr)
	if rec.Code != 200 || cr.Revision != 2 || cr.StateHash != (fsm.Hash{0xee, 2}).String() || cr.Hash != (fsm.Hash{2}).String() {
		t.Fatalf("state hash: %d %+v", rec.Code, cr)
	}
	if want := []ReadOptions{{Consistency: api.Stale, MinRevision: 2}}; !reflect.DeepEqual(f.reads, want) {
		t.Fatalf("read options %+v, want %+v", f.reads, want)
	}
	for _, c := range []struct {
		target string
		hdr    map[string]string
	}{
		{StateHashPath, fwd},                       // no revision
		{StateHashPath + "?revision=x", fwd},       // not a number
		{StateHashPath + "?revision=2&foo=1", fwd}, // unknown parameter
		{StateHashPath + "?revision=2", nil},       // no member named
	} {
		if rec := call(f, "GET", c.target, "", c.hdr); rec.Code != 400 {
			t.Fatalf("%s %v: %d %s", c.target, c.hdr, rec.Code, rec.Body)
		}
	}
	f.readErr = fmt.Errorf("%w: waiting for revision 9", ErrTimeout)
	rec = call(f, "GET", StateHashPath+"?revision=9", "", fwd)
	if e := errorOf(t, rec); e.Code != api.CodeTimeout {
		t.Fatalf("behind: %+v", e)
	}
}

// TestAlarmsAndScrubRoutes: the answers of the Service, as is; a failure
// to scrub is an error answer.
func TestAlarmsAndScrubRoutes(t *testing.T) {
	f := newFake()
	rec := call(f, "GET", "/v1/alarms", "", nil)
	if rec.Code != 200 || rec.Body.String() != "{\"alarms\":[]}\n" {
		t.Fatalf("no alarms: %d %q", rec.Code, rec.Body)
	}
	since := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	f.alarms = api.AlarmsResponse{Alarms: []api.Alarm{{Member: "n2", Type: api.AlarmCorrupt, Message: "checksum", Since: since}},
		Unreachable: []string{"n3"}}
	rec = call(f, "GET", "/v1/alarms", "", nil)
	var ar api.AlarmsResponse
	decodeBody(t, rec, &ar)
	if !reflect.DeepEqual(ar, f.alarms) {
		t.Fatalf("alarms %+v, want %+v", ar, f.alarms)
	}
	if rec := call(f, "GET", "/v1/alarms?x=1", "", nil); rec.Code != 400 {
		t.Fatalf("alarms with a parameter: %d", rec.Code)
	}
	if rec := call(f, "POST", "/v1/alarms", "", nil); rec.Code != 405 {
		t.Fatalf("POST /v1/alarms: %d", rec.Code)
	}

	f.scrubResp = api.ScrubResponse{Node: "n1", OK: true, Revision: 3, Hash: "h", StateHash: "s", Keys: 3, Agree: []string{"n2"}}
	rec = call(f, "POST", "/v1/maintenance/scrub", "", nil)
	var sr api.ScrubResponse
	decodeBody(t, rec, &sr)
	if rec.Code != 200 || !reflect.DeepEqual(sr, f.scrubResp) || f.scrubs != 1 {
		t.Fatalf("scrub: %d %+v (%d scrubs)", rec.Code, sr, f.scrubs)
	}
	if rec := call(f, "GET", "/v1/maintenance/scrub", "", nil); rec.Code != 405 || f.scrubs != 1 {
		t.Fatalf("GET scrub: %d", rec.Code)
	}
	f.scrubErr = fmt.Errorf("%w: closing", ErrShuttingDown)
	rec = call(f, "POST", "/v1/maintenance/scrub", "", nil)
	if e := errorOf(t, rec); rec.Code != 503 || e.Code != api.CodeUnavailable {
		t.Fatalf("failed scrub: %d %+v", rec.Code, e)
	}
}

// TestPeerStateHash: Peer.StateHash asks the members-only route as a
// member and decodes the answer; an error answer is typed.
func TestPeerStateHash(t *testing.T) {
	f := newFake()
	srv := httptest.NewServer(New(f, Options{}))
	defer srv.Close()
	p := NewPeer("n2", srv.Client())
	cr, err := p.StateHash(context.Background(), srv.URL, 2)
	if err != nil || cr.StateHash != (fsm.Hash{0xee, 2}).String() || cr.Revision != 2 {
		t.Fatalf("StateHash: %+v %v", cr, err)
	}
	f.store.err = &fsm.CorruptError{File: "fsm.db", Reason: "bad page"}
	_, err = p.StateHash(context.Background(), srv.URL, 2)
	if RemoteCode(err) != api.CodeCorrupt {
		t.Fatalf("StateHash of a corrupt member: %v", err)
	}
}

// TestScrubAskRoute: the members-only route that asks a member to scrub
// passes the calling member and the revision to the Service and answers
// whether it queued a scrub; a malformed request reaches nothing, and
// Peer.AskScrub calls it as a member.
func TestScrubAskRoute(t *testing.T) {
	f := newFake()
	fwd := map[string]string{api.HeaderForwarded: "n2"}
	for _, queued := range []bool{true, false} {
		f.askQueued = queued
		rec := call(f, "POST", ScrubAskPath+"?revision=7", "", fwd)
		if rec.Code != 200 || rec.Body.String() != fmt.Sprintf("{\"queued\":%v}\n", queued) {
			t.Fatalf("ask (queued %v): %d %q", queued, rec.Code, rec.Body)
		}
	}
	if want := []string{"n2 at 7", "n2 at 7"}; !reflect.DeepEqual(f.scrubAsks, want) {
		t.Fatalf("asks %q, want %q", f.scrubAsks, want)
	}
	f.scrubAsks = nil
	for _, c := range []struct {
		method, target string
		hdr            map[string]string
		status         int
	}{
		{"POST", ScrubAskPath, fwd, 400},                       // no revision
		{"POST", ScrubAskPath + "?revision=0", fwd, 400},       // revision 0
		{"POST", ScrubAskPath + "?revision=x", fwd, 400},       // not a number
		{"POST", ScrubAskPath + "?revision=2&foo=1", fwd, 400}, // unknown parameter
		{"POST", ScrubAskPath + "?revision=2", nil, 400},       // no member named
		{"GET", ScrubAskPath + "?revision=2", fwd, 405},
	} {
		if rec := call(f, c.method, c.target, "", c.hdr); rec.Code != c.status {
			t.Fatalf("%s %s %v: %d %s", c.method, c.target, c.hdr, rec.Code, rec.Body)
		}
	}
	if len(f.scrubAsks) != 0 {
		t.Fatalf("a refused ask reached the service: %q", f.scrubAsks)
	}

	srv := httptest.NewServer(New(f, Options{}))
	defer srv.Close()
	p := NewPeer("n3", srv.Client())
	f.askQueued = true
	if queued, err := p.AskScrub(context.Background(), srv.URL, 9); err != nil || !queued || len(f.scrubAsks) != 1 || f.scrubAsks[0] != "n3 at 9" {
		t.Fatalf("AskScrub: %v %v, asks %q", queued, err, f.scrubAsks)
	}
	f.scrubErr = fmt.Errorf("%w: closing", ErrShuttingDown)
	if _, err := p.AskScrub(context.Background(), srv.URL, 9); RemoteCode(err) != api.CodeUnavailable {
		t.Fatalf("AskScrub of a closing member: %v", err)
	}
}
