package httpapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/cairn-db/cairn/api"
	"github.com/cairn-db/cairn/auth"
	"github.com/cairn-db/cairn/fsm"
	"github.com/cairn-db/cairn/internal/tlsutil"
)

// Access control (DESIGN.md, "Access control"). With the auth state that
// the Service returns enabled, every request is authenticated (a bearer
// token, else the verified client certificate's CN, else anonymous) and
// decided by its route's rule (the routes table in handler.go) before the
// handler runs: 401 unauthenticated when it needs a user and has none or
// its credentials are not valid, 403 permission_denied when the user may
// not. Nothing reaches the Service on a refusal. With it disabled (or no
// auth state) nothing changes: no credentials are needed or looked at.

// rule is who may call a route while access control is on.
type rule uint8

const (
	// ruleOpen: anyone (health, readiness, metrics, member status,
	// request statistics, the status page's files, authenticate, auth
	// status: none of them shows a key).
	ruleOpen rule = iota
	// ruleMembers: the members-only routes, authenticated by member
	// certificate as before access control (auth.go); no user.
	ruleMembers
	// ruleJoin: a member certificate (a member joining itself, auth.go),
	// or, without member authentication (no TLS), an admin user.
	ruleJoin
	// ruleAdmin: a user with an admin role.
	ruleAdmin
	// ruleReadKey: read on the key in the path.
	ruleReadKey
	// ruleReadPrefix: read on the whole prefix asked for (?prefix=).
	ruleReadPrefix
	// ruleWatch: read on the whole prefix asked for; failing that, read
	// on the key equal to it, and the stream then shows that key only.
	ruleWatch
	// ruleWrite: what the route's transaction needs (fsm.TxnNeeds: read
	// on each precondition's key, write on each operation's key, write
	// on the whole prefix of a delete_prefix). The user is authenticated
	// before the handler runs; write decides on the transaction it built,
	// before Service.Write.
	ruleWrite
	// ruleMirror: a mirror's routes on its source (the stream, the
	// checkpoint): an admin, or a user with read on the whole keyspace
	// (a read permission on the empty prefix), since the stream carries
	// every key's history.
	ruleMirror
)

// authRecheckInterval bounds how long an idle watch stream goes without
// re-checking its permission after an auth change.
const authRecheckInterval = time.Second

// maxBcrypt bounds the password hashes and checks that run at once on a
// member (bcrypt takes tens of milliseconds of CPU each).
const maxBcrypt = 4

// Reasons of failed authentications and refusals, the label of
// Options.AuthFailure (cairn_auth_failures_total{reason}).
const (
	ReasonBadPassword  = "bad_password"
	ReasonBadToken     = "bad_token"
	ReasonExpiredToken = "expired_token"
	ReasonUnknownUser  = "unknown_user"
	ReasonDenied       = "denied"
)

// credential is how a caller authenticated.
type credential uint8

const (
	credNone   credential = iota // anonymous
	credToken                    // a bearer token
	credCert                     // a client certificate's CN
	credMember                   // a member vouching for a request it forwarded
)

// caller is who sent a request, as decided against one auth state. The
// access check puts it in the request's context for the routes that need
// it later (ruleWrite, ruleWatch, and every route while access control is
// on).
type caller struct {
	// state is the auth state the request was decided against; nil
	// when access control is off.
	state *auth.State
	cred  credential
	// user is the authenticated user ("" for anonymous or a member).
	user string
	// token and at are the bearer token and when it was verified: a
	// watch re-verifies it after an auth change as of at, so that only
	// a revocation (not its expiry) ends the stream.
	token string
	at    time.Time
	// authorization is the request's Authorization header, passed on
	// when a member forwards the request (Peer).
	authorization string
}

type callerKey struct{}

// callerOf returns the caller the access check put in ctx (the zero
// caller, access control off, when there is none).
func callerOf(ctx context.Context) caller {
	c, _ := ctx.Value(callerKey{}).(caller)
	return c
}

// on reports whether access control applies to the caller's request.
func (c caller) on() bool { return c.state != nil && c.state.Enabled }

