package main

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cairn-db/cairn/api"
)

// The auth, user and role commands and --user, in process (Run), against
// a fake of the HTTP API with access control (docs/security.md): users,
// roles and grants in memory, tokens "tok-N" from POST
// /v1/auth/authenticate, 401 without a valid token while enabled, admin
// for /v1/auth/* and the member list, write permission for puts.

// seenRequest is a request the fake saw.
type seenRequest struct {
	Method, Path, Query, Auth, Body string
}

type fakeUser struct {
	password string
	roles    []string
}

type fakeAuthAPI struct {
	url string
	mu  sync.Mutex
	// state
	enabled bool
	rev     uint64 // auth revision
	kvRev   uint64
	users   map[string]*fakeUser
	roles   map[string]*api.RoleInfo
	tokens  map[string]string // token → user
	// refuseFirst refuses the first token issued once, as a member does
	// a token revoked after it was issued.
	refuseFirst bool
	// record
	authN int
	reqs  []seenRequest
}

func startFakeAuthAPI(t *testing.T) *fakeAuthAPI {
	t.Helper()
	f := &fakeAuthAPI{users: map[string]*fakeUser{}, tokens: map[string]string{},
		roles: map[string]*api.RoleInfo{"root": {Name: "root", Admin: true,
			Permissions: []api.Permission{{Key: "", Prefix: true, Access: api.AccessReadWrite}}}}}
	s := httptest.NewServer(f)
	t.Cleanup(s.Close)
	f.url = s.URL
	return f
}

// requests returns the requests seen but authentication and discovery,
// and forgets every request.
func (f *fakeAuthAPI) requests() []seenRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []seenRequest
	for _, r := range f.reqs {
		if r.Path != "/v1/auth/authenticate" && r.Path != "/v1/cluster/members" {
			out = append(out, r)
		}
	}
	f.reqs = nil
	return out
}

func (f *fakeAuthAPI) authentications() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.authN
}

func fakeFail(w http.ResponseWriter, status int, code, msg string) {
	if status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", "Bearer")
	}
	writeFakeJSON(w, status, api.ErrorResponse{Error: api.Error{Code: code, Message: msg}})
}

func writeFakeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// allowed reports whether user's roles give admin (admin true) or write
// on key.
func (f *fakeAuthAPI) allowed(user string, admin bool, key string) bool {
	u := f.users[user]
	if u == nil {
		return false
	}
	for _, rn := range u.roles {
		r := f.roles[rn]
		if r == nil {
			continue
		}
		if r.Admin && admin {
			return true
		}
		for _, p := range r.Permissions {
			covers := p.Key == key || (p.Prefix && strings.HasPrefix(key, p.Key))
			if !admin && covers && p.Access != api.AccessRead {
				return true
			}
		}
	}
	return false
}

