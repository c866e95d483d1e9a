package node

import "errors"

// Errors returned by the node. The HTTP layer maps these, and fsm's
// errors, to api error codes in one place (errorCode in http.go).
var (
	// ErrInvalidConfig means a Config failed validation.
	ErrInvalidConfig = errors.New("node: invalid config")
	// ErrBadRequest means a request was malformed.
	ErrBadRequest = errors.New("node: bad request")
	// ErrTooLarge means a request, key or value exceeded a limit.
	ErrTooLarge = errors.New("node: request too large")
	// ErrNotLeader means the operation needs the leader and this node is
	// not it (and could not forward).
	ErrNotLeader = errors.New("node: not the leader")
	// ErrNoLeader means no leader is known.
	ErrNoLeader = errors.New("node: no known leader")
	// ErrTooStale means a stale read's max_staleness was exceeded.
	ErrTooStale = errors.New("node: too long since last contact with the leader")
	// ErrTimeout means an operation did not finish in time; a write may
	// or may not have been applied (retry with the same idempotency key).
	ErrTimeout = errors.New("node: timed out")
	// ErrShuttingDown means the node is stopping.
	ErrShuttingDown = errors.New("node: shutting down")
	// ErrUnknownMember means no member has the given id.
	ErrUnknownMember = errors.New("node: unknown member")
	// ErrTooManyWatchers means the node already serves its maximum of
	// concurrent watch streams (Config.MaxWatchers).
	ErrTooManyWatchers = errors.New("node: too many watchers")
)
