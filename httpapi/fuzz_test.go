package httpapi

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/cairn-db/cairn/api"
	"github.com/cairn-db/cairn/auth"
	"github.com/cairn-db/cairn/fsm"
)

// fuzzFaults are the failures FuzzHandler can make the fake report, each
// with the one error code (all 5xx) it may then answer besides 2xx and
// 4xx.
var fuzzFaults = []struct {
	name  string
	set   func(*fakeService)
	code5 string
}{
	{"none", func(*fakeService) {}, ""},
	{"no leader", func(f *fakeService) { f.readErr = fmt.Errorf("%w: fuzz", ErrNoLeader) }, api.CodeUnavailable},
	{"write timeout", func(f *fakeService) {
		f.writeFn = func(fsm.Txn) (fsm.TxnResult, error) { return fsm.TxnResult{}, fmt.Errorf("%w: fuzz", ErrTimeout) }
	}, api.CodeTimeout},
	{"store closed", func(f *fakeService) { f.store.err = fsm.ErrClosed }, api.CodeUnavailable},
	{"admin shutting down", func(f *fakeService) { f.adminErr = ErrShuttingDown; f.authErr = ErrShuttingDown }, api.CodeUnavailable},
	{"not leader", func(f *fakeService) {
		f.writeFn = func(fsm.Txn) (fsm.TxnResult, error) { return fsm.TxnResult{}, fmt.Errorf("%w: fuzz", ErrNotLeader) }
		f.compactErr = ErrNotLeader
	}, api.CodeNotLeader},
}

// knownCodes are the api error codes.
var knownCodes = map[string]bool{
	api.CodeBadRequest: true, api.CodeNotFound: true, api.CodeConflict: true, api.CodeCompacted: true,
	api.CodeFutureRevision: true, api.CodeTooLarge: true, api.CodeNotLeader: true, api.CodeUnavailable: true,
	api.CodeTimeout: true, api.CodeMethod: true, api.CodeInternal: true, api.CodePermissionDenied: true,
	api.CodeUnauthenticated: true, api.CodeCorrupt: true, api.CodeNoSpace: true, api.CodeTooManyRequests: true,
	api.CodeRequestTimeout: true,
}

// dotSegment finds an empty, "." or ".." segment in an escaped path.
var dotSegment = regexp.MustCompile(`//|/\.\.?(/|$)`)

// fuzzWriter is a ResponseRecorder whose request ends when the handler
// flushes (a watch stream has sent its first line), as if the client then
// went away.
type fuzzWriter struct {
	*httptest.ResponseRecorder
	cancel context.CancelFunc
}

func (w fuzzWriter) Flush() {
	w.ResponseRecorder.Flush()
	w.cancel()
}

