package client

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/cairn-db/cairn/api"
)

// Errors. Answers from the server are *APIError values that unwrap to one
// of these (see errorFromResponse); test with errors.Is.
var (
	// ErrNotFound means the key (or member) does not exist (HTTP 404).
	ErrNotFound = errors.New("client: not found")
	// ErrCompacted means the requested revision has been compacted away
	// (HTTP 410); a *CompactedError names the oldest revision available.
	ErrCompacted = errors.New("client: revision compacted")
	// ErrConflict means a precondition failed and nothing was written (HTTP
	// 409); a *ConflictError lists every failing key with its current
	// revision.
	ErrConflict = errors.New("client: precondition failed")
	// ErrBadRequest means the server refused the request as malformed (HTTP
	// 400), or the client refused options that do not apply.
	ErrBadRequest = errors.New("client: bad request")
	// ErrTooLarge means a key, value or request exceeded a limit (HTTP 413).
	ErrTooLarge = errors.New("client: too large")
	// ErrFutureRevision means a read asked for a revision not yet committed.
	ErrFutureRevision = errors.New("client: revision in the future")
	// ErrUnavailable means no node could serve the request: no leader, a
	// node shutting down, a stale read too far behind, or no endpoint
	// reachable. Writes that end with it may or may not have been applied.
	ErrUnavailable = errors.New("client: unavailable")
	// ErrCorrupt means the member that answered found its stored data
	// damaged and serves no reads until repaired (HTTP 503, code
	// corrupt). The client sends the request to another member, so a
	// call ends with it only when it was pinned to that member
	// (Endpoint) or no other member could serve. Nothing was read from
	// the damaged data.
	ErrCorrupt = errors.New("client: member data corrupt")
	// ErrTimeout means an attempt did not finish in time. Writes that end
	// with it may or may not have been applied.
	ErrTimeout = errors.New("client: timed out")
	// ErrNotLeader means a request reached a node that is not the leader
	// and could not be forwarded.
	ErrNotLeader = errors.New("client: not the leader")
	// ErrNoSpace means a write was refused because the store of the
	// member that answered reached its quota or its disk its free-space
	// reserve (HTTP 507). Nothing was written; reads, deletes and
	// compaction still work, and writes are taken again once there is room
	// (docs/operations.md, "Disk space"). It is not retried.
	ErrNoSpace = errors.New("client: no space")
	// ErrReadOnly means a write reached a standby cluster (a mirror of
	// another cluster, HTTP 409): nothing was written. A standby takes its
	// data from its source only, until it is promoted. It is not retried.
	ErrReadOnly = errors.New("client: read-only: the cluster is a standby")
	// ErrMirrorState means a mirror operation is not allowed in the
	// cluster's mirror state (HTTP 409): starting a mirror that is already
	// following, promoting a primary or a filtered mirror, a loop.
	ErrMirrorState = errors.New("client: mirror operation not allowed in this mirror state")
	// ErrInternal means the server failed unexpectedly (HTTP 500).
	ErrInternal = errors.New("client: internal server error")
	// ErrInvalidConfig means a Config failed validation.
	ErrInvalidConfig = errors.New("client: invalid config")
	// ErrClosed means the Client has been closed.
	ErrClosed = errors.New("client: closed")
	// ErrTLS means a TLS connection could not be set up, for a reason
	// retrying will not fix: the server's certificate is signed by a CA
	// the client does not trust, has expired or is not yet valid, or does
	// not name the host; the server refused the client's certificate or
	// wanted one; or one side speaks TLS and the other plain HTTP. The
	// message names the cause and the endpoint. Such a failure is not
	// retried on that endpoint: a call tries each endpoint once and
	// returns ErrTLS at once when none could be reached and at least one
	// failed this way. The request was not processed by the endpoint
	// that refused it. ErrTLS is not ErrUnavailable (errors.Is tells them
	// apart): the cluster may be up, but this client cannot talk to it
	// until its TLS settings (or the server's) are fixed.
	ErrTLS = errors.New("client: tls")
	// ErrUnauthenticated means the cluster wants a user and the call named
	// none, or credentials that are not valid: a bad user name or
	// password (HTTP 401). A token that expired or was revoked is
	// renewed once by the client before a call ends with it.
	ErrUnauthenticated = errors.New("client: unauthenticated")
	// ErrPermissionDenied means the user's roles do not allow the request,
	// or a members-only route was called without a member certificate
	// (HTTP 403). Nothing was done.
	ErrPermissionDenied = errors.New("client: permission denied")
)

// APIError is an error answer from a node.
type APIError struct {
	// Code is the stable api error code (api.CodeNotFound, ...); empty when
	// the body was not a cairn error.
	Code    string
	Message string
	// Status is the HTTP status.
	Status int
	// Node is the id of the node that answered (Cairn-Node).
	Node string
	// LeaderURL is the leader as known by the answering node, when it said.
	LeaderURL string
	sentinel  error
}

