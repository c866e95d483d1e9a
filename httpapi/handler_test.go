package httpapi

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http/httptest"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/cairn-db/cairn/api"
	"github.com/cairn-db/cairn/fsm"
)

// call serves one request through a handler over f.
func call(f *fakeService, method, target, body string, hdr map[string]string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, target, strings.NewReader(body))
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	New(f, Options{}).ServeHTTP(rec, req)
	return rec
}

func errorOf(t *testing.T, rec *httptest.ResponseRecorder) api.Error {
	t.Helper()
	var er api.ErrorResponse
	if err := json.Unmarshal(rec.Body.Bytes(), &er); err != nil || er.Error.Code == "" {
		t.Fatalf("not a JSON error: %d %q", rec.Code, rec.Body)
	}
	return er.Error
}

func put(k, v string) fsm.Op { return fsm.Op{Kind: fsm.OpPut, Key: k, Value: []byte(v)} }

// TestRoutes runs every route with good and bad requests against the
// fake: the status, the error code, and what reached the Service.
func TestRoutes(t *testing.T) {
	conflict := func(fsm.Txn) (fsm.TxnResult, error) {
		return fsm.TxnResult{Err: &fsm.ConflictError{Conflicts: []fsm.Conflict{{Key: "a", Kind: fsm.CondRevision, CurrentRevision: 4}}}}, nil
	}
	cases := []struct {
		name   string
		method string
		target string
		body   string
		hdr    map[string]string
		setup  func(*fakeService)
		status int
		code   string                                                     // error code, "" for success
		check  func(*testing.T, *fakeService, *httptest.ResponseRecorder) // optional
	}{
		// Writes.
		{name: "put", method: "PUT", target: "/v1/kv/a/b", body: "v", hdr: map[string]string{api.HeaderIdempotencyKey: "k1"}, status: 200,
			check: func(t *testing.T, f *fakeService, rec *httptest.ResponseRecorder) {
				want := fsm.Txn{Ops: []fsm.Op{put("a/b", "v")}, IdempotencyKey: "k1"}
				if len(f.writes) != 1 || !reflect.DeepEqual(f.writes[0], want) {
					t.Fatalf("writes %+v, want %+v", f.writes, want)
				}
				var wr api.WriteResponse
				if json.Unmarshal(rec.Body.Bytes(), &wr) != nil || wr.Revision != 7 || rec.Header().Get(api.HeaderRevision) != "7" ||
					wr.Hash != (fsm.Hash{1, 2}).String() {
					t.Fatalf("answer %q, headers %v", rec.Body, rec.Header())
				}
				if f.forwarded[0] != "" {
					t.Fatalf("a client's write marked as forwarded by %q", f.forwarded[0])
				}
			}},
		{name: "put if_revision=0", method: "PUT", target: "/v1/kv/a?if_revision=0", body: "v", status: 200,
			check: wantConds(fsm.Precondition{Kind: fsm.CondAbsent, Key: "a"})},
		{name: "put if_revision=5", method: "PUT", target: "/v1/kv/a?if_revision=5", body: "v", status: 200,
			check: wantConds(fsm.Precondition{Kind: fsm.CondRevision, Key: "a", Revision: 5})},
		{name: "put if_absent", method: "PUT", target: "/v1/kv/a?if_absent=true", body: "v", status: 200,
			check: wantConds(fsm.Precondition{Kind: fsm.CondAbsent, Key: "a"})},
		{name: "put if_exists", method: "PUT", target: "/v1/kv/a?if_exists=1", body: "v", status: 200,
			check: wantConds(fsm.Precondition{Kind: fsm.CondExists, Key: "a"})},
		{name: "put two conditions", method: "PUT", target: "/v1/kv/a?if_exists=true&if_revision=3", body: "v", status: 400, code: api.CodeBadRequest},
		{name: "put bad if_revision", method: "PUT", target: "/v1/kv/a?if_revision=x", body: "v", status: 400, code: api.CodeBadRequest},
		{name: "put bad if_absent", method: "PUT", target: "/v1/kv/a?if_absent=maybe", body: "v", status: 400, code: api.CodeBadRequest},
		{name: "put unknown parameter", method: "PUT", target: "/v1/kv/a?ttl=5", body: "v", status: 400, code: api.CodeBadRequest},
		{name: "put value too large", method: "PUT", target: "/v1/kv/a", body: strings.Repeat("x", 1025), status: 413, code: api.CodeTooLarge},
		{name: "put body over the request limit", method: "PUT", target: "/v1/kv/a", body: strings.Repeat("x", 1<<20+1), status: 413, code: api.CodeTooLarge},
		{name: "put empty key", method: "PUT", target: "/v1/kv/", body: "v", status: 400, code: api.CodeBadRequest},
		{name: "put conflict", method: "PUT", target: "/v1/kv/a?if_revision=3", body: "v", setup: func(f *fakeService) { f.writeFn = conflict },
			status: 409, code: api.CodeConflict, check: func(t *testing.T, _ *fakeService, rec *httptest.ResponseRecorder) {
				e := errorOf(t, rec)
				if len(e.Conflicts) != 1 || e.Conflicts[0] != (api.Conflict{Key: "a", Type: "revision", CurrentRevision: 4}) {
					t.Fatalf("conflicts %+v", e.Conflicts)
				}
			}},
		{name: "put not leader", method: "PUT", target: "/v1/kv/a", body: "v",
			setup: func(f *fakeService) {
				f.writeFn = func(fsm.Txn) (fsm.TxnResult, error) {
					return fsm.TxnResult{}, fmt.Errorf("%w: forwarded", ErrNotLeader)
				}
			},
			status: 503, code: api.CodeNotLeader, check: func(t *testing.T, _ *fakeService, rec *httptest.ResponseRecorder) {
				if e := errorOf(t, rec); e.Leader != "n1" || e.LeaderURL != "http://leader.test" {
					t.Fatalf("leader not named: %+v", e)
				}
			}},
		{name: "put timeout", method: "PUT", target: "/v1/kv/a", body: "v",
			setup: func(f *fakeService) {
				f.writeFn = func(fsm.Txn) (fsm.TxnResult, error) { return fsm.TxnResult{}, fmt.Errorf("%w: slow", ErrTimeout) }
			}, status: 504, code: api.CodeTimeout},
		{name: "put shutting down", method: "PUT", target: "/v1/kv/a", body: "v",
			setup: func(f *fakeService) {
				f.writeFn = func(fsm.Txn) (fsm.TxnResult, error) { return fsm.TxnResult{}, ErrShuttingDown }
			}, status: 503, code: api.CodeUnavailable},
		{name: "put no space", method: "PUT", target: "/v1/kv/a", body: "v",
			setup: func(f *fakeService) {
				f.writeFn = func(fsm.Txn) (fsm.TxnResult, error) {
					return fsm.TxnResult{}, fmt.Errorf("%w: the store uses 8GiB of its 8GiB quota", ErrNoSpace)
				}
			}, status: 507, code: api.CodeNoSpace, check: func(t *testing.T, _ *fakeService, rec *httptest.ResponseRecorder) {
				if e := errorOf(t, rec); !strings.Contains(e.Message, "8GiB quota") {
					t.Fatalf("message %q does not say why", e.Message)
				}
			}},
		{name: "put internal failure", method: "PUT", target: "/v1/kv/a", body: "v",
			setup: func(f *fakeService) {
				f.writeFn = func(fsm.Txn) (fsm.TxnResult, error) { return fsm.TxnResult{}, errors.New("disk on fire") }
			}, status: 500, code: api.CodeInternal},
		{name: "put forwarded by a member", method: "PUT", target: "/v1/kv/a", body: "v", hdr: map[string]string{api.HeaderForwarded: "n2"}, status: 200,
			check: func(t *testing.T, f *fakeService, _ *httptest.ResponseRecorder) {
				if f.forwarded[0] != "n2" {
					t.Fatalf("forwarded by %q, want n2", f.forwarded[0])
				}
			}},
		{name: "delete", method: "DELETE", target: "/v1/kv/a", status: 200, check: wantOps(fsm.Op{Kind: fsm.OpDelete, Key: "a"})},
		{name: "delete prefix", method: "DELETE", target: "/v1/kv/a/?prefix=true", status: 200, check: wantOps(fsm.Op{Kind: fsm.OpDeletePrefix, Key: "a/"})},
		{name: "delete prefix with condition", method: "DELETE", target: "/v1/kv/a/?prefix=true&if_exists=true", status: 400, code: api.CodeBadRequest},
		{name: "delete if_absent refused", method: "DELETE", target: "/v1/kv/a?if_absent=true", status: 400, code: api.CodeBadRequest},
		{name: "txn", method: "POST", target: "/v1/txn", status: 200,
			body: `{"preconditions":[{"type":"value","key":"a","value":"eA=="}],"operations":[{"op":"put","key":"b","value":"eQ=="},{"op":"delete_prefix","key":"c/"}],"user":"u","description":"d","meta":{"m":"1"}}`,
			check: func(t *testing.T, f *fakeService, _ *httptest.ResponseRecorder) {
				want := fsm.Txn{User: "u", Description: "d", Meta: map[string]string{"m": "1"},
					Preconditions: []fsm.Precondition{{Kind: fsm.CondValue, Key: "a", Value: []byte("x")}},
					Ops:           []fsm.Op{put("b", "y"), {Kind: fsm.OpDeletePrefix, Key: "c/"}}}
				if len(f.writes) != 1 || !reflect.DeepEqual(f.writes[0], want) {
					t.Fatalf("writes %+v, want %+v", f.writes, want)
				}
			}},
		{name: "txn unknown field", method: "POST", target: "/v1/txn", body: `{"operations":[],"x":1}`, status: 400, code: api.CodeBadRequest},
		{name: "txn trailing data", method: "POST", target: "/v1/txn", body: `{"operations":[]} {}`, status: 400, code: api.CodeBadRequest},
		{name: "txn malformed", method: "POST", target: "/v1/txn", body: `{"operations":`, status: 400, code: api.CodeBadRequest},
		{name: "txn unknown op", method: "POST", target: "/v1/txn", body: `{"operations":[{"op":"append","key":"a"}]}`, status: 400, code: api.CodeBadRequest},
		{name: "txn unknown precondition", method: "POST", target: "/v1/txn", body: `{"preconditions":[{"type":"older","key":"a"}],"operations":[{"op":"delete","key":"a"}]}`, status: 400, code: api.CodeBadRequest},
		{name: "txn query parameter", method: "POST", target: "/v1/txn?x=1", body: `{"operations":[]}`, status: 400, code: api.CodeBadRequest},

		// Reads.
		{name: "get raw", method: "GET", target: "/v1/kv/a/1", status: 200, check: func(t *testing.T, f *fakeService, rec *httptest.ResponseRecorder) {
			if rec.Body.String() != "one" || rec.Header().Get(api.HeaderModRevision) != "1" || rec.Header().Get(api.HeaderCreateRevision) != "1" ||
				rec.Header().Get(api.HeaderRevision) != "3" || rec.Header().Get("Content-Type") != "application/octet-stream" {
				t.Fatalf("answer %q, headers %v", rec.Body, rec.Header())
			}
			if len(f.reads) != 1 || f.reads[0] != (ReadOptions{Consistency: api.Linearizable}) {
				t.Fatalf("read options %+v, want linearizable", f.reads)
			}
		}},
		{name: "get json", method: "GET", target: "/v1/kv/a/1?format=json", status: 200, check: func(t *testing.T, _ *fakeService, rec *httptest.ResponseRecorder) {
			var kv api.KeyValueResponse
			if json.Unmarshal(rec.Body.Bytes(), &kv) != nil || kv.KV.Key != "a/1" || string(kv.KV.Value) != "one" || kv.Revision != 3 {
				t.Fatalf("answer %q", rec.Body)
			}
		}},
		{name: "get accept json", method: "GET", target: "/v1/kv/a/1", hdr: map[string]string{"Accept": "application/json"}, status: 200,
			check: func(t *testing.T, _ *fakeService, rec *httptest.ResponseRecorder) {
				if !strings.Contains(rec.Body.String(), `"mod_revision":1`) {
					t.Fatalf("answer %q", rec.Body)
				}
			}},
		{name: "get bad format", method: "GET", target: "/v1/kv/a/1?format=xml", status: 400, code: api.CodeBadRequest},
		{name: "get missing", method: "GET", target: "/v1/kv/nope", status: 404, code: api.CodeNotFound},
		{name: "get future revision", method: "GET", target: "/v1/kv/a/1?revision=99", status: 400, code: api.CodeFutureRevision},
		{name: "get stale bounded", method: "GET", target: "/v1/kv/a/1?max_staleness=1s", status: 200,
			check: wantRead(ReadOptions{Consistency: api.Stale, MaxStaleness: time.Second})},
		{name: "get min_revision", method: "GET", target: "/v1/kv/a/1?min_revision=2", status: 200,
			check: wantRead(ReadOptions{Consistency: api.Stale, MinRevision: 2})},
		{name: "get linearizable min_revision", method: "GET", target: "/v1/kv/a/1?consistency=linearizable&min_revision=2", status: 200,
			check: wantRead(ReadOptions{Consistency: api.Linearizable, MinRevision: 2})},
		{name: "get unknown consistency", method: "GET", target: "/v1/kv/a/1?consistency=eventual", status: 400, code: api.CodeBadRequest},
		{name: "get bad max_staleness", method: "GET", target: "/v1/kv/a/1?max_staleness=-1s", status: 400, code: api.CodeBadRequest},
		{name: "get too stale", method: "GET", target: "/v1/kv/a/1?max_staleness=1ms", setup: func(f *fakeService) { f.readErr = fmt.Errorf("%w: 2s", ErrTooStale) },
			status: 503, code: api.CodeUnavailable},
		{name: "get no leader", method: "GET", target: "/v1/kv/a/1", setup: func(f *fakeService) { f.readErr = ErrNoLeader }, status: 503, code: api.CodeUnavailable},
		{name: "list", method: "GET", target: "/v1/kv?prefix=a/&limit=1", status: 200, check: func(t *testing.T, _ *fakeService, rec *httptest.ResponseRecorder) {
			var l api.ListResponse
			if json.Unmarshal(rec.Body.Bytes(), &l) != nil || len(l.KVs) != 1 || l.KVs[0].Key != "a/1" || !l.More || l.Next != "a/1" {
				t.Fatalf("answer %q", rec.Body)
			}
		}},
		{name: "list keys only", method: "GET", target: "/v1/kv?prefix=b/&keys_only=true", status: 200, check: func(t *testing.T, _ *fakeService, rec *httptest.ResponseRecorder) {
			var l api.ListResponse
			if json.Unmarshal(rec.Body.Bytes(), &l) != nil || len(l.KVs) != 1 || l.KVs[0].Value != nil || l.More {
				t.Fatalf("answer %q", rec.Body)
			}
		}},
		{name: "list bad limit", method: "GET", target: "/v1/kv?limit=-1", status: 400, code: api.CodeBadRequest},
		{name: "list storage failure", method: "GET", target: "/v1/kv", setup: func(f *fakeService) { f.store.err = fsm.ErrClosed }, status: 503, code: api.CodeUnavailable},
		{name: "history", method: "GET", target: "/v1/history/a/1?limit=5", status: 200, check: func(t *testing.T, _ *fakeService, rec *httptest.ResponseRecorder) {
			var h api.HistoryResponse
			if json.Unmarshal(rec.Body.Bytes(), &h) != nil || len(h.Versions) != 1 || h.Versions[0].Revision != 1 {
				t.Fatalf("answer %q", rec.Body)
			}
		}},
		{name: "history bad before", method: "GET", target: "/v1/history/a/1?before=x", status: 400, code: api.CodeBadRequest},
		{name: "log", method: "GET", target: "/v1/log?from=2&limit=1", status: 200, check: func(t *testing.T, _ *fakeService, rec *httptest.ResponseRecorder) {
			var l api.LogResponse
			if json.Unmarshal(rec.Body.Bytes(), &l) != nil || len(l.Records) != 1 || l.Records[0].Revision != 2 ||
				l.Records[0].Operations[0].Key != "a/2" || l.Records[0].Hash != (fsm.Hash{2}).String() {
				t.Fatalf("answer %q", rec.Body)
			}
		}},
		{name: "log compacted", method: "GET", target: "/v1/log?from=1", setup: func(f *fakeService) { f.store.compacted = 2 },
			status: 410, code: api.CodeCompacted, check: func(t *testing.T, _ *fakeService, rec *httptest.ResponseRecorder) {
				if e := errorOf(t, rec); e.OldestRevision != 2 {
					t.Fatalf("oldest revision %d, want 2", e.OldestRevision)
				}
			}},
		{name: "chain head", method: "GET", target: "/v1/chain", status: 200, check: wantChain(3)},
		{name: "chain at", method: "GET", target: "/v1/chain?revision=2", status: 200, check: wantChain(2)},
		{name: "chain future", method: "GET", target: "/v1/chain?revision=9", status: 400, code: api.CodeFutureRevision},
		{name: "chain bad revision", method: "GET", target: "/v1/chain?revision=two", status: 400, code: api.CodeBadRequest},

		// Backups and verification.
		{name: "backup", method: "GET", target: "/v1/backup", status: 200, check: func(t *testing.T, f *fakeService, rec *httptest.ResponseRecorder) {
			if rec.Body.String() != "full backup at 3" || rec.Header().Get(api.HeaderRevision) != "3" {
				t.Fatalf("answer %q %v", rec.Body, rec.Header())
			}
			if f.reads[0] != (ReadOptions{Consistency: api.Stale}) {
				t.Fatalf("read options %+v, want stale (local by default)", f.reads[0])
			}
		}},
		{name: "backup since", method: "GET", target: "/v1/backup?since=1&consistency=linearizable", status: 200,
			check: func(t *testing.T, f *fakeService, rec *httptest.ResponseRecorder) {
				if rec.Body.String() != "incremental backup 2..3" || f.reads[0].Consistency != api.Linearizable {
					t.Fatalf("answer %q, read %+v", rec.Body, f.reads)
				}
			}},
		{name: "backup since the future", method: "GET", target: "/v1/backup?since=9", status: 400, code: api.CodeFutureRevision},
		{name: "backup unknown parameter", method: "GET", target: "/v1/backup?full=1", status: 400, code: api.CodeBadRequest},
		{name: "verify", method: "POST", target: "/v1/verify", status: 200, check: func(t *testing.T, _ *fakeService, rec *httptest.ResponseRecorder) {
			var v api.VerifyResponse
			if json.Unmarshal(rec.Body.Bytes(), &v) != nil || !v.OK || v.Node != "n1" || v.To != 3 {
				t.Fatalf("answer %q", rec.Body)
			}
		}},
		{name: "verify mismatch", method: "POST", target: "/v1/verify", setup: func(f *fakeService) { f.store.verifyErr = fmt.Errorf("%w: at 2", fsm.ErrChainMismatch) },
			status: 200, check: func(t *testing.T, _ *fakeService, rec *httptest.ResponseRecorder) {
				var v api.VerifyResponse
				if json.Unmarshal(rec.Body.Bytes(), &v) != nil || v.OK || !strings.Contains(v.Error, "at 2") {
					t.Fatalf("answer %q", rec.Body)
				}
			}},

		// Administration.
		{name: "compact", method: "POST", target: "/v1/compact", body: `{"revision":2}`, status: 200,
			check: func(t *testing.T, f *fakeService, rec *httptest.ResponseRecorder) {
				if !reflect.DeepEqual(f.compacted, []uint64{2}) || rec.Header().Get(api.HeaderRevision) != "9" {
					t.Fatalf("compacted %v, headers %v", f.compacted, rec.Header())
				}
			}},
		{name: "compact no revision", method: "POST", target: "/v1/compact", body: `{}`, status: 400, code: api.CodeBadRequest},
		{name: "compact compacted", method: "POST", target: "/v1/compact", body: `{"revision":1}`,
			setup: func(f *fakeService) { f.compactErr = &fsm.CompactedError{Requested: 1, Oldest: 2} }, status: 410, code: api.CodeCompacted},
		{name: "compact forwarded", method: "POST", target: "/v1/compact", body: `{"revision":2}`, hdr: map[string]string{api.HeaderForwarded: "n3"}, status: 200,
			check: func(t *testing.T, f *fakeService, _ *httptest.ResponseRecorder) {
				if f.forwarded[0] != "n3" {
					t.Fatalf("forwarded by %q", f.forwarded[0])
				}
			}},
		{name: "defrag", method: "POST", target: "/v1/maintenance/defrag", status: 200,
			check: func(t *testing.T, f *fakeService, rec *httptest.ResponseRecorder) {
				var d api.DefragResponse
				if json.Unmarshal(rec.Body.Bytes(), &d) != nil || d != (api.DefragResponse{Node: "n1", BeforeBytes: 1 << 20, AfterBytes: 1 << 16, Took: "5ms"}) || f.defrags != 1 {
					t.Fatalf("answer %q after %d defrags", rec.Body, f.defrags)
				}
			}},
		{name: "defrag without room", method: "POST", target: "/v1/maintenance/defrag",
			setup: func(f *fakeService) { f.defragErr = fmt.Errorf("%w: no room for the copy", ErrNoSpace) }, status: 507, code: api.CodeNoSpace},
		{name: "defrag unknown parameter", method: "POST", target: "/v1/maintenance/defrag?all=true", status: 400, code: api.CodeBadRequest},
		{name: "defrag wrong method", method: "GET", target: "/v1/maintenance/defrag", status: 405, code: api.CodeMethod},
		{name: "space limits", method: "PUT", target: "/v1/maintenance/space", body: `{"quota_backend_bytes":1073741824}`,
			setup: func(f *fakeService) { f.reserve = 512 << 20 }, status: 200,
			check: func(t *testing.T, f *fakeService, rec *httptest.ResponseRecorder) {
				if rec.Body.String() != `{"quota_backend_bytes":1073741824,"min_free_bytes":536870912}`+"\n" || f.quota != 1<<30 || f.reserve != 512<<20 {
					t.Fatalf("answer %q, quota %d, reserve %d", rec.Body, f.quota, f.reserve)
				}
			}},
		{name: "space limits reserve only", method: "PUT", target: "/v1/maintenance/space", body: `{"min_free_bytes":0}`,
			setup: func(f *fakeService) { f.quota, f.reserve = 1<<30, 512<<20 }, status: 200,
			check: func(t *testing.T, f *fakeService, rec *httptest.ResponseRecorder) {
				if f.quota != 1<<30 || f.reserve != 0 {
					t.Fatalf("answer %q, quota %d, reserve %d", rec.Body, f.quota, f.reserve)
				}
			}},
		{name: "space limits bad value", method: "PUT", target: "/v1/maintenance/space", body: `{"quota_backend_bytes":-1}`, status: 400, code: api.CodeBadRequest},
		{name: "space limits unknown field", method: "PUT", target: "/v1/maintenance/space", body: `{"quota":1}`, status: 400, code: api.CodeBadRequest},
		{name: "space limits not a number", method: "PUT", target: "/v1/maintenance/space", body: `{"quota_backend_bytes":"1GiB"}`, status: 400, code: api.CodeBadRequest},
		{name: "space limits malformed", method: "PUT", target: "/v1/maintenance/space", body: `{`, status: 400, code: api.CodeBadRequest},
		{name: "space limits unknown parameter", method: "PUT", target: "/v1/maintenance/space?all=true", body: `{}`, status: 400, code: api.CodeBadRequest},
		{name: "space limits wrong method", method: "POST", target: "/v1/maintenance/space", body: `{}`, status: 405, code: api.CodeMethod},
		{name: "status", method: "GET", target: "/v1/status", status: 200, check: func(t *testing.T, _ *fakeService, rec *httptest.ResponseRecorder) {
			var st api.StatusResponse
			if json.Unmarshal(rec.Body.Bytes(), &st) != nil || st.ID != "n1" || rec.Header().Get(api.HeaderRevision) != "3" {
				t.Fatalf("answer %q", rec.Body)
			}
		}},
		{name: "members", method: "GET", target: "/v1/cluster/members", status: 200, check: wantMembers},
		{name: "cluster status", method: "GET", target: "/v1/cluster/status", status: 200, check: func(t *testing.T, _ *fakeService, rec *httptest.ResponseRecorder) {
			var cs api.ClusterStatusResponse
			if err := json.Unmarshal(rec.Body.Bytes(), &cs); err != nil || cs.Node != "n1" || cs.Leader != "n1" || len(cs.Members) != 2 ||
				!cs.Members[0].Reachable || cs.Members[0].Status == nil || cs.Members[0].Status.ID != "n1" || cs.Members[0].Health != api.HealthReady ||
				cs.Members[1].Reachable || cs.Members[1].Health != api.HealthUnreachable {
				t.Fatalf("answer %q (%v)", rec.Body, err)
			}
		}},
		{name: "cluster status unknown parameter", method: "GET", target: "/v1/cluster/status?all=true", status: 400, code: api.CodeBadRequest},
		{name: "cluster status failed", method: "GET", target: "/v1/cluster/status", setup: func(f *fakeService) { f.adminErr = ErrShuttingDown },
			status: 503, code: api.CodeUnavailable},
		{name: "cluster status wrong method", method: "POST", target: "/v1/cluster/status", status: 405, code: api.CodeMethod},
		{name: "join", method: "POST", target: "/v1/cluster/members", body: `{"id":"n4","raft_addr":"h:1","http_url":"http://h:2","non_voter":true}`, status: 200,
			check: wantAdmin("join n4 h:1 http://h:2 true")},
		{name: "join malformed", method: "POST", target: "/v1/cluster/members", body: `{"id":4}`, status: 400, code: api.CodeBadRequest},
		{name: "remove", method: "DELETE", target: "/v1/cluster/members/n2", status: 200, check: wantAdmin("remove n2")},
		{name: "remove unknown", method: "DELETE", target: "/v1/cluster/members/n9", setup: func(f *fakeService) { f.adminErr = fmt.Errorf("%w: n9", ErrUnknownMember) },
			status: 404, code: api.CodeNotFound},
		{name: "promote", method: "POST", target: "/v1/cluster/members/n2/promote", status: 200, check: wantAdmin("promote n2")},
		{name: "transfer", method: "POST", target: "/v1/cluster/leadership", body: `{"id":"n2"}`, status: 200, check: wantAdmin("transfer n2")},
		{name: "transfer to any", method: "POST", target: "/v1/cluster/leadership", status: 200, check: wantAdmin("transfer ")},
		{name: "transfer malformed", method: "POST", target: "/v1/cluster/leadership", body: `[1]`, status: 400, code: api.CodeBadRequest},
		{name: "healthz", method: "GET", target: "/healthz", status: 200},
		{name: "version", method: "GET", target: "/version", status: 200, check: func(t *testing.T, f *fakeService, rec *httptest.ResponseRecorder) {
			var v api.VersionResponse
			if err := json.Unmarshal(rec.Body.Bytes(), &v); err != nil || v.Version == "" || v.GoVersion != runtime.Version() ||
				v.Platform != runtime.GOOS+"/"+runtime.GOARCH || v.Node != f.ID() {
				t.Fatalf("answer %q (%v)", rec.Body, err)
			}
		}},
		{name: "readyz", method: "GET", target: "/readyz", status: 200},
		{name: "readyz not ready", method: "GET", target: "/readyz", setup: func(f *fakeService) { f.readyErr = ErrNoLeader }, status: 503, code: api.CodeUnavailable},
		{name: "metrics", method: "GET", target: "/metrics", status: 200, check: func(t *testing.T, _ *fakeService, rec *httptest.ResponseRecorder) {
			if rec.Body.String() != "cairn_fake 1\n" {
				t.Fatalf("answer %q", rec.Body)
			}
		}},

		// Routing.
		{name: "no route", method: "GET", target: "/v2/kv/a", status: 404, code: api.CodeNotFound},
		{name: "wrong method", method: "PATCH", target: "/v1/kv/a", status: 405, code: api.CodeMethod},
		{name: "old forwarding route", method: "POST", target: "/v1/internal/writes", body: "x", hdr: map[string]string{api.HeaderForwarded: "n2"}, status: 404, code: api.CodeNotFound},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFake()
			if tc.setup != nil {
				tc.setup(f)
			}
			rec := call(f, tc.method, tc.target, tc.body, tc.hdr)
			if rec.Code != tc.status {
				t.Fatalf("%s %s: status %d, want %d: %s", tc.method, tc.target, rec.Code, tc.status, rec.Body)
			}
			if rec.Header().Get(api.HeaderNode) != "n1" || rec.Header().Get(api.HeaderLeaderURL) != "http://leader.test" {
				t.Fatalf("headers %v", rec.Header())
			}
			if tc.code != "" {
				if e := errorOf(t, rec); e.Code != tc.code {
					t.Fatalf("code %q, want %q: %s", e.Code, tc.code, rec.Body)
				}
				if rec.Code >= 400 && len(f.writes)+len(f.compacted)+len(f.admin) > 0 && tc.setup == nil {
					t.Fatalf("a refused request reached the service: writes %v, compacted %v, admin %v", f.writes, f.compacted, f.admin)
				}
			}
			if tc.check != nil {
				tc.check(t, f, rec)
			}
		})
	}
}