func (f *fakeAuthAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reqs = append(f.reqs, seenRequest{Method: r.Method, Path: r.URL.Path, Query: r.URL.RawQuery,
		Auth: r.Header.Get("Authorization"), Body: strings.TrimSpace(string(body))})
	w.Header().Set(api.HeaderNode, "f1")
	w.Header().Set(api.HeaderLeaderURL, f.url)
	change := func() {
		f.rev++
		writeFakeJSON(w, http.StatusOK, api.AuthChangeResponse{Revision: f.rev})
	}
	path := r.URL.Path
	switch {
	case path == "/v1/auth/authenticate" && r.Method == http.MethodPost:
		f.authN++
		var ar api.AuthenticateRequest
		_ = json.Unmarshal(body, &ar)
		if u := f.users[ar.User]; !f.enabled || u == nil || u.password == "" || u.password != ar.Password {
			fakeFail(w, http.StatusUnauthorized, api.CodeUnauthenticated, "bad user name or password")
			return
		}
		tok := "tok-" + strconv.Itoa(f.authN)
		f.tokens[tok] = ar.User
		writeFakeJSON(w, http.StatusOK, api.AuthenticateResponse{Token: tok, ExpiresAt: time.Now().Add(10 * time.Minute)})
		return
	case path == "/v1/auth/status" && r.Method == http.MethodGet:
		writeFakeJSON(w, http.StatusOK, api.AuthStatus{Enabled: f.enabled, Revision: f.rev})
		return
	}
	key, isKV := strings.CutPrefix(path, "/v1/kv/")
	if f.enabled {
		tok, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		user, ok := f.tokens[tok]
		if ok && f.refuseFirst && tok == "tok-1" {
			f.refuseFirst, ok = false, false
			delete(f.tokens, tok)
		}
		if !ok {
			fakeFail(w, http.StatusUnauthorized, api.CodeUnauthenticated, "a valid token is required")
			return
		}
		if !f.allowed(user, !isKV, key) {
			fakeFail(w, http.StatusForbidden, api.CodePermissionDenied, "user "+user+" may not "+r.Method+" "+path)
			return
		}
	}
	users, isUser := strings.CutPrefix(path, "/v1/auth/users/")
	roles, isRole := strings.CutPrefix(path, "/v1/auth/roles/")
	userParts, roleParts := strings.Split(users, "/"), strings.Split(roles, "/")
	switch {
	case path == "/v1/cluster/members":
		writeFakeJSON(w, http.StatusOK, api.MembersResponse{Leader: "f1", Members: []api.Member{
			{ID: "f1", RaftAddr: "127.0.0.1:1", HTTPURL: f.url, Role: "voter", Leader: true, Reachable: true}}})
	case isKV && r.Method == http.MethodPut:
		f.kvRev++
		writeFakeJSON(w, http.StatusOK, api.WriteResponse{Revision: f.kvRev, Time: time.Now()})
	case path == "/v1/auth/enable" && r.Method == http.MethodPost:
		for _, u := range f.users {
			if slices.Contains(u.roles, "root") {
				f.enabled = true
				change()
				return
			}
		}
		fakeFail(w, http.StatusBadRequest, api.CodeBadRequest, "no user holds the root role")
	case path == "/v1/auth/disable" && r.Method == http.MethodPost:
		f.enabled = false
		change()
	case path == "/v1/auth/users" && r.Method == http.MethodGet:
		out := []api.UserInfo{}
		for n := range f.users {
			out = append(out, f.userInfo(n))
		}
		sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
		writeFakeJSON(w, http.StatusOK, out)
	case isUser && len(userParts) == 1:
		name := userParts[0]
		switch r.Method {
		case http.MethodGet:
			if f.users[name] == nil {
				fakeFail(w, http.StatusNotFound, api.CodeNotFound, "no user "+name)
				return
			}
			writeFakeJSON(w, http.StatusOK, f.userInfo(name))
		case http.MethodPut:
			var ur api.UserRequest
			_ = json.Unmarshal(body, &ur)
			if f.users[name] != nil {
				fakeFail(w, http.StatusConflict, api.CodeConflict, "user "+name+" exists")
				return
			}
			f.users[name] = &fakeUser{password: ur.Password}
			change()
		case http.MethodDelete:
			if f.users[name] == nil {
				fakeFail(w, http.StatusNotFound, api.CodeNotFound, "no user "+name)
				return
			}
			delete(f.users, name)
			change()
		}
	case isUser && len(userParts) == 2 && userParts[1] == "password" && r.Method == http.MethodPut:
		var pr api.PasswordRequest
		_ = json.Unmarshal(body, &pr)
		f.users[userParts[0]].password = pr.Password
		change()
	case isUser && len(userParts) == 3 && userParts[1] == "roles":
		u, role := f.users[userParts[0]], userParts[2]
		if u == nil || f.roles[role] == nil {
			fakeFail(w, http.StatusNotFound, api.CodeNotFound, "no such user or role")
			return
		}
		u.roles = slices.DeleteFunc(u.roles, func(s string) bool { return s == role })
		if r.Method == http.MethodPut {
			u.roles = append(u.roles, role)
		}
		change()
	case path == "/v1/auth/roles" && r.Method == http.MethodGet:
		out := []api.RoleInfo{}
		for _, ro := range f.roles {
			out = append(out, *ro)
		}
		sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
		writeFakeJSON(w, http.StatusOK, out)
	case isRole && len(roleParts) == 1:
		name := roleParts[0]
		switch r.Method {
		case http.MethodGet:
			if f.roles[name] == nil {
				fakeFail(w, http.StatusNotFound, api.CodeNotFound, "no role "+name)
				return
			}
			writeFakeJSON(w, http.StatusOK, f.roles[name])
		case http.MethodPut:
			var rr api.RoleRequest
			_ = json.Unmarshal(body, &rr)
			f.roles[name] = &api.RoleInfo{Name: name, Admin: rr.Admin, Permissions: []api.Permission{}}
			change()
		case http.MethodDelete:
			delete(f.roles, name)
			change()
		}
	case isRole && len(roleParts) == 2 && roleParts[1] == "permissions":
		ro := f.roles[roleParts[0]]
		if ro == nil {
			fakeFail(w, http.StatusNotFound, api.CodeNotFound, "no role "+roleParts[0])
			return
		}
		var p api.Permission
		if r.Method == http.MethodPut {
			_ = json.Unmarshal(body, &p)
		} else {
			p = api.Permission{Key: r.URL.Query().Get("key"), Prefix: r.URL.Query().Get("prefix") == "true"}
		}
		ro.Permissions = slices.DeleteFunc(ro.Permissions, func(q api.Permission) bool { return q.Key == p.Key && q.Prefix == p.Prefix })
		if r.Method == http.MethodPut {
			ro.Permissions = append(ro.Permissions, p)
		}
		change()
	default:
		fakeFail(w, http.StatusNotFound, api.CodeNotFound, "no route "+r.Method+" "+path)
	}
}

