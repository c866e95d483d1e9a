// Package auth is cairn's access-control model: users, roles, permissions
// on keys and key prefixes, password hashes, bearer tokens, and the
// changes that move the replicated auth state from one revision to the
// next.
//
// The package is pure logic. It knows nothing of raft, bbolt or HTTP: the
// fsm package stores the encoded State and applies encoded Changes taken
// from the raft log; the httpapi package authenticates callers
// (VerifyToken, CheckPassword) and asks Allowed before serving a request.
//
// A *State is an immutable snapshot. Once published (stored in an atomic
// pointer, handed to readers) it is never modified: Apply returns a new
// State and leaves the old one untouched, so any number of goroutines may
// read a State without locks. Callers must not modify the maps or slices
// reachable from a State they did not build themselves; Clone gives a
// private deep copy.
//
// See DESIGN.md beside this file for the reasoning: why tokens are HMACs
// bound to a per-user generation, why the token key is replicated, what a
// token proves and how a grant covers a request.
package auth

import "errors"

// Errors returned by the package. Callers compare with errors.Is: every
// error returned wraps one of these (with %w) and adds detail. Some
// sentinels wrap a broader one, noted below: for example every token
// error is also ErrUnauthenticated, and ErrTokenMAC is also
// ErrInvalidToken.
var (
	// ErrUnauthenticated means a caller's credentials are missing or not
	// valid. It is the parent of ErrInvalidToken, ErrTokenExpired,
	// ErrUnknownUser and ErrBadPassword.
	ErrUnauthenticated = errors.New("auth: unauthenticated")
	// ErrPermissionDenied means an authenticated user's roles do not
	// allow what was asked.
	ErrPermissionDenied = errors.New("auth: permission denied")
	// ErrInvalidToken means a bearer token is not one this cluster issued
	// or has been revoked. The narrower ErrToken* sentinels wrap it.
	ErrInvalidToken = wrapSentinel("auth: invalid token", ErrUnauthenticated)
	// ErrTokenExpired means a token was valid but its expiry has passed.
	// It wraps ErrUnauthenticated (not ErrInvalidToken).
	ErrTokenExpired = wrapSentinel("auth: token expired", ErrUnauthenticated)
	// ErrUnknownUser means the user named by a token or a login does not
	// exist (or was deleted). It wraps ErrUnauthenticated.
	ErrUnknownUser = wrapSentinel("auth: unknown user", ErrUnauthenticated)
	// ErrBadPassword means a password does not match the stored hash, or
	// the user has no password. It wraps ErrUnauthenticated.
	ErrBadPassword = wrapSentinel("auth: bad password", ErrUnauthenticated)

	// ErrTokenMalformed means a token does not have the shape
	// "cairn1.<payload>.<mac>" or is too long. It wraps ErrInvalidToken.
	ErrTokenMalformed = wrapSentinel("auth: malformed token", ErrInvalidToken)
	// ErrTokenVersion means a token does not start with the "cairn1."
	// version prefix. It wraps ErrInvalidToken.
	ErrTokenVersion = wrapSentinel("auth: unknown token version", ErrInvalidToken)
	// ErrTokenEncoding means a token part is not canonical unpadded
	// base64url. It wraps ErrInvalidToken.
	ErrTokenEncoding = wrapSentinel("auth: bad token encoding", ErrInvalidToken)
	// ErrTokenMAC means a token's MAC does not match its payload under
	// the cluster's token key (tampered, or issued with another key). It
	// wraps ErrInvalidToken.
	ErrTokenMAC = wrapSentinel("auth: token signature mismatch", ErrInvalidToken)
	// ErrTokenPayload means a token's MAC matched but its payload is not
	// the expected JSON. It wraps ErrInvalidToken.
	ErrTokenPayload = wrapSentinel("auth: bad token payload", ErrInvalidToken)
	// ErrTokenRevoked means a token's generation is not the user's
	// current one: the password changed (or the user was re-created)
	// since it was issued. It wraps ErrInvalidToken.
	ErrTokenRevoked = wrapSentinel("auth: token revoked", ErrInvalidToken)

	// ErrInvalid means a change, a name, a permission or an encoded
	// state is malformed, or a change is not allowed in the current
	// state (changing the root role, enabling without a 32-byte key).
	ErrInvalid = errors.New("auth: invalid")
	// ErrNotFound means a change names a user, role or permission that
	// does not exist.
	ErrNotFound = errors.New("auth: not found")
	// ErrExists means a change creates a user or role that already
	// exists.
	ErrExists = errors.New("auth: already exists")
	// ErrNoRoot means a change is refused because it would leave auth
	// enabled with no user holding the root role: enabling before such a
	// user exists, or deleting the last one (or revoking its root role)
	// while auth is enabled.
	ErrNoRoot = errors.New("auth: no user holds the root role")
)

// sentinel is an error with a fixed message that also matches a broader
// sentinel under errors.Is.
type sentinel struct {
	msg    string
	parent error
}

func wrapSentinel(msg string, parent error) error { return &sentinel{msg: msg, parent: parent} }

func (e *sentinel) Error() string { return e.msg }
func (e *sentinel) Unwrap() error { return e.parent }
