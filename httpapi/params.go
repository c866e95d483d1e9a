package httpapi

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path"
	"reflect"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/cairn-db/cairn/api"
	"github.com/cairn-db/cairn/fsm"
)

// badRequest wraps a message as ErrBadRequest.
func badRequest(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrBadRequest, fmt.Sprintf(format, args...))
}

// query returns the request's query parameters, parsed once and kept in
// r.Form (by checkURL in ServeHTTP, or here on first use: r.URL.Query()
// parses the query string again on every call, which was a fifth of what
// a stale GET allocated). Handlers never call ParseForm: it would read a
// PUT's body as a form.
func query(r *http.Request) url.Values {
	if r.Form == nil {
		r.Form = r.URL.Query()
	}
	return r.Form
}

// queryUint parses an optional unsigned query parameter. Given with an
// empty value (?if_revision or ?if_revision=), it is refused: it would
// otherwise read as 0 (for if_revision: "absent").
func queryUint(r *http.Request, name string) (uint64, error) {
	s := query(r).Get(name)
	if s == "" {
		return 0, emptyParam(r, name)
	}
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, badRequest("%s=%q is not a non-negative integer", name, s)
	}
	return v, nil
}

// emptyParam refuses a parameter given without a value, nil when absent.
func emptyParam(r *http.Request, name string) error {
	if query(r).Has(name) {
		return badRequest("query parameter %s has no value (write %s=...)", name, name)
	}
	return nil
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

// queryBool parses an optional boolean query parameter. Given with an
// empty value (?prefix or ?prefix=), it is refused: it would otherwise
// read as false, the opposite of what ?prefix seems to say.
func queryBool(r *http.Request, name string) (bool, error) {
	s := query(r).Get(name)
	if s == "" {
		return false, emptyParam(r, name)
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

// decodeStrict decodes the one JSON value of a request body into v (a
// pointer). Beyond the syntax, it refuses unknown fields, data after the
// value, and what encoding/json would otherwise change or drop without a
// word (checkJSON): a string that is not valid UTF-8 or holds a lone
// surrogate escape (decoded as U+FFFD), an object that names a key twice
// (the last would win), and a field name spelt in another case than the
// API's (encoding/json matches names case-insensitively, so "Key" and
// "key" would both set the key). Every JSON request body is read with it.
func decodeStrict(body []byte, v any) error {
	// Unmarshal checks that the body is one well-formed JSON value
	// before it decodes anything, so checkJSON need not check syntax.
	if err := json.Unmarshal(body, v); err != nil {
		return badRequest("malformed JSON: %v", err)
	}
	if err := checkJSON(body, reflect.TypeOf(v)); err != nil {
		return badRequest("malformed JSON: %v", err)
	}
	return nil
}

// checkURL refuses a request line that would otherwise be served as
// something else than what it says:
//   - a path that is not canonical (an empty, "." or ".." segment, as in
//     /v1/kv/a/../b or /v1/kv/a//b): the mux would redirect it to another
//     path, another key. A key with such segments is sent with its
//     slashes or dots escaped (%2F, %2E), as the Go client does;
//   - a path or query that is not valid UTF-8 or holds a NUL byte once
//     unescaped (keys, prefixes and names never do);
//   - a malformed query string (a bad escape, a ";" separator), which
//     r.URL.Query would drop without a word, and a parameter given twice
//     (only the first would count).
//
// It leaves the parsed query in r.Form, where query finds it.
func checkURL(r *http.Request) error {
	if p := r.URL.EscapedPath(); cleanPath(p) != p {
		return badRequest("path %q has an empty, \".\" or \"..\" segment (it would mean %q); escape the slashes or dots of such a key (%%2F, %%2E)",
			p, cleanPath(p))
	}
	if err := checkText(r.URL.Path); err != nil {
		return badRequest("path: %v", err)
	}
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return badRequest("malformed query string: %v", err)
	}
	for k, vs := range q {
		if err := checkText(k); err != nil {
			return badRequest("query parameter name: %v", err)
		}
		if len(vs) > 1 {
			return badRequest("query parameter %q given %d times", k, len(vs))
		}
		if err := checkText(vs[0]); err != nil {
			return badRequest("query parameter %q: %v", k, err)
		}
	}
	r.Form = q
	return nil
}

// checkText refuses a string that is not valid UTF-8 or holds a NUL byte.
func checkText(s string) error {
	if !utf8.ValidString(s) {
		return fmt.Errorf("%q is not valid UTF-8", s)
	}
	if strings.IndexByte(s, 0) >= 0 {
		return fmt.Errorf("%q holds a NUL byte", s)
	}
	return nil
}

// cleanPath is the canonical form of a path as net/http's ServeMux
// computes it (path.Clean, a trailing slash kept).
func cleanPath(p string) string {
	if p == "" {
		return "/"
	}
	if p[0] != '/' {
		p = "/" + p
	}
	np := path.Clean(p)
	if p[len(p)-1] == '/' && np != "/" {
		np += "/"
	}
	return np
}

// requestBody is a request's body as the handlers read it: a read that
// fails through the client (a malformed chunked encoding, a body cut
// short, a connection reset) is ErrBadRequest, so that it answers 400 and
// is not logged as the member's failure. The size limit's
// *http.MaxBytesError and a timeout (a read deadline) pass unchanged.
type requestBody struct{ io.ReadCloser }

func (b requestBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err != nil && err != io.EOF && !bodyLimitOrTimeout(err) {
		err = fmt.Errorf("%w: reading the request body: %w", ErrBadRequest, err)
	}
	return n, err
}

func bodyLimitOrTimeout(err error) bool {
	var mbe *http.MaxBytesError
	var ne net.Error
	return errors.As(err, &mbe) || errors.Is(err, ErrRequestTimeout) || errors.Is(err, os.ErrDeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout())
}

func wantsJSON(r *http.Request) bool {
	return query(r).Get("format") == "json" || strings.Contains(r.Header.Get("Accept"), "application/json")
}
