package client_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cairn-db/cairn/api"
	"github.com/cairn-db/cairn/client"
)

// authRequest is a request the fake auth server saw.
type authRequest struct {
	Method, Path, Query, Auth, Body string
}

// fakeAuthServer is the HTTP API with access control as the client sees
// it (docs/security.md): POST /v1/auth/authenticate exchanges a user's
// password for a token "tok-N" valid ttl; while enabled, every other
// route but GET /v1/auth/status needs a valid "Authorization: Bearer"
// token (401 unauthenticated otherwise) and paths in denied answer 403.
// Auth changes answer an auth revision; KV puts a write revision.
type fakeAuthServer struct {
	url string
	mu  sync.Mutex
	// configuration
	enabled   bool
	passwords map[string]string
	ttl       time.Duration
	delay     time.Duration        // before answering authenticate
	refuseAll bool                 // refuse every token, even fresh ones
	denied    map[string]bool      // path → 403
	answers   map[string]any       // "METHOD path" → JSON answer
	tokens    map[string]time.Time // token → expiry
	// record
	reqs     []authRequest
	authN    int // authenticate requests
	status   int // 401s sent to token holders
	revision uint64
}

func newFakeAuth(t tb) *fakeAuthServer {
	t.Helper()
	f := &fakeAuthServer{enabled: true, passwords: map[string]string{"ann": "s3cret pw"}, ttl: time.Minute,
		denied: map[string]bool{}, answers: map[string]any{}, tokens: map[string]time.Time{}}
	s := httptest.NewServer(f)
	t.Cleanup(s.Close)
	f.url = s.URL
	return f
}

func (f *fakeAuthServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	f.mu.Lock()
	delay := f.delay
	f.reqs = append(f.reqs, authRequest{Method: r.Method, Path: r.URL.Path, Query: r.URL.RawQuery,
		Auth: r.Header.Get("Authorization"), Body: string(body)})
	f.mu.Unlock()
	if r.URL.Path == "/v1/auth/authenticate" && delay > 0 {
		time.Sleep(delay)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	w.Header().Set(api.HeaderNode, "f1")
	w.Header().Set(api.HeaderLeaderURL, f.url)
	fail := func(status int, code, msg string) {
		if status == http.StatusUnauthorized {
			w.Header().Set("WWW-Authenticate", "Bearer")
		}
		writeJSON(w, status, api.ErrorResponse{Error: api.Error{Code: code, Message: msg}})
	}
	switch {
	case r.URL.Path == "/v1/auth/authenticate":
		f.authN++
		var ar api.AuthenticateRequest
		if err := json.Unmarshal(body, &ar); err != nil || r.Method != http.MethodPost {
			fail(http.StatusBadRequest, api.CodeBadRequest, "bad authenticate request")
			return
		}
		if !f.enabled {
			fail(http.StatusBadRequest, api.CodeBadRequest, "access control is not enabled")
			return
		}
		if pw, ok := f.passwords[ar.User]; !ok || pw != ar.Password {
			fail(http.StatusUnauthorized, api.CodeUnauthenticated, "bad user name or password")
			return
		}
		tok := "tok-" + strconv.Itoa(f.authN)
		exp := time.Now().Add(f.ttl)
		f.tokens[tok] = exp
		writeJSON(w, http.StatusOK, api.AuthenticateResponse{Token: tok, ExpiresAt: exp})
		return
	case r.URL.Path == "/v1/auth/status":
		writeJSON(w, http.StatusOK, api.AuthStatus{Enabled: f.enabled, Revision: f.revision})
		return
	}
	if f.enabled {
		tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		exp, known := f.tokens[tok]
		if !ok || !known || time.Now().After(exp) || f.refuseAll {
			if ok {
				f.status++
			}
			fail(http.StatusUnauthorized, api.CodeUnauthenticated, "a valid token is required")
			return
		}
		if f.denied[r.URL.Path] {
			fail(http.StatusForbidden, api.CodePermissionDenied, "user ann may not")
			return
		}
	}
	if v, ok := f.answers[r.Method+" "+r.URL.Path]; ok {
		writeJSON(w, http.StatusOK, v)
		return
	}
	switch {
	case r.Method == http.MethodGet && r.URL.Path == "/v1/cluster/members":
		writeJSON(w, http.StatusOK, api.MembersResponse{Leader: "f1", Members: []api.Member{
			{ID: "f1", RaftAddr: "127.0.0.1:1", HTTPURL: f.url, Role: "voter", Leader: true, Reachable: true}}})
	case strings.HasPrefix(r.URL.Path, "/v1/kv/") && r.Method == http.MethodPut:
		f.revision++
		writeJSON(w, http.StatusOK, api.WriteResponse{Revision: f.revision, Time: time.Now()})
	case strings.HasPrefix(r.URL.Path, "/v1/auth/") && r.Method != http.MethodGet:
		f.revision++
		writeJSON(w, http.StatusOK, api.AuthChangeResponse{Revision: f.revision})
	default:
		fail(http.StatusNotFound, api.CodeNotFound, "no route")
	}
}

// revoke makes every token issued so far invalid, as a password change
// does.
func (f *fakeAuthServer) revoke() {
	f.mu.Lock()
	defer f.mu.Unlock()
	clear(f.tokens)
}

func (f *fakeAuthServer) set(fn func(f *fakeAuthServer)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(f)
}

// requests returns the requests seen, and forgets them.
func (f *fakeAuthServer) requests() []authRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	r := f.reqs
	f.reqs = nil
	return r
}

