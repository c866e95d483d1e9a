package httpapi

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"

	"github.com/cairn-db/cairn/api"
	"github.com/cairn-db/cairn/fsm"
)

// testMemberHeader stands in for a verified member certificate in these
// tests: fakeMembers takes the caller for the member it names.
const testMemberHeader = "Test-Member"

// fakeMembers authenticates as a certificate check would: the member
// testMemberHeader names, or ErrPermissionDenied.
func fakeMembers(r *http.Request) (string, error) {
	if id := r.Header.Get(testMemberHeader); id != "" {
		return id, nil
	}
	return "", errors.New("tlsutil: not a member certificate: certificate \"alice\" names no member")
}

// callAuth serves one request through a handler over f that
// authenticates members with fakeMembers.
func callAuth(f *fakeService, method, target, body string, hdr map[string]string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, target, strings.NewReader(body))
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	New(f, Options{Members: fakeMembers}).ServeHTTP(rec, req)
	return rec
}

// batchBody is a forwarded batch of one write of key k.
func batchBody(t *testing.T, k string) string {
	t.Helper()
	b, err := fsm.EncodeCommand(fsm.Command{Batch: &fsm.Batch{Txns: []fsm.Txn{{Ops: []fsm.Op{put(k, "v")}}}}})
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// reached lists what reached the fake service: writes, compactions,
// admin calls, read indexes, asks to scrub.
func reached(f *fakeService) []string {
	var out []string
	for _, w := range f.writes {
		out = append(out, "write "+w.Ops[0].Key)
	}
	for range f.compacted {
		out = append(out, "compact")
	}
	out = append(out, f.admin...)
	for range f.readIndexes {
		out = append(out, "read-index")
	}
	for _, a := range f.scrubAsks {
		out = append(out, "scrub-ask "+a)
	}
	return out
}

// TestMembersOnly runs the members-only routes and the routes that honour
// api.HeaderForwarded with authentication on: a caller that is no member,
// a member naming another member in the header, and a good member. A
// refused request reaches nothing in the Service.
func TestMembersOnly(t *testing.T) {
	batch := batchBody(t, "fw")
	type hdr = map[string]string
	none := hdr{}
	nonMemberFwd := hdr{api.HeaderForwarded: "n2"}
	member := hdr{testMemberHeader: "n2"}
	memberFwd := hdr{testMemberHeader: "n2", api.HeaderForwarded: "n2"}
	memberOther := hdr{testMemberHeader: "n2", api.HeaderForwarded: "n3"}
	join := func(id string) string { return `{"id":"` + id + `","raft_addr":"h:1","http_url":"https://h:2"}` }

	cases := []struct {
		name, method, target, body string
		hdr                        hdr
		status                     int
		reached                    []string // what reached the service
		forwarded                  string   // Forwarded(ctx) the service saw
		msg                        string   // in the refusal's message
	}{
		// The members-only routes.
		{name: "forward writes, no member", method: "POST", target: ForwardWritesPath, body: batch, hdr: none, status: 403,
			msg: "members only: this route needs a member certificate"},
		{name: "forward writes, header from no member", method: "POST", target: ForwardWritesPath, body: batch, hdr: nonMemberFwd, status: 403,
			msg: "members only: this route needs a member certificate (tlsutil: not a member certificate"},
		{name: "forward writes, header names another member", method: "POST", target: ForwardWritesPath, body: batch, hdr: memberOther, status: 403,
			msg: `names member "n3" but the certificate is member "n2"'s`},
		{name: "forward writes, member", method: "POST", target: ForwardWritesPath, body: batch, hdr: memberFwd, status: 200,
			reached: []string{"write fw"}, forwarded: "n2"},
		{name: "forward writes, member without the header", method: "POST", target: ForwardWritesPath, body: batch, hdr: member, status: 200,
			reached: []string{"write fw"}, forwarded: "n2"},
		{name: "forward writes, garbage from no member", method: "POST", target: ForwardWritesPath, body: "\xff", hdr: nonMemberFwd, status: 403},
		{name: "read index, no member", method: "POST", target: ReadIndexPath, hdr: none, status: 403,
			msg: "members only: this route needs a member certificate"},
		{name: "read index, header from no member", method: "POST", target: ReadIndexPath, hdr: nonMemberFwd, status: 403},
		{name: "read index, header names another member", method: "POST", target: ReadIndexPath, hdr: memberOther, status: 403},
		{name: "read index, member", method: "POST", target: ReadIndexPath, hdr: memberFwd, status: 200,
			reached: []string{"read-index"}, forwarded: "n2"},
		{name: "scrub ask, no member", method: "POST", target: ScrubAskPath + "?revision=7", hdr: none, status: 403,
			msg: "members only: this route needs a member certificate"},
		{name: "scrub ask, header from no member", method: "POST", target: ScrubAskPath + "?revision=7", hdr: nonMemberFwd, status: 403},
		{name: "scrub ask, header names another member", method: "POST", target: ScrubAskPath + "?revision=7", hdr: memberOther, status: 403},
		{name: "scrub ask, member", method: "POST", target: ScrubAskPath + "?revision=7", hdr: memberFwd, status: 200,
			reached: []string{"scrub-ask n2 at 7"}},
		{name: "scrub ask, member without the header", method: "POST", target: ScrubAskPath + "?revision=7", hdr: member, status: 200,
			reached: []string{"scrub-ask n2 at 7"}},

		// Routes a member forwards to the leader: a client is served as
		// one; the forwarded mark needs the member it names.
		{name: "put, client", method: "PUT", target: "/v1/kv/a", body: "v", hdr: none, status: 200, reached: []string{"write a"}},
		{name: "put, header from no member", method: "PUT", target: "/v1/kv/a", body: "v", hdr: nonMemberFwd, status: 403,
			msg: "members only: a request marked Cairn-Forwarded needs a member certificate"},
		{name: "put, header names another member", method: "PUT", target: "/v1/kv/a", body: "v", hdr: memberOther, status: 403},
		{name: "put, member", method: "PUT", target: "/v1/kv/a", body: "v", hdr: memberFwd, status: 200, reached: []string{"write a"}, forwarded: "n2"},
		{name: "txn, header from no member", method: "POST", target: "/v1/txn", body: `{"operations":[{"op":"delete","key":"a"}]}`, hdr: nonMemberFwd, status: 403},
		{name: "compact, client", method: "POST", target: "/v1/compact", body: `{"revision":2}`, hdr: none, status: 200, reached: []string{"compact"}},
		{name: "compact, header from no member", method: "POST", target: "/v1/compact", body: `{"revision":2}`, hdr: nonMemberFwd, status: 403},
		{name: "compact, header names another member", method: "POST", target: "/v1/compact", body: `{"revision":2}`, hdr: memberOther, status: 403},
		{name: "compact, member", method: "POST", target: "/v1/compact", body: `{"revision":2}`, hdr: memberFwd, status: 200,
			reached: []string{"compact"}, forwarded: "n2"},
		{name: "remove, client", method: "DELETE", target: "/v1/cluster/members/n3", hdr: none, status: 200, reached: []string{"remove n3"}},
		{name: "remove, header from no member", method: "DELETE", target: "/v1/cluster/members/n3", hdr: nonMemberFwd, status: 403},
		{name: "remove, header names another member", method: "DELETE", target: "/v1/cluster/members/n3", hdr: memberOther, status: 403},
		{name: "remove, member", method: "DELETE", target: "/v1/cluster/members/n3", hdr: memberFwd, status: 200,
			reached: []string{"remove n3"}, forwarded: "n2"},
		{name: "promote, header from no member", method: "POST", target: "/v1/cluster/members/n3/promote", hdr: nonMemberFwd, status: 403},
		{name: "promote, header names another member", method: "POST", target: "/v1/cluster/members/n3/promote", hdr: memberOther, status: 403},
		{name: "promote, member", method: "POST", target: "/v1/cluster/members/n3/promote", hdr: memberFwd, status: 200,
			reached: []string{"promote n3"}, forwarded: "n2"},
		{name: "transfer, header from no member", method: "POST", target: "/v1/cluster/leadership", hdr: nonMemberFwd, status: 403},
		{name: "transfer, header names another member", method: "POST", target: "/v1/cluster/leadership", hdr: memberOther, status: 403},
		{name: "transfer, member", method: "POST", target: "/v1/cluster/leadership", body: `{"id":"n3"}`, hdr: memberFwd, status: 200,
			reached: []string{"transfer n3"}, forwarded: "n2"},

		// Joins.
		{name: "join, no member", method: "POST", target: "/v1/cluster/members", body: join("n4"), hdr: none, status: 403,
			msg: "members only: joining needs a member certificate"},
		{name: "join, no member, malformed", method: "POST", target: "/v1/cluster/members", body: `{"id":4}`, hdr: none, status: 403},
		{name: "join, header from no member", method: "POST", target: "/v1/cluster/members", body: join("n4"), hdr: nonMemberFwd, status: 403},
		{name: "join, its own member", method: "POST", target: "/v1/cluster/members", body: join("n4"), hdr: hdr{testMemberHeader: "n4"}, status: 200,
			reached: []string{"join n4 h:1 https://h:2 false"}},
		{name: "join, another member", method: "POST", target: "/v1/cluster/members", body: join("n4"), hdr: member, status: 403,
			msg: `a member certificate can join only its own member: the certificate is member "n2"'s, the request joins "n4"`},
		{name: "join, forwarded by a member", method: "POST", target: "/v1/cluster/members", body: join("n4"), hdr: memberFwd, status: 200,
			reached: []string{"join n4 h:1 https://h:2 false"}, forwarded: "n2"},
		{name: "join, forwarded naming another member", method: "POST", target: "/v1/cluster/members", body: join("n4"), hdr: memberOther, status: 403},

		// Routes no member mark changes are served to anyone.
		{name: "members, client", method: "GET", target: "/v1/cluster/members", hdr: none, status: 200},
		{name: "status, client", method: "GET", target: "/v1/status", hdr: none, status: 200},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFake()
			rec := callAuth(f, tc.method, tc.target, tc.body, tc.hdr)
			if rec.Code != tc.status {
				t.Fatalf("status %d, want %d: %s", rec.Code, tc.status, rec.Body)
			}
			if tc.status == http.StatusForbidden {
				e := errorOf(t, rec)
				if e.Code != api.CodePermissionDenied || !strings.HasPrefix(e.Message, "node: permission denied: ") {
					t.Fatalf("refusal %+v", e)
				}
				if !strings.Contains(e.Message, tc.msg) {
					t.Fatalf("message %q, want it to contain %q", e.Message, tc.msg)
				}
			}
			if got := reached(f); !reflect.DeepEqual(got, tc.reached) {
				t.Fatalf("reached the service: %q, want %q", got, tc.reached)
			}
			for _, from := range append(f.forwarded, f.readIndexes...) {
				if from != tc.forwarded {
					t.Fatalf("the service saw the request as forwarded by %q, want %q", from, tc.forwarded)
				}
			}
		})
	}
}

