package httpapi

import (
	"cmp"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/cairn-db/cairn/api"
	"github.com/cairn-db/cairn/auth"
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
	// ForwardAuthPath takes an auth change (auth.EncodeChange) a follower
	// received, already validated and with its password hashed, and
	// answers the auth revision it was applied at.
	ForwardAuthPath = "/v1/internal/forward/auth"
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
	// TokenTTL is how long a bearer token from POST /v1/auth/authenticate
	// is valid (0: DefaultTokenTTL).
	TokenTTL time.Duration
	// BcryptCost is the cost of the password hashes this member makes
	// (0: auth.BcryptCost; a member's --bcrypt-cost).
	BcryptCost int
	// Pprof serves Go's profiler under /debug/pprof/, to admins when
	// access control is on (a member's --pprof).
	Pprof bool
	// AuthFailure, if set, is called once per failed authentication or
	// refusal by access control with its reason (ReasonBadPassword, ...):
	// node counts them in cairn_auth_failures_total{reason}.
	AuthFailure func(reason string)
	// Observe, if set, is called once per answered read or write (the
	// routes of requestKinds: key reads, listings, history; puts,
	// deletes, transactions) with its kind, how long it took from the
	// access check to the answer, and whether it failed (an answer of
	// 500 or more other than a client that went away): node keeps them
	// for GET /v1/stats.
	Observe func(kind RequestKind, took time.Duration, failed bool)
}

// DefaultTokenTTL is the lifetime of a bearer token when Options.TokenTTL
// is not set.
const DefaultTokenTTL = 10 * time.Minute

type handler struct {
	svc           Service
	log           *slog.Logger
	auth          func(*http.Request) (string, error)
	mux           *http.ServeMux
	tokenTTL      time.Duration
	bcryptCost    int
	onAuthFailure func(reason string)
	observe       func(RequestKind, time.Duration, bool)
	// bcrypt bounds the password checks and hashes running at once.
	bcrypt chan struct{}
	// watchSlots counts the open watch streams per client (watch.go).
	watchSlots clientSlots
	// served holds the pattern of every route (not noRoute's).
	served map[string]bool
}

// New returns the HTTP API over svc.
func New(svc Service, opts Options) http.Handler {
	log := opts.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ttl := opts.TokenTTL
	if ttl <= 0 {
		ttl = DefaultTokenTTL
	}
	h := &handler{svc: svc, log: log, auth: opts.Members, mux: http.NewServeMux(),
		tokenTTL: ttl, bcryptCost: cmp.Or(opts.BcryptCost, auth.BcryptCost), onAuthFailure: opts.AuthFailure, observe: opts.Observe, bcrypt: make(chan struct{}, maxBcrypt)}
	routes := h.routes()
	if opts.Pprof {
		routes = append(routes, pprofRoutes()...)
	}
	h.served = make(map[string]bool, len(routes))
	for _, rt := range routes {
		fn, rl := rt.fn, rt.rule
		kind, observed := requestKinds[rt.pattern]
		observed = observed && h.observe != nil
		h.served[rt.pattern] = true
		h.mux.HandleFunc(rt.pattern, func(w http.ResponseWriter, req *http.Request) {
			var start time.Time
			if observed {
				start = time.Now()
			}
			r, err := h.check(req, rl)
			if err == nil {
				err = fn(w, r)
			}
			if err != nil {
				if req.Context().Err() != nil && errorCode(err) == api.CodeInternal {
					// The client went away (or the member is stopping)
					// and the request failed for it: nobody is reading,
					// and nothing is wrong with the member.
					err = fmt.Errorf("%w: %w", ErrCanceled, err)
				}
				h.writeError(w, err)
			}
			if observed {
				h.observe(kind, time.Since(start), h.failed(err))
			}
		})
	}
	// The mux redirects a path without the trailing slash of a subtree
	// pattern ("/v1/kv/{key...}", "/debug/pprof/") to the path with it:
	// such a path is served by noRoute instead, so that no answer is a
	// redirect (another key, another route).
	extra := map[string]bool{}
	for _, rt := range routes {
		_, p, _ := strings.Cut(rt.pattern, " ")
		if i := strings.LastIndexByte(p, '/'); i > 0 && (i == len(p)-1 || strings.HasSuffix(p, "...}")) {
			if base := p[:i]; !extra[base] {
				extra[base] = true
				h.mux.HandleFunc(base, h.noRoute)
			}
		}
	}
	// Every path matches "/" with any method, so the mux sends here
	// exactly the requests no route above serves (instead of its plain
	// text 404 or 405), and a served request is routed once.
	h.mux.HandleFunc("/", h.noRoute)
	return h
}

