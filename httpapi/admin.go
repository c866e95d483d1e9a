package httpapi

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/cairn-db/cairn/api"
	"github.com/cairn-db/cairn/internal/buildinfo"
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
	ctx, err := h.forwardedContext(r)
	if err != nil {
		return err
	}
	resp, err := h.svc.Compact(ctx, req.Revision)
	if err != nil {
		return err
	}
	setRevision(w, resp.Revision)
	if resp.Time.IsZero() {
		resp.Time = time.Now().UTC()
	}
	writeJSON(w, http.StatusOK, resp)
	return nil
}

// defrag serves POST /v1/maintenance/defrag: the answering member gives
// back its store's free pages (it is never forwarded: `cairn defrag` calls
// each member in turn). It takes no body and no parameters.
func (h *handler) defrag(w http.ResponseWriter, r *http.Request) error {
	if err := knownParams(r); err != nil {
		return err
	}
	resp, err := h.svc.Defrag(r.Context())
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, resp)
	return nil
}

// spaceLimits serves PUT /v1/maintenance/space: the answering member
// changes its quota and reserve (api.SpaceLimits; an absent field is left
// as it is) until its next start. Like defrag it is never forwarded:
// `cairn node space` calls each member in turn.
func (h *handler) spaceLimits(w http.ResponseWriter, r *http.Request) error {
	var req api.SpaceLimits
	if err := readJSON(r, &req); err != nil {
		return err
	}
	resp, err := h.svc.SetSpaceLimits(r.Context(), req.QuotaBackendBytes, req.MinFreeBytes)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, resp)
	return nil
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

// clusterStatus serves GET /v1/cluster/status: every member as the
// answering member sees it (Service.ClusterStatus). It takes no
// parameters and is never forwarded: any member can gather it.
func (h *handler) clusterStatus(w http.ResponseWriter, r *http.Request) error {
	if err := knownParams(r); err != nil {
		return err
	}
	resp, err := h.svc.ClusterStatus(r.Context())
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, resp)
	return nil
}

func answerMembers(w http.ResponseWriter, resp api.MembersResponse, err error) error {
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, resp)
	return nil
}

func (h *handler) join(w http.ResponseWriter, r *http.Request) error {
	ctx, member, err := h.joinCaller(r)
	if err != nil {
		return err
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return err
	}
	var req api.JoinRequest
	if err := decodeStrict(body, &req); err != nil {
		return err
	}
	if member != "" && Forwarded(ctx) == "" && req.ID != member {
		return fmt.Errorf("%w: a member certificate can join only its own member: the certificate is member %q's, the request joins %q",
			ErrPermissionDenied, member, req.ID)
	}
	resp, err := h.svc.Join(ctx, req)
	return answerMembers(w, resp, err)
}

// joinCaller authenticates a join before its request is read, and returns
// its context and, with authentication (TLS), the calling member. Only a
// member may ask for a join then: a member certificate joins only its own
// member (the joining member asks for itself, which join checks), unless
// the request is forwarded by a member, which checked its own caller.
// Without authentication anyone may.
func (h *handler) joinCaller(r *http.Request) (context.Context, string, error) {
	if h.auth == nil {
		ctx, err := h.forwardedContext(r)
		return ctx, "", err
	}
	member, err := h.member(r, "joining")
	if err != nil {
		return nil, "", err
	}
	if r.Header.Get(api.HeaderForwarded) != "" {
		return WithForwarded(r.Context(), member), member, nil
	}
	return r.Context(), member, nil
}

func (h *handler) remove(w http.ResponseWriter, r *http.Request) error {
	ctx, err := h.forwardedContext(r)
	if err != nil {
		return err
	}
	resp, err := h.svc.Remove(ctx, r.PathValue("id"))
	return answerMembers(w, resp, err)
}

func (h *handler) promote(w http.ResponseWriter, r *http.Request) error {
	ctx, err := h.forwardedContext(r)
	if err != nil {
		return err
	}
	resp, err := h.svc.Promote(ctx, r.PathValue("id"))
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
	ctx, err := h.forwardedContext(r)
	if err != nil {
		return err
	}
	resp, err := h.svc.TransferLeadership(ctx, req.ID)
	return answerMembers(w, resp, err)
}

// version answers the member's build (api.VersionResponse). It is open,
// like /healthz: a release and commit help an attacker no more than the
// Server header of most services, and operators need them before any
// credentials work (a rolling upgrade, a support request).
func (h *handler) version(w http.ResponseWriter, _ *http.Request) error {
	v := buildinfo.Get()
	v.Node = h.svc.ID()
	writeJSON(w, http.StatusOK, v)
	return nil
}

func (h *handler) healthz(w http.ResponseWriter, _ *http.Request) error {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	return nil
}

// ReadyWait is how long GET /readyz waits for the member to be ready
// before it answers 503 (Service.WaitReady): long enough for a member
// under steady writes to apply what was committed a moment ago, short
// enough for a probe's timeout. A member judging its own readiness for
// GET /v1/cluster/status waits as long.
const ReadyWait = 500 * time.Millisecond

func (h *handler) readyz(w http.ResponseWriter, r *http.Request) error {
	if err := h.svc.WaitReady(r.Context(), ReadyWait); err != nil {
		writeJSON(w, http.StatusServiceUnavailable, api.ErrorResponse{Error: api.Error{Code: api.CodeUnavailable, Message: err.Error()}})
		return nil
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
	return nil
}