// check authenticates r and decides it by rl. It returns the request to
// serve (carrying its caller), or the refusal.
func (h *handler) check(r *http.Request, rl rule) (*http.Request, error) {
	st := h.svc.AuthState()
	if st == nil || rl == ruleOpen || rl == ruleMembers {
		return r, nil
	}
	if !st.Enabled {
		if rl != ruleWrite && rl != ruleWatch {
			return r, nil
		}
		// A write is stamped, and a watch re-checked, against the
		// state it was decided by: access control off.
		return r.WithContext(context.WithValue(r.Context(), callerKey{}, caller{state: st})), nil
	}
	c, err := h.authenticate(r, st)
	if err == nil {
		err = h.decide(r, rl, c)
	}
	if err != nil {
		return nil, err
	}
	return r.WithContext(context.WithValue(r.Context(), callerKey{}, c)), nil
}

// authenticate finds the caller of r under st: a member vouching for a
// request it forwarded (with member authentication), the user of a bearer
// token (a bad one is refused, never replaced by the certificate), the
// user a verified client certificate names (not a member's), or
// anonymous.
func (h *handler) authenticate(r *http.Request, st *auth.State) (caller, error) {
	c := caller{state: st, authorization: r.Header.Get("Authorization")}
	if claimed := r.Header.Get(api.HeaderForwarded); claimed != "" && h.auth != nil {
		// The member checked its caller; without member authentication
		// (no TLS) the header proves nothing and the request's own
		// credentials (passed on by Peer) decide.
		if id, err := h.member(r, "a request marked "+api.HeaderForwarded); err == nil && id != "" {
			c.cred = credMember
			return c, nil
		}
	}
	if c.authorization != "" {
		scheme, tok, _ := strings.Cut(c.authorization, " ")
		if !strings.EqualFold(scheme, "Bearer") || tok == "" {
			h.authFailure(r, ReasonBadToken, "", nil)
			return c, fmt.Errorf("%w: the Authorization header must be \"Bearer <token>\" (POST /v1/auth/authenticate)", ErrUnauthenticated)
		}
		now := time.Now()
		user, err := st.VerifyToken(tok, now)
		if err != nil {
			reason := ReasonBadToken
			switch {
			case errors.Is(err, auth.ErrTokenExpired):
				reason = ReasonExpiredToken
			case errors.Is(err, auth.ErrUnknownUser):
				reason = ReasonUnknownUser
			}
			h.authFailure(r, reason, "", err)
			return c, fmt.Errorf("%w: %w", ErrUnauthenticated, err)
		}
		c.cred, c.user, c.token, c.at = credToken, user, tok, now
		return c, nil
	}
	if user := certUser(r, st); user != "" {
		c.cred, c.user = credCert, user
	}
	return c, nil
}

// certUser returns the user a verified TLS client certificate names: its
// subject's common name, when such a user exists and the certificate is
// not a member's (a member certificate is not a user).
func certUser(r *http.Request, st *auth.State) string {
	if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 || len(r.TLS.PeerCertificates) == 0 {
		return ""
	}
	cert := r.TLS.PeerCertificates[0]
	if _, member := tlsutil.MemberID(cert); member {
		return ""
	}
	name := cert.Subject.CommonName
	if name == "" || !userExists(st, name) {
		return ""
	}
	return name
}

// decide applies rl to the authenticated caller c.
func (h *handler) decide(r *http.Request, rl rule, c caller) error {
	if c.cred == credMember {
		return nil
	}
	if rl == ruleJoin && h.auth != nil {
		// Only a member certificate joins (joinCaller checks it).
		return nil
	}
	if c.cred == credNone {
		return fmt.Errorf("%w: access control is on: authenticate (POST /v1/auth/authenticate) and send \"Authorization: Bearer <token>\"",
			ErrUnauthenticated)
	}
	var need auth.Need
	switch rl {
	case ruleWrite:
		// Decided on the transaction, in write.
		return nil
	case ruleAdmin, ruleJoin:
		need = auth.Need{Admin: true}
	case ruleMirror:
		if c.state.IsAdmin(c.user) {
			return nil
		}
		need = auth.Need{Access: auth.Read, Key: "", Prefix: true}
	case ruleReadKey:
		need = auth.Need{Access: auth.Read, Key: r.PathValue("key")}
	case ruleReadPrefix, ruleWatch:
		need = auth.Need{Access: auth.Read, Key: query(r).Get("prefix"), Prefix: true}
		if rl == ruleWatch {
			err := c.state.Allowed(c.user, need)
			if err == nil || c.state.Allowed(c.user, auth.Need{Access: auth.Read, Key: need.Key}) != nil {
				return h.denied(r, c, err)
			}
			// Read on the key only: the stream shows that key (watch).
			return nil
		}
	default:
		return fmt.Errorf("httpapi: route without an access rule (%d)", rl)
	}
	return h.denied(r, c, c.state.Allowed(c.user, need))
}

