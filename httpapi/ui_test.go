package httpapi

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cairn-db/cairn/api"
	"github.com/cairn-db/cairn/fsm"
	"github.com/cairn-db/cairn/ui"
)

// TestUIAssets: /ui/ and /ui serve the page, every asset carries the
// security headers, its type and an ETag (a 304 on a match); a missing
// asset is a JSON not_found; nothing but GET and HEAD is served. The
// files come from the binary: the test runs where no asset is on disk.
func TestUIAssets(t *testing.T) {
	t.Chdir(t.TempDir())
	f := newFake()
	index, err := ui.Open(ui.Index)
	if err != nil {
		t.Fatal(err)
	}
	for _, target := range []string{"/ui/", "/ui", "/ui/index.html", "/ui/?refresh=1"} {
		rec := call(f, "GET", target, "", nil)
		if rec.Code != 200 || rec.Body.String() != string(index.Content) {
			t.Fatalf("GET %s: %d %.80q", target, rec.Code, rec.Body)
		}
		if !strings.Contains(rec.Body.String(), "<main") {
			t.Fatalf("GET %s is not the page: %.200q", target, rec.Body)
		}
	}
	for _, c := range []struct{ target, ctype string }{
		{"/ui/", "text/html; charset=utf-8"},
		{"/ui/app.js", "text/javascript; charset=utf-8"},
		{"/ui/style.css", "text/css; charset=utf-8"},
	} {
		rec := call(f, "GET", c.target, "", nil)
		h := rec.Header()
		if rec.Code != 200 || h.Get("Content-Type") != c.ctype {
			t.Fatalf("GET %s: %d %q", c.target, rec.Code, h.Get("Content-Type"))
		}
		for k, want := range map[string]string{
			"Content-Security-Policy": ui.ContentSecurityPolicy,
			"X-Content-Type-Options":  "nosniff",
			"X-Frame-Options":         "DENY",
		} {
			if h.Get(k) != want {
				t.Errorf("GET %s: %s %q, want %q", c.target, k, h.Get(k), want)
			}
		}
		if !strings.HasPrefix(ui.ContentSecurityPolicy, "default-src 'self';") || strings.Contains(ui.ContentSecurityPolicy, "unsafe") {
			t.Fatalf("policy %q", ui.ContentSecurityPolicy)
		}
		etag := h.Get("ETag")
		if etag == "" {
			t.Fatalf("GET %s: no ETag", c.target)
		}
		for _, inm := range []string{etag, `"x", W/` + etag, "*"} {
			if rec := call(f, "GET", c.target, "", map[string]string{"If-None-Match": inm}); rec.Code != http.StatusNotModified || rec.Body.Len() != 0 {
				t.Fatalf("GET %s If-None-Match %s: %d %q", c.target, inm, rec.Code, rec.Body)
			}
		}
		for _, hdr := range []map[string]string{{"If-None-Match": `"other"`}, {"Range": "bytes=5-1"}} {
			if rec := call(f, "GET", c.target, "", hdr); rec.Code != 200 || rec.Body.Len() == 0 {
				t.Fatalf("GET %s %v: %d %q", c.target, hdr, rec.Code, rec.Body)
			}
		}
		if rec := call(f, "HEAD", c.target, "", nil); rec.Code != 200 || rec.Body.Len() != 0 {
			t.Fatalf("HEAD %s: %d %q", c.target, rec.Code, rec.Body)
		}
	}
	for _, target := range []string{"/ui/nope.js", "/ui/assets/app.js", "/ui/app.js/x"} {
		rec := call(f, "GET", target, "", nil)
		if rec.Code != 404 || errorOf(t, rec).Code != api.CodeNotFound || rec.Header().Get("Content-Security-Policy") != "" {
			t.Fatalf("GET %s: %d %q", target, rec.Code, rec.Body)
		}
	}
	for _, m := range []string{"POST", "PUT", "DELETE"} {
		if rec := call(f, m, "/ui/app.js", "", nil); rec.Code != 405 || rec.Header().Get("Allow") != "GET, HEAD" {
			t.Fatalf("%s /ui/app.js: %d %q", m, rec.Code, rec.Header().Get("Allow"))
		}
	}
}

// TestStatsRoute: GET /v1/stats answers the Service's statistics.
func TestStatsRoute(t *testing.T) {
	f := newFake()
	f.stats = api.StatsResponse{Node: "n1", IntervalSeconds: 5, Points: []api.StatsPoint{
		{Time: time.Unix(1700000000, 0).UTC(), Writes: 3, Reads: 7, Errors: 1, WriteP50Ms: 1.5, WriteP99Ms: 9, ReadP50Ms: 0.2, ReadP99Ms: 0.9},
	}}
	rec := call(f, "GET", "/v1/stats", "", nil)
	var got api.StatsResponse
	if rec.Code != 200 || json.Unmarshal(rec.Body.Bytes(), &got) != nil {
		t.Fatalf("%d %q", rec.Code, rec.Body)
	}
	if fmt.Sprint(got) != fmt.Sprint(f.stats) {
		t.Fatalf("got %+v, want %+v", got, f.stats)
	}
	if rec := call(f, "GET", "/v1/stats?x=1", "", nil); rec.Code != 400 {
		t.Fatalf("unknown parameter: %d", rec.Code)
	}
}

