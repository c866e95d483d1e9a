package node

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/cairn-db/cairn/api"
	"github.com/cairn-db/cairn/fsm"
)

// service is what the HTTP layer needs from a node. *Node implements it.
type service interface {
	ID() string
	IsLeader() bool
	LeaderInfo() (id, httpURL string)
	Limits() Limits
	Write(ctx context.Context, t fsm.Txn) (fsm.TxnResult, error)
	Compact(ctx context.Context, rev uint64) error
	PrepareRead(ctx context.Context, o ReadOptions) error
	State() *fsm.FSM
	Status() (api.StatusResponse, error)
	Members(ctx context.Context) (api.MembersResponse, error)
	Join(ctx context.Context, req api.JoinRequest) error
	Remove(ctx context.Context, id string) error
	Promote(ctx context.Context, id string) error
	TransferLeadership(ctx context.Context, id string) error
	WaitReady(ctx context.Context, d time.Duration) error
	Forward(w http.ResponseWriter, r *http.Request, body []byte) error
	ForwardWrite(ctx context.Context, t fsm.Txn) (forwardReply, error)
	WaitForLeaderChange(ctx context.Context, old string) error
	MetricsHandler() http.Handler
}

// Limits are the HTTP layer's request limits.
type Limits struct {
	MaxRequestBytes int64
	MaxValueSize    int
}

// Limits returns the node's request limits.
func (n *Node) Limits() Limits {
	return Limits{MaxRequestBytes: n.cfg.MaxRequestBytes, MaxValueSize: n.cfg.MaxValueSize}
}

// State returns the node's state machine.
func (n *Node) State() *fsm.FSM { return n.fsm }

type handler struct {
	svc service
	log *slog.Logger
	mux *http.ServeMux
}

