package node

import (
	"errors"

	"github.com/cairn-db/cairn/feed"
	"github.com/cairn-db/cairn/httpapi"
)

// Errors returned by the node. Those a request can meet are the HTTP
// API's (package httpapi defines them as its Service's errors and maps
// them, and fsm's, to api error codes in one place); they are the same
// values here, so errors.Is works with either name.
var (
	// ErrInvalidConfig means a Config failed validation.
	ErrInvalidConfig = errors.New("node: invalid config")
	// ErrBadRequest means a request was malformed.
	ErrBadRequest = httpapi.ErrBadRequest
	// ErrTooLarge means a request, key or value exceeded a limit.
	ErrTooLarge = httpapi.ErrTooLarge
	// ErrNotLeader means the operation needs the leader and this node is
	// not it (and could not forward).
	ErrNotLeader = httpapi.ErrNotLeader
	// ErrNoLeader means no leader is known, or it could not be reached.
	ErrNoLeader = httpapi.ErrNoLeader
	// ErrTooStale means a stale read's max_staleness was exceeded.
	ErrTooStale = httpapi.ErrTooStale
	// ErrTimeout means an operation did not finish in time; a write may
	// or may not have been applied (retry with the same idempotency key).
	ErrTimeout = httpapi.ErrTimeout
	// ErrShuttingDown means the node is stopping.
	ErrShuttingDown = httpapi.ErrShuttingDown
	// ErrUnknownMember means no member has the given id.
	ErrUnknownMember = httpapi.ErrUnknownMember
	// ErrNoSpace means a client write was refused before it was proposed:
	// the store's bytes in use reached Config.QuotaBackendBytes, or the
	// data directory's filesystem has fewer than Config.MinFreeBytes free.
	// Nothing was written. Transactions made only of deletes are still
	// taken, and compaction and defragmentation go on (space.go).
	ErrNoSpace = httpapi.ErrNoSpace
	// ErrTooManyWatchers means the node already serves its maximum of
	// concurrent watch streams (Config.MaxWatchers).
	ErrTooManyWatchers = feed.ErrTooManySubscribers
)
