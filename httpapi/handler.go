package httpapi

import (
	"fmt"
	"log/slog"
	"net/http"

	"github.com/cairn-db/cairn/api"
)

// Paths of the members-only routes: a follower calls them on the leader
// (Peer). Requests carry api.HeaderForwarded with the caller's id.
const (
	// ForwardWritesPath takes a batch of writes a follower received and
	// answers each one's typed outcome.
	ForwardWritesPath = "/v1/internal/forward/writes"
	// ReadIndexPath answers a read index for a follower's linearizable
	// reads.
	ReadIndexPath = "/v1/internal/read-index"
)

// internalRequestFactor scales the request limit for members-only routes:
// a forwarded batch holds several writes (each within the client limit).
const internalRequestFactor = 2

// Options configure the handler beyond its Service.
type Options struct {
	// Log receives request failures; nil discards.
	Log *slog.Logger
	// Members authenticates the callers of members-only routes (and of
	// calls marked as forwarded by a member): it returns the member that
	// the request's verified TLS client certificate names, or an error
	// when the caller is not a member. Nil means no authentication (no
	// TLS: loopback or --insecure): every caller is taken for the member
	// its api.HeaderForwarded names.
	Members func(*http.Request) (id string, err error)
}

type handler struct {
	svc  Service
	log  *slog.Logger
	auth func(*http.Request) (string, error)
	mux  *http.ServeMux
}

// New returns the HTTP API over svc.
func New(svc Service, opts Options) http.Handler {
	log := opts.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	h := &handler{svc: svc, log: log, auth: opts.Members, mux: http.NewServeMux()}
	routes := []struct {
		pattern string
		fn      func(http.ResponseWriter, *http.Request) error
	}{
		{"PUT /v1/kv/{key...}", h.put},
		{"GET /v1/kv/{key...}", h.get},
		{"DELETE /v1/kv/{key...}", h.delete},
		{"GET /v1/kv", h.list},
		{"POST /v1/txn", h.txn},
		{"GET /v1/history/{key...}", h.history},
		{"GET /v1/log", h.logRead},
		{"GET /v1/chain", h.chain},
		{"GET /v1/watch", h.watch},
		{"POST /v1/compact", h.compact},
		{"GET /v1/backup", h.backup},
		{"POST /v1/verify", h.verify},
		{"GET /v1/status", h.status},
		{"GET /v1/cluster/members", h.members},
		{"POST /v1/cluster/members", h.join},
		{"DELETE /v1/cluster/members/{id}", h.remove},
		{"POST /v1/cluster/members/{id}/promote", h.promote},
		{"POST /v1/cluster/leadership", h.transfer},
		{"POST " + ForwardWritesPath, h.forwardedWrites},
		{"POST " + ReadIndexPath, h.readIndex},
		{"GET /healthz", h.healthz},
		{"GET /readyz", h.readyz},
	}
	for _, rt := range routes {
		fn := rt.fn
		h.mux.HandleFunc(rt.pattern, func(w http.ResponseWriter, r *http.Request) {
			if err := fn(w, r); err != nil {
				h.writeError(w, err)
			}
		})
	}
	h.mux.Handle("GET /metrics", svc.MetricsHandler())
	// Every path matches "/" with any method, so the mux sends here
	// exactly the requests no route above serves (instead of its plain
	// text 404 or 405), and a served request is routed once.
	h.mux.HandleFunc("/", h.noRoute)
	return h
}

// ServeHTTP sets the headers every answer carries, bounds the request
// body and routes the request.
func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set(api.HeaderNode, h.svc.ID())
	if id, u := h.svc.LeaderInfo(); id != "" {
		w.Header().Set(api.HeaderLeader, id)
		if u != "" {
			w.Header().Set(api.HeaderLeaderURL, u)
		}
	}
	limit := h.svc.Limits().MaxRequestBytes
	if r.URL.Path == ForwardWritesPath {
		limit *= internalRequestFactor
	}
	if r.ContentLength > limit {
		h.writeError(w, fmt.Errorf("%w: request body of %d bytes (limit %d)", ErrTooLarge, r.ContentLength, limit))
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, limit)
	h.mux.ServeHTTP(w, r)
}

// noRoute answers, in JSON like every other error, a request that no
// route serves: method_not_allowed when another method serves its path,
// not_found otherwise.
func (h *handler) noRoute(w http.ResponseWriter, r *http.Request) {
	code := api.CodeNotFound
	msg := fmt.Sprintf("no route for %s %s", r.Method, r.URL.Path)
	if h.routeExists(r) {
		code = api.CodeMethod
		msg = fmt.Sprintf("method %s not allowed on %s", r.Method, r.URL.Path)
	}
	writeJSON(w, api.Status(code), api.ErrorResponse{Error: api.Error{Code: code, Message: msg}})
}

// routeExists reports whether some method serves the path (a route other
// than the catch-all "/").
func (h *handler) routeExists(r *http.Request) bool {
	for _, m := range []string{http.MethodGet, http.MethodPut, http.MethodPost, http.MethodDelete} {
		rr := r.Clone(r.Context())
		rr.Method = m
		if _, p := h.mux.Handler(rr); p != "" && p != "/" {
			return true
		}
	}
	return false
}
