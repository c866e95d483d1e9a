package httpapi

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/cairn-db/cairn/api"
	"github.com/cairn-db/cairn/auth"
)

// The /v1/auth routes: authenticate (a user and password for a bearer
// token), the auth status, and the management of access control (admin:
// the rules are in the routes table). Changes go through the leader
// (Service.ChangeAuth) complete: this member hashes passwords and
// generates the token key before proposing, never the apply. Reads
// answer this member's applied state; no answer carries a password or a
// hash.

// tokenKeyBytes is the size of the token key auth enable generates.
const tokenKeyBytes = 32

// dummyHashes holds, per bcrypt cost, a password hash no password
// matches. It is checked for a user without a hash (or an unknown user)
// so that the answer takes as long as for a known user whose hash this
// member made at its cost: otherwise the time of a refusal would tell
// whether a user name exists.
var dummyHashes sync.Map // int -> []byte

// dummyHash returns the dummy hash for cost, making it on first use.
func dummyHash(cost int) []byte {
	if h, ok := dummyHashes.Load(cost); ok {
		return h.([]byte)
	}
	h, err := auth.HashPasswordCost(rand.Text(), cost)
	if err != nil {
		return nil
	}
	got, _ := dummyHashes.LoadOrStore(cost, h)
	return got.([]byte)
}

// withBcrypt runs fn, a password check or hash, once one of the member's
// maxBcrypt slots is free (or fails when ctx ends first).
func (h *handler) withBcrypt(ctx context.Context, fn func()) error {
	select {
	case h.bcrypt <- struct{}{}:
	case <-ctx.Done():
		return fmt.Errorf("%w: waiting to check a password: %w", ErrTimeout, ctx.Err())
	}
	defer func() { <-h.bcrypt }()
	fn()
	return nil
}

// authenticateUser serves POST /v1/auth/authenticate: a user and its
// password for a bearer token.
func (h *handler) authenticateUser(w http.ResponseWriter, r *http.Request) error {
	var req api.AuthenticateRequest
	if err := readJSON(r, &req); err != nil {
		return err
	}
	if req.User == "" {
		return badRequest("user is required")
	}
	st := h.svc.AuthState()
	if st == nil || !st.Enabled {
		return badRequest("access control is not enabled: requests need no credentials")
	}
	u, known := st.User(req.User)
	hash := u.PasswordHash
	if len(hash) == 0 {
		hash = dummyHash(h.bcryptCost)
	}
	var pwErr error
	if err := h.withBcrypt(r.Context(), func() { pwErr = auth.CheckPassword(hash, req.Password) }); err != nil {
		return err
	}
	if !known || len(u.PasswordHash) == 0 || pwErr != nil {
		reason := ReasonBadPassword
		if !known {
			reason = ReasonUnknownUser
		}
		h.authFailure(r, reason, req.User, nil)
		return fmt.Errorf("%w: wrong user name or password", ErrUnauthenticated)
	}
	tok, exp, err := st.IssueToken(req.User, time.Now(), h.tokenTTL)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, api.AuthenticateResponse{Token: tok, ExpiresAt: exp.UTC()})
	return nil
}

// authState is the member's auth state; an empty, disabled one when it
// has none.
func (h *handler) authState() *auth.State {
	if st := h.svc.AuthState(); st != nil {
		return st
	}
	return &auth.State{}
}

// authStatus serves GET /v1/auth/status: open to anyone, it says only
// whether access control is on and the auth revision.
func (h *handler) authStatus(w http.ResponseWriter, _ *http.Request) error {
	st := h.authState()
	writeJSON(w, http.StatusOK, api.AuthStatus{Enabled: st.Enabled, Revision: st.Revision})
	return nil
}

// change commits c through the leader and answers its auth revision.
func (h *handler) change(w http.ResponseWriter, r *http.Request, c auth.Change) error {
	ctx, err := h.forwardedContext(r)
	if err != nil {
		return err
	}
	rev, err := h.svc.ChangeAuth(ctx, c)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, api.AuthChangeResponse{Revision: rev})
	return nil
}

// authEnable serves POST /v1/auth/enable with a new random token key
// (refused until a user holds the root role: auth.ErrNoRoot).
func (h *handler) authEnable(w http.ResponseWriter, r *http.Request) error {
	if err := emptyBody(r); err != nil {
		return err
	}
	key := make([]byte, tokenKeyBytes)
	if _, err := rand.Read(key); err != nil {
		return fmt.Errorf("httpapi: token key: %w", err)
	}
	return h.change(w, r, auth.Change{Kind: auth.Enable, TokenKey: key})
}

