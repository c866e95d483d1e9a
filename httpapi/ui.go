package httpapi

import (
	"bytes"
	"errors"
	"net/http"
	"time"

	"github.com/cairn-db/cairn/api"
	"github.com/cairn-db/cairn/ui"
)

// RequestKind is what a request did, as Options.Observe reports it.
type RequestKind uint8

// Kinds of observed requests.
const (
	// RequestRead is GET /v1/kv (a key or a listing) or GET /v1/history.
	RequestRead RequestKind = iota
	// RequestWrite is PUT or DELETE /v1/kv or POST /v1/txn.
	RequestWrite
)

// requestKinds are the routes whose requests Options.Observe reports,
// by pattern (routes()).
var requestKinds = map[string]RequestKind{
	"GET /v1/kv/{key...}":      RequestRead,
	"GET /v1/kv":               RequestRead,
	"GET /v1/history/{key...}": RequestRead,
	"PUT /v1/kv/{key...}":      RequestWrite,
	"DELETE /v1/kv/{key...}":   RequestWrite,
	"POST /v1/txn":             RequestWrite,
}

// failed reports whether a request that ended with err (nil: served)
// failed, for Options.Observe: it was answered with a status of 500 or
// more (unavailable, not the leader, timed out, no space, internal...),
// and not because its client went away.
func (h *handler) failed(err error) bool {
	return err != nil && !errors.Is(err, ErrCanceled) && api.Status(h.apiError(err).Code) >= http.StatusInternalServerError
}

// stats answers GET /v1/stats: the member's request statistics.
func (h *handler) stats(w http.ResponseWriter, r *http.Request) error {
	if err := knownParams(r); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, h.svc.Stats())
	return nil
}

// uiAsset answers GET /ui/{path...} (and GET /ui): the status page's
// embedded files, with its security headers (ui.SetHeaders). The page's
// data comes from the API, with the caller's credentials.
func (h *handler) uiAsset(w http.ResponseWriter, r *http.Request) error {
	a, err := ui.Open(r.PathValue("path"))
	if err != nil {
		return err
	}
	hdr := w.Header()
	ui.SetHeaders(hdr)
	hdr.Set("Content-Type", a.ContentType)
	hdr.Set("ETag", a.ETag)
	http.ServeContent(w, r, a.Name, time.Time{}, bytes.NewReader(a.Content))
	return nil
}