// route is one route: its pattern, its access rule and its handler.
type route struct {
	pattern string
	rule    rule
	fn      func(http.ResponseWriter, *http.Request) error
}

// routes is every route with the rule that access control applies to it
// before its handler runs (access.go): the one table of who may do what.
func (h *handler) routes() []route {
	metrics := h.svc.MetricsHandler()
	return []route{
		{"PUT /v1/kv/{key...}", ruleWrite, h.put},
		{"GET /v1/kv/{key...}", ruleReadKey, h.get},
		{"DELETE /v1/kv/{key...}", ruleWrite, h.delete},
		{"GET /v1/kv", ruleReadPrefix, h.list},
		{"POST /v1/txn", ruleWrite, h.txn},
		{"GET /v1/history/{key...}", ruleReadKey, h.history},
		{"GET /v1/watch", ruleWatch, h.watch},
		{"GET /v1/log", ruleAdmin, h.logRead},
		{"GET /v1/chain", ruleMirror, h.chain},
		{"POST /v1/compact", ruleAdmin, h.compact},
		{"GET /v1/backup", ruleAdmin, h.backup},
		{"POST /v1/verify", ruleAdmin, h.verify},
		{"GET /v1/alarms", ruleAdmin, h.alarms},
		{"POST /v1/maintenance/scrub", ruleAdmin, h.scrub},
		{"POST /v1/maintenance/defrag", ruleAdmin, h.defrag},
		{"PUT /v1/maintenance/space", ruleAdmin, h.spaceLimits},
		{"GET /v1/status", ruleOpen, h.status},
		{"GET /v1/stats", ruleOpen, h.stats},
		{"GET /v1/cluster/members", ruleAdmin, h.members},
		{"GET /v1/cluster/status", ruleAdmin, h.clusterStatus},
		{"POST /v1/cluster/members", ruleJoin, h.join},
		{"DELETE /v1/cluster/members/{id}", ruleAdmin, h.remove},
		{"POST /v1/cluster/members/{id}/promote", ruleAdmin, h.promote},
		{"POST /v1/cluster/leadership", ruleAdmin, h.transfer},
		{"POST /v1/auth/authenticate", ruleOpen, h.authenticateUser},
		{"GET /v1/auth/status", ruleOpen, h.authStatus},
		{"POST /v1/auth/enable", ruleAdmin, h.authEnable},
		{"POST /v1/auth/disable", ruleAdmin, h.authDisable},
		{"GET /v1/auth/users", ruleAdmin, h.users},
		{"GET /v1/auth/users/{name}", ruleAdmin, h.user},
		{"PUT /v1/auth/users/{name}", ruleAdmin, h.addUser},
		{"DELETE /v1/auth/users/{name}", ruleAdmin, h.deleteUser},
		{"PUT /v1/auth/users/{name}/password", ruleAdmin, h.setPassword},
		{"PUT /v1/auth/users/{name}/roles/{role}", ruleAdmin, h.grantRole},
		{"DELETE /v1/auth/users/{name}/roles/{role}", ruleAdmin, h.revokeRole},
		{"GET /v1/auth/roles", ruleAdmin, h.roles},
		{"GET /v1/auth/roles/{name}", ruleAdmin, h.role},
		{"PUT /v1/auth/roles/{name}", ruleAdmin, h.addRole},
		{"DELETE /v1/auth/roles/{name}", ruleAdmin, h.deleteRole},
		{"PUT /v1/auth/roles/{name}/permissions", ruleAdmin, h.grantPermission},
		{"DELETE /v1/auth/roles/{name}/permissions", ruleAdmin, h.revokePermission},
		{"GET /v1/mirror/stream", ruleMirror, h.mirrorStream},
		{"POST /v1/mirror/checkpoint", ruleMirror, h.mirrorCheckpoint},
		{"GET /v1/mirror/status", ruleAdmin, h.mirrorStatus},
		{"POST /v1/mirror/start", ruleAdmin, h.mirrorStart},
		{"POST /v1/mirror/stop", ruleAdmin, h.mirrorStop},
		{"POST /v1/mirror/promote", ruleAdmin, h.mirrorPromote},
		{"POST " + ForwardWritesPath, ruleMembers, h.forwardedWrites},
		{"POST " + ReadIndexPath, ruleMembers, h.readIndex},
		{"POST " + ForwardAuthPath, ruleMembers, h.forwardedAuth},
		{"GET " + StateHashPath, ruleMembers, h.stateHash},
		{"POST " + ScrubAskPath, ruleMembers, h.scrubAsk},
		{"GET /healthz", ruleOpen, h.healthz},
		{"GET /version", ruleOpen, h.version},
		{"GET /readyz", ruleOpen, h.readyz},
		// The status page's files only: its data comes from the routes
		// above, with the caller's credentials.
		{"GET /ui", ruleOpen, h.uiAsset},
		{"GET /ui/{path...}", ruleOpen, h.uiAsset},
		{"GET /metrics", ruleOpen, func(w http.ResponseWriter, r *http.Request) error {
			metrics.ServeHTTP(w, r)
			return nil
		}},
	}
}