func wantConds(conds ...fsm.Precondition) func(*testing.T, *fakeService, *httptest.ResponseRecorder) {
	return func(t *testing.T, f *fakeService, _ *httptest.ResponseRecorder) {
		t.Helper()
		if len(f.writes) != 1 || !reflect.DeepEqual(f.writes[0].Preconditions, conds) {
			t.Fatalf("writes %+v, want preconditions %+v", f.writes, conds)
		}
	}
}

func wantOps(ops ...fsm.Op) func(*testing.T, *fakeService, *httptest.ResponseRecorder) {
	return func(t *testing.T, f *fakeService, _ *httptest.ResponseRecorder) {
		t.Helper()
		if len(f.writes) != 1 || !reflect.DeepEqual(f.writes[0].Ops, ops) {
			t.Fatalf("writes %+v, want operations %+v", f.writes, ops)
		}
	}
}

func wantRead(o ReadOptions) func(*testing.T, *fakeService, *httptest.ResponseRecorder) {
	return func(t *testing.T, f *fakeService, _ *httptest.ResponseRecorder) {
		t.Helper()
		if len(f.reads) != 1 || f.reads[0] != o {
			t.Fatalf("read options %+v, want %+v", f.reads, o)
		}
	}
}

func wantChain(rev uint64) func(*testing.T, *fakeService, *httptest.ResponseRecorder) {
	return func(t *testing.T, _ *fakeService, rec *httptest.ResponseRecorder) {
		t.Helper()
		var c api.ChainResponse
		if json.Unmarshal(rec.Body.Bytes(), &c) != nil || c.Revision != rev || c.Hash != (fsm.Hash{byte(rev)}).String() {
			t.Fatalf("answer %q, want revision %d", rec.Body, rev)
		}
	}
}

