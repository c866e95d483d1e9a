package httpapi

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/cairn-db/cairn/api"
)

// TestOddInputs runs the requests that encoding/json, net/url and the mux
// would otherwise serve as something else than what they say (issue 17):
// each is refused with a JSON error before anything reaches the Service,
// and the escaped forms that name such keys on purpose are served.
func TestOddInputs(t *testing.T) {
	const op = `{"operations":[{"op":"put","key":"k","value":"eA=="}]}`
	refused := func(method, target, body, code string, status int, inMsg string) oddCase {
		return oddCase{method: method, target: target, body: body, status: status, code: code, inMsg: inMsg}
	}
	bad := func(method, target, body, inMsg string) oddCase {
		return refused(method, target, body, api.CodeBadRequest, 400, inMsg)
	}
	cases := map[string]oddCase{
		// Invalid UTF-8 in a JSON body: encoding/json stores U+FFFD.
		"txn key not UTF-8":            bad("POST", "/v1/txn", `{"operations":[{"op":"put","key":"a`+"\xff"+`","value":"eA=="}]}`, "not valid UTF-8"),
		"txn precondition not UTF-8":   bad("POST", "/v1/txn", `{"preconditions":[{"type":"exists","key":"`+"\xc3"+`"}],"operations":[{"op":"delete","key":"a"}]}`, "preconditions[0].key"),
		"txn meta not UTF-8":           bad("POST", "/v1/txn", `{"operations":[{"op":"delete","key":"a"}],"meta":{"m`+"\xfe"+`":"1"}}`, "not valid UTF-8"),
		"txn description not UTF-8":    bad("POST", "/v1/txn", `{"operations":[{"op":"delete","key":"a"}],"description":"`+"\xed\xa0\x80"+`"}`, "description"),
		"txn lone surrogate escape":    bad("POST", "/v1/txn", `{"operations":[{"op":"put","key":"a\ud800","value":"eA=="}]}`, "lone surrogate"),
		"txn lone low surrogate":       bad("POST", "/v1/txn", `{"operations":[{"op":"put","key":"\udc00b","value":"eA=="}]}`, "lone surrogate"),
		"txn surrogate then no pair":   bad("POST", "/v1/txn", `{"operations":[{"op":"put","key":"\ud83d\u0041","value":"eA=="}]}`, "lone surrogate"),
		"password not UTF-8":           bad("PUT", "/v1/auth/users/bob", "{\"password\":\"p\xff\"}", "password"),
		"txn surrogate pair":           {method: "POST", target: "/v1/txn", body: `{"operations":[{"op":"put","key":"\ud83d\ude00/\u00e9","value":"eA=="}]}`, status: 200, wantKey: "😀/é"},
		"txn escapes decoded as keys":  {method: "POST", target: "/v1/txn", body: `{"operations":[{"op":"put","key":"a\/\"\\\n","value":"eA=="}]}`, status: 200, wantKey: "a/\"\\\n"},
		"invalid UTF-8 in the path":    bad("PUT", "/v1/kv/a%FF", "v", "UTF-8"),
		"invalid UTF-8 in a get":       bad("GET", "/v1/kv/a%C3", "", "UTF-8"),
		"invalid UTF-8 in a user name": bad("GET", "/v1/auth/users/b%FFb", "", "UTF-8"),
		"invalid UTF-8 in a prefix":    bad("GET", "/v1/kv?prefix=a%FF", "", "UTF-8"),
		"invalid UTF-8 in start_after": bad("GET", "/v1/kv?start_after=%FF", "", "UTF-8"),
		"NUL in a prefix":              bad("GET", "/v1/kv?prefix=a%00", "", "NUL"),
		"invalid UTF-8 in a watch":     bad("GET", "/v1/watch?prefix=%FF", "", "UTF-8"),
		"NUL in the path":              bad("DELETE", "/v1/kv/a%00", "", "NUL"),

		// Paths the mux would redirect to another key or route.
		"dot-dot segment":            bad("PUT", "/v1/kv/a/../b", "v", `"/v1/kv/b"`),
		"empty segment":              bad("PUT", "/v1/kv/a//b", "v", `"/v1/kv/a/b"`),
		"dot segment":                bad("GET", "/v1/kv/./a", "", "segment"),
		"leading empty segment":      bad("DELETE", "/v1/kv//a", "", "segment"),
		"trailing dot-dot":           bad("GET", "/v1/kv/a/..", "", "segment"),
		"history dot-dot":            bad("GET", "/v1/history/a/../b", "", "segment"),
		"member dot-dot":             bad("DELETE", "/v1/cluster/members/x/../n2", "", "segment"),
		"promote empty segment":      bad("POST", "/v1/cluster/members//n2/promote", "", "segment"),
		"user dot-dot":               bad("PUT", "/v1/auth/users/x/../bob", `{"password":"p"}`, "segment"),
		"role empty segment":         bad("PUT", "/v1/auth/roles//r", "", "segment"),
		"route empty segment":        bad("POST", "/v1//txn", op, "segment"),
		"escaped dots are a key":     {method: "PUT", target: "/v1/kv/a/%2E%2E/b", body: "v", status: 200, wantKey: "a/../b"},
		"escaped slashes are a key":  {method: "PUT", target: "/v1/kv/a%2F%2Fb", body: "v", status: 200, wantKey: "a//b"},
		"escaped leading slash":      {method: "DELETE", target: "/v1/kv/%2Fregistry/x", status: 200, wantKey: "/registry/x"},
		"trailing slash is a prefix": {method: "DELETE", target: "/v1/kv/a/?prefix=true", status: 200, wantKey: "a/"},
		// The mux redirected these to the path with a trailing slash.
		"put without a key":     refused("PUT", "/v1/kv", "v", api.CodeMethod, 405, "GET, HEAD"),
		"history without a key": refused("GET", "/v1/history", "", api.CodeNotFound, 404, "no route"),

		// Query strings that net/url would drop or read in part.
		"repeated parameter":      bad("GET", "/v1/kv/a/1?revision=1&revision=2", "", "given 2 times"),
		"repeated prefix":         bad("GET", "/v1/kv?prefix=a&prefix=b", "", "given 2 times"),
		"semicolon separator":     bad("GET", "/v1/kv?prefix=a;limit=1", "", "malformed query"),
		"bad escape in the query": bad("DELETE", "/v1/kv/a?prefix=%zz", "", "malformed query"),
		// A flag without a value read as false, a number as 0.
		"prefix without a value":     bad("DELETE", "/v1/kv/a/?prefix", "", "prefix has no value"),
		"if_revision without value":  bad("PUT", "/v1/kv/a?if_revision", "v", "if_revision has no value"),
		"if_exists with empty value": bad("PUT", "/v1/kv/a?if_exists=", "v", "if_exists has no value"),
		"keys_only without a value":  bad("GET", "/v1/kv?keys_only", "", "keys_only has no value"),
		"chain revision empty":       bad("GET", "/v1/chain?revision=", "", "revision has no value"),
		"watch from_revision empty":  bad("GET", "/v1/watch?from_revision=", "", "from_revision has no value"),

		// Duplicate and case-variant keys: encoding/json keeps the last.
		"duplicate top-level key": bad("POST", "/v1/txn", `{"operations":[{"op":"delete","key":"a"}],"operations":[{"op":"delete","key":"b"}]}`, `"operations" given twice`),
		"duplicate key in an op":  bad("POST", "/v1/txn", `{"operations":[{"op":"put","key":"a","value":"eA==","key":"b"}]}`, `"key" given twice (in operations[0])`),
		"duplicate by escape":     bad("POST", "/v1/txn", `{"operations":[{"op":"put","key":"a","value":"eA==","\u006bey":"b"}]}`, "given twice"),
		"duplicate meta key":      bad("POST", "/v1/txn", `{"operations":[{"op":"delete","key":"a"}],"meta":{"m":"1","m":"2"}}`, `"m" given twice (in meta)`),
		"case-variant field":      bad("POST", "/v1/txn", `{"operations":[{"op":"put","Key":"a","value":"eA=="}]}`, "case-sensitive"),
		"case-variant top field":  bad("POST", "/v1/txn", `{"Operations":[{"op":"delete","key":"a"}]}`, "case-sensitive"),
		"Kelvin sign field":       bad("POST", "/v1/txn", `{"operations":[{"op":"put","\u212aey":"a","value":"eA=="}]}`, "case-sensitive"),
		"meta keys differing in case": {method: "POST", target: "/v1/txn", body: `{"operations":[{"op":"delete","key":"a"}],"meta":{"m":"1","M":"2"}}`,
			status: 200, wantKey: "a"},
		"data after the value":     bad("POST", "/v1/txn", op+`]`, "after top-level value"),
		"a second value":           bad("POST", "/v1/txn", op+` 1`, "after top-level value"),
		"duplicate compact key":    bad("POST", "/v1/compact", `{"revision":2,"revision":3}`, "given twice"),
		"duplicate join key":       bad("POST", "/v1/cluster/members", `{"id":"n4","id":"n5","raft_addr":"h:1"}`, "given twice"),
		"duplicate transfer key":   bad("POST", "/v1/cluster/leadership", `{"id":"n2","id":"n3"}`, "given twice"),
		"duplicate password key":   bad("PUT", "/v1/auth/users/bob", `{"password":"a","password":"b"}`, "given twice"),
		"duplicate permission key": bad("PUT", "/v1/auth/roles/r/permissions", `{"key":"a","access":"read","key":"b"}`, "given twice"),
		"duplicate key, nested":    bad("POST", "/v1/auth/authenticate", `{"user":"u","password":"p","user":"v"}`, "given twice"),
		"duplicate key, empty obj": bad("POST", "/v1/auth/enable", `{"a":1,"a":1}`, ""),

		// 405 names the methods that serve the path.
		"405 on a key":    refused("PATCH", "/v1/kv/a", "", api.CodeMethod, 405, "DELETE, GET, HEAD, PUT"),
		"405 on txn":      refused("GET", "/v1/txn", "", api.CodeMethod, 405, "allowed: POST"),
		"405 on members":  refused("PUT", "/v1/cluster/members", "", api.CodeMethod, 405, "GET, HEAD, POST"),
		"405 on a member": refused("GET", "/v1/cluster/members/n2", "", api.CodeMethod, 405, "allowed: DELETE"),
		// Found by FuzzHandler before the fixes: a redirect to "/", and a
		// 405 without Allow for an unknown method.
		"root dot segment":      bad("0", "/.", "x", "segment"),
		"unknown method on kv":  refused("0", "/v1/kv", "x", api.CodeMethod, 405, "GET, HEAD"),
		"OPTIONS on a key":      refused("OPTIONS", "/v1/kv/a", "", api.CodeMethod, 405, "DELETE, GET, HEAD, PUT"),
		"HEAD on a write route": refused("HEAD", "/v1/txn", "", api.CodeMethod, 405, "POST"),
	}
	allow := map[string]string{
		"405 on a key": "DELETE, GET, HEAD, PUT", "405 on txn": "POST", "405 on members": "GET, HEAD, POST",
		"405 on a member": "DELETE", "put without a key": "GET, HEAD", "unknown method on kv": "GET, HEAD",
		"OPTIONS on a key": "DELETE, GET, HEAD, PUT", "HEAD on a write route": "POST",
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			f := newFake()
			rec := call(f, tc.method, tc.target, tc.body, nil)
			if rec.Code != tc.status {
				t.Fatalf("%s %s: status %d, want %d: %s", tc.method, tc.target, rec.Code, tc.status, rec.Body)
			}
			if got := rec.Header().Get("Allow"); got != allow[name] {
				t.Fatalf("Allow %q, want %q", got, allow[name])
			}
			if tc.status != 200 {
				e := errorOf(t, rec)
				if e.Code != tc.code || !strings.Contains(e.Message, tc.inMsg) {
					t.Fatalf("error %+v, want code %s and a message naming %q", e, tc.code, tc.inMsg)
				}
				if len(f.writes)+len(f.reads)+len(f.compacted)+len(f.admin)+len(f.authChanges) > 0 {
					t.Fatalf("a refused request reached the service: writes %v, reads %v, admin %v", f.writes, f.reads, f.admin)
				}
				return
			}
			if len(f.writes) != 1 || f.writes[0].Ops[0].Key != tc.wantKey {
				t.Fatalf("writes %+v, want one on key %q", f.writes, tc.wantKey)
			}
		})
	}
}

