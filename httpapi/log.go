package httpapi

import (
	"net/http"

	"github.com/cairn-db/cairn/api"
	"github.com/cairn-db/cairn/fsm"
)

func (h *handler) logRead(w http.ResponseWriter, r *http.Request) error {
	if err := knownParams(r, append(readParams, "from", "limit")...); err != nil {
		return err
	}
	from, err := queryUint(r, "from")
	if err != nil {
		return err
	}
	limit, err := queryLimit(r)
	if err != nil {
		return err
	}
	if err := h.prepareRead(r); err != nil {
		return err
	}
	recs, at, err := h.svc.Store().Log(from, limit)
	setRevision(w, at)
	if err != nil {
		return err
	}
	out := api.LogResponse{Revision: at, Records: make([]api.Record, 0, len(recs))}
	for _, rec := range recs {
		out.Records = append(out.Records, recordToAPI(rec))
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// recordToAPI converts a transaction record to its wire form.
func recordToAPI(rec fsm.Record) api.Record {
	ar := api.Record{Revision: rec.Revision, Time: rec.Time, User: rec.User, AuthUser: rec.AuthUser, Description: rec.Description,
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
	rev, err := queryUint(r, "revision")
	if err != nil {
		return err
	}
	if err := h.prepareRead(r); err != nil {
		return err
	}
	var p fsm.ChainPoint
	if query(r).Has("revision") {
		p, err = h.svc.Store().HashAt(rev)
	} else {
		p, err = h.svc.Store().Head()
	}
	if err != nil {
		return err
	}
	setRevision(w, p.Revision)
	writeJSON(w, http.StatusOK, api.ChainResponse{Revision: p.Revision, Hash: p.Hash.String()})
	return nil
}