func newHandler(svc service, log *slog.Logger) http.Handler {
	h := &handler{svc: svc, log: log, mux: http.NewServeMux()}
	routes := []struct {
		pattern string
		fn      func(http.ResponseWriter, *http.Request) error
	}{
		{"PUT /v1/kv/{key...}", h.put},
		{"GET /v1/kv/{key...}", h.get},
		{"DELETE /v1/kv/{key...}", h.delete},
		{"GET /v1/kv", h.list},
		{"POST /v1/txn", h.txn},
		{"POST " + forwardPath, h.forwardedWrites},
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

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set(api.HeaderNode, h.svc.ID())
	if id, u := h.svc.LeaderInfo(); id != "" {
		w.Header().Set(api.HeaderLeader, id)
		if u != "" {
			w.Header().Set(api.HeaderLeaderURL, u)
		}
	}
	if r.ContentLength > h.svc.Limits().MaxRequestBytes {
		h.writeError(w, fmt.Errorf("%w: request body of %d bytes (limit %d)", ErrTooLarge, r.ContentLength, h.svc.Limits().MaxRequestBytes))
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, h.svc.Limits().MaxRequestBytes)
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

// errorCode maps an error to its api code. It is the one place where
// errors become codes.
func errorCode(err error) string {
	var mbe *http.MaxBytesError
	switch {
	case errors.Is(err, fsm.ErrConflict):
		return api.CodeConflict
	case errors.Is(err, fsm.ErrNotFound), errors.Is(err, ErrUnknownMember):
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
	case errors.Is(err, ErrNoLeader), errors.Is(err, ErrTooStale), errors.Is(err, ErrShuttingDown), errors.Is(err, fsm.ErrClosed),
		errors.Is(err, ErrTooManyWatchers):
		return api.CodeUnavailable
	case errors.Is(err, ErrTimeout), errors.Is(err, context.DeadlineExceeded):
		return api.CodeTimeout
	}
	return api.CodeInternal
}

func (h *handler) writeError(w http.ResponseWriter, err error) {
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
	if code == api.CodeNotLeader || code == api.CodeUnavailable {
		e.Leader, e.LeaderURL = h.svc.LeaderInfo()
	}
	if code == api.CodeInternal {
		h.log.Error("request failed", "err", err)
	}
	writeJSON(w, api.Status(code), api.ErrorResponse{Error: e})
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

// badRequest wraps a message as ErrBadRequest.
func badRequest(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrBadRequest, fmt.Sprintf(format, args...))
}

// query returns the request's query parameters, parsed on first use and
// kept in r.Form (r.URL.Query() parses the query string again on every
// call, which was a fifth of what a stale GET allocated). Handlers never
// call ParseForm: it would read a PUT's body as a form.
func query(r *http.Request) url.Values {
	if r.Form == nil {
		r.Form = r.URL.Query()
	}
	return r.Form
}

// queryUint parses an optional unsigned query parameter.
func queryUint(r *http.Request, name string) (uint64, error) {
	s := query(r).Get(name)
	if s == "" {
		return 0, nil
	}
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, badRequest("%s=%q is not a non-negative integer", name, s)
	}
	return v, nil
}

func queryBool(r *http.Request, name string) (bool, error) {
	s := query(r).Get(name)
	if s == "" {
		return false, nil
	}
	v, err := strconv.ParseBool(s)
	if err != nil {
		return false, badRequest("%s=%q is not a boolean", name, s)
	}
	return v, nil
}

// knownParams refuses query parameters the route does not take.
func knownParams(r *http.Request, names ...string) error {
	for k := range query(r) {
		found := false
		for _, n := range names {
			if k == n {
				found = true
				break
			}
		}
		if !found {
			return badRequest("unknown query parameter %q (this route takes: %s)", k, strings.Join(names, ", "))
		}
	}
	return nil
}

var readParams = []string{"consistency", "max_staleness", "min_revision"}

// readOptions parses the read-consistency parameters.
func readOptions(r *http.Request) (ReadOptions, error) {
	q := query(r)
	o := ReadOptions{Consistency: q.Get("consistency")}
	var err error
	if o.MinRevision, err = queryUint(r, "min_revision"); err != nil {
		return o, err
	}
	if o.Consistency == "" {
		o.Consistency = api.Linearizable
		if o.MinRevision > 0 || q.Get("max_staleness") != "" {
			o.Consistency = api.Stale
		}
	}
	if o.Consistency != api.Linearizable && o.Consistency != api.Stale {
		return o, badRequest("unknown consistency %q (use %s or %s)", o.Consistency, api.Linearizable, api.Stale)
	}
	if s := q.Get("max_staleness"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d <= 0 {
			return o, badRequest("max_staleness=%q is not a positive duration (e.g. 500ms)", s)
		}
		o.MaxStaleness = d
	}
	return o, nil
}

// prepareRead parses the read-consistency parameters and readies the node
// for the read, forwarding linearizable reads from a follower to the
// leader. handled reports that the request was answered (forwarded).
func (h *handler) prepareRead(w http.ResponseWriter, r *http.Request) (handled bool, err error) {
	o, err := readOptions(r)
	if err != nil {
		return false, err
	}
	if o.needsLeader() && !h.svc.IsLeader() {
		return true, h.svc.Forward(w, r, nil)
	}
	return false, h.svc.PrepareRead(r.Context(), o)
}

func keyParam(r *http.Request) (string, error) {
	key := r.PathValue("key")
	if err := fsm.ValidateKey(key); err != nil {
		return "", err
	}
	return key, nil
}

func (h *handler) put(w http.ResponseWriter, r *http.Request) error {
	if err := knownParams(r, "if_revision", "if_absent", "if_exists"); err != nil {
		return err
	}
	key, err := keyParam(r)
	if err != nil {
		return err
	}
	value, err := io.ReadAll(r.Body)
	if err != nil {
		return err
	}
	if len(value) > h.svc.Limits().MaxValueSize {
		return fmt.Errorf("%w: value of %d bytes (limit %d)", fsm.ErrValueTooLarge, len(value), h.svc.Limits().MaxValueSize)
	}
	conds, err := writeConditions(r, key)
	if err != nil {
		return err
	}
	return h.write(w, r, value, fsm.Txn{Preconditions: conds, Ops: []fsm.Op{{Kind: fsm.OpPut, Key: key, Value: value}}})
}

// writeConditions parses if_revision, if_absent and if_exists.
func writeConditions(r *http.Request, key string) ([]fsm.Precondition, error) {
	var conds []fsm.Precondition
	rev, err := queryUint(r, "if_revision")
	if err != nil {
		return nil, err
	}
	if query(r).Has("if_revision") {
		if rev == 0 {
			conds = append(conds, fsm.Precondition{Kind: fsm.CondAbsent, Key: key})
		} else {
			conds = append(conds, fsm.Precondition{Kind: fsm.CondRevision, Key: key, Revision: rev})
		}
	}
	for _, p := range []struct {
		name string
		kind fsm.CondKind
	}{{"if_absent", fsm.CondAbsent}, {"if_exists", fsm.CondExists}} {
		b, err := queryBool(r, p.name)
		if err != nil {
			return nil, err
		}
		if b {
			conds = append(conds, fsm.Precondition{Kind: p.kind, Key: key})
		}
	}
	if len(conds) > 1 {
		return nil, badRequest("use one of if_revision, if_absent, if_exists")
	}
	return conds, nil
}

func (h *handler) delete(w http.ResponseWriter, r *http.Request) error {
	if err := knownParams(r, "if_revision", "if_exists", "prefix"); err != nil {
		return err
	}
	key, err := keyParam(r)
	if err != nil {
		return err
	}
	prefix, err := queryBool(r, "prefix")
	if err != nil {
		return err
	}
	conds, err := writeConditions(r, key)
	if err != nil {
		return err
	}
	op := fsm.Op{Kind: fsm.OpDelete, Key: key}
	if prefix {
		if len(conds) > 0 {
			return badRequest("preconditions do not apply to prefix deletes; use a transaction")
		}
		op.Kind = fsm.OpDeletePrefix
	}
	return h.write(w, r, nil, fsm.Txn{Preconditions: conds, Ops: []fsm.Op{op}})
}

func (h *handler) txn(w http.ResponseWriter, r *http.Request) error {
	if err := knownParams(r); err != nil {
		return err
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return err
	}
	var req api.TxnRequest
	if err := decodeStrict(body, &req); err != nil {
		return err
	}
	t, err := txnFromAPI(&req)
	if err != nil {
		return err
	}
	return h.write(w, r, body, t)
}

// decodeStrict decodes one JSON value, refusing unknown fields and
// trailing data.
func decodeStrict(body []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return badRequest("malformed JSON: %v", err)
	}
	if dec.More() {
		return badRequest("malformed JSON: data after the object")
	}
	return nil
}

