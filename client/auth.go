package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/cairn-db/cairn/api"
)

// Token renewal: a token is renewed on the first call after 80 % of its
// lifetime has passed, and at most a minute before it expires.
const (
	renewFraction = 5 // renew 1/renewFraction of the lifetime before expiry
	renewMax      = time.Minute
	// unknownLifetime is assumed for a token whose expiry, by the local
	// clock, has already passed (a clock far off the members'): it is
	// used for that long, or until a member refuses it.
	unknownLifetime = time.Minute
)

// authenticator holds a client's bearer token and gets a new one when
// needed: before the first call, on the first call after renewAt, and
// after a member refused the token (invalidate). One authentication runs
// at a time; calls that need a token meanwhile wait for it, or use the
// old one while it is still valid.
type authenticator struct {
	creds func(ctx context.Context) (user, password string, err error)

	mu      sync.Mutex
	tok     string    // "" when none
	renewAt time.Time // get a new token from then on
	exp     time.Time // the token's expiry
	// disabled: the cluster said access control is off, so calls carry
	// no token until a member answers 401 (it was turned on).
	disabled bool
	flight   *authFlight // the authentication under way, if any
}

// authFlight is one authentication; done is closed when it ends.
type authFlight struct {
	done chan struct{}
	err  error
}

// newAuthenticator returns the authenticator of cfg's credentials, nil
// when it has none.
func newAuthenticator(cfg Config) *authenticator {
	switch {
	case cfg.Credentials != nil:
		return &authenticator{creds: cfg.Credentials}
	case cfg.Username != "":
		user, pw := cfg.Username, cfg.Password
		return &authenticator{creds: func(context.Context) (string, string, error) { return user, pw, nil }}
	}
	return nil
}

// setToken puts tok in req's Authorization header (nothing when "").
func setToken(req *http.Request, tok string) {
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
}

// callToken returns the token cl should carry: "" without credentials,
// for authentication itself, or while access control is off.
func (c *Client) callToken(ctx context.Context, cl *call) (string, error) {
	if c.auth == nil || cl.noAuth {
		return "", nil
	}
	return c.auth.token(ctx, c)
}

// currentToken returns the token held now, without authenticating.
func (c *Client) currentToken() string {
	if c.auth == nil {
		return ""
	}
	c.auth.mu.Lock()
	defer c.auth.mu.Unlock()
	if time.Now().After(c.auth.exp) {
		return ""
	}
	return c.auth.tok
}

// token returns a valid token, authenticating when there is none or it
// is due for renewal.
func (a *authenticator) token(ctx context.Context, c *Client) (string, error) {
	for {
		a.mu.Lock()
		now := time.Now()
		if a.disabled {
			a.mu.Unlock()
			return "", nil
		}
		if a.tok != "" && (now.Before(a.renewAt) || (a.flight != nil && now.Before(a.exp))) {
			// Fresh, or due but still valid while another call renews it.
			tok := a.tok
			a.mu.Unlock()
			return tok, nil
		}
		if f := a.flight; f != nil {
			a.mu.Unlock()
			select {
			case <-f.done:
			case <-ctx.Done():
				return "", fmt.Errorf("%w: waiting for authentication (%w)", ErrTimeout, ctx.Err())
			}
			if f.err != nil && !errors.Is(f.err, context.Canceled) && !errors.Is(f.err, context.DeadlineExceeded) {
				// Bad credentials are not tried again for every waiter.
				return "", f.err
			}
			continue // the token it got, or ours to get if its caller gave up
		}
		f := &authFlight{done: make(chan struct{})}
		a.flight = f
		a.mu.Unlock()

		tok, exp, disabled, err := c.authenticate(ctx, a.creds)
		now = time.Now()
		a.mu.Lock()
		a.flight = nil
		if err == nil {
			a.tok, a.disabled = tok, disabled
			life := exp.Sub(now)
			if life <= 0 {
				life = unknownLifetime
			}
			a.exp = now.Add(life)
			a.renewAt = a.exp.Add(-min(life/renewFraction, renewMax))
		}
		a.mu.Unlock()
		f.err = err
		close(f.done)
		return tok, err
	}
}

// invalidate drops tok, which a member refused: the next call
// authenticates again. tok "" (a call sent without a token while the
// cluster had access control off) ends the disabled state.
func (a *authenticator) invalidate(tok string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if tok == "" {
		a.disabled = false
		return
	}
	if a.tok == tok {
		a.tok, a.renewAt, a.exp = "", time.Time{}, time.Time{}
	}
}

