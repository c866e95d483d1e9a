package client_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cairn-db/cairn/api"
	"github.com/cairn-db/cairn/client"
)

// TestCorruptMemberSkipped: a member that answers corrupt is left for
// another: every read succeeds from the healthy member, never with an
// error or a value from the damaged one. Pinned to it, the call ends
// at once with ErrCorrupt.
func TestCorruptMemberSkipped(t *testing.T) {
	var badHits atomic.Int64
	bad := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		badHits.Add(1)
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set(api.HeaderNode, "n1")
		w.WriteHeader(api.Status(api.CodeCorrupt))
		_ = json.NewEncoder(w).Encode(api.ErrorResponse{Error: api.Error{Code: api.CodeCorrupt, Message: "fsm: stored data is corrupt"}})
	}))
	t.Cleanup(bad.Close)
	good := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set(api.HeaderNode, "n2")
		switch {
		case r.URL.Path == "/v1/kv/k":
			w.Header().Set(api.HeaderRevision, "5")
			_, _ = w.Write([]byte("good"))
		case r.URL.Path == "/v1/chain" && r.URL.Query().Get("state") == "true":
			_ = json.NewEncoder(w).Encode(api.ChainResponse{Revision: 5, Hash: "h", StateHash: "s", Keys: 1})
		default:
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(404)
			_ = json.NewEncoder(w).Encode(api.ErrorResponse{Error: api.Error{Code: api.CodeNotFound, Message: "no"}})
		}
	}))
	t.Cleanup(good.Close)
	cfg := client.DefaultConfig()
	cfg.Endpoints = []string{bad.URL, good.URL}
	c, err := client.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for i := range 4 {
		kv, err := c.Get(ctx, "k", client.Consistency(api.Stale))
		if err != nil || string(kv.Value) != "good" {
			t.Fatalf("get %d: %+v %v", i, kv, err)
		}
	}
	ch, err := c.StateHash(ctx, 0, client.Consistency(api.Stale))
	if err != nil || ch.StateHash != "s" || ch.Keys != 1 {
		t.Fatalf("StateHash: %+v %v", ch, err)
	}
	hits := badHits.Load()
	if hits == 0 {
		t.Fatal("the corrupt member was never asked: the test proves nothing")
	}
	_, err = c.Get(ctx, "k", client.Endpoint(bad.URL), client.Consistency(api.Stale))
	var ae *client.APIError
	if !errors.Is(err, client.ErrCorrupt) || !errors.As(err, &ae) || ae.Code != api.CodeCorrupt || !strings.Contains(err.Error(), "corrupt") {
		t.Fatalf("pinned read of the corrupt member: %v", err)
	}
	if badHits.Load() != hits+1 {
		t.Fatalf("pinned read retried the corrupt member: %d hits after %d", badHits.Load(), hits)
	}
}

// TestWatchSkipsCorruptMember: a watch refused with corrupt opens on
// another member. Both members answer the member list, so only the watch
// itself meets the corrupt answer.
func TestWatchSkipsCorruptMember(t *testing.T) {
	var members api.MembersResponse
	list := func(w http.ResponseWriter, r *http.Request) bool {
		if r.URL.Path != "/v1/cluster/members" {
			return false
		}
		_ = json.NewEncoder(w).Encode(members)
		return true
	}
	var badWatches atomic.Int64
	bad := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if list(w, r) {
			return
		}
		badWatches.Add(1)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(api.Status(api.CodeCorrupt))
		_ = json.NewEncoder(w).Encode(api.ErrorResponse{Error: api.Error{Code: api.CodeCorrupt, Message: "fsm: stored data is corrupt"}})
	}))
	t.Cleanup(bad.Close)
	good := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if list(w, r) {
			return
		}
		w.Header().Set("Content-Type", "application/x-ndjson")
		enc := json.NewEncoder(w)
		_ = enc.Encode(api.WatchEvent{Type: api.WatchProgress, Revision: 4})
		_ = enc.Encode(api.WatchEvent{Type: api.WatchTxn, Revision: 5, Operations: []api.Operation{{Op: api.OpPut, Key: "k", Value: []byte("v")}}})
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	}))
	t.Cleanup(good.Close)
	members = api.MembersResponse{Members: []api.Member{{ID: "n1", HTTPURL: bad.URL}, {ID: "n2", HTTPURL: good.URL}}}
	cfg := client.DefaultConfig()
	cfg.Endpoints = []string{bad.URL, good.URL}
	c, err := client.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for range 3 { // whichever member the rotation starts with
		ch, err := c.Watch(ctx, "k", 5)
		if err != nil {
			t.Fatalf("watch: %v", err)
		}
		ev := <-ch
		if ev.Type != api.WatchTxn || ev.Revision != 5 {
			t.Fatalf("event %+v", ev)
		}
	}
	if badWatches.Load() == 0 {
		t.Fatal("no watch reached the corrupt member: the test proves nothing")
	}
}
