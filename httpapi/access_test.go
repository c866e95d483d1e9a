package httpapi

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/cairn-db/cairn/api"
	"github.com/cairn-db/cairn/auth"
	"github.com/cairn-db/cairn/feed"
	"github.com/cairn-db/cairn/fsm"
	"github.com/cairn-db/cairn/internal/tlsutil"
	"github.com/cairn-db/cairn/internal/tlsutil/tlstest"
)

// recording is a fakeService that notes every call a request makes on
// it beyond the ones every request makes (ID, LeaderInfo, Limits,
// AuthState): a refused request must note none.
type recording struct {
	*fakeService
	mu    sync.Mutex
	calls []string
}

func (r *recording) note(s string) {
	r.mu.Lock()
	r.calls = append(r.calls, s)
	r.mu.Unlock()
}

func (r *recording) noted() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.calls...)
}

func (r *recording) Write(ctx context.Context, t fsm.Txn) (fsm.TxnResult, error) {
	r.note("Write")
	return r.fakeService.Write(ctx, t)
}
func (r *recording) Compact(ctx context.Context, rev uint64) (api.WriteResponse, error) {
	r.note("Compact")
	return r.fakeService.Compact(ctx, rev)
}
func (r *recording) Defrag(ctx context.Context) (api.DefragResponse, error) {
	r.note("Defrag")
	return r.fakeService.Defrag(ctx)
}
func (r *recording) SetSpaceLimits(ctx context.Context, quota, reserve *int64) (api.SpaceLimits, error) {
	r.note("SetSpaceLimits")
	return r.fakeService.SetSpaceLimits(ctx, quota, reserve)
}
func (r *recording) PrepareRead(ctx context.Context, o ReadOptions) error {
	r.note("PrepareRead")
	return r.fakeService.PrepareRead(ctx, o)
}
func (r *recording) ReadIndex(ctx context.Context) (uint64, error) {
	r.note("ReadIndex")
	return r.fakeService.ReadIndex(ctx)
}
func (r *recording) Store() Store { r.note("Store"); return r.fakeService.Store() }
func (r *recording) Alarms(ctx context.Context) (api.AlarmsResponse, error) {
	r.note("Alarms")
	return r.fakeService.Alarms(ctx)
}
func (r *recording) Scrub(ctx context.Context) (api.ScrubResponse, error) {
	r.note("Scrub")
	return r.fakeService.Scrub(ctx)
}
func (r *recording) AskScrub(from string, rev uint64) (bool, error) {
	r.note("AskScrub")
	return r.fakeService.AskScrub(from, rev)
}
func (r *recording) Status() (api.StatusResponse, error) {
	r.note("Status")
	return r.fakeService.Status()
}
func (r *recording) Stats() api.StatsResponse {
	r.note("Stats")
	return r.fakeService.Stats()
}
func (r *recording) Members(ctx context.Context) (api.MembersResponse, error) {
	r.note("Members")
	return r.fakeService.Members(ctx)
}
func (r *recording) ClusterStatus(ctx context.Context) (api.ClusterStatusResponse, error) {
	r.note("ClusterStatus")
	return r.fakeService.ClusterStatus(ctx)
}
func (r *recording) Join(ctx context.Context, req api.JoinRequest) (api.MembersResponse, error) {
	r.note("Join")
	return r.fakeService.Join(ctx, req)
}
func (r *recording) Remove(ctx context.Context, id string) (api.MembersResponse, error) {
	r.note("Remove")
	return r.fakeService.Remove(ctx, id)
}
func (r *recording) Promote(ctx context.Context, id string) (api.MembersResponse, error) {
	r.note("Promote")
	return r.fakeService.Promote(ctx, id)
}
func (r *recording) TransferLeadership(ctx context.Context, id string) (api.MembersResponse, error) {
	r.note("TransferLeadership")
	return r.fakeService.TransferLeadership(ctx, id)
}
func (r *recording) WaitReady(ctx context.Context, d time.Duration) error {
	r.note("WaitReady")
	return r.fakeService.WaitReady(ctx, d)
}
func (r *recording) Subscribe(from uint64) (*feed.Subscription, error) {
	r.note("Subscribe")
	return r.fakeService.Subscribe(from)
}
func (r *recording) MirrorStream(ctx context.Context, from uint64, id string, sink MirrorSink) error {
	r.note("MirrorStream")
	return r.fakeService.MirrorStream(ctx, from, id, sink)
}
func (r *recording) MirrorCheckpoint(ctx context.Context, req api.MirrorCheckpointRequest) (api.MirrorCheckpoint, error) {
	r.note("MirrorCheckpoint")
	return r.fakeService.MirrorCheckpoint(ctx, req)
}
func (r *recording) MirrorStatus(ctx context.Context, o MirrorStatusOptions) (api.MirrorStatus, error) {
	r.note("MirrorStatus")
	return r.fakeService.MirrorStatus(ctx, o)
}
func (r *recording) MirrorStart(ctx context.Context, req api.MirrorStartRequest) (api.MirrorStatus, error) {
	r.note("MirrorStart")
	return r.fakeService.MirrorStart(ctx, req)
}
func (r *recording) MirrorStop(ctx context.Context) (api.MirrorStatus, error) {
	r.note("MirrorStop")
	return r.fakeService.MirrorStop(ctx)
}
func (r *recording) MirrorPromote(ctx context.Context) (api.MirrorStatus, error) {
	r.note("MirrorPromote")
	return r.fakeService.MirrorPromote(ctx)
}
func (r *recording) ChangeAuth(ctx context.Context, c auth.Change) (uint64, error) {
	r.note("ChangeAuth")
	return r.fakeService.ChangeAuth(ctx, c)
}

// Passwords of the test users.
const (
	rootPassword  = "root-secret-pw"
	alicePassword = "alice-secret-pw"
)

// authFixture is an enabled auth state with users:
//   - root: role root;
//   - ops: role ops (admin, no key access);
//   - alice: role rw-a (readwrite on prefix "a/");
//   - bob: role r-b (read on prefix "b/") and r-c1 (read on key "c/1");
//   - ghost: deleted after its token was issued;
//   - certonly: no password;
//   - mirror: role r-all (read on the whole keyspace: a mirror's user).
//
// and tokens for each (ghost's dead), an expired one for alice.
type authFixture struct {
	state  *auth.State
	tokens map[string]string
}

