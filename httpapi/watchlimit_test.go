package httpapi

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/cairn-db/cairn/api"
	"github.com/cairn-db/cairn/internal/testutil"
)

// openRaw opens GET /v1/watch with an optional bearer token and returns
// the answer; closing it ends the stream.
func openRaw(t *testing.T, url, token string) (*http.Response, context.CancelFunc) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, "GET", url+"/v1/watch?prefix=a/", nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	stop := func() {
		cancel()
		resp.Body.Close()
	}
	t.Cleanup(stop)
	return resp, stop
}

// tooMany checks a 429 too_many_requests answer.
func tooMany(t *testing.T, resp *http.Response) {
	t.Helper()
	var er api.ErrorResponse
	if err := json.NewDecoder(resp.Body).Decode(&er); err != nil {
		t.Fatalf("HTTP %d, not a JSON error: %v", resp.StatusCode, err)
	}
	if resp.StatusCode != http.StatusTooManyRequests || er.Error.Code != api.CodeTooManyRequests {
		t.Fatalf("HTTP %d %+v, want 429 %s", resp.StatusCode, er.Error, api.CodeTooManyRequests)
	}
}

// TestWatchersPerAddress: without access control, one remote address may
// hold MaxWatchersPerClient streams, whatever its ports; the next is
// refused with 429 too_many_requests, and a slot comes back when a stream
// ends.
func TestWatchersPerAddress(t *testing.T) {
	f := newFake()
	f.limits.MaxWatchersPerClient = 1
	srv := httptest.NewServer(New(f, Options{}))
	t.Cleanup(srv.Close) // after the streams (cleanups run last first)
	first, stop := openRaw(t, srv.URL, "")
	if first.StatusCode != http.StatusOK {
		t.Fatalf("first watch: HTTP %d", first.StatusCode)
	}
	// A second connection (another port of the same address).
	second, _ := openRaw(t, srv.URL, "")
	tooMany(t, second)
	if n := f.hub.Active(); n != 1 {
		t.Fatalf("%d subscriptions open, want 1 (the refused stream took none)", n)
	}
	stop()
	testutil.WaitFor(t, "the slot given back", 10*time.Second, func() error {
		resp, stop := openRaw(t, srv.URL, "")
		defer stop()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("HTTP %d", resp.StatusCode)
		}
		return nil
	})
}

// TestWatchersPerUser: with access control on, streams count against
// their user: alice at her limit is refused while root, from the same
// address, still opens one.
func TestWatchersPerUser(t *testing.T) {
	rf, fx := newAuthFake(t)
	rf.limits.MaxWatchersPerClient = 1
	srv := httptest.NewServer(New(rf, Options{}))
	t.Cleanup(srv.Close) // after the streams (cleanups run last first)
	if resp, _ := openRaw(t, srv.URL, fx.tokens["alice"]); resp.StatusCode != http.StatusOK {
		t.Fatalf("alice's first watch: HTTP %d", resp.StatusCode)
	}
	resp, _ := openRaw(t, srv.URL, fx.tokens["alice"])
	tooMany(t, resp)
	if resp, _ := openRaw(t, srv.URL, fx.tokens["root"]); resp.StatusCode != http.StatusOK {
		t.Fatalf("root's watch beside alice's: HTTP %d", resp.StatusCode)
	}
}

// TestWatchClient checks whom a stream counts against.
func TestWatchClient(t *testing.T) {
	for _, c := range []struct{ remote, want string }{
		{"10.0.0.1:1234", "address 10.0.0.1"},
		{"10.0.0.1:999", "address 10.0.0.1"},
		{"[::ffff:10.0.0.1]:5", "address 10.0.0.1"},
		{"[fe80::1%eth0]:5", "address fe80::1"},
		{"10.0.0.2:1", "address 10.0.0.2"},
	} {
		r := httptest.NewRequest("GET", "/v1/watch", nil)
		r.RemoteAddr = c.remote
		if got := watchClient(r, caller{}); got != c.want {
			t.Errorf("%s: %q, want %q", c.remote, got, c.want)
		}
	}
}
