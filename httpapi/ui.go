package httpapi

import (
	"errors"
	"net/http"
	"strconv"
	"strings"

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
// embedded files, with its security headers (ui.SetHeaders), whole (no
// ranges: they are small), or 304 Not Modified when If-None-Match names
// the file's ETag. The page's data comes from the API, with the caller's
// credentials.
func (h *handler) uiAsset(w http.ResponseWriter, r *http.Request) error {
	a, err := ui.Open(r.PathValue("path"))
	if err != nil {
		return err
	}
	hdr := w.Header()
	ui.SetHeaders(hdr)
	hdr.Set("ETag", a.ETag)
	if etagMatches(r.Header.Get("If-None-Match"), a.ETag) {
		w.WriteHeader(http.StatusNotModified)
		return nil
	}
	hdr.Set("Content-Type", a.ContentType)
	hdr.Set("Content-Length", strconv.Itoa(len(a.Content)))
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		_, _ = w.Write(a.Content)
	}
	return nil
}

// etagMatches reports whether an If-None-Match header names etag (or is
// "*"); weak tags compare by their opaque part, as RFC 9110 has it for
// If-None-Match.
func etagMatches(header, etag string) bool {
	for _, t := range strings.Split(header, ",") {
		t = strings.TrimPrefix(strings.TrimSpace(t), "W/")
		if t == "*" || t == etag {
			return true
		}
	}
	return false
}