// FuzzHandler serves requests whose method, target (path and query),
// body, framing and headers the fuzzer chooses, through the handler over
// the fake service, parsed from the wire as net/http's server parses
// them. Invariants: no panic, no redirect, no 5xx but the one the fake was
// told to fail with; every error is the JSON ErrorResponse with a known
// code whose status is api.Status(code); a 405 names the allowed methods;
// a path with an empty, "." or ".." segment is refused; a refused request
// changed nothing in the Service; and nothing the Service is asked to
// write holds U+FFFD that the request did not send (encoding/json's
// replacement of invalid UTF-8). With an Authorization header, access
// control is on (the users of access_test.go): a 401 carries
// WWW-Authenticate, and a user's writes that reach the Service stay within
// the user's permissions.
func FuzzHandler(f *testing.F) {
	type seed struct {
		method, target, body string
	}
	seeds := []seed{
		{"PUT", "/v1/kv/a/b?if_revision=3", "v"},
		{"PUT", "/v1/kv/a?if_absent=true", "v"},
		{"GET", "/v1/kv/a/1?format=json&revision=2&consistency=stale&max_staleness=1s&min_revision=1", ""},
		{"DELETE", "/v1/kv/a/?prefix=true", ""},
		{"GET", "/v1/kv?prefix=a/&start_after=a/1&limit=1&keys_only=true", ""},
		{"POST", "/v1/txn", `{"preconditions":[{"type":"value","key":"a","value":"eA=="},{"type":"revision","key":"b","revision":2}],` +
			`"operations":[{"op":"put","key":"b","value":"eQ=="},{"op":"delete_prefix","key":"c/"},{"op":"delete","key":"d"}],"user":"u","description":"d","meta":{"m":"1"}}`},
		{"GET", "/v1/history/a/1?limit=5&before=3", ""},
		{"GET", "/v1/watch?prefix=a/&from_revision=1&progress_interval=100ms", ""},
		{"GET", "/v1/log?from=2&limit=1", ""},
		{"GET", "/v1/chain?revision=2", ""},
		{"POST", "/v1/compact", `{"revision":2}`},
		{"GET", "/v1/backup?since=1", ""},
		{"POST", "/v1/verify", ""},
		{"GET", "/v1/status", ""},
		{"GET", "/v1/stats", ""},
		{"GET", "/ui/", ""},
		{"GET", "/ui/app.js", ""},
		{"GET", "/v1/cluster/members", ""},
		{"POST", "/v1/cluster/members", `{"id":"n4","raft_addr":"h:1","http_url":"http://h:2","non_voter":true}`},
		{"DELETE", "/v1/cluster/members/n2", ""},
		{"POST", "/v1/cluster/members/n2/promote", ""},
		{"POST", "/v1/cluster/leadership", `{"id":"n2"}`},
		{"POST", "/v1/auth/authenticate", `{"user":"root","password":"p"}`},
		{"GET", "/v1/auth/status", ""},
		{"POST", "/v1/auth/enable", ""},
		{"POST", "/v1/auth/disable", ""},
		{"GET", "/v1/auth/users", ""},
		{"PUT", "/v1/auth/users/bob", `{"password":"pw"}`},
		{"PUT", "/v1/auth/users/carol", `{"no_password":true}`},
		{"GET", "/v1/auth/users/root", ""},
		{"PUT", "/v1/auth/users/root/password", `{"password":"pw"}`},
		{"PUT", "/v1/auth/users/root/roles/root", ""},
		{"DELETE", "/v1/auth/users/bob/roles/r", ""},
		{"DELETE", "/v1/auth/users/bob", ""},
		{"GET", "/v1/auth/roles", ""},
		{"PUT", "/v1/auth/roles/r", `{"admin":false}`},
		{"GET", "/v1/auth/roles/root", ""},
		{"PUT", "/v1/auth/roles/r/permissions", `{"key":"a/","prefix":true,"access":"readwrite"}`},
		{"DELETE", "/v1/auth/roles/r/permissions?key=a/&prefix=true", ""},
		{"DELETE", "/v1/auth/roles/r", ""},
		{"POST", ForwardWritesPath, "\x00"},
		{"POST", ReadIndexPath, ""},
		{"POST", ForwardAuthPath, ""},
		{"GET", "/healthz", ""},
		{"GET", "/readyz", ""},
		{"GET", "/metrics", ""},
		// Odd inputs (TestOddInputs).
		{"PUT", "/v1/kv/a/../b", "v"},
		{"PUT", "/v1/kv/a%2F%2Fb", "v"},
		{"PATCH", "/v1/kv/a", ""},
		{"GET", "/v1/kv?prefix=a;b", ""},
		{"POST", "/v1/txn", `{"operations":[{"op":"put","key":"a\ud800","value":"eA==","Key":"b"}]}`},
		{"POST", "/v1/txn", "{\"operations\":[{\"op\":\"put\",\"key\":\"a\xff\"}]}"},
	}
	fx := newAuthFixture(f)
	users := []string{"", "Bearer " + fx.tokens["alice"], "Bearer " + fx.tokens["bob"], "Bearer " + fx.tokens["root"],
		"Bearer " + fx.tokens["expired"], "Basic cm9vdDpw", "Bearer x.y"}
	for i, s := range seeds {
		f.Add(s.method, s.target, []byte(s.body), uint8(i%len(fuzzFaults))<<2, users[i%len(users)])
	}
	f.Add("PUT", "/v1/kv/a", []byte("3\r\nabc\r\nzz\r\n"), uint8(1), "")
	f.Add("POST", "/v1/txn", []byte("5\r\n{\"ope\r\n0\r\n\r\n"), uint8(1|2), "")
	f.Add("POST", "/v1/txn", []byte(`{"operations":[{"op":"put","key":"a/1","value":"eA=="},{"op":"delete_prefix","key":"a"}]}`), uint8(0), users[1])
	f.Fuzz(func(t *testing.T, method, target string, body []byte, flags uint8, authz string) {
		chunked, jsonAccept := flags&1 != 0, flags&2 != 0
		fault := fuzzFaults[int(flags>>2)%len(fuzzFaults)]
		// The request as it comes off the wire; one net/http refuses
		// before any handler runs is not the handler's.
		var raw bytes.Buffer
		fmt.Fprintf(&raw, "%s %s HTTP/1.1\r\nHost: cairn.test\r\n", method, target)
		if jsonAccept {
			raw.WriteString("Accept: application/json\r\n")
		}
		if authz != "" {
			fmt.Fprintf(&raw, "Authorization: %s\r\n", authz)
		}
		if chunked {
			raw.WriteString("Transfer-Encoding: chunked\r\n")
		} else {
			fmt.Fprintf(&raw, "Content-Length: %d\r\n", len(body))
		}
		raw.WriteString("\r\n")
		raw.Write(body)
		req, err := http.ReadRequest(bufio.NewReader(&raw))
		if err != nil || req.Method == "CONNECT" {
			return
		}
		req.RemoteAddr = "192.0.2.1:1234"
		fk := newFake()
		defer fk.hub.Shutdown()
		fault.set(fk)
		if authz != "" {
			// Access control on, with the users of access_test.go.
			fk.auth.Store(fx.state)
		}
		// A watch streams until its client goes away: after its first
		// flush here, or (a stream that never flushes) a while.
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		rec := httptest.NewRecorder()
		New(fk, Options{BcryptCost: auth.MinBcryptCost}).ServeHTTP(fuzzWriter{rec, cancel}, req.WithContext(ctx))

		where := fmt.Sprintf("%s %q (%d-byte body, chunked %v, fault %s): %d %q", method, target, len(body), chunked, fault.name, rec.Code, rec.Body.String())
		if rec.Code/100 == 3 || rec.Header().Get("Location") != "" {
			t.Fatalf("%s: a redirect to %q", where, rec.Header().Get("Location"))
		}
		if rec.Header().Get(api.HeaderNode) != "n1" {
			t.Fatalf("%s: no %s header", where, api.HeaderNode)
		}
		if rec.Code < 200 || rec.Code > 599 {
			t.Fatalf("%s: status out of range", where)
		}
		if dotSegment.MatchString(req.URL.EscapedPath()) && rec.Code != 400 {
			t.Fatalf("%s: a path with an empty, . or .. segment served", where)
		}
		if rec.Code >= 400 {
			if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
				t.Fatalf("%s: error with Content-Type %q", where, ct)
			}
			dec := json.NewDecoder(bytes.NewReader(rec.Body.Bytes()))
			dec.DisallowUnknownFields()
			var er api.ErrorResponse
			if err := dec.Decode(&er); err != nil {
				t.Fatalf("%s: not an ErrorResponse: %v", where, err)
			}
			e := er.Error
			if !knownCodes[e.Code] || api.Status(e.Code) != rec.Code || e.Message == "" {
				t.Fatalf("%s: code %q (status %d) for status %d", where, e.Code, api.Status(e.Code), rec.Code)
			}
			if rec.Code >= 500 && e.Code != fault.code5 {
				t.Fatalf("%s: %s answered with fault %q", where, e.Code, fault.name)
			}
			if rec.Code == 405 {
				allow := rec.Header().Get("Allow")
				if allow == "" || strings.Contains(", "+allow+",", ", "+req.Method+",") {
					t.Fatalf("%s: 405 with Allow %q", where, allow)
				}
			}
			if fault.code5 == "" && len(fk.writes)+len(fk.compacted)+len(fk.admin)+len(fk.authChanges) > 0 {
				t.Fatalf("%s: a refused request reached the service: writes %+v compacted %v admin %v auth %v",
					where, fk.writes, fk.compacted, fk.admin, fk.authChanges)
			}
		} else if rec.Code != 200 {
			t.Fatalf("%s: status %d", where, rec.Code)
		}
		if rec.Code == 401 && rec.Header().Get("WWW-Authenticate") == "" {
			t.Fatalf("%s: 401 without WWW-Authenticate", where)
		}
		// A user's writes that reached the Service are within the user's
		// permissions: alice writes under a/ only, bob writes nothing.
		for _, tx := range fk.writes {
			var keys []string
			for _, o := range tx.Ops {
				keys = append(keys, o.Key)
			}
			for _, p := range tx.Preconditions {
				keys = append(keys, p.Key)
			}
			for _, k := range keys {
				switch authz {
				case users[1]:
					if !strings.HasPrefix(k, "a/") {
						t.Fatalf("%s: alice's write of %q reached the service: %+v", where, k, tx)
					}
				case users[2], users[4], users[5], users[6]:
					t.Fatalf("%s: a write by %q reached the service: %+v", where, authz, tx)
				}
			}
		}
		// U+FFFD written that the request did not send: a replacement.
		sent := req.URL.Path + string(body)
		sentFFFD := strings.Contains(sent, "\uFFFD") || strings.Contains(strings.ToLower(sent), `\ufffd`)
		for _, tx := range fk.writes {
			texts := []string{tx.User, tx.Description}
			for _, o := range tx.Ops {
				texts = append(texts, o.Key)
			}
			for _, p := range tx.Preconditions {
				texts = append(texts, p.Key)
			}
			for k, v := range tx.Meta {
				texts = append(texts, k, v)
			}
			for _, s := range texts {
				if !utf8.ValidString(s) || (strings.ContainsRune(s, utf8.RuneError) && !sentFFFD) {
					t.Fatalf("%s: wrote %q, which the request did not send", where, s)
				}
			}
		}
		if isWrite := strings.HasPrefix(req.URL.Path, "/v1/kv/") || req.URL.Path == "/v1/txn"; isWrite && rec.Code == 200 &&
			len(fk.writes) > 0 && rec.Header().Get(api.HeaderRevision) != strconv.Itoa(7) {
			t.Fatalf("%s: a write answered without its revision", where)
		}
	})
}
