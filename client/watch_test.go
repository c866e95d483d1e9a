package client_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cairn-db/cairn/api"
	"github.com/cairn-db/cairn/client"
)

// fakeWatchServer serves scripted watch streams: the n-th request gets
// script(n, from_revision).
func fakeWatchServer(t *testing.T, script func(n int, from string, w http.ResponseWriter)) (*httptest.Server, *[]string) {
	t.Helper()
	var mu sync.Mutex
	var froms []string
	var srv *httptest.Server
	srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/v1/cluster/members":
			_ = json.NewEncoder(w).Encode(api.MembersResponse{Members: []api.Member{{ID: "f1", HTTPURL: srv.URL, Role: api.RoleVoter}}})
		case "/v1/watch":
			mu.Lock()
			froms = append(froms, r.URL.Query().Get("from_revision"))
			n := len(froms)
			mu.Unlock()
			w.Header().Set(api.HeaderNode, "f1")
			script(n, r.URL.Query().Get("from_revision"), w)
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	return srv, &froms
}

func line(w http.ResponseWriter, ev api.WatchEvent) {
	_ = json.NewEncoder(w).Encode(ev)
	w.(http.Flusher).Flush()
}

func txnEv(rev uint64) api.WatchEvent {
	return api.WatchEvent{Type: api.WatchTxn, Revision: rev, Operations: []api.Operation{{Op: api.OpPut, Key: fmt.Sprintf("k%d", rev)}}}
}

// TestWatchResume checks the client's side of resuming: a broken stream
// resumes after the last revision delivered (progress included), repeats
// are dropped, and a compacted error is final.
func TestWatchResume(t *testing.T) {
	srv, froms := fakeWatchServer(t, func(n int, from string, w http.ResponseWriter) {
		switch n {
		case 1: // the start: head is 4
			line(w, api.WatchEvent{Type: api.WatchProgress, Revision: 4})
			line(w, txnEv(5))
			line(w, txnEv(7))
			line(w, api.WatchEvent{Type: api.WatchProgress, Revision: 9})
			// then the connection breaks
		case 2: // a member that is behind the resume point (10)
			line(w, api.WatchEvent{Type: api.WatchProgress, Revision: 8})
			line(w, txnEv(7)) // a repeat: dropped
			line(w, txnEv(12))
			line(w, api.WatchEvent{Type: api.WatchError, Error: &api.Error{Code: api.CodeUnavailable, Message: "shutting down"}})
		case 3:
			line(w, api.WatchEvent{Type: api.WatchProgress, Revision: 12})
			line(w, api.WatchEvent{Type: api.WatchError, Revision: 12,
				Error: &api.Error{Code: api.CodeCompacted, Message: "compacted", OldestRevision: 20}})
		default:
			http.Error(w, "too many", http.StatusInternalServerError)
		}
	})
	c := newClient(t, nil, srv.URL)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ch, err := c.Watch(ctx, "k", 0)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	var final client.WatchEvent
	for ev := range ch {
		if ev.Err != nil {
			final = ev
			continue
		}
		got = append(got, fmt.Sprintf("%s %d", ev.Type, ev.Revision))
		if ev.Node != "f1" {
			t.Errorf("event node %q", ev.Node)
		}
	}
	want := []string{"txn 5", "txn 7", "progress 9", "txn 12"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("events %q, want %q", got, want)
	}
	var ce *client.CompactedError
	if !errors.Is(final.Err, client.ErrCompacted) || !errors.As(final.Err, &ce) || ce.Oldest != 20 || final.Type != api.WatchError {
		t.Errorf("final event %+v, want ErrCompacted with oldest 20", final)
	}
	if fmt.Sprint(*froms) != fmt.Sprint([]string{"", "10", "13"}) {
		t.Errorf("from_revision of the requests: %q, want [\"\" 10 13]", *froms)
	}
}

func TestWatchArguments(t *testing.T) {
	srv, _ := fakeWatchServer(t, func(n int, from string, w http.ResponseWriter) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusGone)
		_ = json.NewEncoder(w).Encode(api.ErrorResponse{Error: api.Error{Code: api.CodeCompacted, Message: "gone", OldestRevision: 3}})
	})
	c := newClient(t, nil, srv.URL)
	ctx := context.Background()
	if _, err := c.Watch(ctx, "", 0, client.Consistency(api.Stale)); !errors.Is(err, client.ErrBadRequest) {
		t.Errorf("Watch with a consistency: %v", err)
	}
	_, err := c.Watch(ctx, "", 1)
	var ce *client.CompactedError
	if !errors.As(err, &ce) || ce.Oldest != 3 {
		t.Errorf("compacted start: %v", err)
	}
	// A watch ends its channel when ctx ends, even while reconnecting.
	var calls atomic.Int32
	srv2, _ := fakeWatchServer(t, func(n int, from string, w http.ResponseWriter) {
		calls.Add(1)
		line(w, api.WatchEvent{Type: api.WatchProgress, Revision: 1})
	})
	c2 := newClient(t, nil, srv2.URL)
	ctx2, cancel := context.WithCancel(ctx)
	start := time.Now()
	ch, err := c2.Watch(ctx2, "", 0)
	if err != nil {
		t.Fatal(err)
	}
	// Each stream ends at once, so the client backs off before each
	// reconnect, doubling from half of 25 ms at least: three reconnects
	// cannot take less than 12.5+25+50 ms, however fast the machine. (A
	// slow machine only makes it longer.)
	waitFor(t, "4 connections to a member that ends every stream", 10*time.Second, func() error {
		if n := calls.Load(); n < 4 {
			return fmt.Errorf("%d connections", n)
		}
		return nil
	})
	if d := time.Since(start); d < 87*time.Millisecond {
		t.Errorf("4 connections within %s to a member that ends every stream: no backoff", d)
	}
	cancel()
	closed := make(chan struct{})
	go func() {
		defer close(closed)
		for range ch {
		}
	}()
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("the watch channel did not end after its context was canceled")
	}
}