func (h *handler) authDisable(w http.ResponseWriter, r *http.Request) error {
	if err := emptyBody(r); err != nil {
		return err
	}
	return h.change(w, r, auth.Change{Kind: auth.Disable})
}

func userInfo(u auth.User) api.UserInfo {
	roles := slices.Clone(u.Roles)
	if roles == nil {
		roles = []string{}
	}
	slices.Sort(roles)
	return api.UserInfo{Name: u.Name, Roles: roles, HasPassword: len(u.PasswordHash) > 0}
}

// users serves GET /v1/auth/users: every user, by name.
func (h *handler) users(w http.ResponseWriter, _ *http.Request) error {
	st := h.authState()
	out := make([]api.UserInfo, 0, len(st.Users))
	for _, name := range st.UserNames() {
		u, _ := st.User(name)
		out = append(out, userInfo(u))
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (h *handler) user(w http.ResponseWriter, r *http.Request) error {
	name := r.PathValue("name")
	u, ok := h.authState().User(name)
	if !ok {
		return fmt.Errorf("%w: user %q", auth.ErrNotFound, name)
	}
	writeJSON(w, http.StatusOK, userInfo(u))
	return nil
}

// hashPassword hashes a password for a change, within the bcrypt bound.
func (h *handler) hashPassword(ctx context.Context, pw string) ([]byte, error) {
	if pw == "" {
		return nil, badRequest("password is required (or no_password for a user who authenticates by client certificate only)")
	}
	var hash []byte
	var herr error
	if err := h.withBcrypt(ctx, func() { hash, herr = auth.HashPasswordCost(pw, h.bcryptCost) }); err != nil {
		return nil, err
	}
	if herr != nil {
		return nil, badRequest("password: %v", herr)
	}
	return hash, nil
}

// addUser serves PUT /v1/auth/users/{name}: a password, or no_password.
func (h *handler) addUser(w http.ResponseWriter, r *http.Request) error {
	var req api.UserRequest
	if err := readJSON(r, &req); err != nil {
		return err
	}
	var hash []byte
	switch {
	case req.NoPassword && req.Password != "":
		return badRequest("give a password or no_password, not both")
	case !req.NoPassword:
		var err error
		if hash, err = h.hashPassword(r.Context(), req.Password); err != nil {
			return err
		}
	}
	return h.change(w, r, auth.Change{Kind: auth.AddUser, User: r.PathValue("name"), PasswordHash: hash})
}

func (h *handler) deleteUser(w http.ResponseWriter, r *http.Request) error {
	return h.change(w, r, auth.Change{Kind: auth.DeleteUser, User: r.PathValue("name")})
}

func (h *handler) setPassword(w http.ResponseWriter, r *http.Request) error {
	var req api.PasswordRequest
	if err := readJSON(r, &req); err != nil {
		return err
	}
	hash, err := h.hashPassword(r.Context(), req.Password)
	if err != nil {
		return err
	}
	return h.change(w, r, auth.Change{Kind: auth.SetPassword, User: r.PathValue("name"), PasswordHash: hash})
}

func (h *handler) grantRole(w http.ResponseWriter, r *http.Request) error {
	return h.change(w, r, auth.Change{Kind: auth.GrantRole, User: r.PathValue("name"), Role: r.PathValue("role")})
}

func (h *handler) revokeRole(w http.ResponseWriter, r *http.Request) error {
	return h.change(w, r, auth.Change{Kind: auth.RevokeRole, User: r.PathValue("name"), Role: r.PathValue("role")})
}

func roleInfo(ro auth.Role) api.RoleInfo {
	out := api.RoleInfo{Name: ro.Name, Admin: ro.Admin, Permissions: make([]api.Permission, 0, len(ro.Permissions))}
	for _, p := range ro.Permissions {
		out.Permissions = append(out.Permissions, api.Permission{Key: p.Key, Prefix: p.Prefix, Access: accessName(p.Access)})
	}
	return out
}

// roles serves GET /v1/auth/roles: every role (root included), by name.
func (h *handler) roles(w http.ResponseWriter, _ *http.Request) error {
	st := h.authState()
	names := st.RoleNames()
	out := make([]api.RoleInfo, 0, len(names))
	for _, name := range names {
		ro, _ := st.Role(name)
		out = append(out, roleInfo(ro))
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (h *handler) role(w http.ResponseWriter, r *http.Request) error {
	name := r.PathValue("name")
	ro, ok := h.authState().Role(name)
	if !ok {
		return fmt.Errorf("%w: role %q", auth.ErrNotFound, name)
	}
	writeJSON(w, http.StatusOK, roleInfo(ro))
	return nil
}

// addRole serves PUT /v1/auth/roles/{name} (body optional: {"admin":true}).
func (h *handler) addRole(w http.ResponseWriter, r *http.Request) error {
	var req api.RoleRequest
	if err := readOptionalJSON(r, &req); err != nil {
		return err
	}
	return h.change(w, r, auth.Change{Kind: auth.AddRole, Role: r.PathValue("name"), Admin: req.Admin})
}

func (h *handler) deleteRole(w http.ResponseWriter, r *http.Request) error {
	return h.change(w, r, auth.Change{Kind: auth.DeleteRole, Role: r.PathValue("name")})
}

// grantPermission serves PUT /v1/auth/roles/{name}/permissions.
func (h *handler) grantPermission(w http.ResponseWriter, r *http.Request) error {
	var req api.Permission
	if err := readJSON(r, &req); err != nil {
		return err
	}
	a, err := parseAccess(req.Access)
	if err != nil {
		return err
	}
	return h.change(w, r, auth.Change{Kind: auth.GrantPermission, Role: r.PathValue("name"),
		Permission: auth.Permission{Key: req.Key, Prefix: req.Prefix, Access: a}})
}

// revokePermission serves DELETE /v1/auth/roles/{name}/permissions?key=K&prefix=true.
func (h *handler) revokePermission(w http.ResponseWriter, r *http.Request) error {
	if err := knownParams(r, "key", "prefix"); err != nil {
		return err
	}
	if !query(r).Has("key") {
		return badRequest("key is required")
	}
	prefix, err := queryBool(r, "prefix")
	if err != nil {
		return err
	}
	return h.change(w, r, auth.Change{Kind: auth.RevokePermission, Role: r.PathValue("name"),
		Permission: auth.Permission{Key: query(r).Get("key"), Prefix: prefix}})
}

// forwardedAuth serves ForwardAuthPath on the leader: a follower's auth
// change, complete (validated, hashed, keyed) when the follower sent it.
func (h *handler) forwardedAuth(w http.ResponseWriter, r *http.Request) error {
	from, err := h.internalCaller(r)
	if err != nil {
		return err
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return err
	}
	c, err := auth.DecodeChange(body)
	if err != nil {
		return badRequest("forwarded auth change: %v", err)
	}
	rev, err := h.svc.ChangeAuth(WithForwarded(r.Context(), from), c)
	out := forwardedAuthOutcome{Revision: rev}
	if err != nil {
		e := h.apiError(err)
		out = forwardedAuthOutcome{Error: &e}
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// forwardedAuthOutcome is the leader's answer to a forwarded auth change:
// the auth revision it was applied at, or its error (the change's
// refusal, or a failure to commit it) as the leader would answer it. It
// travels in a 200 answer so that a refusal (a 404 for an unknown user)
// is not taken for a leader that does not serve ForwardAuthPath.
type forwardedAuthOutcome struct {
	Revision uint64     `json:"revision,omitempty"`
	Error    *api.Error `json:"error,omitempty"`
}

// parseAccess parses an api access level.
func parseAccess(s string) (auth.Access, error) {
	switch s {
	case api.AccessRead:
		return auth.Read, nil
	case api.AccessWrite:
		return auth.Write, nil
	case api.AccessReadWrite:
		return auth.ReadWrite, nil
	}
	return 0, badRequest("access %q (use %s, %s or %s)", s, api.AccessRead, api.AccessWrite, api.AccessReadWrite)
}

// accessName is an access level's api name.
func accessName(a auth.Access) string {
	switch a {
	case auth.Read:
		return api.AccessRead
	case auth.Write:
		return api.AccessWrite
	case auth.ReadWrite:
		return api.AccessReadWrite
	}
	return fmt.Sprintf("unknown(%d)", a)
}

// readJSON reads a request's body as one JSON value (decodeStrict).
func readJSON(r *http.Request, v any) error {
	if err := knownParams(r); err != nil {
		return err
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return err
	}
	return decodeStrict(body, v)
}

// readOptionalJSON is readJSON that takes an empty body too.
func readOptionalJSON(r *http.Request, v any) error {
	if err := knownParams(r); err != nil {
		return err
	}
	body, err := io.ReadAll(r.Body)
	if err != nil || len(body) == 0 {
		return err
	}
	return decodeStrict(body, v)
}

// emptyBody refuses query parameters and anything in the body but an
// empty JSON object.
func emptyBody(r *http.Request) error {
	var v struct{}
	return readOptionalJSON(r, &v)
}