type oddCase struct {
	method, target, body string
	status               int
	code, inMsg          string
	wantKey              string // status 200: the key written
}

// TestDecodeStrictKeeps checks that what decodeStrict accepts decodes as
// encoding/json would: the checks refuse, they never change a value.
func TestDecodeStrictKeeps(t *testing.T) {
	body := `{"preconditions":[{"type":"value","key":"\u00e9\ud83d\ude00","value":"eA=="}],` +
		`"operations":[{"op":"put","key":"a\tb","value":null},{"op":"delete_prefix","key":"c/"}],` +
		` "user" : "u\"" , "meta":{"k":"v","K":"w","":""},"description":""}` + "\n\t "
	var got, want api.TxnRequest
	if err := decodeStrict([]byte(body), &got); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(body), &want); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("decoded %+v, encoding/json %+v", got, want)
	}
	// An interface value is checked for UTF-8 and duplicates, nothing else.
	var anyv any
	for _, tc := range []struct {
		body string
		ok   bool
	}{
		{`{"A":1,"a":[{"x":{"y":"\u00e9"}}]}`, true},
		{`{"a":[{"x":{"y":1,"y":2}}]}`, false},
		{"[\"\xff\"]", false},
		{`[1,2.5e3,-0,true,false,null,"",{}]`, true},
	} {
		if err := decodeStrict([]byte(tc.body), &anyv); (err == nil) != tc.ok {
			t.Errorf("%s: err %v, want ok=%v", tc.body, err, tc.ok)
		}
	}
}