func wantMembers(t *testing.T, _ *fakeService, rec *httptest.ResponseRecorder) {
	t.Helper()
	var m api.MembersResponse
	if json.Unmarshal(rec.Body.Bytes(), &m) != nil || len(m.Members) != 2 || m.Leader != "n1" {
		t.Fatalf("answer %q", rec.Body)
	}
}

func wantAdmin(what string) func(*testing.T, *fakeService, *httptest.ResponseRecorder) {
	return func(t *testing.T, f *fakeService, rec *httptest.ResponseRecorder) {
		t.Helper()
		if !reflect.DeepEqual(f.admin, []string{what}) {
			t.Fatalf("admin calls %q, want %q", f.admin, what)
		}
		wantMembers(t, f, rec)
	}
}

// TestProgressLine checks the hand-encoded progress line against
// encoding/json.
func TestProgressLine(t *testing.T) {
	for _, rev := range []uint64{0, 1, 42, 1<<64 - 1} {
		want, err := json.Marshal(api.WatchEvent{Type: api.WatchProgress, Revision: rev})
		if err != nil {
			t.Fatal(err)
		}
		if got := string(appendProgress(nil, rev)); got != string(want)+"\n" {
			t.Errorf("revision %d: %q, want %q", rev, got, want)
		}
	}
}

