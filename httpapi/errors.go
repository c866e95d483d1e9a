package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"

	"github.com/cairn-db/cairn/api"
	"github.com/cairn-db/cairn/auth"
	"github.com/cairn-db/cairn/feed"
	"github.com/cairn-db/cairn/fsm"
	"github.com/cairn-db/cairn/ui"
)

// errorCode maps an error to its api code. It is the one place where
// errors become codes.
func errorCode(err error) string {
	var mbe *http.MaxBytesError
	var remote *api.Error
	switch {
	case errors.As(err, &remote):
		// The leader's answer to a forwarded request, passed on.
		return remote.Code
	case errors.Is(err, fsm.ErrPermissionDenied):
		// Refused at apply (it may wrap auth.ErrUnauthenticated: a
		// write without a user): the member let the request through.
		return api.CodePermissionDenied
	case errors.Is(err, ErrUnauthenticated), errors.Is(err, auth.ErrUnauthenticated):
		// auth's token and password errors are all auth.ErrUnauthenticated.
		return api.CodeUnauthenticated
	case errors.Is(err, ErrPermissionDenied), errors.Is(err, auth.ErrPermissionDenied):
		return api.CodePermissionDenied
	case errors.Is(err, auth.ErrNotFound):
		return api.CodeNotFound
	case errors.Is(err, auth.ErrExists):
		return api.CodeConflict
	case errors.Is(err, auth.ErrInvalid), errors.Is(err, auth.ErrNoRoot):
		return api.CodeBadRequest
	case errors.Is(err, fsm.ErrCorrupt), errors.Is(err, fsm.ErrDamaged):
		// This member's data failed a check: another member can serve.
		return api.CodeCorrupt
	case errors.Is(err, fsm.ErrReadOnly):
		return api.CodeReadOnly
	case errors.Is(err, fsm.ErrMirrorState), errors.Is(err, fsm.ErrMirrorFiltered), errors.Is(err, fsm.ErrMirrorLoop),
		errors.Is(err, fsm.ErrNotStandby):
		return api.CodeMirrorState
	case errors.Is(err, fsm.ErrInvalidMirror):
		return api.CodeBadRequest
	case errors.Is(err, fsm.ErrConflict):
		return api.CodeConflict
	case errors.Is(err, fsm.ErrNotFound), errors.Is(err, ErrUnknownMember), errors.Is(err, ui.ErrNotFound):
		return api.CodeNotFound
	case errors.Is(err, fsm.ErrCompacted):
		return api.CodeCompacted
	case errors.Is(err, fsm.ErrFutureRevision):
		return api.CodeFutureRevision
	case errors.Is(err, fsm.ErrKeyTooLarge), errors.Is(err, fsm.ErrValueTooLarge), errors.Is(err, ErrTooLarge),
		errors.As(err, &mbe):
		return api.CodeTooLarge
	case errors.Is(err, fsm.ErrInvalidKey), errors.Is(err, fsm.ErrEmptyTxn), errors.Is(err, fsm.ErrDuplicateKey),
		errors.Is(err, fsm.ErrInvalidTxn), errors.Is(err, ErrBadRequest):
		return api.CodeBadRequest
	case errors.Is(err, ErrNotLeader):
		return api.CodeNotLeader
	case errors.Is(err, ErrNoSpace):
		return api.CodeNoSpace
	case errors.Is(err, ErrNoLeader), errors.Is(err, ErrTooStale), errors.Is(err, ErrShuttingDown), errors.Is(err, fsm.ErrClosed),
		errors.Is(err, ErrCanceled), errors.Is(err, ErrMirrorSource),
		errors.Is(err, feed.ErrTooManySubscribers), errors.Is(err, feed.ErrClosed):
		return api.CodeUnavailable
	case errors.Is(err, ErrTooManyRequests):
		return api.CodeTooManyRequests
	case errors.Is(err, ErrRequestTimeout):
		return api.CodeRequestTimeout
	case errors.Is(err, ErrTimeout), errors.Is(err, context.DeadlineExceeded):
		return api.CodeTimeout
	}
	return api.CodeInternal
}

// apiError is err in its wire form. A leader's answer passed on by a
// follower keeps every field the leader set.
func (h *handler) apiError(err error) api.Error {
	var remote *api.Error
	if errors.As(err, &remote) {
		e := *remote
		if (e.Code == api.CodeNotLeader || e.Code == api.CodeUnavailable) && e.Leader == "" {
			e.Leader, e.LeaderURL = h.svc.LeaderInfo()
		}
		return e
	}
	code := errorCode(err)
	e := api.Error{Code: code, Message: err.Error()}
	var ce *fsm.ConflictError
	if errors.As(err, &ce) {
		for _, c := range ce.Conflicts {
			e.Conflicts = append(e.Conflicts, api.Conflict{Key: c.Key, Type: c.Kind.String(), CurrentRevision: c.CurrentRevision})
		}
	}
	var cpe *fsm.CompactedError
	if errors.As(err, &cpe) {
		e.OldestRevision = cpe.Oldest
	}
	if code == api.CodeNotLeader || code == api.CodeUnavailable || code == api.CodeCorrupt {
		e.Leader, e.LeaderURL = h.svc.LeaderInfo()
	}
	return e
}

func (h *handler) writeError(w http.ResponseWriter, err error) {
	e := h.apiError(err)
	switch {
	case e.Code == api.CodeInternal:
		h.log.Error("request failed", "err", err)
	case errors.Is(err, ErrCanceled):
		h.log.Debug("request canceled: the client went away or the member is stopping", "err", err)
	}
	if e.Code == api.CodeUnauthenticated {
		w.Header().Set("WWW-Authenticate", `Bearer realm="cairn"`)
	}
	if e.Code == api.CodeRequestTimeout {
		// The rest of the body may still come: the connection is not
		// reused.
		w.Header().Set("Connection", "close")
	}
	writeJSON(w, api.Status(e.Code), api.ErrorResponse{Error: e})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	_ = enc.Encode(v)
}

func setRevision(w http.ResponseWriter, rev uint64) {
	w.Header().Set(api.HeaderRevision, strconv.FormatUint(rev, 10))
}