func txnFromAPI(req *api.TxnRequest) (fsm.Txn, error) {
	t := fsm.Txn{User: req.User, Description: req.Description, Meta: req.Meta}
	for i, p := range req.Preconditions {
		var k fsm.CondKind
		switch p.Type {
		case api.CondExists:
			k = fsm.CondExists
		case api.CondAbsent:
			k = fsm.CondAbsent
		case api.CondRevision:
			k = fsm.CondRevision
		case api.CondValue:
			k = fsm.CondValue
		default:
			return t, badRequest("precondition %d: unknown type %q (use exists, absent, revision, value)", i, p.Type)
		}
		t.Preconditions = append(t.Preconditions, fsm.Precondition{Kind: k, Key: p.Key, Revision: p.Revision, Value: p.Value})
	}
	for i, o := range req.Operations {
		var k fsm.OpKind
		switch o.Op {
		case api.OpPut:
			k = fsm.OpPut
		case api.OpDelete:
			k = fsm.OpDelete
		case api.OpDeletePrefix:
			k = fsm.OpDeletePrefix
		default:
			return t, badRequest("operation %d: unknown op %q (use put, delete, delete_prefix)", i, o.Op)
		}
		t.Ops = append(t.Ops, fsm.Op{Kind: k, Key: o.Key, Value: o.Value})
	}
	return t, nil
}