// authenticate exchanges the credentials for a token. When a member
// refuses them, it asks whether access control is on at all: if not, it
// returns disabled and no token.
func (c *Client) authenticate(ctx context.Context, creds func(context.Context) (string, string, error)) (tok string, exp time.Time, disabled bool, err error) {
	user, pw, err := creds(ctx)
	if err != nil {
		return "", time.Time{}, false, fmt.Errorf("client: credentials: %w", err)
	}
	if user == "" {
		return "", time.Time{}, false, fmt.Errorf("%w: credentials without a user name", ErrInvalidConfig)
	}
	b, err := json.Marshal(api.AuthenticateRequest{User: user, Password: pw})
	if err != nil {
		return "", time.Time{}, false, err
	}
	// Any member checks the password (bcrypt): spread them.
	rep, err := c.do(ctx, &call{method: http.MethodPost, path: "/v1/auth/authenticate", body: b, json: true,
		route: routeSpread, retry: retryAmbiguous, noAuth: true})
	if err != nil {
		var ae *APIError
		if errors.As(err, &ae) && !errors.Is(err, ErrUnavailable) && !errors.Is(err, ErrTimeout) &&
			!errors.Is(err, ErrNotLeader) && ctx.Err() == nil {
			if st, serr := c.AuthStatus(ctx); serr == nil && !st.Enabled {
				c.log.Debug("cairn client: access control is disabled; sending no token", "user", user)
				return "", time.Time{}, true, nil
			}
		}
		return "", time.Time{}, false, fmt.Errorf("client: authenticating as %q: %w", user, err)
	}
	var ar api.AuthenticateResponse
	if err := rep.decode(&ar); err != nil {
		return "", time.Time{}, false, err
	}
	if ar.Token == "" {
		return "", time.Time{}, false, fmt.Errorf("%w: authenticating as %q: the answer has no token", ErrInternal, user)
	}
	c.log.Debug("cairn client: authenticated", "user", user, "expires_at", ar.ExpiresAt)
	return ar.Token, ar.ExpiresAt, false, nil
}

// Access control administration (docs/security.md). Every call but
// AuthStatus needs a user with the admin role once access control is
// enabled. Changes go to the leader and return the auth revision they were
// applied at; they are retried only after failures that certainly did
// nothing, so a change that ends with ErrUnavailable or ErrTimeout may or
// may not have been applied (AuthStatus, UserGet and RoleGet tell).

// authChange sends one auth change and returns its auth revision.
func (c *Client) authChange(ctx context.Context, method, path string, q url.Values, in any) (uint64, error) {
	cl := &call{method: method, path: path, query: q, route: routeLeader, retry: retrySafe}
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return 0, err
		}
		cl.body, cl.json = b, true
	}
	rep, err := c.do(ctx, cl)
	if err != nil {
		return 0, err
	}
	var ar api.AuthChangeResponse
	if err := rep.decode(&ar); err != nil {
		return 0, err
	}
	return ar.Revision, nil
}

// authGet reads an auth route from the leader into out.
func (c *Client) authGet(ctx context.Context, path string, out any) error {
	rep, err := c.do(ctx, &call{method: http.MethodGet, path: path, route: routeLeader, retry: retryAmbiguous})
	if err != nil {
		return err
	}
	return rep.decode(out)
}