// denied passes on a refusal of c's request, counted and logged; nil
// passes.
func (h *handler) denied(r *http.Request, c caller, err error) error {
	if err == nil {
		return nil
	}
	h.authFailure(r, ReasonDenied, c.user, err)
	return permissionDenied(err)
}

// permissionDenied is err as this package's ErrPermissionDenied (auth's
// and fsm's map to the same code; this keeps one sentinel to test).
func permissionDenied(err error) error {
	if errors.Is(err, ErrPermissionDenied) {
		return err
	}
	return fmt.Errorf("%w: %w", ErrPermissionDenied, err)
}

// allowTxn decides a transaction for its caller and stamps the caller
// into it: AuthUser and AuthRevision, which apply re-checks when the auth
// state changed meanwhile. Whatever the transaction carried is replaced.
// A member's forwarded request is stamped with no user (apply refuses it
// while access control is on: a member forwards writes typed, with their
// stamp, through ForwardWritesPath).
func (h *handler) allowTxn(r *http.Request, t *fsm.Txn) error {
	c := callerOf(r.Context())
	t.AuthUser, t.AuthRevision = "", 0
	if c.state == nil {
		// No auth state (or a route without ruleWrite): apply refuses
		// the unstamped transaction if access control is on.
		return nil
	}
	t.AuthRevision = c.state.Revision
	if !c.state.Enabled || c.cred == credMember {
		return nil
	}
	for _, need := range fsm.TxnNeeds(t) {
		if err := c.state.Allowed(c.user, need); err != nil {
			return h.denied(r, c, err)
		}
	}
	t.AuthUser = c.user
	return nil
}

// recheck decides again, against st, whether c may go on reading with
// need (a watch after an auth change): nil, or why not (unauthenticated
// when its credentials no longer hold, permission denied when its roles
// no longer allow it).
func recheck(c caller, st *auth.State, need auth.Need) error {
	if st == nil || !st.Enabled || c.cred == credMember {
		return nil
	}
	user := c.user
	switch c.cred {
	case credToken:
		// As of when it was verified: only a revocation (the user
		// deleted, its password changed) ends the stream, not expiry.
		u, err := st.VerifyToken(c.token, c.at)
		if err != nil {
			return fmt.Errorf("%w: the stream's token is no longer valid: %w", ErrUnauthenticated, err)
		}
		user = u
	case credCert:
		if !userExists(st, user) {
			return fmt.Errorf("%w: user %q no longer exists", ErrUnauthenticated, user)
		}
	default:
		return fmt.Errorf("%w: access control is now on: authenticate and watch again", ErrUnauthenticated)
	}
	if err := st.Allowed(user, need); err != nil {
		return permissionDenied(err)
	}
	return nil
}

// authFailure counts and logs a failed authentication or a refusal,
// without secrets: the reason, the user named (if any), the route and
// the client's address.
func (h *handler) authFailure(r *http.Request, reason, user string, err error) {
	if h.onAuthFailure != nil {
		h.onAuthFailure(reason)
	}
	args := []any{"reason", reason, "method", r.Method, "path", r.URL.Path, "remote", r.RemoteAddr}
	if user != "" {
		args = append(args, "user", user)
	}
	if err != nil {
		args = append(args, "err", err)
	}
	h.log.Info("access refused", args...)
}

// userExists reports whether st has user name.
func userExists(st *auth.State, name string) bool {
	_, ok := st.User(name)
	return ok
}

// authorization returns the Authorization header of the client request
// ctx carries ("" when none), which Peer passes on when the member
// forwards the request: without member authentication (no TLS) the
// leader decides on the client's own credentials.
func authorization(ctx context.Context) string { return callerOf(ctx).authorization }