// TestMalformedChunkedBody sends bodies that break the chunked encoding or
// end early to a real server: 400 bad_request, never 500, and nothing at
// ERROR in the log.
func TestMalformedChunkedBody(t *testing.T) {
	for name, raw := range map[string]string{
		"bad chunk size": "POST /v1/txn HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n",
		"bad chunk end":  "PUT /v1/kv/a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcXX\r\n0\r\n\r\n",
		"chunk overflow": "PUT /v1/kv/a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffff\r\nab\r\n0\r\n\r\n",
		"cut short":      "PUT /v1/kv/a HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc",
		"cut short json": "POST /v1/compact HTTP/1.1\r\nHost: x\r\nContent-Length: 30\r\n\r\n{\"revision\"",
		"chunked cut":    "POST /v1/cluster/leadership HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{\"id\"",
	} {
		t.Run(name, func(t *testing.T) {
			f := newFake()
			var logs bytes.Buffer
			srv := httptest.NewServer(New(f, Options{Log: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))}))
			defer srv.Close()
			conn, err := net.Dial("tcp", srv.Listener.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			if _, err := io.WriteString(conn, raw); err != nil {
				t.Fatal(err)
			}
			// The body ends here: the server reads EOF where it waits for
			// more, and still answers on the open half of the connection.
			if err := conn.(*net.TCPConn).CloseWrite(); err != nil {
				t.Fatal(err)
			}
			resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != 400 || !strings.Contains(string(body), `"code":"bad_request"`) || !strings.Contains(string(body), "request body") {
				t.Fatalf("status %d: %s", resp.StatusCode, body)
			}
			if strings.Contains(logs.String(), "level=ERROR") {
				t.Fatalf("logged at ERROR:\n%s", logs.String())
			}
			if len(f.writes)+len(f.compacted)+len(f.admin) > 0 {
				t.Fatalf("a refused request reached the service: %v %v %v", f.writes, f.compacted, f.admin)
			}
		})
	}
}