func (e *APIError) Error() string {
	if e.Code == "" {
		return fmt.Sprintf("client: HTTP %d: %s", e.Status, e.Message)
	}
	return fmt.Sprintf("client: %s (HTTP %d): %s", e.Code, e.Status, e.Message)
}

// Unwrap returns the sentinel error for the code (nil for unknown codes).
func (e *APIError) Unwrap() error { return e.sentinel }

// ConflictError is a failed precondition. It unwraps to the *APIError and
// so to ErrConflict.
type ConflictError struct {
	// Conflicts names every failing precondition with the key's current
	// revision (0 when absent).
	Conflicts []api.Conflict
	Err       *APIError
}

func (e *ConflictError) Error() string { return e.Err.Error() }

// Unwrap returns the underlying *APIError.
func (e *ConflictError) Unwrap() error { return e.Err }

// CompactedError is a read before the compaction point. It unwraps to the
// *APIError and so to ErrCompacted.
type CompactedError struct {
	// Oldest is the oldest revision still available.
	Oldest uint64
	Err    *APIError
}

func (e *CompactedError) Error() string { return e.Err.Error() }

// Unwrap returns the underlying *APIError.
func (e *CompactedError) Unwrap() error { return e.Err }

// codeSentinels pairs each api error code with its sentinel error, in
// both directions: sentinelFor reads it from code to sentinel, ErrorCode
// from sentinel to code (the first pair of a sentinel is its code).
var codeSentinels = []struct {
	code string
	err  error
}{
	{api.CodeNotFound, ErrNotFound},
	{api.CodeCompacted, ErrCompacted},
	{api.CodeConflict, ErrConflict},
	{api.CodeBadRequest, ErrBadRequest},
	{api.CodeMethod, ErrBadRequest},
	{api.CodeTooLarge, ErrTooLarge},
	{api.CodeFutureRevision, ErrFutureRevision},
	{api.CodeUnavailable, ErrUnavailable},
	{api.CodeCorrupt, ErrCorrupt},
	{api.CodeTimeout, ErrTimeout},
	{api.CodeNotLeader, ErrNotLeader},
	{api.CodeInternal, ErrInternal},
	{api.CodeNoSpace, ErrNoSpace},
	{api.CodeReadOnly, ErrReadOnly},
	{api.CodeMirrorState, ErrMirrorState},
	{api.CodeUnauthenticated, ErrUnauthenticated},
	{api.CodePermissionDenied, ErrPermissionDenied},
}

// ErrorCode returns the api error code of err: the code of the server's
// answer when err carries one (an *APIError with a code), else the code
// of the sentinel error err wraps (ErrNotFound: api.CodeNotFound, ...),
// else "" (ErrInvalidConfig, ErrClosed and ErrTLS have no code, nor do
// errors from outside the client).
func ErrorCode(err error) string {
	var ae *APIError
	if errors.As(err, &ae) && ae.Code != "" {
		return ae.Code
	}
	for _, cs := range codeSentinels {
		if errors.Is(err, cs.err) {
			return cs.code
		}
	}
	return ""
}

// sentinelFor maps an api error code to its sentinel error.
func sentinelFor(code string, status int) error {
	for _, cs := range codeSentinels {
		if cs.code == code {
			return cs.err
		}
	}
	// Not a cairn answer (a proxy, say): go by status.
	switch status {
	case http.StatusNotFound:
		return ErrNotFound
	case http.StatusBadRequest, http.StatusMethodNotAllowed:
		return ErrBadRequest
	case http.StatusRequestEntityTooLarge:
		return ErrTooLarge
	case http.StatusBadGateway, http.StatusServiceUnavailable:
		return ErrUnavailable
	case http.StatusGatewayTimeout:
		return ErrTimeout
	case http.StatusUnauthorized:
		return ErrUnauthenticated
	case http.StatusForbidden:
		return ErrPermissionDenied
	case http.StatusInsufficientStorage:
		return ErrNoSpace
	}
	return nil
}

// errorFromResponse turns an error answer into the client's error types.
// It is the one place where api error codes become client errors.
func errorFromResponse(status int, h http.Header, body []byte) error {
	ae := &APIError{Status: status, Node: h.Get(api.HeaderNode), LeaderURL: h.Get(api.HeaderLeaderURL)}
	var er api.ErrorResponse
	if err := json.Unmarshal(body, &er); err == nil && er.Error.Code != "" {
		ae.Code, ae.Message = er.Error.Code, er.Error.Message
		if er.Error.LeaderURL != "" {
			ae.LeaderURL = er.Error.LeaderURL
		}
	} else {
		msg := string(body)
		if len(msg) > 200 {
			msg = msg[:200] + "..."
		}
		ae.Message = msg
	}
	ae.sentinel = sentinelFor(ae.Code, status)
	switch ae.Code {
	case api.CodeConflict:
		return &ConflictError{Conflicts: er.Error.Conflicts, Err: ae}
	case api.CodeCompacted:
		return &CompactedError{Oldest: er.Error.OldestRevision, Err: ae}
	}
	return ae
}