// write commits t on the leader. A follower forwards it: in a batch with
// other writes (fwdwrites.go), or, when that is not possible, as a proxy
// of the request with its body (already read).
func (h *handler) write(w http.ResponseWriter, r *http.Request, body []byte, t fsm.Txn) error {
	t.IdempotencyKey = r.Header.Get(api.HeaderIdempotencyKey)
	if !h.svc.IsLeader() {
		if r.Header.Get(api.HeaderForwarded) != "" {
			return h.svc.Forward(w, r, body) // refuses: never forwarded twice
		}
		rep, err := h.svc.ForwardWrite(r.Context(), t)
		if errors.Is(err, errProxyWrite) {
			return h.svc.Forward(w, r, body)
		}
		if err != nil {
			return err
		}
		if rep.revision != 0 {
			setRevision(w, rep.revision)
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(rep.status)
		_, _ = w.Write(rep.body)
		return nil
	}
	res, err := h.svc.Write(r.Context(), t)
	if err != nil {
		return err
	}
	return h.answerWrite(w, res)
}

// answerWrite answers a committed write's result.
func (h *handler) answerWrite(w http.ResponseWriter, res fsm.TxnResult) error {
	if res.Err != nil {
		return res.Err
	}
	setRevision(w, res.Revision)
	writeJSON(w, http.StatusOK, api.WriteResponse{Revision: res.Revision, Time: res.Time,
		Hash: res.Hash.String(), Replayed: res.Replayed})
	return nil
}

func wantsJSON(r *http.Request) bool {
	return query(r).Get("format") == "json" || strings.Contains(r.Header.Get("Accept"), "application/json")
}

func (h *handler) get(w http.ResponseWriter, r *http.Request) error {
	if err := knownParams(r, append(readParams, "revision", "format")...); err != nil {
		return err
	}
	if f := query(r).Get("format"); f != "" && f != "json" && f != "raw" {
		return badRequest("format=%q (use json or raw)", f)
	}
	key, err := keyParam(r)
	if err != nil {
		return err
	}
	rev, err := queryUint(r, "revision")
	if err != nil {
		return err
	}
	if handled, err := h.prepareRead(w, r); handled || err != nil {
		return err
	}
	kv, at, err := h.svc.State().Get(key, rev)
	setRevision(w, at)
	if err != nil {
		return err
	}
	if wantsJSON(r) && query(r).Get("format") != "raw" {
		writeJSON(w, http.StatusOK, api.KeyValueResponse{Revision: at, KV: kvToAPI(kv)})
		return nil
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set(api.HeaderModRevision, strconv.FormatUint(kv.ModRevision, 10))
	w.Header().Set(api.HeaderCreateRevision, strconv.FormatUint(kv.CreateRevision, 10))
	_, _ = w.Write(kv.Value)
	return nil
}

func kvToAPI(kv fsm.KeyValue) api.KeyValue {
	return api.KeyValue{Key: kv.Key, Value: kv.Value, CreateRevision: kv.CreateRevision, ModRevision: kv.ModRevision}
}

// maxListLimit caps one page of a listing.
const maxListLimit = 10000

func (h *handler) list(w http.ResponseWriter, r *http.Request) error {
	if err := knownParams(r, append(readParams, "revision", "prefix", "start_after", "limit", "keys_only")...); err != nil {
		return err
	}
	q := query(r)
	rev, err := queryUint(r, "revision")
	if err != nil {
		return err
	}
	limit, err := queryUint(r, "limit")
	if err != nil {
		return err
	}
	if limit == 0 || limit > maxListLimit {
		limit = maxListLimit
	}
	keysOnly, err := queryBool(r, "keys_only")
	if err != nil {
		return err
	}
	if handled, err := h.prepareRead(w, r); handled || err != nil {
		return err
	}
	res, err := h.svc.State().List(q.Get("prefix"), fsm.ListOptions{StartAfter: q.Get("start_after"),
		Limit: int(limit), Revision: rev, KeysOnly: keysOnly})
	setRevision(w, res.Revision)
	if err != nil {
		return err
	}
	out := api.ListResponse{Revision: res.Revision, KVs: make([]api.KeyValue, 0, len(res.KVs)), More: res.More}
	for _, kv := range res.KVs {
		out.KVs = append(out.KVs, kvToAPI(kv))
	}
	if res.More && len(res.KVs) > 0 {
		out.Next = res.KVs[len(res.KVs)-1].Key
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (h *handler) history(w http.ResponseWriter, r *http.Request) error {
	if err := knownParams(r, append(readParams, "limit", "before")...); err != nil {
		return err
	}
	key, err := keyParam(r)
	if err != nil {
		return err
	}
	limit, err := queryUint(r, "limit")
	if err != nil {
		return err
	}
	before, err := queryUint(r, "before")
	if err != nil {
		return err
	}
	if handled, err := h.prepareRead(w, r); handled || err != nil {
		return err
	}
	vs, at, err := h.svc.State().History(key, fsm.HistoryOptions{Limit: int(min(limit, maxListLimit)), Before: before})
	setRevision(w, at)
	if err != nil {
		return err
	}
	out := api.HistoryResponse{Revision: at, Versions: make([]api.Version, 0, len(vs))}
	for _, v := range vs {
		out.Versions = append(out.Versions, api.Version{Key: v.Key, Value: v.Value, Revision: v.Revision,
			CreateRevision: v.CreateRevision, Deleted: v.Deleted})
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (h *handler) logRead(w http.ResponseWriter, r *http.Request) error {
	if err := knownParams(r, append(readParams, "from", "limit")...); err != nil {
		return err
	}
	from, err := queryUint(r, "from")
	if err != nil {
		return err
	}
	limit, err := queryUint(r, "limit")
	if err != nil {
		return err
	}
	if limit == 0 || limit > maxListLimit {
		limit = maxListLimit
	}
	if handled, err := h.prepareRead(w, r); handled || err != nil {
		return err
	}
	recs, at, err := h.svc.State().Log(from, int(limit))
	setRevision(w, at)
	if err != nil {
		return err
	}
	out := api.LogResponse{Revision: at, Records: make([]api.Record, 0, len(recs))}
	for _, rec := range recs {
		out.Records = append(out.Records, RecordToAPI(rec))
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// RecordToAPI converts a transaction record to its wire form.
func RecordToAPI(rec fsm.Record) api.Record {
	ar := api.Record{Revision: rec.Revision, Time: rec.Time, User: rec.User, Description: rec.Description,
		Meta: rec.Meta, IdempotencyKey: rec.IdempotencyKey, Hash: rec.Hash.String(),
		Operations: make([]api.Operation, 0, len(rec.Ops))}
	for _, o := range rec.Ops {
		ar.Operations = append(ar.Operations, api.Operation{Op: o.Kind.String(), Key: o.Key, Value: o.Value})
	}
	return ar
}

func (h *handler) chain(w http.ResponseWriter, r *http.Request) error {
	if err := knownParams(r, append(readParams, "revision")...); err != nil {
		return err
	}
	if handled, err := h.prepareRead(w, r); handled || err != nil {
		return err
	}
	var p fsm.ChainPoint
	var err error
	if query(r).Has("revision") {
		var rev uint64
		if rev, err = queryUint(r, "revision"); err == nil {
			p, err = h.svc.State().HashAt(rev)
		}
	} else {
		p, err = h.svc.State().Head()
	}
	if err != nil {
		return err
	}
	setRevision(w, p.Revision)
	writeJSON(w, http.StatusOK, api.ChainResponse{Revision: p.Revision, Hash: p.Hash.String()})
	return nil
}

// leaderOnly forwards to the leader from a follower; handled reports that
// it did.
func (h *handler) leaderOnly(w http.ResponseWriter, r *http.Request, body []byte) (handled bool, err error) {
	if h.svc.IsLeader() {
		return false, nil
	}
	return true, h.svc.Forward(w, r, body)
}

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
	if handled, err := h.leaderOnly(w, r, body); handled || err != nil {
		return err
	}
	if err := h.svc.Compact(r.Context(), req.Revision); err != nil {
		return err
	}
	setRevision(w, h.svc.State().Revision())
	writeJSON(w, http.StatusOK, api.WriteResponse{Revision: h.svc.State().Revision(), Time: time.Now().UTC()})
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
	if handled, err := h.leaderOnly(w, r, body); handled || err != nil {
		return err
	}
	if err := h.svc.Join(r.Context(), req); err != nil {
		return err
	}
	return h.members(w, r)
}

func (h *handler) remove(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	if handled, err := h.leaderOnly(w, r, nil); handled || err != nil {
		return err
	}
	if id == h.svc.ID() {
		// Removing the leader: hand leadership over, then let the new
		// leader remove this node.
		if err := h.svc.TransferLeadership(r.Context(), ""); err != nil {
			return err
		}
		if err := h.svc.WaitForLeaderChange(r.Context(), id); err != nil {
			return err
		}
		// A new leader with a known URL is confirmed, so the request cannot
		// bounce: drop the mark of the follower's forward, if any.
		r2 := r.Clone(r.Context())
		r2.Header.Del(api.HeaderForwarded)
		return h.svc.Forward(w, r2, nil)
	}
	if err := h.svc.Remove(r.Context(), id); err != nil {
		return err
	}
	return h.members(w, r)
}

func (h *handler) promote(w http.ResponseWriter, r *http.Request) error {
	if handled, err := h.leaderOnly(w, r, nil); handled || err != nil {
		return err
	}
	if err := h.svc.Promote(r.Context(), r.PathValue("id")); err != nil {
		return err
	}
	return h.members(w, r)
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
	if handled, err := h.leaderOnly(w, r, body); handled || err != nil {
		return err
	}
	old := h.svc.ID()
	if err := h.svc.TransferLeadership(r.Context(), req.ID); err != nil {
		return err
	}
	if req.ID != old {
		if err := h.svc.WaitForLeaderChange(r.Context(), old); err != nil {
			return err
		}
	}
	return h.members(w, r)
}

func (h *handler) healthz(w http.ResponseWriter, _ *http.Request) error {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	return nil
}

// readyzWait is how long GET /readyz waits for the member to be ready
// before it answers 503 (Node.WaitReady): long enough for a member under
// steady writes to apply what was committed a moment ago, short enough
// for a probe's timeout.
const readyzWait = 500 * time.Millisecond

func (h *handler) readyz(w http.ResponseWriter, r *http.Request) error {
	if err := h.svc.WaitReady(r.Context(), readyzWait); err != nil {
		writeJSON(w, http.StatusServiceUnavailable, api.ErrorResponse{Error: api.Error{Code: api.CodeUnavailable, Message: err.Error()}})
		return nil
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
	return nil
}
