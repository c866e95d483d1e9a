package httpapi

import (
	"net/http/httptest"
	"strings"
	"testing"
)

// TestWithPprof: the profiler's index under /debug/pprof/, the API for
// everything else.
func TestWithPprof(t *testing.T) {
	h := WithPprof(New(newFake(), Options{}))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/debug/pprof/", nil))
	if rec.Code != 200 || !strings.Contains(rec.Body.String(), "goroutine") {
		t.Fatalf("profiler index: %d %.200s", rec.Code, rec.Body)
	}
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/v1/kv/a/1", nil))
	if rec.Code != 200 || rec.Body.String() != "one" {
		t.Fatalf("API behind the profiler: %d %q", rec.Code, rec.Body)
	}
}
