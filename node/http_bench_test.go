package node

import (
	"encoding/base64"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/cairn-db/cairn/httpapi"
)

// The HTTP handler benchmarks call the node's handler directly (no
// sockets), so they measure the API layer and what stands behind it: for
// reads the FSM, for writes raft (one member, fsync on its log) and the FSM.
// Compare runs with benchstat:
//
//	go test -run XXX -bench HTTP -count 6 ./node/ > new.txt
//	benchstat old.txt new.txt

func benchNode(b *testing.B) (*Node, http.Handler) {
	b.Helper()
	n := benchMember(b, "n1")
	return n, httpapi.New(n, httpapi.Options{})
}

func serve(b *testing.B, h http.Handler, method, target, body string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, target, strings.NewReader(body))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusOK {
		b.Fatalf("%s %s: %d %s", method, target, rec.Code, rec.Body)
	}
	return rec
}

func BenchmarkHTTPGet(b *testing.B) {
	for _, consistency := range []string{"stale", "linearizable"} {
		b.Run(consistency, func(b *testing.B) {
			_, h := benchNode(b)
			value := strings.Repeat("v", 256)
			var ops []string
			for i := range 1000 {
				ops = append(ops, fmt.Sprintf(`{"op":"put","key":"bench/%d","value":"%s"}`, i, base64.StdEncoding.EncodeToString([]byte(value))))
			}
			serve(b, h, "POST", "/v1/txn", `{"operations":[`+strings.Join(ops, ",")+`]}`)
			b.ResetTimer()
			b.ReportAllocs()
			b.SetBytes(int64(len(value)))
			var i atomic.Int64
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					k := i.Add(1) % 1000
					serve(b, h, "GET", fmt.Sprintf("/v1/kv/bench/%d?consistency=%s", k, consistency), "")
				}
			})
		})
	}
}

func BenchmarkHTTPPut(b *testing.B) {
	_, h := benchNode(b)
	value := strings.Repeat("v", 256)
	b.ResetTimer()
	b.ReportAllocs()
	b.SetBytes(int64(len(value)))
	var i atomic.Int64
	// Parallel writers, as many clients would be: the batcher coalesces
	// them into shared raft entries.
	b.SetParallelism(16)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			serve(b, h, "PUT", fmt.Sprintf("/v1/kv/bench/%d", i.Add(1)%100000), value)
		}
	})
}

func BenchmarkHTTPTxn(b *testing.B) {
	_, h := benchNode(b)
	b.ResetTimer()
	b.ReportAllocs()
	var i atomic.Int64
	b.SetParallelism(16)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			k := i.Add(1)
			body := fmt.Sprintf(`{"preconditions":[{"key":"cas/%d","type":"absent"}],"operations":[{"op":"put","key":"cas/%d","value":"dmFsdWU="},{"op":"put","key":"other/%d","value":"dmFsdWU="}]}`, k, k, k)
			serve(b, h, "POST", "/v1/txn", body)
		}
	})
}