// TestMatchOps checks which operations a watched prefix sees.
func TestMatchOps(t *testing.T) {
	put := func(k string) fsm.Op { return put(k, "v") }
	del := func(k string) fsm.Op { return fsm.Op{Kind: fsm.OpDelete, Key: k} }
	dp := func(k string) fsm.Op { return fsm.Op{Kind: fsm.OpDeletePrefix, Key: k} }
	ops := []fsm.Op{put("a/1"), put("b/1"), del("a/2"), del("ab"), dp("a/x/"), dp("a"), dp("b/"), dp("a/1/z"), put("a")}
	cases := []struct {
		prefix string
		want   []string // "op key"
	}{
		{"", []string{"put a/1", "put b/1", "delete a/2", "delete ab", "delete_prefix a/x/", "delete_prefix a", "delete_prefix b/", "delete_prefix a/1/z", "put a"}},
		// delete_prefix a/x/ lies under a/; delete_prefix a covers a/;
		// ab and a do not start with a/.
		{"a/", []string{"put a/1", "delete a/2", "delete_prefix a/x/", "delete_prefix a", "delete_prefix a/1/z"}},
		{"a", []string{"put a/1", "delete a/2", "delete ab", "delete_prefix a/x/", "delete_prefix a", "delete_prefix a/1/z", "put a"}},
		// Only the prefix deletes that cover a/1 or lie under it.
		{"a/1", []string{"put a/1", "delete_prefix a", "delete_prefix a/1/z"}},
		{"b/1/", []string{"delete_prefix b/"}},
		{"c", nil},
	}
	for _, tc := range cases {
		var got []string
		for _, o := range matchOps(tc.prefix, ops) {
			got = append(got, o.Op+" "+o.Key)
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("prefix %q: got %q, want %q", tc.prefix, got, tc.want)
		}
	}
	if got := matchOps("a/", []fsm.Op{put("a/1")}); len(got) != 1 || string(got[0].Value) != "v" {
		t.Errorf("put value not carried: %+v", got)
	}
}