func (f *fakeAuthServer) authentications() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.authN
}

// without drops discovery (GET /v1/cluster/members) from reqs.
func without(reqs []authRequest) []authRequest {
	var out []authRequest
	for _, r := range reqs {
		if r.Path != "/v1/cluster/members" {
			out = append(out, r)
		}
	}
	return out
}

func authClient(t *testing.T, f *fakeAuthServer, mod func(*client.Config)) *client.Client {
	t.Helper()
	return newClient(t, func(cfg *client.Config) {
		cfg.Username, cfg.Password = "ann", "s3cret pw"
		if mod != nil {
			mod(cfg)
		}
	}, f.url)
}

func TestAuthTokenObtainedAndSent(t *testing.T) {
	f := newFakeAuth(t)
	c := authClient(t, f, nil)
	ctx := ctx30(t)
	for i := range 3 {
		if _, err := c.Put(ctx, "k", []byte("v")); err != nil {
			t.Fatalf("put %d: %v", i, err)
		}
	}
	reqs := without(f.requests())
	if len(reqs) != 4 || reqs[0].Path != "/v1/auth/authenticate" || reqs[0].Auth != "" {
		t.Fatalf("requests %+v: want one authenticate (without a token), then the puts", reqs)
	}
	var ar api.AuthenticateRequest
	if err := json.Unmarshal([]byte(reqs[0].Body), &ar); err != nil || ar.User != "ann" || ar.Password != "s3cret pw" {
		t.Fatalf("authenticate body %q", reqs[0].Body)
	}
	for _, r := range reqs[1:] {
		if r.Method != http.MethodPut || r.Auth != "Bearer tok-1" {
			t.Fatalf("put %+v: want Authorization: Bearer tok-1", r)
		}
	}
}

