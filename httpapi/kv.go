package httpapi

import (
	"fmt"
	"io"
	"net/http"
	"strconv"

	"github.com/cairn-db/cairn/api"
	"github.com/cairn-db/cairn/fsm"
)

// maxListLimit caps one page of a listing, a history or the log.
const maxListLimit = 10000

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
	return h.write(w, r, fsm.Txn{Preconditions: conds, Ops: []fsm.Op{{Kind: fsm.OpPut, Key: key, Value: value}}})
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
	return h.write(w, r, fsm.Txn{Preconditions: conds, Ops: []fsm.Op{op}})
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
	return h.write(w, r, t)
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

// write commits t through the leader (the Service forwards it from a
// follower) and answers its result.
func (h *handler) write(w http.ResponseWriter, r *http.Request, t fsm.Txn) error {
	t.IdempotencyKey = r.Header.Get(api.HeaderIdempotencyKey)
	ctx, err := h.forwardedContext(r)
	if err != nil {
		return err
	}
	if err := h.allowTxn(r, &t); err != nil {
		return err
	}
	res, err := h.svc.Write(ctx, t)
	if err != nil {
		return err
	}
	if res.Err != nil {
		return res.Err
	}
	setRevision(w, res.Revision)
	writeJSON(w, http.StatusOK, writeResponse(res))
	return nil
}

// writeResponse is a committed write's answer.
func writeResponse(res fsm.TxnResult) api.WriteResponse {
	return api.WriteResponse{Revision: res.Revision, Time: res.Time, Hash: res.Hash.String(), Replayed: res.Replayed}
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
	if err := h.prepareRead(r); err != nil {
		return err
	}
	kv, at, err := h.svc.Store().Get(key, rev)
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

func (h *handler) list(w http.ResponseWriter, r *http.Request) error {
	if err := knownParams(r, append(readParams, "revision", "prefix", "start_after", "limit", "keys_only")...); err != nil {
		return err
	}
	q := query(r)
	rev, err := queryUint(r, "revision")
	if err != nil {
		return err
	}
	limit, err := queryLimit(r)
	if err != nil {
		return err
	}
	keysOnly, err := queryBool(r, "keys_only")
	if err != nil {
		return err
	}
	if err := h.prepareRead(r); err != nil {
		return err
	}
	res, err := h.svc.Store().List(q.Get("prefix"), fsm.ListOptions{StartAfter: q.Get("start_after"),
		Limit: limit, Revision: rev, KeysOnly: keysOnly})
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
	if err := h.prepareRead(r); err != nil {
		return err
	}
	vs, at, err := h.svc.Store().History(key, fsm.HistoryOptions{Limit: int(min(limit, maxListLimit)), Before: before})
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