func (f *fakeAuthAPI) userInfo(name string) api.UserInfo {
	u := f.users[name]
	roles := append([]string{}, u.roles...)
	return api.UserInfo{Name: name, Roles: roles, HasPassword: u.password != ""}
}

// fakeConsole is stdin for a test: in for --password-stdin, and a
// terminal (when tty) whose hidden answers are passwords, in turn.
type fakeConsole struct {
	in        io.Reader
	tty       bool
	passwords []string
	asked     int
}

func (c *fakeConsole) Read(p []byte) (int, error) { return c.in.Read(p) }
func (c *fakeConsole) terminal() bool             { return c.tty }
func (c *fakeConsole) readPassword(context.Context) ([]byte, error) {
	if c.asked >= len(c.passwords) {
		return nil, errors.New("fake terminal: no more passwords")
	}
	c.asked++
	return []byte(c.passwords[c.asked-1]), nil
}

// setConsole makes stdin c for the test.
func setConsole(t *testing.T, c *fakeConsole) {
	if c.in == nil {
		c.in = strings.NewReader("")
	}
	old := stdin
	stdin = c
	t.Cleanup(func() { stdin = old })
}

// clearAuthEnv unsets the CLI's environment variables for the test.
func clearAuthEnv(t *testing.T) {
	clearTLSEnv(t)
	t.Setenv("CAIRN_USER", "")
	t.Setenv(envPassword, "")
}

// seed gives the fake a root user (password "rootpw") and turns access
// control on.
func (f *fakeAuthAPI) seed() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.users["root"] = &fakeUser{password: "rootpw", roles: []string{"root"}}
	f.users["ann"] = &fakeUser{password: "annpw"}
	f.roles["ops"] = &api.RoleInfo{Name: "ops", Permissions: []api.Permission{{Key: "ops/", Prefix: true, Access: api.AccessRead}}}
	f.enabled = true
}

