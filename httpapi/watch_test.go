package httpapi

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/cairn-db/cairn/api"
)

// TestWatchStream streams from the fake's feed: a start in the past, a
// prefix filter, a new commit while streaming, progress.
func TestWatchStream(t *testing.T) {
	f := newFake()
	srv := httptest.NewServer(New(f, Options{}))
	defer srv.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL+"/v1/watch?prefix=a/&from_revision=1&progress_interval=50ms", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/x-ndjson" || resp.Header.Get(api.HeaderRevision) != "3" {
		t.Fatalf("answer %d %v", resp.StatusCode, resp.Header)
	}
	sc := bufio.NewScanner(resp.Body)
	next := func() api.WatchEvent {
		t.Helper()
		if !sc.Scan() {
			t.Fatalf("stream ended: %v", sc.Err())
		}
		var ev api.WatchEvent
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		return ev
	}
	if ev := next(); ev.Type != api.WatchProgress || ev.Revision != 0 {
		t.Fatalf("first line %+v", ev)
	}
	for _, want := range []uint64{1, 2} {
		if ev := next(); ev.Type != api.WatchTxn || ev.Revision != want || ev.Operations[0].Key[:2] != "a/" {
			t.Fatalf("event %+v, want revision %d", ev, want)
		}
	}
	// b/1 at 3 does not match; a commit of a/3 and b/2 shows only a/3.
	f.store.commit(put("a/3", "x"), put("b/2", "y"))
	for {
		ev := next()
		if ev.Type == api.WatchProgress {
			continue
		}
		if ev.Type != api.WatchTxn || ev.Revision != 4 || len(ev.Operations) != 1 || ev.Operations[0].Key != "a/3" {
			t.Fatalf("event %+v", ev)
		}
		break
	}
	// Progress reaches the head.
	for {
		if ev := next(); ev.Type == api.WatchProgress && ev.Revision == 4 {
			break
		}
	}
}

// TestWatchRefusals: bad parameters, a compacted start, no slot left.
func TestWatchRefusals(t *testing.T) {
	f := newFake()
	for _, c := range []struct{ target, code string }{
		{"/v1/watch?from_revision=x", api.CodeBadRequest},
		{"/v1/watch?progress_interval=1ms", api.CodeBadRequest},
		{"/v1/watch?prefix=%ff", api.CodeBadRequest},
		{"/v1/watch?since=1", api.CodeBadRequest},
	} {
		if e := errorOf(t, call(f, "GET", c.target, "", nil)); e.Code != c.code {
			t.Errorf("%s: %+v, want %s", c.target, e, c.code)
		}
	}
	f.store.compacted = 3
	rec := call(f, "GET", "/v1/watch?from_revision=1", "", nil)
	if e := errorOf(t, rec); rec.Code != 410 || e.Code != api.CodeCompacted || e.OldestRevision != 3 {
		t.Fatalf("compacted start: %d %+v", rec.Code, e)
	}
	// The fake allows two subscriptions.
	for range 2 {
		sub, err := f.Subscribe(0)
		if err != nil {
			t.Fatal(err)
		}
		defer sub.Close()
	}
	rec = call(f, "GET", "/v1/watch", "", nil)
	if e := errorOf(t, rec); rec.Code != 503 || e.Code != api.CodeUnavailable {
		t.Fatalf("no slot left: %d %+v", rec.Code, e)
	}
	f.hub.Shutdown()
	if e := errorOf(t, call(f, "GET", "/v1/watch", "", nil)); e.Code != api.CodeUnavailable {
		t.Fatalf("after shutdown: %+v", e)
	}
}

// TestWatchEndsOnShutdown: an open stream ends with an error line when the
// member shuts down.
func TestWatchEndsOnShutdown(t *testing.T) {
	f := newFake()
	srv := httptest.NewServer(New(f, Options{}))
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/v1/watch")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	if !sc.Scan() {
		t.Fatal("no first line")
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		f.hub.Shutdown()
	}()
	var last api.WatchEvent
	for sc.Scan() {
		if err := json.Unmarshal(sc.Bytes(), &last); err != nil {
			t.Fatal(err)
		}
	}
	if last.Type != api.WatchError || last.Error == nil || last.Error.Code != api.CodeUnavailable {
		t.Fatalf("last line %+v", last)
	}
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("shutdown did not return")
	}
}