// ServeHTTP sets the headers every answer carries, checks the request
// line (checkURL: a canonical path, valid UTF-8, a well-formed query
// without repeated parameters), bounds the request body and routes the
// request.
func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set(api.HeaderNode, h.svc.ID())
	if id, u := h.svc.LeaderInfo(); id != "" {
		w.Header().Set(api.HeaderLeader, id)
		if u != "" {
			w.Header().Set(api.HeaderLeaderURL, u)
		}
	}
	if err := checkURL(r); err != nil {
		h.writeError(w, err)
		return
	}
	limits := h.svc.Limits()
	limit := limits.MaxRequestBytes
	if r.URL.Path == ForwardWritesPath {
		limit *= internalRequestFactor
	}
	if r.ContentLength > limit {
		h.writeError(w, fmt.Errorf("%w: request body of %d bytes (limit %d)", ErrTooLarge, r.ContentLength, limit))
		return
	}
	guardBody(w, r, limits.RequestBodyTimeout)
	r.Body = requestBody{http.MaxBytesReader(w, r.Body, limit)}
	h.mux.ServeHTTP(w, r)
}

// noRoute answers, in JSON like every other error, a request that no
// route serves: method_not_allowed, with an Allow header, when another
// method serves its path, not_found otherwise.
func (h *handler) noRoute(w http.ResponseWriter, r *http.Request) {
	code := api.CodeNotFound
	msg := fmt.Sprintf("no route for %s %s", r.Method, r.URL.Path)
	if allow := h.allowed(r); len(allow) > 0 {
		code = api.CodeMethod
		msg = fmt.Sprintf("method %s not allowed on %s (allowed: %s)", r.Method, r.URL.Path, strings.Join(allow, ", "))
		w.Header().Set("Allow", strings.Join(allow, ", "))
	}
	writeJSON(w, api.Status(code), api.ErrorResponse{Error: api.Error{Code: code, Message: msg}})
}

// allowed returns the methods that some route serves the request's path
// with, sorted (HEAD with GET, as the mux serves it), or none.
func (h *handler) allowed(r *http.Request) []string {
	var out []string
	for _, m := range []string{http.MethodDelete, http.MethodGet, http.MethodPost, http.MethodPut} {
		rr := r.Clone(r.Context())
		rr.Method = m
		if _, p := h.mux.Handler(rr); h.served[p] {
			out = append(out, m)
			if m == http.MethodGet {
				out = append(out, http.MethodHead)
			}
		}
	}
	return out
}