// TestAuthCommandsSendTheRightRequests runs every command as root and
// checks the one request it sends (method, path, query, body), that it
// carries root's token, and what it prints.
func TestAuthCommandsSendTheRightRequests(t *testing.T) {
	clearAuthEnv(t)
	f := startFakeAuthAPI(t)
	f.seed()
	t.Setenv("CAIRN_USER", "root")
	t.Setenv(envPassword, "rootpw")
	for _, tc := range []struct {
		args                      string
		stdin                     string
		method, path, query, body string
		out                       string
	}{
		{"auth status", "", "GET", "/v1/auth/status", "", "", "access control enabled (auth revision 0)\n"},
		{"auth status --json", "", "GET", "/v1/auth/status", "", "", `"enabled": true`},
		{"role add dev", "", "PUT", "/v1/auth/roles/dev", "", "{}", "role dev added (auth revision 1)\n"},
		{"role add adm --admin", "", "PUT", "/v1/auth/roles/adm", "", `{"admin":true}`, "role adm added (auth revision 2)\n"},
		{"role grant dev --prefix app/ --access readwrite", "", "PUT", "/v1/auth/roles/dev/permissions", "",
			`{"key":"app/","prefix":true,"access":"readwrite"}`, `role dev granted readwrite on prefix "app/"`},
		{"role grant dev --prefix  --access read", "", "PUT", "/v1/auth/roles/dev/permissions", "",
			`{"key":"","prefix":true,"access":"read"}`, `role dev granted read on prefix ""`},
		{"role grant dev --key config --access write --json", "", "PUT", "/v1/auth/roles/dev/permissions", "",
			`{"key":"config","access":"write"}`, `"revision": 5`},
		{"role revoke dev --key config", "", "DELETE", "/v1/auth/roles/dev/permissions", "key=config", "",
			`role dev: permission on key "config" revoked`},
		{"role revoke dev --prefix app/", "", "DELETE", "/v1/auth/roles/dev/permissions", "key=app%2F&prefix=true", "", "revoked"},
		{"user add bob --password-stdin", "bob pw\nignored\n", "PUT", "/v1/auth/users/bob", "", `{"password":"bob pw"}`, "user bob added"},
		{"user add svc --no-password", "", "PUT", "/v1/auth/users/svc", "", `{"no_password":true}`, "user svc added"},
		{"user passwd bob --password-stdin", "new pw\r\n", "PUT", "/v1/auth/users/bob/password", "", `{"password":"new pw"}`, "password of bob changed"},
		{"user grant bob dev", "", "PUT", "/v1/auth/users/bob/roles/dev", "", "", "user bob granted role dev"},
		{"user get bob", "", "GET", "/v1/auth/users/bob", "", "", "bob   yes       dev"},
		{"user get bob --json", "", "GET", "/v1/auth/users/bob", "", "", `"roles": [` + "\n    \"dev\""},
		{"user list", "", "GET", "/v1/auth/users", "", "", "NAME  PASSWORD  ROLES\nann   yes       \nbob   yes       dev\nroot  yes       root\nsvc   no        \n"},
		{"user list --json", "", "GET", "/v1/auth/users", "", "", `"has_password": false`},
		{"user revoke bob dev", "", "DELETE", "/v1/auth/users/bob/roles/dev", "", "", "role dev revoked from user bob"},
		{"user del bob", "", "DELETE", "/v1/auth/users/bob", "", "", "user bob deleted"},
		{"role get ops", "", "GET", "/v1/auth/roles/ops", "", "", "ROLE  ADMIN  ACCESS  ON\nops   no     read    prefix \"ops/\"\n"},
		{"role get ops --json", "", "GET", "/v1/auth/roles/ops", "", "", `"prefix": true`},
		{"role list", "", "GET", "/v1/auth/roles", "", "", "root  yes    readwrite  prefix \"\""},
		{"role list --json", "", "GET", "/v1/auth/roles", "", "", `"name": "adm"`},
		{"role del dev", "", "DELETE", "/v1/auth/roles/dev", "", "", "role dev deleted"},
		{"auth disable", "", "POST", "/v1/auth/disable", "", "", "access control disabled"},
		{"auth enable", "", "POST", "/v1/auth/enable", "", "", "access control enabled"},
	} {
		setConsole(t, &fakeConsole{in: strings.NewReader(tc.stdin)})
		f.requests()
		out, errOut, code := runTLSCLI(t, append([]string{"--cluster", f.url}, strings.Split(tc.args, " ")...)...)
		if code != 0 {
			t.Fatalf("cairn %s: exit %d: %s", tc.args, code, errOut)
		}
		if !strings.Contains(out, tc.out) {
			t.Fatalf("cairn %s printed %q, want %q in it", tc.args, out, tc.out)
		}
		reqs := f.requests()
		if tc.args == "auth enable" && len(reqs) == 2 && reqs[0].Path == "/v1/auth/status" {
			// Access control is off: authentication fails, the client
			// asks whether it is on and goes on without a token.
			reqs = reqs[1:]
		}
		if len(reqs) != 1 {
			t.Fatalf("cairn %s sent %+v, want one request", tc.args, reqs)
		}
		r := reqs[0]
		if r.Method != tc.method || r.Path != tc.path || r.Query != tc.query || r.Body != tc.body {
			t.Fatalf("cairn %s sent %s %s?%s %s, want %s %s?%s %s", tc.args, r.Method, r.Path, r.Query, r.Body,
				tc.method, tc.path, tc.query, tc.body)
		}
		if wantTok := tc.path != "/v1/auth/status" && tc.args != "auth enable"; wantTok != strings.HasPrefix(r.Auth, "Bearer tok-") {
			t.Fatalf("cairn %s sent Authorization %q", tc.args, r.Auth)
		}
	}
}