// authList reads a list route: a JSON array, or an object holding the
// array under field.
func (c *Client) authList(ctx context.Context, path, field string, out any) error {
	rep, err := c.do(ctx, &call{method: http.MethodGet, path: path, route: routeLeader, retry: retryAmbiguous})
	if err != nil {
		return err
	}
	if err := json.Unmarshal(rep.body, out); err == nil {
		return nil
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(rep.body, &obj); err != nil || obj[field] == nil {
		return fmt.Errorf("client: decoding answer: neither a list nor an object with %q", field)
	}
	return json.Unmarshal(obj[field], out)
}

func userPath(name string) string { return "/v1/auth/users/" + api.PathSegment(name) }
func rolePath(name string) string { return "/v1/auth/roles/" + api.PathSegment(name) }

// AuthStatus says whether access control is enabled, and the auth
// revision. It needs no credentials.
func (c *Client) AuthStatus(ctx context.Context) (*api.AuthStatus, error) {
	rep, err := c.do(ctx, &call{method: http.MethodGet, path: "/v1/auth/status", route: routeLeader,
		retry: retryAmbiguous, noAuth: true})
	if err != nil {
		return nil, err
	}
	var st api.AuthStatus
	if err := rep.decode(&st); err != nil {
		return nil, err
	}
	return &st, nil
}

// AuthEnable turns access control on. The cluster refuses it until a user
// holding the root role exists.
func (c *Client) AuthEnable(ctx context.Context) (uint64, error) {
	return c.authChange(ctx, http.MethodPost, "/v1/auth/enable", nil, nil)
}

// AuthDisable turns access control off: every request is allowed again.
func (c *Client) AuthDisable(ctx context.Context) (uint64, error) {
	return c.authChange(ctx, http.MethodPost, "/v1/auth/disable", nil, nil)
}

// UserAdd creates user name with password, or with none when noPassword
// (the user then authenticates only by client certificate).
func (c *Client) UserAdd(ctx context.Context, name, password string, noPassword bool) (uint64, error) {
	if noPassword && password != "" {
		return 0, fmt.Errorf("%w: a password and noPassword", ErrBadRequest)
	}
	return c.authChange(ctx, http.MethodPut, userPath(name), nil, api.UserRequest{Password: password, NoPassword: noPassword})
}

// UserDelete deletes user name; its tokens stop working at once.
func (c *Client) UserDelete(ctx context.Context, name string) (uint64, error) {
	return c.authChange(ctx, http.MethodDelete, userPath(name), nil, nil)
}

// UserPassword sets user name's password; its tokens stop working at
// once (this client's own too, when it is that user: it authenticates
// again with its credentials on the next call).
func (c *Client) UserPassword(ctx context.Context, name, password string) (uint64, error) {
	return c.authChange(ctx, http.MethodPut, userPath(name)+"/password", nil, api.PasswordRequest{Password: password})
}

// UserList lists the users.
func (c *Client) UserList(ctx context.Context) ([]api.UserInfo, error) {
	var us []api.UserInfo
	if err := c.authList(ctx, "/v1/auth/users", "users", &us); err != nil {
		return nil, err
	}
	return us, nil
}

// UserGet describes user name (ErrNotFound when there is none).
func (c *Client) UserGet(ctx context.Context, name string) (*api.UserInfo, error) {
	var u api.UserInfo
	if err := c.authGet(ctx, userPath(name), &u); err != nil {
		return nil, err
	}
	return &u, nil
}

// UserGrantRole gives user name role.
func (c *Client) UserGrantRole(ctx context.Context, name, role string) (uint64, error) {
	return c.authChange(ctx, http.MethodPut, userPath(name)+"/roles/"+api.PathSegment(role), nil, nil)
}

// UserRevokeRole takes role from user name.
func (c *Client) UserRevokeRole(ctx context.Context, name, role string) (uint64, error) {
	return c.authChange(ctx, http.MethodDelete, userPath(name)+"/roles/"+api.PathSegment(role), nil, nil)
}

// RoleAdd creates role name, with the admin permission when admin.
func (c *Client) RoleAdd(ctx context.Context, name string, admin bool) (uint64, error) {
	return c.authChange(ctx, http.MethodPut, rolePath(name), nil, api.RoleRequest{Admin: admin})
}

// RoleDelete deletes role name (not the built-in root role).
func (c *Client) RoleDelete(ctx context.Context, name string) (uint64, error) {
	return c.authChange(ctx, http.MethodDelete, rolePath(name), nil, nil)
}

// RoleList lists the roles.
func (c *Client) RoleList(ctx context.Context) ([]api.RoleInfo, error) {
	var rs []api.RoleInfo
	if err := c.authList(ctx, "/v1/auth/roles", "roles", &rs); err != nil {
		return nil, err
	}
	return rs, nil
}

// RoleGet describes role name (ErrNotFound when there is none).
func (c *Client) RoleGet(ctx context.Context, name string) (*api.RoleInfo, error) {
	var r api.RoleInfo
	if err := c.authGet(ctx, rolePath(name), &r); err != nil {
		return nil, err
	}
	return &r, nil
}

// RoleGrant gives role p: p.Access (api.AccessRead, AccessWrite or
// AccessReadWrite) on key p.Key, or on every key under it when p.Prefix.
func (c *Client) RoleGrant(ctx context.Context, role string, p api.Permission) (uint64, error) {
	switch p.Access {
	case api.AccessRead, api.AccessWrite, api.AccessReadWrite:
	default:
		return 0, fmt.Errorf("%w: access %q (use %s, %s or %s)", ErrBadRequest, p.Access,
			api.AccessRead, api.AccessWrite, api.AccessReadWrite)
	}
	return c.authChange(ctx, http.MethodPut, rolePath(role)+"/permissions", nil, p)
}

// RoleRevoke takes from role its permission on key (prefix false) or on
// the prefix key (prefix true).
func (c *Client) RoleRevoke(ctx context.Context, role, key string, prefix bool) (uint64, error) {
	q := url.Values{"key": {key}}
	if prefix {
		q.Set("prefix", "true")
	}
	return c.authChange(ctx, http.MethodDelete, rolePath(role)+"/permissions", q, nil)
}
