package httpapi

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"time"

	"github.com/cairn-db/cairn/api"
)

func (h *handler) compact(w http.ResponseWriter, r *http.Request) error {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return err
	}
	var req api.CompactRequest
	if err := decodeStrict(body, &req); err != nil {
		return err
	}
	if req.Revision == 0 {
		return badRequest("revision is required")
	}
	rev, err := h.svc.Compact(forwardedContext(r), req.Revision)
	if err != nil {
		return err
	}
	setRevision(w, rev)
	writeJSON(w, http.StatusOK, api.WriteResponse{Revision: rev, Time: time.Now().UTC()})
	return nil
}

// forwardedContext is the request's context, marked as forwarded when a
// member sent it (so the Service does not forward it again). The mark
// only prevents loops between members with stale views of the leader;
// it grants nothing.
func forwardedContext(r *http.Request) context.Context {
	if from := r.Header.Get(api.HeaderForwarded); from != "" {
		return WithForwarded(r.Context(), from)
	}
	return r.Context()
}

func (h *handler) status(w http.ResponseWriter, _ *http.Request) error {
	st, err := h.svc.Status()
	if err != nil {
		return err
	}
	setRevision(w, st.Revision)
	writeJSON(w, http.StatusOK, st)
	return nil
}

func (h *handler) members(w http.ResponseWriter, r *http.Request) error {
	resp, err := h.svc.Members(r.Context())
	return answerMembers(w, resp, err)
}

func answerMembers(w http.ResponseWriter, resp api.MembersResponse, err error) error {
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, resp)
	return nil
}

func (h *handler) join(w http.ResponseWriter, r *http.Request) error {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return err
	}
	var req api.JoinRequest
	if err := decodeStrict(body, &req); err != nil {
		return err
	}
	resp, err := h.svc.Join(forwardedContext(r), req)
	return answerMembers(w, resp, err)
}

func (h *handler) remove(w http.ResponseWriter, r *http.Request) error {
	resp, err := h.svc.Remove(forwardedContext(r), r.PathValue("id"))
	return answerMembers(w, resp, err)
}

func (h *handler) promote(w http.ResponseWriter, r *http.Request) error {
	resp, err := h.svc.Promote(forwardedContext(r), r.PathValue("id"))
	return answerMembers(w, resp, err)
}

func (h *handler) transfer(w http.ResponseWriter, r *http.Request) error {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return err
	}
	var req api.TransferRequest
	if len(bytes.TrimSpace(body)) > 0 {
		if err := decodeStrict(body, &req); err != nil {
			return err
		}
	}
	resp, err := h.svc.TransferLeadership(forwardedContext(r), req.ID)
	return answerMembers(w, resp, err)
}

func (h *handler) healthz(w http.ResponseWriter, _ *http.Request) error {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	return nil
}

// readyzWait is how long GET /readyz waits for the member to be ready
// before it answers 503 (Service.WaitReady): long enough for a member
// under steady writes to apply what was committed a moment ago, short
// enough for a probe's timeout.
const readyzWait = 500 * time.Millisecond

func (h *handler) readyz(w http.ResponseWriter, r *http.Request) error {
	if err := h.svc.WaitReady(r.Context(), readyzWait); err != nil {
		writeJSON(w, http.StatusServiceUnavailable, api.ErrorResponse{Error: api.Error{Code: api.CodeUnavailable, Message: err.Error()}})
		return nil
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
	return nil
}