// TestAuthCLIReauthenticatesOnce: a token the member refuses (revoked
// after it was issued) gets one new token and the command succeeds.
func TestAuthCLIReauthenticatesOnce(t *testing.T) {
	clearAuthEnv(t)
	setConsole(t, &fakeConsole{})
	f := startFakeAuthAPI(t)
	f.seed()
	f.refuseFirst = true
	t.Setenv(envPassword, "rootpw")
	out, errOut, code := runTLSCLI(t, "--cluster", f.url, "--user", "root", "put", "app/k", "v")
	if code != 0 || out != "revision 1\n" {
		t.Fatalf("put: exit %d: %s%s", code, out, errOut)
	}
	var auths []string
	for _, r := range f.requests() {
		auths = append(auths, r.Auth)
	}
	if n := f.authentications(); n != 2 || strings.Join(auths, ",") != "Bearer tok-1,Bearer tok-2" {
		t.Fatalf("%d authentications, puts sent with %q: want tok-1 refused, then tok-2", n, auths)
	}
}

// TestAuthCLIExit6: bad credentials, no user, and a user without the
// permission exit 6 with a clear message that holds no password.
func TestAuthCLIExit6(t *testing.T) {
	clearAuthEnv(t)
	setConsole(t, &fakeConsole{})
	f := startFakeAuthAPI(t)
	f.seed()
	for _, tc := range []struct {
		user, password string
		args           []string
		want           []string
	}{
		{"root", "wrong pw", []string{"user", "list"}, []string{`authenticating as "root"`, "bad user name or password"}},
		{"nobody", "pw", []string{"put", "k", "v"}, []string{`authenticating as "nobody"`, "unauthenticated"}},
		{"", "", []string{"user", "list"}, []string{"unauthenticated", "a valid token is required", "give --user NAME"}},
		{"ann", "annpw", []string{"user", "list"}, []string{"permission_denied", "user ann may not"}},
		{"ann", "annpw", []string{"put", "app/k", "v"}, []string{"permission_denied"}},
	} {
		t.Setenv("CAIRN_USER", tc.user)
		t.Setenv(envPassword, tc.password)
		start := f.authentications()
		_, errOut, code := runTLSCLI(t, append([]string{"--cluster", f.url}, tc.args...)...)
		if code != exitAuth {
			t.Fatalf("%s %v: exit %d, want %d: %s", tc.user, tc.args, code, exitAuth, errOut)
		}
		for _, w := range tc.want {
			if !strings.Contains(errOut, w) {
				t.Fatalf("%s %v: message %q, want %q in it", tc.user, tc.args, errOut, w)
			}
		}
		if tc.password != "" && strings.Contains(errOut, tc.password) {
			t.Fatalf("the message shows the password: %s", errOut)
		}
		if n := f.authentications() - start; tc.user != "" && n != 1 {
			t.Fatalf("%s %v: %d authentications, want 1", tc.user, tc.args, n)
		}
	}
}