var (
	fixtureOnce sync.Once
	fixture     authFixture
)

func mustApply(t testing.TB, st *auth.State, cs ...auth.Change) *auth.State {
	t.Helper()
	for _, c := range cs {
		n, err := st.Apply(c)
		if err != nil {
			t.Fatalf("apply %v: %v", c, err)
		}
		st = n
	}
	return st
}

// hash hashes a password at bcrypt's lowest cost, to keep the tests
// quick (under -race bcrypt's usual cost takes seconds).
func hash(t testing.TB, pw string) []byte {
	t.Helper()
	h, err := bcrypt.GenerateFromPassword([]byte(pw), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func newAuthFixture(t testing.TB) authFixture {
	fixtureOnce.Do(func() {
		pw := hash(t, rootPassword)
		apw := hash(t, alicePassword)
		key := make([]byte, auth.TokenKeySize)
		for i := range key {
			key[i] = byte(i)
		}
		st := mustApply(t, auth.New(),
			auth.Change{Kind: auth.AddUser, User: "root", PasswordHash: pw},
			auth.Change{Kind: auth.GrantRole, User: "root", Role: auth.RootRole},
			auth.Change{Kind: auth.AddRole, Role: "ops", Admin: true},
			auth.Change{Kind: auth.AddUser, User: "ops", PasswordHash: pw},
			auth.Change{Kind: auth.GrantRole, User: "ops", Role: "ops"},
			auth.Change{Kind: auth.AddRole, Role: "rw-a"},
			auth.Change{Kind: auth.GrantPermission, Role: "rw-a", Permission: auth.Permission{Key: "a/", Prefix: true, Access: auth.ReadWrite}},
			auth.Change{Kind: auth.AddUser, User: "alice", PasswordHash: apw},
			auth.Change{Kind: auth.GrantRole, User: "alice", Role: "rw-a"},
			auth.Change{Kind: auth.AddRole, Role: "r-b"},
			auth.Change{Kind: auth.GrantPermission, Role: "r-b", Permission: auth.Permission{Key: "b/", Prefix: true, Access: auth.Read}},
			auth.Change{Kind: auth.AddRole, Role: "r-c1"},
			auth.Change{Kind: auth.GrantPermission, Role: "r-c1", Permission: auth.Permission{Key: "c/1", Access: auth.Read}},
			auth.Change{Kind: auth.AddUser, User: "bob", PasswordHash: pw},
			auth.Change{Kind: auth.GrantRole, User: "bob", Role: "r-b"},
			auth.Change{Kind: auth.GrantRole, User: "bob", Role: "r-c1"},
			auth.Change{Kind: auth.AddUser, User: "ghost", PasswordHash: pw},
			auth.Change{Kind: auth.GrantRole, User: "ghost", Role: auth.RootRole},
			auth.Change{Kind: auth.AddUser, User: "certonly"},
			auth.Change{Kind: auth.AddRole, Role: "r-all"},
			auth.Change{Kind: auth.GrantPermission, Role: "r-all", Permission: auth.Permission{Key: "", Prefix: true, Access: auth.Read}},
			auth.Change{Kind: auth.AddUser, User: "mirror", PasswordHash: pw},
			auth.Change{Kind: auth.GrantRole, User: "mirror", Role: "r-all"},
			auth.Change{Kind: auth.Enable, TokenKey: key},
		)
		now := time.Now()
		tokens := map[string]string{}
		for _, u := range []string{"root", "ops", "alice", "bob", "ghost", "mirror"} {
			tok, _, err := st.IssueToken(u, now, time.Hour)
			if err != nil {
				t.Fatal(err)
			}
			tokens[u] = tok
		}
		tok, _, err := st.IssueToken("alice", now.Add(-time.Hour), time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		tokens["expired"] = tok
		st = mustApply(t, st, auth.Change{Kind: auth.DeleteUser, User: "ghost"})
		fixture = authFixture{state: st, tokens: tokens}
	})
	return fixture
}

// newAuthFake is a recording fake with the fixture's state.
func newAuthFake(t testing.TB) (*recording, authFixture) {
	fx := newAuthFixture(t)
	f := newFake()
	f.auth.Store(fx.state)
	return &recording{fakeService: f}, fx
}

func bearer(tok string) map[string]string { return map[string]string{"Authorization": "Bearer " + tok} }

// serve sends one request through h; a watch is cut after a moment.
func serve(h http.Handler, method, target, body string, hdr map[string]string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, target, strings.NewReader(body))
	if strings.HasPrefix(target, "/v1/watch") {
		ctx, cancel := context.WithTimeout(req.Context(), 100*time.Millisecond)
		defer cancel()
		req = req.WithContext(ctx)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

// TestAccessEveryRoute runs every route with access control on, as each
// kind of caller: no credentials, a bad password, an expired token, a
// deleted user's token, a user without the permission the route needs, a
// user with it, and root. It checks the status and code, that a refusal
// reaches nothing in the Service, and that a served write names its user.
func TestAccessEveryRoute(t *testing.T) {
	type kind int
	const (
		open    kind = iota // anyone
		members             // a member certificate, whoever the user
		join                // a member certificate; bad credentials are 401
		guarded             // a user with the permission
	)
	authChange, err := auth.EncodeChange(auth.Change{Kind: auth.AddRole, Role: "fwd"})
	if err != nil {
		t.Fatal(err)
	}
	routes := []struct {
		method, target, body string
		kind                 kind
		allowed              string // the user with the permission (guarded)
		status               int    // the status when allowed
	}{
		{"PUT", "/v1/kv/a/x", "v", guarded, "alice", 200},
		{"GET", "/v1/kv/a/1", "", guarded, "alice", 200},
		{"DELETE", "/v1/kv/a/1", "", guarded, "alice", 200},
		{"DELETE", "/v1/kv/a/?prefix=true", "", guarded, "alice", 200},
		{"GET", "/v1/kv?prefix=a/", "", guarded, "alice", 200},
		{"POST", "/v1/txn", `{"preconditions":[{"key":"a/1","type":"exists"}],"operations":[{"op":"put","key":"a/2","value":"eA=="},{"op":"delete_prefix","key":"a/t/"}]}`, guarded, "alice", 200},
		{"GET", "/v1/history/a/1", "", guarded, "alice", 200},
		{"GET", "/v1/watch?prefix=a/", "", guarded, "alice", 200},
		{"GET", "/v1/log", "", guarded, "ops", 200},
		{"GET", "/v1/chain", "", guarded, "mirror", 200},
		{"GET", "/v1/chain?revision=2&state=true", "", guarded, "mirror", 200},
		{"GET", "/v1/alarms", "", guarded, "ops", 200},
		{"POST", "/v1/maintenance/scrub", "", guarded, "ops", 200},
		{"POST", "/v1/compact", `{"revision":2}`, guarded, "ops", 200},
		{"GET", "/v1/backup", "", guarded, "ops", 200},
		{"POST", "/v1/verify", "", guarded, "ops", 200},
		{"POST", "/v1/maintenance/defrag", "", guarded, "ops", 200},
		{"PUT", "/v1/maintenance/space", `{"quota_backend_bytes":1073741824}`, guarded, "ops", 200},
		{"GET", "/v1/cluster/members", "", guarded, "ops", 200},
		{"GET", "/v1/cluster/status", "", guarded, "ops", 200},
		{"DELETE", "/v1/cluster/members/n3", "", guarded, "ops", 200},
		{"POST", "/v1/cluster/members/n3/promote", "", guarded, "ops", 200},
		{"POST", "/v1/cluster/leadership", `{}`, guarded, "ops", 200},
		{"POST", "/v1/auth/enable", "", guarded, "ops", 200},
		{"POST", "/v1/auth/disable", "", guarded, "ops", 200},
		{"GET", "/v1/auth/users", "", guarded, "ops", 200},
		{"GET", "/v1/auth/users/alice", "", guarded, "ops", 200},
		{"PUT", "/v1/auth/users/carol", `{"password":"carol-pw"}`, guarded, "ops", 200},
		{"DELETE", "/v1/auth/users/bob", "", guarded, "ops", 200},
		{"PUT", "/v1/auth/users/bob/password", `{"password":"new-pw"}`, guarded, "ops", 200},
		{"PUT", "/v1/auth/users/bob/roles/rw-a", "", guarded, "ops", 200},
		{"DELETE", "/v1/auth/users/alice/roles/rw-a", "", guarded, "ops", 200},
		{"GET", "/v1/auth/roles", "", guarded, "ops", 200},
		{"GET", "/v1/auth/roles/rw-a", "", guarded, "ops", 200},
		{"PUT", "/v1/auth/roles/new", "", guarded, "ops", 200},
		{"DELETE", "/v1/auth/roles/r-b", "", guarded, "ops", 200},
		{"PUT", "/v1/auth/roles/r-b/permissions", `{"key":"c/","prefix":true,"access":"read"}`, guarded, "ops", 200},
		{"DELETE", "/v1/auth/roles/r-b/permissions?key=b/&prefix=true", "", guarded, "ops", 200},
		{"GET", "/v1/mirror/stream?from=1&id=c2", "", guarded, "mirror", 200},
		{"POST", "/v1/mirror/checkpoint", `{"id":"c2","revision":1}`, guarded, "mirror", 200},
		{"GET", "/v1/mirror/status", "", guarded, "ops", 200},
		{"POST", "/v1/mirror/start", `{"sources":["http://s:1"]}`, guarded, "ops", 200},
		{"POST", "/v1/mirror/stop", "", guarded, "ops", 200},
		{"POST", "/v1/mirror/promote", "", guarded, "ops", 200},
		{"GET", "/healthz", "", open, "", 200},
		{"GET", "/version", "", open, "", 200},
		{"GET", "/readyz", "", open, "", 200},
		{"GET", "/metrics", "", open, "", 200},
		{"GET", "/v1/status", "", open, "", 200},
		{"GET", "/v1/stats", "", open, "", 200},
		{"GET", "/ui/", "", open, "", 200},
		{"GET", "/ui", "", open, "", 200},
		{"GET", "/ui/app.js", "", open, "", 200},
		{"GET", "/v1/auth/status", "", open, "", 200},
		{"POST", "/v1/auth/authenticate", `{"user":"root","password":"` + rootPassword + `"}`, open, "", 200},
		{"POST", ForwardWritesPath, batchBody(t, "a/f"), members, "", 403},
		{"POST", ReadIndexPath, "", members, "", 403},
		{"POST", ForwardAuthPath, string(authChange), members, "", 403},
		{"GET", StateHashPath + "?revision=2", "", members, "", 403},
		{"POST", ScrubAskPath + "?revision=2", "", members, "", 403},
		{"POST", "/v1/cluster/members", `{"id":"n4","raft_addr":"h:1","http_url":"https://h:2"}`, join, "", 403},
	}
	fx := newAuthFixture(t)
	callers := []struct {
		name string
		hdr  func(allowed string) map[string]string
		// bad: credentials that are not valid (401 on any route that
		// looks at them); user: the authenticated user, if any.
		bad  bool
		user func(allowed string) string
	}{
		{name: "no credentials", hdr: func(string) map[string]string { return nil }, user: func(string) string { return "" }},
		// A bad password gets no token (TestAuthenticate); a client that
		// sends it anyway is unauthenticated.
		{name: "bad password", bad: true, hdr: func(string) map[string]string {
			return map[string]string{"Authorization": "Basic " + base64.StdEncoding.EncodeToString([]byte("alice:wrong"))}
		}},
		{name: "expired token", bad: true, hdr: func(string) map[string]string { return bearer(fx.tokens["expired"]) }},
		{name: "deleted user", bad: true, hdr: func(string) map[string]string { return bearer(fx.tokens["ghost"]) }},
		{name: "user without the permission", hdr: func(allowed string) map[string]string {
			if allowed == "ops" {
				return bearer(fx.tokens["alice"])
			}
			return bearer(fx.tokens["bob"])
		}, user: func(allowed string) string {
			if allowed == "ops" {
				return "alice"
			}
			return "bob"
		}},
		{name: "user with it", hdr: func(allowed string) map[string]string {
			if allowed == "" {
				return bearer(fx.tokens["bob"])
			}
			return bearer(fx.tokens[allowed])
		}, user: func(allowed string) string {
			if allowed == "" {
				return "bob"
			}
			return allowed
		}},
		{name: "admin", hdr: func(string) map[string]string { return bearer(fx.tokens["root"]) }, user: func(string) string { return "root" }},
	}
	for _, rt := range routes {
		for _, cl := range callers {
			t.Run(rt.method+" "+rt.target+" "+cl.name, func(t *testing.T) {
				f, _ := newAuthFake(t)
				var failures []string
				h := New(f, Options{Members: fakeMembers, AuthFailure: func(r string) { failures = append(failures, r) }})
				rec := serve(h, rt.method, rt.target, rt.body, cl.hdr(rt.allowed))
				wantStatus, wantCode := rt.status, ""
				switch {
				case rt.kind == open:
				case rt.kind == members:
					wantCode = api.CodePermissionDenied
				case cl.bad:
					wantStatus, wantCode = 401, api.CodeUnauthenticated
				case rt.kind == join:
					wantCode = api.CodePermissionDenied
				case cl.user(rt.allowed) == "":
					wantStatus, wantCode = 401, api.CodeUnauthenticated
				case cl.name == "user without the permission":
					wantStatus, wantCode = 403, api.CodePermissionDenied
				}
				if rec.Code != wantStatus {
					t.Fatalf("status %d, want %d: %q", rec.Code, wantStatus, rec.Body)
				}
				if wantCode != "" {
					if e := errorOf(t, rec); e.Code != wantCode {
						t.Fatalf("code %q, want %q: %s", e.Code, wantCode, e.Message)
					}
					if calls := f.noted(); len(calls) != 0 {
						t.Fatalf("a refused request reached the service: %v", calls)
					}
					if (wantCode == api.CodeUnauthenticated) != (rec.Header().Get("WWW-Authenticate") != "") {
						t.Fatalf("WWW-Authenticate %q on %s", rec.Header().Get("WWW-Authenticate"), wantCode)
					}
					if rt.kind == guarded && len(failures) != 1 && cl.user(rt.allowed) != "" {
						t.Fatalf("failures counted: %v", failures)
					}
					return
				}
				authRead := rt.method == "GET" && strings.HasPrefix(rt.target, "/v1/auth/") // served from AuthState
				if rt.kind == guarded && !authRead && len(f.noted()) == 0 {
					t.Fatal("an allowed request reached nothing")
				}
				f.mu.Lock()
				defer f.mu.Unlock()
				for _, w := range f.writes {
					if w.AuthUser != cl.user(rt.allowed) || w.AuthRevision != fx.state.Revision {
						t.Fatalf("write stamped %q at %d, want %q at %d", w.AuthUser, w.AuthRevision, cl.user(rt.allowed), fx.state.Revision)
					}
				}
			})
		}
	}
}

// TestAuthDisabled: with a disabled auth state, nothing needs
// credentials, bad ones are not looked at, and writes are stamped with
// no user at the state's revision.
func TestAuthDisabled(t *testing.T) {
	f := newFake()
	f.auth.Store(mustApply(t, auth.New(), auth.Change{Kind: auth.AddRole, Role: "x"}))
	h := New(f, Options{})
	for _, rt := range []struct{ method, target, body string }{
		{"PUT", "/v1/kv/a", "v"}, {"GET", "/v1/kv/a/1", ""}, {"GET", "/v1/log", ""}, {"POST", "/v1/compact", `{"revision":2}`},
		{"GET", "/v1/auth/users", ""}, {"GET", "/v1/watch", ""},
	} {
		for _, hdr := range []map[string]string{nil, bearer("garbage")} {
			if rec := serve(h, rt.method, rt.target, rt.body, hdr); rec.Code != 200 {
				t.Fatalf("%s %s %v: %d %q", rt.method, rt.target, hdr, rec.Code, rec.Body)
			}
		}
	}
	for _, w := range f.writes {
		if w.AuthUser != "" || w.AuthRevision != 1 {
			t.Fatalf("write stamped %q at %d", w.AuthUser, w.AuthRevision)
		}
	}
	rec := serve(h, "POST", "/v1/auth/authenticate", `{"user":"root","password":"x"}`, nil)
	if rec.Code != 400 || !strings.Contains(errorOf(t, rec).Message, "not enabled") {
		t.Fatalf("authenticate while disabled: %d %q", rec.Code, rec.Body)
	}
}

// TestAuthenticate: a good password gets a token that works and expires
// at the TTL; bad ones are 401 with the reason counted and logged without
// the password.
func TestAuthenticate(t *testing.T) {
	f, fx := newAuthFake(t)
	var logs strings.Builder
	var mu sync.Mutex
	var failures []string
	h := New(f, Options{TokenTTL: time.Minute, Log: newTestLogger(&logs, &mu),
		AuthFailure: func(r string) { mu.Lock(); failures = append(failures, r); mu.Unlock() }})
	before := time.Now().Truncate(time.Second)
	rec := serve(h, "POST", "/v1/auth/authenticate", `{"user":"alice","password":"`+alicePassword+`"}`, nil)
	after := time.Now()
	var ar api.AuthenticateResponse
	if rec.Code != 200 || json.Unmarshal(rec.Body.Bytes(), &ar) != nil || ar.Token == "" {
		t.Fatalf("authenticate: %d %q", rec.Code, rec.Body)
	}
	if ar.ExpiresAt.Before(before.Add(time.Minute)) || ar.ExpiresAt.After(after.Add(time.Minute)) {
		t.Fatalf("expires at %v, want the 1m TTL after %v", ar.ExpiresAt, before)
	}
	if rec := serve(h, "GET", "/v1/kv/a/1", "", bearer(ar.Token)); rec.Code != 200 {
		t.Fatalf("read with the token: %d %q", rec.Code, rec.Body)
	}
	if u, err := fx.state.VerifyToken(ar.Token, time.Now()); err != nil || u != "alice" {
		t.Fatalf("token: %q %v", u, err)
	}
	for _, c := range []struct{ body, reason string }{
		{`{"user":"alice","password":"wrong-password-1"}`, ReasonBadPassword},
		{`{"user":"nobody","password":"wrong-password-1"}`, ReasonUnknownUser},
		{`{"user":"certonly","password":"wrong-password-1"}`, ReasonBadPassword},
	} {
		mu.Lock()
		failures = nil
		mu.Unlock()
		rec := serve(h, "POST", "/v1/auth/authenticate", c.body, nil)
		if rec.Code != 401 || errorOf(t, rec).Message != "node: unauthenticated: wrong user name or password" {
			t.Fatalf("%s: %d %q", c.body, rec.Code, rec.Body)
		}
		mu.Lock()
		if len(failures) != 1 || failures[0] != c.reason {
			t.Fatalf("%s: failures %v, want %s", c.body, failures, c.reason)
		}
		mu.Unlock()
	}
	if rec := serve(h, "POST", "/v1/auth/authenticate", `{"password":"x"}`, nil); rec.Code != 400 {
		t.Fatalf("no user: %d", rec.Code)
	}
	serve(h, "GET", "/v1/kv/a/1", "", bearer(ar.Token+"x"))
	mu.Lock()
	defer mu.Unlock()
	for _, secret := range []string{"wrong-password-1", alicePassword, ar.Token} {
		if strings.Contains(logs.String(), secret) {
			t.Fatalf("logs hold a secret:\n%s", logs.String())
		}
	}
	if !strings.Contains(logs.String(), "reason=bad_password") || !strings.Contains(logs.String(), "user=alice") {
		t.Fatalf("logs:\n%s", logs.String())
	}
}

// TestBcryptBound: at most maxBcrypt password checks run at once.
func TestBcryptBound(t *testing.T) {
	h := New(newFake(), Options{}).(*handler)
	var mu sync.Mutex
	running, most := 0, 0
	var wg sync.WaitGroup
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := h.withBcrypt(context.Background(), func() {
				mu.Lock()
				running++
				most = max(most, running)
				mu.Unlock()
				time.Sleep(5 * time.Millisecond)
				mu.Lock()
				running--
				mu.Unlock()
			})
			if err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if most != maxBcrypt {
		t.Fatalf("%d checks at once, want %d", most, maxBcrypt)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for range maxBcrypt {
		h.bcrypt <- struct{}{}
	}
	if err := h.withBcrypt(ctx, func() { t.Error("ran past the bound") }); errorCode(err) != api.CodeTimeout {
		t.Fatalf("full: %v", err)
	}
}

// TestPrefixBroaderThanGrant: a listing or watch needs read on the whole
// prefix asked for; a watch of a key the user may read shows that key only.
func TestPrefixBroaderThanGrant(t *testing.T) {
	f, fx := newAuthFake(t)
	h := New(f, Options{})
	for _, c := range []struct {
		target, user string
		status       int
	}{
		{"/v1/kv?prefix=a/", "alice", 200},
		{"/v1/kv?prefix=a/1", "alice", 200},
		{"/v1/kv?prefix=a", "alice", 403},
		{"/v1/kv", "alice", 403},
		{"/v1/kv?prefix=b/", "alice", 403},
		{"/v1/watch?prefix=a/", "alice", 200},
		{"/v1/watch?prefix=a", "alice", 403},
		{"/v1/watch", "alice", 403},
		{"/v1/watch?prefix=c/", "bob", 403},
		{"/v1/watch?prefix=c/1", "bob", 200},
		{"/v1/kv?prefix=c/1", "bob", 403},
		{"/v1/kv/c/1", "bob", 200},
		{"/v1/kv/c/10", "bob", 403},
		{"/v1/kv", "root", 200},
		{"/v1/watch", "root", 200},
	} {
		f.mu.Lock()
		f.calls = nil
		f.mu.Unlock()
		rec := serve(h, "GET", c.target, "", bearer(fx.tokens[c.user]))
		if rec.Code == 404 && c.status == 200 {
			continue // c/1 does not exist: allowed all the same
		}
		if rec.Code != c.status {
			t.Fatalf("%s as %s: %d, want %d: %q", c.target, c.user, rec.Code, c.status, rec.Body)
		}
		if c.status == 403 && len(f.noted()) != 0 {
			t.Fatalf("%s as %s reached %v", c.target, c.user, f.noted())
		}
	}

	// bob's watch of c/1 shows c/1 (and a delete_prefix over it), not c/10.
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	ev := openWatch(t, srv.URL+"/v1/watch?prefix=c/1", fx.tokens["bob"])
	f.store.commit(put("c/10", "x"))
	f.store.commit(put("c/1", "y"), put("c/12", "z"))
	f.store.commit(fsm.Op{Kind: fsm.OpDeletePrefix, Key: "c/"})
	for _, want := range []string{`[{put c/1 [121]}]`, `[{delete_prefix c/ []}]`} {
		e := ev.nextTxn(t)
		if got := opsString(e.Operations); got != want {
			t.Fatalf("event %s, want %s", got, want)
		}
	}
}

// TestWatchRevoked: an open watch stream ends with an error event when
// its user may no longer read: role revoked (permission_denied), user
// deleted or password changed (unauthenticated). A change that leaves it
// allowed does not end it. A certificate user is re-checked too.
func TestWatchRevoked(t *testing.T) {
	for _, c := range []struct {
		name   string
		change auth.Change
		code   string
	}{
		{"role revoked", auth.Change{Kind: auth.RevokeRole, User: "alice", Role: "rw-a"}, api.CodePermissionDenied},
		{"permission revoked", auth.Change{Kind: auth.RevokePermission, Role: "rw-a", Permission: auth.Permission{Key: "a/", Prefix: true}}, api.CodePermissionDenied},
		{"user deleted", auth.Change{Kind: auth.DeleteUser, User: "alice"}, api.CodeUnauthenticated},
		{"password changed", auth.Change{Kind: auth.SetPassword, User: "alice", PasswordHash: hash(t, "another-pw")}, api.CodeUnauthenticated},
	} {
		t.Run(c.name, func(t *testing.T) {
			f, fx := newAuthFake(t)
			srv := httptest.NewServer(New(f, Options{}))
			t.Cleanup(srv.Close)
			// progress every 10m: only the re-check ticker wakes it.
			ev := openWatch(t, srv.URL+"/v1/watch?prefix=a/&progress_interval=10m", fx.tokens["alice"])
			f.store.commit(put("a/9", "x"))
			if e := ev.nextTxn(t); opsString(e.Operations) != "[{put a/9 [120]}]" {
				t.Fatalf("event %+v", e)
			}
			// An unrelated change leaves the stream open.
			f.auth.Store(mustApply(t, f.auth.Load(), auth.Change{Kind: auth.AddRole, Role: "unrelated"}))
			f.store.commit(put("a/8", "x"))
			if e := ev.nextTxn(t); opsString(e.Operations) != "[{put a/8 [120]}]" {
				t.Fatalf("event %+v", e)
			}
			f.auth.Store(mustApply(t, f.auth.Load(), c.change))
			e := ev.next(t)
			if e.Type != api.WatchError || e.Error == nil || e.Error.Code != c.code {
				t.Fatalf("event %+v, want an error %s", e, c.code)
			}
			if _, err := ev.dec.Token(); err == nil {
				t.Fatal("the stream went on after its error")
			}
		})
	}
}

// TestAuthManagement: the auth routes change the state through
// ChangeAuth with hashed passwords, answer without hashes, and map auth
// errors to codes.
func TestAuthManagement(t *testing.T) {
	f := newFake()
	h := New(f, Options{})
	do := func(method, target, body string, status int, code string) *httptest.ResponseRecorder {
		t.Helper()
		rec := serve(h, method, target, body, nil)
		if rec.Code != status {
			t.Fatalf("%s %s: %d, want %d: %q", method, target, rec.Code, status, rec.Body)
		}
		if code != "" && errorOf(t, rec).Code != code {
			t.Fatalf("%s %s: %q, want %s", method, target, rec.Body, code)
		}
		return rec
	}
	rec := do("POST", "/v1/auth/enable", "", 400, api.CodeBadRequest)
	if !strings.Contains(errorOf(t, rec).Message, "root") {
		t.Fatalf("enable without root: %q", rec.Body)
	}
	do("PUT", "/v1/auth/users/root", `{"password":"`+rootPassword+`"}`, 200, "")
	do("PUT", "/v1/auth/users/root", `{"password":"x"}`, 409, api.CodeConflict)
	do("PUT", "/v1/auth/users/cert", `{"no_password":true}`, 200, "")
	do("PUT", "/v1/auth/users/x", `{}`, 400, api.CodeBadRequest)
	do("PUT", "/v1/auth/users/x", `{"password":"p","no_password":true}`, 400, api.CodeBadRequest)
	do("PUT", "/v1/auth/users/bad%20name", `{"no_password":true}`, 400, api.CodeBadRequest)
	do("PUT", "/v1/auth/users/x", `{"password":"p","auth_user":"root"}`, 400, api.CodeBadRequest)
	do("PUT", "/v1/auth/users/nobody/roles/root", "", 404, api.CodeNotFound)
	do("PUT", "/v1/auth/users/root/roles/nope", "", 404, api.CodeNotFound)
	do("PUT", "/v1/auth/users/root/roles/root", "", 200, "")
	do("PUT", "/v1/auth/roles/rw", `{"admin":false}`, 200, "")
	do("PUT", "/v1/auth/roles/rw/permissions", `{"key":"a/","prefix":true,"access":"readwrite"}`, 200, "")
	do("PUT", "/v1/auth/roles/rw/permissions", `{"key":"a/","access":"all"}`, 400, api.CodeBadRequest)
	do("PUT", "/v1/auth/roles/root/permissions", `{"key":"a/","access":"read"}`, 400, api.CodeBadRequest)
	do("DELETE", "/v1/auth/roles/root", "", 400, api.CodeBadRequest)
	do("DELETE", "/v1/auth/roles/rw/permissions?key=b/&prefix=true", "", 404, api.CodeNotFound)
	do("DELETE", "/v1/auth/roles/rw/permissions", "", 400, api.CodeBadRequest)
	do("PUT", "/v1/auth/users/cert/roles/rw", "", 200, "")
	do("PUT", "/v1/auth/users/root/password", `{"password":"`+rootPassword+`2"}`, 200, "")
	rec = do("POST", "/v1/auth/enable", "", 200, "")
	var cr api.AuthChangeResponse
	if json.Unmarshal(rec.Body.Bytes(), &cr) != nil || cr.Revision != f.auth.Load().Revision {
		t.Fatalf("enable answered %q", rec.Body)
	}
	st := f.auth.Load()
	if !st.Enabled || len(st.TokenKey) != 32 {
		t.Fatalf("state after enable: %+v", st)
	}
	root, _ := st.User("root")
	if auth.CheckPassword(root.PasswordHash, rootPassword+"2") != nil {
		t.Fatal("root's password not hashed as set")
	}
	tok, _, err := st.IssueToken("root", time.Now(), time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	rec = serve(h, "GET", "/v1/auth/users", "", bearer(tok))
	if rec.Code != 200 || strings.Contains(rec.Body.String(), "hash") || strings.Contains(rec.Body.String(), "$2a$") {
		t.Fatalf("users: %q", rec.Body)
	}
	var users []api.UserInfo
	if err := json.Unmarshal(rec.Body.Bytes(), &users); err != nil || len(users) != 2 ||
		users[0].Name != "cert" || users[0].HasPassword || users[0].Roles[0] != "rw" || users[1].Name != "root" || !users[1].HasPassword {
		t.Fatalf("users %+v %v", users, err)
	}
	rec = serve(h, "GET", "/v1/auth/roles/rw", "", bearer(tok))
	var ri api.RoleInfo
	if json.Unmarshal(rec.Body.Bytes(), &ri) != nil || len(ri.Permissions) != 1 ||
		ri.Permissions[0] != (api.Permission{Key: "a/", Prefix: true, Access: "readwrite"}) {
		t.Fatalf("role: %q", rec.Body)
	}
	rec = serve(h, "GET", "/v1/auth/roles", "", bearer(tok))
	if !strings.Contains(rec.Body.String(), `"name":"root","admin":true`) {
		t.Fatalf("roles: %q", rec.Body)
	}
	if rec := serve(h, "GET", "/v1/auth/roles/nope", "", bearer(tok)); rec.Code != 404 {
		t.Fatalf("unknown role: %d", rec.Code)
	}
	if rec := serve(h, "DELETE", "/v1/auth/users/root", "", bearer(tok)); rec.Code != 400 || errorOf(t, rec).Code != api.CodeBadRequest {
		t.Fatalf("deleting the last root: %d %q", rec.Code, rec.Body)
	}
	rec = serve(h, "GET", "/v1/auth/status", "", nil)
	var as api.AuthStatus
	if json.Unmarshal(rec.Body.Bytes(), &as) != nil || !as.Enabled || as.Revision != st.Revision {
		t.Fatalf("status: %q", rec.Body)
	}
}

// TestForwardedAccess: a member's forwarded request (member certificate)
// is served without a user; without member authentication the header
// proves nothing and the request needs its own credentials, which Peer
// passes on.
func TestForwardedAccess(t *testing.T) {
	f, fx := newAuthFake(t)
	memberHdr := map[string]string{testMemberHeader: "n2", api.HeaderForwarded: "n2"}
	if rec := serve(New(f, Options{Members: fakeMembers}), "POST", "/v1/compact", `{"revision":2}`, memberHdr); rec.Code != 200 {
		t.Fatalf("member's forwarded compact: %d %q", rec.Code, rec.Body)
	}
	noAuth := New(f, Options{})
	if rec := serve(noAuth, "POST", "/v1/compact", `{"revision":2}`, map[string]string{api.HeaderForwarded: "n2"}); rec.Code != 401 {
		t.Fatalf("header alone without member authentication: %d %q", rec.Code, rec.Body)
	}

	// A follower (no member authentication) forwards its client's
	// credentials: the leader decides on them.
	leader := httptest.NewServer(noAuth)
	t.Cleanup(leader.Close)
	peer := NewPeer("n2", leader.Client())
	for _, c := range []struct {
		user string
		code string
	}{{"root", ""}, {"alice", api.CodePermissionDenied}, {"", api.CodeUnauthenticated}} {
		ctx := context.Background()
		if c.user != "" {
			ctx = context.WithValue(ctx, callerKey{}, caller{authorization: "Bearer " + fx.tokens[c.user]})
		}
		_, err := peer.Compact(ctx, leader.URL, 2)
		if RemoteCode(err) != c.code {
			t.Fatalf("forwarded compact as %q: %v, want %q", c.user, err, c.code)
		}
	}

	// A member forwards an auth change typed, to the members-only route.
	f2 := newFake()
	srv := httptest.NewServer(New(f2, Options{}))
	t.Cleanup(srv.Close)
	rev, err := NewPeer("n2", srv.Client()).ChangeAuth(context.Background(), srv.URL, auth.Change{Kind: auth.AddRole, Role: "fwd"})
	if err != nil || rev != 1 || len(f2.authChanges) != 1 || f2.forwarded[0] != "n2" {
		t.Fatalf("forwarded change: %d %v %+v %v", rev, err, f2.authChanges, f2.forwarded)
	}
	_, err = NewPeer("n2", srv.Client()).ChangeAuth(context.Background(), srv.URL, auth.Change{Kind: auth.AddRole, Role: "fwd"})
	if RemoteCode(err) != api.CodeConflict {
		t.Fatalf("forwarded refusal: %v", err)
	}

	// A forwarded batch keeps the follower's stamp.
	f.writes = nil
	txns := []fsm.Txn{{Ops: []fsm.Op{put("a/1", "v")}, AuthUser: "alice", AuthRevision: 7}}
	leader2 := httptest.NewServer(New(f, Options{}))
	t.Cleanup(leader2.Close)
	if _, err := NewPeer("n2", leader2.Client()).ForwardWrites(context.Background(), leader2.URL, txns); err != nil {
		t.Fatal(err)
	}
	if len(f.writes) != 1 || f.writes[0].AuthUser != "alice" || f.writes[0].AuthRevision != 7 {
		t.Fatalf("forwarded write %+v", f.writes)
	}
}

// TestApplyRefusal: the FSM's refusal at apply (a permission revoked
// after the member checked) is permission_denied.
func TestApplyRefusal(t *testing.T) {
	f, fx := newAuthFake(t)
	for _, refusal := range []error{
		fmt.Errorf("%w: %w", fsm.ErrPermissionDenied, auth.ErrPermissionDenied),
		fmt.Errorf("%w: %w: no authenticated user", fsm.ErrPermissionDenied, auth.ErrUnauthenticated),
	} {
		f.writeFn = func(fsm.Txn) (fsm.TxnResult, error) { return fsm.TxnResult{Err: refusal}, nil }
		rec := serve(New(f, Options{}), "PUT", "/v1/kv/a/1", "v", bearer(fx.tokens["alice"]))
		if rec.Code != 403 || errorOf(t, rec).Code != api.CodePermissionDenied {
			t.Fatalf("%v: %d %q", refusal, rec.Code, rec.Body)
		}
	}
}

// watchEvents reads a watch stream's events.
type watchEvents struct {
	dec *json.Decoder
}

// openWatch opens a watch stream at url with a bearer token, and reads
// its first (progress) line.
func openWatch(t *testing.T, url, token string) *watchEvents {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	req, err := http.NewRequestWithContext(ctx, "GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	if resp.StatusCode != 200 {
		t.Fatalf("watch %s: %d", url, resp.StatusCode)
	}
	ev := &watchEvents{dec: json.NewDecoder(resp.Body)}
	if e := ev.next(t); e.Type != api.WatchProgress {
		t.Fatalf("first line %+v", e)
	}
	return ev
}

// next returns the next event.
func (w *watchEvents) next(t *testing.T) api.WatchEvent {
	t.Helper()
	var e api.WatchEvent
	if err := w.dec.Decode(&e); err != nil {
		t.Fatalf("stream ended: %v", err)
	}
	return e
}

// nextTxn returns the next transaction event, skipping progress.
func (w *watchEvents) nextTxn(t *testing.T) api.WatchEvent {
	t.Helper()
	for {
		if e := w.next(t); e.Type != api.WatchProgress {
			return e
		}
	}
}

// opsString prints operations compactly: [{put k [bytes]}].
func opsString(ops []api.Operation) string {
	var b strings.Builder
	b.WriteString("[")
	for i, o := range ops {
		if i > 0 {
			b.WriteString(" ")
		}
		b.WriteString("{" + o.Op + " " + o.Key + " " + fmtBytes(o.Value) + "}")
	}
	b.WriteString("]")
	return b.String()
}

func fmtBytes(b []byte) string {
	parts := make([]string, len(b))
	for i, c := range b {
		parts[i] = strconv.Itoa(int(c))
	}
	return "[" + strings.Join(parts, " ") + "]"
}

// newTestLogger logs text to b under mu.
func newTestLogger(b *strings.Builder, mu *sync.Mutex) *slog.Logger {
	return slog.New(slog.NewTextHandler(lockedWriter{b: b, mu: mu}, nil))
}

type lockedWriter struct {
	b  *strings.Builder
	mu *sync.Mutex
}

func (w lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

// TestCertUser runs over real TLS: a verified client certificate's CN is
// the user when such a user exists; a member certificate is not a user
// even when a user has its name; a bearer token wins over the
// certificate, and a bad one is refused rather than falling back to it.
func TestCertUser(t *testing.T) {
	pki := tlstest.New(t, "cluster")
	server := newSource(t, pki.Member(t, "n1"))
	peer := newSource(t, tlsutil.Files{CAFile: pki.CAFile})
	f, fx := newAuthFake(t)
	f.auth.Store(mustApply(t, fx.state,
		auth.Change{Kind: auth.AddUser, User: "n2"},
		auth.Change{Kind: auth.GrantRole, User: "n2", Role: auth.RootRole}))
	srv := httptest.NewUnstartedServer(New(f, Options{Members: MemberAuthenticator(peer)}))
	srv.TLS = tlsutil.ServerConfig(server, []*tlsutil.Source{peer}, false)
	srv.StartTLS()
	t.Cleanup(srv.Close)
	client := func(own tlsutil.Files) *http.Client {
		var src *tlsutil.Source
		if !own.IsZero() {
			src = newSource(t, own)
		}
		tr := &http.Transport{DialTLSContext: tlsutil.DialTLSContext(tlsutil.ClientConfig(src, []*tlsutil.Source{peer}), nil)}
		t.Cleanup(tr.CloseIdleConnections)
		return &http.Client{Transport: tr, Timeout: 10 * time.Second}
	}
	get := func(c *http.Client, path, token string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest("GET", srv.URL+path, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var er api.ErrorResponse
		_ = json.NewDecoder(resp.Body).Decode(&er)
		return resp.StatusCode, er.Error.Code
	}
	alice := client(pki.Client(t, "alice"))
	for _, c := range []struct {
		name   string
		client *http.Client
		path   string
		token  string
		status int
		code   string
	}{
		{"alice's certificate", alice, "/v1/kv/a/1", "", 200, ""},
		{"alice's certificate, beyond her grant", alice, "/v1/kv/b/1", "", 403, api.CodePermissionDenied},
		{"alice's certificate, not admin", alice, "/v1/log", "", 403, api.CodePermissionDenied},
		{"a certificate naming no user", client(pki.Client(t, "mallory")), "/v1/kv/a/1", "", 401, api.CodeUnauthenticated},
		{"a user without a password, by certificate", client(pki.Client(t, "certonly")), "/v1/kv/a/1", "", 403, api.CodePermissionDenied},
		{"a member certificate is no user", client(pki.Member(t, "n2")), "/v1/kv/a/1", "", 401, api.CodeUnauthenticated},
		{"no certificate", client(tlsutil.Files{}), "/v1/kv/a/1", "", 401, api.CodeUnauthenticated},
		{"a token wins over the certificate", alice, "/v1/kv/a/1", fx.tokens["bob"], 403, api.CodePermissionDenied},
		{"a bad token does not fall back to the certificate", alice, "/v1/kv/a/1", fx.tokens["expired"], 401, api.CodeUnauthenticated},
	} {
		if status, code := get(c.client, c.path, c.token); status != c.status || code != c.code {
			t.Errorf("%s: %d %q, want %d %q", c.name, status, code, c.status, c.code)
		}
	}
}

// TestBcryptCostOption: a member hashes new passwords at its configured
// cost (a member's --bcrypt-cost), and the user can log in with it.
func TestBcryptCostOption(t *testing.T) {
	f, fx := newAuthFake(t)
	h := New(f, Options{BcryptCost: auth.MinBcryptCost})
	rec := serve(h, "PUT", "/v1/auth/users/carol", `{"password":"carol-pw"}`, bearer(fx.tokens["root"]))
	if rec.Code != 200 {
		t.Fatalf("add user: %d %s", rec.Code, rec.Body)
	}
	f.mu.Lock()
	changes := slices.Clone(f.authChanges)
	f.mu.Unlock()
	if len(changes) != 1 || changes[0].Kind != auth.AddUser {
		t.Fatalf("changes %v", changes)
	}
	if c, err := bcrypt.Cost(changes[0].PasswordHash); err != nil || c != auth.MinBcryptCost {
		t.Fatalf("hash cost %d %v, want %d", c, err, auth.MinBcryptCost)
	}
}

// TestDummyHashCost: the hash checked for an unknown user has the
// member's cost, so a refusal takes as long whether or not the user
// exists.
func TestDummyHashCost(t *testing.T) {
	for _, cost := range []int{auth.MinBcryptCost, auth.MinBcryptCost + 1} {
		c, err := bcrypt.Cost(dummyHash(cost))
		if err != nil || c != cost {
			t.Fatalf("dummy hash cost %d %v, want %d", c, err, cost)
		}
	}
}
