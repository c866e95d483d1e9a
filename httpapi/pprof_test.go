package httpapi

import (
	"net/http/httptest"
	"strings"
	"testing"
)

// TestPprof: with Options.Pprof the profiler's index is under
// /debug/pprof/ beside the API; without it there is no such route.
func TestPprof(t *testing.T) {
	h := New(newFake(), Options{Pprof: true})
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/debug/pprof/", nil))
	if rec.Code != 200 || !strings.Contains(rec.Body.String(), "goroutine") {
		t.Fatalf("profiler index: %d %.200s", rec.Code, rec.Body)
	}
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/v1/kv/a/1", nil))
	if rec.Code != 200 || rec.Body.String() != "one" {
		t.Fatalf("API beside the profiler: %d %q", rec.Code, rec.Body)
	}
	rec = httptest.NewRecorder()
	New(newFake(), Options{}).ServeHTTP(rec, httptest.NewRequest("GET", "/debug/pprof/", nil))
	if rec.Code != 404 {
		t.Fatalf("profiler without Options.Pprof: %d", rec.Code)
	}
}

// With access control on, the profiler answers admins only.
func TestPprofNeedsAdmin(t *testing.T) {
	f, fx := newAuthFake(t)
	h := New(f, Options{Pprof: true})
	for _, c := range []struct {
		who  map[string]string
		code int
	}{
		{nil, 401},
		{bearer(fx.tokens["alice"]), 403},
		{bearer(fx.tokens["ops"]), 200},
	} {
		rec := serve(h, "GET", "/debug/pprof/cmdline", "", c.who)
		if rec.Code != c.code {
			t.Errorf("%v: %d, want %d", c.who, rec.Code, c.code)
		}
	}
}