// TestAuthCLIPasswords: --user's password from CAIRN_PASSWORD or the
// terminal, a usage error without either; new passwords from stdin or
// asked twice on the terminal.
func TestAuthCLIPasswords(t *testing.T) {
	clearAuthEnv(t)
	f := startFakeAuthAPI(t)
	f.seed()
	run := func(c *fakeConsole, args ...string) (string, string, int) {
		setConsole(t, c)
		return runTLSCLI(t, append([]string{"--cluster", f.url}, args...)...)
	}

	// --user without a password and no terminal: exit 2, nothing sent.
	f.requests()
	_, errOut, code := run(&fakeConsole{}, "--user", "root", "user", "list")
	if code != exitUsage || !strings.Contains(errOut, "--user root needs a password: set CAIRN_PASSWORD") {
		t.Fatalf("--user without a password: exit %d: %s", code, errOut)
	}
	t.Setenv("CAIRN_USER", "root")
	if _, errOut, code = run(&fakeConsole{}, "auth", "status"); code != exitUsage {
		t.Fatalf("CAIRN_USER without a password: exit %d: %s", code, errOut)
	}
	if n := len(f.requests()) + f.authentications(); n != 0 {
		t.Fatalf("%d requests sent before the usage error", n)
	}

	// The terminal: asked once, without echo, when needed.
	con := &fakeConsole{tty: true, passwords: []string{"rootpw"}}
	if _, errOut, code = run(con, "user", "list"); code != 0 || con.asked != 1 || !strings.Contains(errOut, "Password for root: ") {
		t.Fatalf("password on the terminal: exit %d, asked %d: %s", code, con.asked, errOut)
	}
	// CAIRN_PASSWORD: no prompt.
	t.Setenv(envPassword, "rootpw")
	con = &fakeConsole{tty: true}
	if _, errOut, code = run(con, "user", "list"); code != 0 || con.asked != 0 {
		t.Fatalf("password from CAIRN_PASSWORD: exit %d, asked %d: %s", code, con.asked, errOut)
	}

	// New passwords: twice on the terminal, which must agree.
	f.requests()
	con = &fakeConsole{tty: true, passwords: []string{"carl pw", "carl pw"}}
	if _, errOut, code = run(con, "user", "add", "carl"); code != 0 || !strings.Contains(errOut, "New password for carl: ") {
		t.Fatalf("user add on the terminal: exit %d: %s", code, errOut)
	}
	if r := f.requests(); len(r) != 1 || r[0].Body != `{"password":"carl pw"}` {
		t.Fatalf("user add sent %+v", r)
	}
	for _, c := range []struct {
		con  *fakeConsole
		args []string
		want string
	}{
		{&fakeConsole{tty: true, passwords: []string{"a", "b"}}, []string{"user", "passwd", "carl"}, "do not match"},
		{&fakeConsole{}, []string{"user", "passwd", "carl"}, "--password-stdin"},
		{&fakeConsole{in: strings.NewReader("\n")}, []string{"user", "passwd", "carl", "--password-stdin"}, "empty first line"},
		{&fakeConsole{}, []string{"user", "add", "x", "--no-password", "--password-stdin"}, "exclude each other"},
		{&fakeConsole{}, []string{"user", "add"}, "NAME"},
		{&fakeConsole{}, []string{"role", "grant", "dev", "--access", "read"}, "one of --key K and --prefix P"},
		{&fakeConsole{}, []string{"role", "grant", "dev", "--key", "k", "--prefix", "p", "--access", "read"}, "one of --key K and --prefix P"},
		{&fakeConsole{}, []string{"role", "grant", "ops", "--key", "k", "--access", "all"}, `--access read, write or readwrite (got "all")`},
		{&fakeConsole{}, []string{"role", "revoke", "ops"}, "one of --key K and --prefix P"},
	} {
		if _, errOut, code = run(c.con, c.args...); code != exitUsage || !strings.Contains(errOut, c.want) {
			t.Fatalf("%v: exit %d, want 2 and %q: %s", c.args, code, c.want, errOut)
		}
	}
	if r := f.requests(); len(r) != 0 {
		t.Fatalf("usage errors sent %+v", r)
	}
}

