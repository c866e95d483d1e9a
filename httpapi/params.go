package httpapi

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/cairn-db/cairn/api"
	"github.com/cairn-db/cairn/fsm"
)

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

// queryLimit parses the limit of a page (a listing, the log): absent, 0
// or above maxListLimit is maxListLimit.
func queryLimit(r *http.Request) (int, error) {
	limit, err := queryUint(r, "limit")
	if err != nil {
		return 0, err
	}
	if limit == 0 || limit > maxListLimit {
		limit = maxListLimit
	}
	return int(limit), nil
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

// readOptions parses the read-consistency parameters; stale is the
// consistency when the request names none and sets no staleness bound
// (linearizable reads are the default except for backups).
func readOptions(r *http.Request, dflt string) (ReadOptions, error) {
	q := query(r)
	o := ReadOptions{Consistency: q.Get("consistency")}
	var err error
	if o.MinRevision, err = queryUint(r, "min_revision"); err != nil {
		return o, err
	}
	if o.Consistency == "" {
		o.Consistency = dflt
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

// prepareRead parses the read-consistency parameters and readies the
// member for the read.
func (h *handler) prepareRead(r *http.Request) error {
	o, err := readOptions(r, api.Linearizable)
	if err != nil {
		return err
	}
	return h.svc.PrepareRead(r.Context(), o)
}

func keyParam(r *http.Request) (string, error) {
	key := r.PathValue("key")
	if err := fsm.ValidateKey(key); err != nil {
		return "", err
	}
	return key, nil
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

func wantsJSON(r *http.Request) bool {
	return query(r).Get("format") == "json" || strings.Contains(r.Header.Get("Accept"), "application/json")
}
