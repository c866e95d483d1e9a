package client_test

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cairn-db/cairn/api"
	"github.com/cairn-db/cairn/client"
)

// A call that reaches no endpoint ends with ErrUnavailable once
// UnreachableTimeout passes, naming every endpoint and why it failed:
// one refuses connections, one accepts them and never answers.
func TestUnreachableTimeout(t *testing.T) {
	refused := "http://" + freeAddr(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0") // never accepts: connects, then silence
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	silent := "http://" + ln.Addr().String()
	c := newClient(t, func(cfg *client.Config) { cfg.UnreachableTimeout = 500 * time.Millisecond }, refused, silent)
	// The test's own limit is generous: the call must end on its own.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err = c.Get(ctx, "k")
	if ctx.Err() != nil {
		t.Fatalf("Get ran until the test's own deadline: %v", err)
	}
	if !errors.Is(err, client.ErrUnavailable) {
		t.Fatalf("Get: %v, want ErrUnavailable", err)
	}
	for _, want := range []string{refused + ": connection refused", silent + ": no answer", "within 500ms"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	// The same for the first connection of a watch.
	if _, err := c.Watch(ctx, "", 0); !errors.Is(err, client.ErrUnavailable) || !strings.Contains(err.Error(), refused) || ctx.Err() != nil {
		t.Fatalf("Watch: %v, want ErrUnavailable naming %s", err, refused)
	}
}

// UnreachableTimeout bounds only the wait for a first answer: a member
// that answers unavailable (no leader) for longer is retried until it
// serves, and SlowCallNote says once what the call waits for.
func TestUnreachableTimeoutAnsweredRetries(t *testing.T) {
	start := time.Now()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if time.Since(start) < time.Second {
			w.WriteHeader(http.StatusServiceUnavailable)
			_ = json.NewEncoder(w).Encode(api.ErrorResponse{Error: api.Error{Code: api.CodeUnavailable, Message: "no leader"}})
			return
		}
		_ = json.NewEncoder(w).Encode(api.MembersResponse{})
	}))
	defer srv.Close()
	var mu sync.Mutex
	var notes []string
	var calls atomic.Int32
	c := newClient(t, func(cfg *client.Config) {
		cfg.UnreachableTimeout = 200 * time.Millisecond
		cfg.SlowCallAfter = 300 * time.Millisecond
		cfg.SlowCallNote = func(n string) {
			calls.Add(1)
			mu.Lock()
			defer mu.Unlock()
			notes = append(notes, n)
		}
	}, srv.URL)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := c.Members(ctx); err != nil {
		t.Fatalf("Members: %v (an answering member is retried past UnreachableTimeout)", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(notes) != 1 || !strings.Contains(notes[0], "waiting for a leader") || !strings.Contains(notes[0], srv.URL+": unavailable") {
		t.Fatalf("notes %q, want one saying it waits for a leader and why", notes)
	}
}