func TestAuthReauthenticatesOnceOn401(t *testing.T) {
	f := newFakeAuth(t)
	c := authClient(t, f, nil)
	ctx := ctx30(t)
	if _, err := c.Put(ctx, "k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	f.revoke() // the password changed, say: tok-1 is refused from now on
	f.requests()
	if _, err := c.Put(ctx, "k", []byte("v")); err != nil {
		t.Fatalf("put after the token was revoked: %v", err)
	}
	reqs := without(f.requests())
	want := []string{"PUT Bearer tok-1", "POST ", "PUT Bearer tok-2"}
	if len(reqs) != len(want) {
		t.Fatalf("requests %+v, want %v", reqs, want)
	}
	for i, r := range reqs {
		if got := r.Method + " " + r.Auth; got != want[i] {
			t.Fatalf("request %d: %q, want %q (all: %+v)", i, got, want[i], reqs)
		}
	}
}

func TestAuthTokenRefusedTwiceEnds(t *testing.T) {
	f := newFakeAuth(t)
	f.refuseAll = true
	c := authClient(t, f, nil)
	ctx := ctx30(t)
	_, err := c.Put(ctx, "k", []byte("v"))
	if !errors.Is(err, client.ErrUnauthenticated) || ctx.Err() != nil {
		t.Fatalf("put with tokens always refused: %v, want ErrUnauthenticated at once", err)
	}
	if n := f.authentications(); n != 2 {
		t.Fatalf("%d authentications, want 2 (the first token, one renewal)", n)
	}
}

func TestAuthBadCredentials(t *testing.T) {
	f := newFakeAuth(t)
	var logs bytes.Buffer
	c := authClient(t, f, func(cfg *client.Config) {
		cfg.Password = "wrong pw"
		cfg.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	})
	ctx := ctx30(t)
	_, err := c.Put(ctx, "k", []byte("v"))
	if !errors.Is(err, client.ErrUnauthenticated) || ctx.Err() != nil {
		t.Fatalf("put with a bad password: %v, want ErrUnauthenticated at once", err)
	}
	if msg := err.Error(); !strings.Contains(msg, `"ann"`) || !strings.Contains(msg, "bad user name or password") ||
		strings.Contains(msg, "wrong pw") {
		t.Fatalf("message %q: want the user and the server's reason, never the password", msg)
	}
	if n := f.authentications(); n != 1 {
		t.Fatalf("%d authentications, want 1: bad credentials are not retried", n)
	}
	if _, err := c.Get(ctx, "k"); !errors.Is(err, client.ErrUnauthenticated) {
		t.Fatalf("get: %v", err)
	}
	if strings.Contains(logs.String(), "wrong pw") {
		t.Fatalf("the password was logged:\n%s", logs.String())
	}
}

func TestAuthSecretsNotLogged(t *testing.T) {
	f := newFakeAuth(t)
	var logs bytes.Buffer
	c := authClient(t, f, func(cfg *client.Config) {
		cfg.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	})
	ctx := ctx30(t)
	if _, err := c.Put(ctx, "k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	f.revoke()
	if _, err := c.Put(ctx, "k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	if s := logs.String(); strings.Contains(s, "s3cret") || strings.Contains(s, "tok-") {
		t.Fatalf("a password or token was logged:\n%s", s)
	}
	if !strings.Contains(logs.String(), "authenticated") {
		t.Fatalf("no debug log of the authentication:\n%s", logs.String())
	}
}

func TestAuthRenewsBeforeExpiry(t *testing.T) {
	f := newFakeAuth(t)
	f.ttl = time.Second // renewed after 800 ms
	c := authClient(t, f, nil)
	ctx := ctx30(t)
	waitFor(t, "a renewed token", 10*time.Second, func() error {
		if _, err := c.Put(ctx, "k", []byte("v")); err != nil {
			t.Fatalf("put: %v", err)
		}
		if n := f.authentications(); n < 2 {
			return fmt.Errorf("%d authentications", n)
		}
		return nil
	})
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.status != 0 {
		t.Fatalf("%d requests were refused: the token must be renewed before it expires", f.status)
	}
}

func TestAuthOneAuthenticationForConcurrentCalls(t *testing.T) {
	f := newFakeAuth(t)
	f.delay = 100 * time.Millisecond
	c := authClient(t, f, nil)
	ctx := ctx30(t)
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for range 20 {
		wg.Go(func() {
			_, err := c.Put(ctx, "k", []byte("v"))
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := f.authentications(); n != 1 {
		t.Fatalf("%d authentications for 20 concurrent calls, want 1", n)
	}
}

func TestAuthDisabledThenEnabled(t *testing.T) {
	f := newFakeAuth(t)
	f.enabled = false
	c := authClient(t, f, nil)
	ctx := ctx30(t)
	for range 2 {
		if _, err := c.Put(ctx, "k", []byte("v")); err != nil {
			t.Fatalf("put with auth disabled: %v", err)
		}
	}
	if n := f.authentications(); n != 1 {
		t.Fatalf("%d authentications, want 1 (then none while disabled)", n)
	}
	for _, r := range without(f.requests()) {
		if r.Auth != "" {
			t.Fatalf("%+v carries a token while auth is disabled", r)
		}
	}
	f.set(func(f *fakeAuthServer) { f.enabled = true })
	if _, err := c.Put(ctx, "k", []byte("v")); err != nil {
		t.Fatalf("put after auth was enabled: %v", err)
	}
	if last := without(f.requests()); last[len(last)-1].Auth != "Bearer tok-2" {
		t.Fatalf("requests %+v: want the put sent again with a token", last)
	}
}

func TestAuthWithoutCredentials(t *testing.T) {
	f := newFakeAuth(t)
	c := newClient(t, nil, f.url)
	ctx := ctx30(t)
	_, err := c.Put(ctx, "k", []byte("v"))
	var ae *client.APIError
	if !errors.Is(err, client.ErrUnauthenticated) || !errors.As(err, &ae) || ae.Status != http.StatusUnauthorized {
		t.Fatalf("put without credentials: %v", err)
	}
	if f.authentications() != 0 {
		t.Fatal("authenticated without credentials")
	}

	f.denied["/v1/kv/k"] = true
	c = authClient(t, f, nil)
	if _, err = c.Put(ctx, "k", []byte("v")); !errors.Is(err, client.ErrPermissionDenied) || errors.Is(err, client.ErrUnauthenticated) {
		t.Fatalf("put denied: %v, want ErrPermissionDenied", err)
	}
}

func TestAuthCredentialsFunc(t *testing.T) {
	f := newFakeAuth(t)
	calls := 0
	c := newClient(t, func(cfg *client.Config) {
		cfg.Credentials = func(ctx context.Context) (string, string, error) {
			calls++
			return "ann", "s3cret pw", nil
		}
	}, f.url)
	ctx := ctx30(t)
	if calls != 0 {
		t.Fatal("Credentials called by New")
	}
	for range 2 {
		if _, err := c.Put(ctx, "k", []byte("v")); err != nil {
			t.Fatal(err)
		}
	}
	f.revoke()
	if _, err := c.Put(ctx, "k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	if calls != 2 {
		t.Fatalf("Credentials called %d times, want 2 (first call, after the revocation)", calls)
	}

	boom := errors.New("no terminal")
	c = newClient(t, func(cfg *client.Config) {
		cfg.Credentials = func(context.Context) (string, string, error) { return "", "", boom }
	}, f.url)
	if _, err := c.Put(ctx, "k", []byte("v")); !errors.Is(err, boom) {
		t.Fatalf("put with failing Credentials: %v", err)
	}
}

func TestAuthConfigValidate(t *testing.T) {
	creds := func(context.Context) (string, string, error) { return "", "", nil }
	for name, mod := range map[string]func(*client.Config){
		"password without user":      func(c *client.Config) { c.Password = "x" },
		"credentials and username":   func(c *client.Config) { c.Credentials, c.Username = creds, "ann" },
		"credentials and a password": func(c *client.Config) { c.Credentials, c.Password = creds, "x" },
	} {
		cfg := client.DefaultConfig()
		cfg.Endpoints = []string{"http://127.0.0.1:1"}
		mod(&cfg)
		if err := cfg.Validate(); !errors.Is(err, client.ErrInvalidConfig) {
			t.Errorf("%s: %v, want ErrInvalidConfig", name, err)
		}
	}
}

func TestAuthWatchAndBackupCarryTheToken(t *testing.T) {
	f := newFakeAuth(t)
	f.answers["GET /v1/backup"] = "backup"
	c := authClient(t, f, nil)
	ctx := ctx30(t)
	var out bytes.Buffer
	if _, err := c.Backup(ctx, &out, client.BackupOptions{}); err != nil {
		t.Fatal(err)
	}
	f.revoke()
	if _, err := c.Backup(ctx, &out, client.BackupOptions{}); err != nil {
		t.Fatalf("backup after the token was revoked: %v", err)
	}
	var auths []string
	for _, r := range without(f.requests()) {
		if r.Path == "/v1/backup" {
			auths = append(auths, r.Auth)
		}
	}
	if fmt.Sprint(auths) != "[Bearer tok-1 Bearer tok-1 Bearer tok-2]" {
		t.Fatalf("backups sent with %q", auths)
	}
	f.denied["/v1/watch"] = true
	if _, err := c.Watch(ctx, "p/", 0); !errors.Is(err, client.ErrPermissionDenied) {
		t.Fatalf("watch denied: %v", err)
	}
	reqs := without(f.requests())
	if last := reqs[len(reqs)-1]; last.Path != "/v1/watch" || last.Auth != "Bearer tok-2" {
		t.Fatalf("watch sent as %+v", last)
	}
}

func TestAuthAdminCalls(t *testing.T) {
	f := newFakeAuth(t)
	f.answers["GET /v1/auth/users"] = []api.UserInfo{{Name: "ann", Roles: []string{"root"}, HasPassword: true}}
	f.answers["GET /v1/auth/users/ann"] = api.UserInfo{Name: "ann", Roles: []string{"root"}, HasPassword: true}
	f.answers["GET /v1/auth/roles"] = map[string]any{"roles": []api.RoleInfo{{Name: "root", Admin: true}}}
	f.answers["GET /v1/auth/roles/ops"] = api.RoleInfo{Name: "ops", Permissions: []api.Permission{{Key: "ops/", Prefix: true, Access: "read"}}}
	c := authClient(t, f, nil)
	ctx := ctx30(t)
	change := func(rev uint64, err error) error { return err }
	for _, tc := range []struct {
		call                      func() error
		method, path, query, body string
	}{
		{func() error { return change(c.AuthEnable(ctx)) }, "POST", "/v1/auth/enable", "", ""},
		{func() error { return change(c.AuthDisable(ctx)) }, "POST", "/v1/auth/disable", "", ""},
		{func() error { return change(c.UserAdd(ctx, "bob", "pw", false)) }, "PUT", "/v1/auth/users/bob", "", `{"password":"pw"}`},
		{func() error { return change(c.UserAdd(ctx, "svc", "", true)) }, "PUT", "/v1/auth/users/svc", "", `{"no_password":true}`},
		{func() error { return change(c.UserDelete(ctx, "bob")) }, "DELETE", "/v1/auth/users/bob", "", ""},
		{func() error { return change(c.UserPassword(ctx, "bob", "pw2")) }, "PUT", "/v1/auth/users/bob/password", "", `{"password":"pw2"}`},
		{func() error { return change(c.UserGrantRole(ctx, "bob", "ops")) }, "PUT", "/v1/auth/users/bob/roles/ops", "", ""},
		{func() error { return change(c.UserRevokeRole(ctx, "bob", "ops")) }, "DELETE", "/v1/auth/users/bob/roles/ops", "", ""},
		{func() error { return change(c.RoleAdd(ctx, "ops", true)) }, "PUT", "/v1/auth/roles/ops", "", `{"admin":true}`},
		{func() error { return change(c.RoleAdd(ctx, "dev", false)) }, "PUT", "/v1/auth/roles/dev", "", `{}`},
		{func() error { return change(c.RoleDelete(ctx, "ops")) }, "DELETE", "/v1/auth/roles/ops", "", ""},
		{func() error {
			return change(c.RoleGrant(ctx, "ops", api.Permission{Key: "ops/", Prefix: true, Access: api.AccessReadWrite}))
		}, "PUT", "/v1/auth/roles/ops/permissions", "", `{"key":"ops/","prefix":true,"access":"readwrite"}`},
		{func() error { return change(c.RoleRevoke(ctx, "ops", "ops/", true)) }, "DELETE", "/v1/auth/roles/ops/permissions", "key=ops%2F&prefix=true", ""},
		{func() error { return change(c.RoleRevoke(ctx, "ops", "k", false)) }, "DELETE", "/v1/auth/roles/ops/permissions", "key=k", ""},
		{func() error {
			us, err := c.UserList(ctx)
			if err == nil && (len(us) != 1 || us[0].Name != "ann") {
				err = fmt.Errorf("users %+v", us)
			}
			return err
		}, "GET", "/v1/auth/users", "", ""},
		{func() error {
			u, err := c.UserGet(ctx, "ann")
			if err == nil && (u.Name != "ann" || !u.HasPassword) {
				err = fmt.Errorf("user %+v", u)
			}
			return err
		}, "GET", "/v1/auth/users/ann", "", ""},
		{func() error {
			rs, err := c.RoleList(ctx)
			if err == nil && (len(rs) != 1 || !rs[0].Admin) {
				err = fmt.Errorf("roles %+v", rs)
			}
			return err
		}, "GET", "/v1/auth/roles", "", ""},
		{func() error {
			r, err := c.RoleGet(ctx, "ops")
			if err == nil && (r.Name != "ops" || len(r.Permissions) != 1) {
				err = fmt.Errorf("role %+v", r)
			}
			return err
		}, "GET", "/v1/auth/roles/ops", "", ""},
		{func() error {
			st, err := c.AuthStatus(ctx)
			if err == nil && !st.Enabled {
				err = fmt.Errorf("status %+v", st)
			}
			return err
		}, "GET", "/v1/auth/status", "", ""},
	} {
		f.requests()
		if err := tc.call(); err != nil {
			t.Fatalf("%s %s: %v", tc.method, tc.path, err)
		}
		reqs := without(f.requests())
		var r authRequest
		for _, x := range reqs {
			if x.Path != "/v1/auth/authenticate" {
				r = x
			}
		}
		if r.Method != tc.method || r.Path != tc.path || r.Query != tc.query || strings.TrimSpace(r.Body) != tc.body {
			t.Fatalf("sent %+v, want %s %s?%s %s", r, tc.method, tc.path, tc.query, tc.body)
		}
		wantAuth := "Bearer tok-1"
		if tc.path == "/v1/auth/status" {
			wantAuth = "" // needs none
		}
		if r.Auth != wantAuth {
			t.Fatalf("%s %s sent Authorization %q, want %q", tc.method, tc.path, r.Auth, wantAuth)
		}
	}
	if _, err := c.RoleGrant(ctx, "ops", api.Permission{Key: "k", Access: "all"}); !errors.Is(err, client.ErrBadRequest) {
		t.Fatalf("grant of access \"all\": %v", err)
	}
}

// The docs/client.md Credentials section, against the fake: a user whose
// roles allow app/ but not other keys, and a bad password.
func ExampleConfig_credentials() {
	env := &exampleEnv{}
	defer env.close()
	f := newFakeAuth(env)
	f.denied["/v1/kv/other"] = true
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	cfg := client.DefaultConfig()
	cfg.Endpoints = []string{f.url}
	cfg.Username = "ann"
	cfg.Password = "s3cret pw" // or cfg.Credentials, called when a token is needed
	c, err := client.New(cfg)
	if err != nil {
		panic(err)
	}
	defer c.Close()
	_, err = c.Put(ctx, "app/greeting", []byte("hello")) // authenticates first
	fmt.Println("put app/greeting:", err)
	_, err = c.Put(ctx, "other", []byte("hello"))
	fmt.Println("put other, permission denied:", errors.Is(err, client.ErrPermissionDenied))

	cfg.Password = "wrong"
	bad, err := client.New(cfg)
	if err != nil {
		panic(err)
	}
	defer bad.Close()
	_, err = bad.Put(ctx, "app/greeting", []byte("hello"))
	fmt.Println("bad password, unauthenticated:", errors.Is(err, client.ErrUnauthenticated))
	// Output:
	// put app/greeting: <nil>
	// put other, permission denied: true
	// bad password, unauthenticated: true
}