// TestClientGoneNotAnError checks that a request that fails because its
// client went away (its context canceled) is logged at debug, not as the
// member's failure, while the same failure with the client still there
// is an internal error logged at ERROR.
func TestClientGoneNotAnError(t *testing.T) {
	for _, gone := range []bool{true, false} {
		f := newFake()
		f.readErr = context.Canceled // PrepareRead gave up: its context ended
		var logs bytes.Buffer
		h := New(f, Options{Log: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
		req := httptest.NewRequest("GET", "/v1/kv/a/1", nil)
		ctx, cancel := context.WithCancel(req.Context())
		if gone {
			cancel()
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req.WithContext(ctx))
		cancel()
		e := errorOf(t, rec)
		switch {
		case gone && (strings.Contains(logs.String(), "level=ERROR") || !strings.Contains(logs.String(), "level=DEBUG") || e.Code != api.CodeUnavailable):
			t.Errorf("client gone: %s %+v, logs:\n%s", rec.Result().Status, e, logs.String())
		case !gone && (!strings.Contains(logs.String(), "level=ERROR") || e.Code != api.CodeInternal):
			t.Errorf("client there: %s %+v, logs:\n%s", rec.Result().Status, e, logs.String())
		}
	}
}

// brokenWriter is a ResponseWriter whose connection broke: writes fail
// and, as net/http does, the request's context is canceled.
type brokenWriter struct {
	*httptest.ResponseRecorder
	cancel context.CancelFunc
}

func (b brokenWriter) Write([]byte) (int, error) {
	b.cancel()
	return 0, errors.New("write tcp 127.0.0.1:1->127.0.0.1:2: write: broken pipe")
}

// TestBackupClientGone checks that a backup whose client went away ends
// the stream (ErrAbortHandler) and logs it at debug, not at WARN or ERROR.
func TestBackupClientGone(t *testing.T) {
	var logs bytes.Buffer
	h := New(newFake(), Options{Log: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	req := httptest.NewRequest("GET", "/v1/backup", nil)
	ctx, cancel := context.WithCancel(req.Context())
	defer cancel()
	func() {
		defer func() {
			if p := recover(); p != http.ErrAbortHandler {
				t.Errorf("recovered %v, want http.ErrAbortHandler", p)
			}
		}()
		h.ServeHTTP(brokenWriter{httptest.NewRecorder(), cancel}, req.WithContext(ctx))
	}()
	if l := logs.String(); !strings.Contains(l, "level=DEBUG") || strings.Contains(l, "level=WARN") || strings.Contains(l, "level=ERROR") {
		t.Fatalf("logs:\n%s", l)
	}
}

// TestNoRedirects checks that no path answers a redirect: the mux's
// trailing-slash redirect of every subtree pattern is a JSON error.
func TestNoRedirects(t *testing.T) {
	h := New(newFake(), Options{Pprof: true})
	for _, rt := range h.(*handler).routes() {
		method, p, _ := strings.Cut(rt.pattern, " ")
		for _, target := range []string{strings.TrimSuffix(p[:strings.LastIndexByte(p, '/')+1], "/"), p[:strings.LastIndexByte(p, '/')+1]} {
			if target == "" {
				continue
			}
			req := httptest.NewRequest(method, target, nil)
			ctx, cancel := context.WithTimeout(req.Context(), 50*time.Millisecond) // a watch streams until then
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req.WithContext(ctx))
			cancel()
			if rec.Code/100 == 3 || rec.Header().Get("Location") != "" {
				t.Errorf("%s %s: %d to %q", method, target, rec.Code, rec.Header().Get("Location"))
			}
		}
	}
	for _, target := range []string{"/debug/pprof", "/v1/kv", "/v1/history"} {
		rec := serve(h, "GET", target, "", nil)
		if rec.Code/100 == 3 {
			t.Errorf("GET %s: %d to %q", target, rec.Code, rec.Header().Get("Location"))
		}
	}
	if rec := serve(h, "GET", "/debug/pprof/", "", nil); rec.Code != 200 {
		t.Errorf("GET /debug/pprof/: %d", rec.Code)
	}
}

// TestPathSegment checks that every member id, user or role name, key
// escaped by pathSegment comes back from PathValue as it was, through a
// canonical path.
func TestPathSegment(t *testing.T) {
	for _, s := range []string{".", "..", "a/../b", "a//b", "/x", "x/", "%2E", "é ü", "?#&=;", "a b"} {
		f := newFake()
		rec := call(f, "DELETE", "/v1/cluster/members/"+api.PathSegment(s), "", nil)
		if rec.Code != 200 || len(f.admin) != 1 || f.admin[0] != "remove "+s {
			t.Errorf("%q: %d %s, admin %q", s, rec.Code, rec.Body, f.admin)
		}
	}
}