// TestUsersAndRolesDocExamples runs docs/cli.md's "Users and roles"
// examples, in order, against the fake: export sets a variable, comments
// are dropped, the terminal answers every password prompt with the same
// password and --password-stdin reads it too. The commands' help
// examples must be among them.
func TestUsersAndRolesDocExamples(t *testing.T) {
	clearAuthEnv(t)
	lines := docExamples(t, "Users and roles")
	for _, c := range authCommands() {
		for _, help := range helpExamples(c) {
			if !slices.Contains(stripComments(lines), help) {
				t.Errorf("help example %q is not in docs/cli.md's Users and roles section", help)
			}
		}
	}
	f := startFakeAuthAPI(t)
	t.Setenv("CAIRN_CLUSTER", f.url)
	const pw = "the same pw"
	for _, line := range stripComments(lines) {
		if strings.ContainsAny(line, "'\"#$|&;<>\\`*") {
			t.Fatalf("example %q needs a shell; keep the examples plain", line)
		}
		words := strings.Fields(line)
		if words[0] == "export" {
			for _, kv := range words[1:] {
				k, v, _ := strings.Cut(kv, "=")
				t.Setenv(k, v)
			}
			continue
		}
		if words[0] != "cairn" {
			t.Fatalf("example %q does not run cairn", line)
		}
		setConsole(t, &fakeConsole{tty: true, in: strings.NewReader(pw + "\n"), passwords: []string{pw, pw}})
		out, errOut, code := runTLSCLI(t, words[1:]...)
		if code != 0 {
			t.Fatalf("%s: exit %d: %s%s", line, code, out, errOut)
		}
		t.Logf("%s\n%s", line, out)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.enabled || f.kvRev != 1 || f.users["root"] == nil || f.users["backup-agent"] == nil || f.users["ann"] != nil {
		t.Fatalf("after the examples: enabled %v, %d puts, users %v", f.enabled, f.kvRev, f.users)
	}
}

// stripComments drops "  # ..." from example lines.
func stripComments(lines []string) []string {
	var out []string
	for _, l := range lines {
		if i := strings.Index(l, "  #"); i >= 0 {
			l = l[:i]
		}
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	return out
}

// TestRoleGrantKeyIsNotTheGlobalKey: role grant's --key does not shadow
// the global --key (the TLS key of --cert), before or after the command.
func TestRoleGrantKeyIsNotTheGlobalKey(t *testing.T) {
	clearAuthEnv(t)
	setConsole(t, &fakeConsole{})
	f := startFakeAuthAPI(t)
	for _, args := range [][]string{
		{"--cluster", f.url, "--cert", "missing-cert.pem", "--key", "missing-key.pem", "role", "grant", "--key", "k", "--access", "read", "dev"},
		{"--cluster", f.url, "--cert", "missing-cert.pem", "--key", "missing-key.pem", "role", "grant", "dev", "--key", "k", "--access", "read"},
	} {
		_, errOut, code := runTLSCLI(t, args...)
		if code != exitUsage || !strings.Contains(errOut, "missing-cert.pem") || strings.Contains(errOut, "go together") {
			t.Fatalf("%v: exit %d: %s", args, code, errOut)
		}
	}
	_, errOut, code := runTLSCLI(t, "--cluster", f.url, "--key", "only-key.pem", "role", "grant", "dev", "--key", "k", "--access", "read")
	if code != exitUsage || !strings.Contains(errOut, "go together") {
		t.Fatalf("global --key without --cert: exit %d: %s", code, errOut)
	}
}