// observation is one call of Options.Observe.
type observation struct {
	kind   RequestKind
	failed bool
}

// TestObserve: Options.Observe sees each read and write once with its
// kind and outcome (a 5xx is a failure; a missing key, a conflict, a
// refusal or a client that went away is not), and no other route.
func TestObserve(t *testing.T) {
	f := newFake()
	f.store.commit(put("a", "1"))
	var mu sync.Mutex
	var got []observation
	h := New(f, Options{Observe: func(k RequestKind, took time.Duration, failed bool) {
		if took <= 0 {
			t.Errorf("took %v", took)
		}
		mu.Lock()
		got = append(got, observation{k, failed})
		mu.Unlock()
	}})
	unavailable := func(fsm.Txn) (fsm.TxnResult, error) { return fsm.TxnResult{}, ErrNoLeader }
	conflict := func(fsm.Txn) (fsm.TxnResult, error) {
		return fsm.TxnResult{Err: &fsm.ConflictError{Conflicts: []fsm.Conflict{{Key: "a", Kind: fsm.CondAbsent}}}}, nil
	}
	for _, c := range []struct {
		method, target, body string
		writeFn              func(fsm.Txn) (fsm.TxnResult, error)
		status               int
		want                 []observation
	}{
		{"GET", "/v1/kv/a", "", nil, 200, []observation{{RequestRead, false}}},
		{"GET", "/v1/kv/missing", "", nil, 404, []observation{{RequestRead, false}}},
		{"GET", "/v1/kv?prefix=a", "", nil, 200, []observation{{RequestRead, false}}},
		{"GET", "/v1/history/a", "", nil, 200, []observation{{RequestRead, false}}},
		{"GET", "/v1/kv/a?bogus=1", "", nil, 400, []observation{{RequestRead, false}}},
		{"PUT", "/v1/kv/b", "v", nil, 200, []observation{{RequestWrite, false}}},
		{"PUT", "/v1/kv/b?if_absent=true", "v", conflict, 409, []observation{{RequestWrite, false}}},
		{"DELETE", "/v1/kv/b", "", nil, 200, []observation{{RequestWrite, false}}},
		{"POST", "/v1/txn", `{"operations":[{"op":"put","key":"c","value":"eA=="}]}`, nil, 200, []observation{{RequestWrite, false}}},
		{"PUT", "/v1/kv/b", "v", unavailable, 503, []observation{{RequestWrite, true}}},
		{"POST", "/v1/txn", `{"operations":[{"op":"put","key":"c","value":"eA=="}]}`, unavailable, 503, []observation{{RequestWrite, true}}},
		{"GET", "/v1/status", "", nil, 200, nil},
		{"GET", "/v1/stats", "", nil, 200, nil},
		{"GET", "/v1/log", "", nil, 200, nil},
		{"GET", "/ui/", "", nil, 200, nil},
		{"GET", "/v1/watch", "", nil, 200, nil},
	} {
		mu.Lock()
		got = nil
		mu.Unlock()
		f.mu.Lock()
		if c.writeFn != nil {
			f.writeFn = c.writeFn
		} else {
			f.writeFn = newFake().writeFn
		}
		f.mu.Unlock()
		rec := serve(h, c.method, c.target, c.body, nil)
		if rec.Code != c.status {
			t.Fatalf("%s %s: %d, want %d: %q", c.method, c.target, rec.Code, c.status, rec.Body)
		}
		mu.Lock()
		if fmt.Sprint(got) != fmt.Sprint(c.want) {
			t.Errorf("%s %s: observed %v, want %v", c.method, c.target, got, c.want)
		}
		mu.Unlock()
	}

	// A read whose client went away is not a failure of the member.
	f.store.mu.Lock()
	f.store.err = ErrShuttingDown
	f.store.mu.Unlock()
	mu.Lock()
	got = nil
	mu.Unlock()
	if rec := serve(h, "GET", "/v1/kv/a", "", nil); rec.Code != 503 {
		t.Fatalf("read while shutting down: %d", rec.Code)
	}
	f.mu.Lock()
	f.readErr = context.Canceled // PrepareRead gave up: its context ended
	f.mu.Unlock()
	req := httptest.NewRequest("GET", "/v1/kv/a", nil)
	ctx, cancel := context.WithCancel(req.Context())
	cancel()
	h.ServeHTTP(httptest.NewRecorder(), req.WithContext(ctx))
	mu.Lock()
	defer mu.Unlock()
	if want := []observation{{RequestRead, true}, {RequestRead, false}}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("observed %v, want %v", got, want)
	}
}