// TestMembersOnlyAuthenticatorNamesNoMember: an authenticator that
// returns no id and no error lets nobody in.
func TestMembersOnlyAuthenticatorNamesNoMember(t *testing.T) {
	f := newFake()
	req := httptest.NewRequest("POST", ReadIndexPath, nil)
	req.Header.Set(api.HeaderForwarded, "n2")
	rec := httptest.NewRecorder()
	New(f, Options{Members: func(*http.Request) (string, error) { return "", nil }}).ServeHTTP(rec, req)
	if rec.Code != http.StatusForbidden || len(f.readIndexes) != 0 {
		t.Fatalf("status %d %s, read indexes %q", rec.Code, rec.Body, f.readIndexes)
	}
}

// TestNoAuthentication: without an authenticator (no TLS) the header
// names the member, as before TLS: required on the members-only routes.
func TestNoAuthentication(t *testing.T) {
	f := newFake()
	if rec := call(f, "POST", ForwardWritesPath, batchBody(t, "fw"), nil); rec.Code != 400 {
		t.Fatalf("forwarded writes without the header: %d %s", rec.Code, rec.Body)
	}
	if rec := call(f, "POST", ForwardWritesPath, batchBody(t, "fw"), map[string]string{api.HeaderForwarded: "n2"}); rec.Code != 200 {
		t.Fatalf("forwarded writes: %d %s", rec.Code, rec.Body)
	}
	if rec := call(f, "POST", "/v1/cluster/members", `{"id":"n4","raft_addr":"h:1","http_url":"http://h:2"}`, nil); rec.Code != 200 {
		t.Fatalf("join: %d %s", rec.Code, rec.Body)
	}
	if rec := call(f, "POST", ReadIndexPath, "", map[string]string{api.HeaderForwarded: "n3"}); rec.Code != 200 {
		t.Fatalf("read index: %d %s", rec.Code, rec.Body)
	}
	want := []string{"write fw", "join n4 h:1 http://h:2 false", "read-index"}
	if got := reached(f); !reflect.DeepEqual(got, want) {
		t.Fatalf("reached %q, want %q", got, want)
	}
	if want := []string{"n2", ""}; !reflect.DeepEqual(f.forwarded, want) {
		t.Fatalf("forwarded %q, want %q", f.forwarded, want)
	}
	if want := []string{"n3"}; !reflect.DeepEqual(f.readIndexes, want) {
		t.Fatalf("read indexes forwarded by %q, want %q", f.readIndexes, want)
	}
}
