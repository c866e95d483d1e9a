package client

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"testing"

	"github.com/cairn-db/cairn/api"
)

// TestErrorCode: an answer keeps the server's code, whatever it is; a
// client error has its sentinel's code; the pairs of codeSentinels go
// both ways.
func TestErrorCode(t *testing.T) {
	codes := []string{api.CodeBadRequest, api.CodeNotFound, api.CodeConflict, api.CodeCompacted, api.CodeFutureRevision,
		api.CodeTooLarge, api.CodeNotLeader, api.CodeUnavailable, api.CodeTimeout, api.CodeMethod, api.CodeInternal,
		api.CodePermissionDenied, api.CodeUnauthenticated, api.CodeCorrupt, api.CodeNoSpace, api.CodeTooManyRequests,
		api.CodeRequestTimeout, api.CodeReadOnly, api.CodeMirrorState}
	for _, code := range codes {
		body, err := json.Marshal(api.ErrorResponse{Error: api.Error{Code: code, Message: "m"}})
		if err != nil {
			t.Fatal(err)
		}
		err = errorFromResponse(api.Status(code), http.Header{}, body)
		if got := ErrorCode(fmt.Errorf("wrapped: %w", err)); got != code {
			t.Errorf("answer %s: ErrorCode %q", code, got)
		}
	}
	for _, cs := range codeSentinels {
		if got := sentinelFor(cs.code, 0); got != cs.err {
			t.Errorf("sentinelFor(%s) = %v, want %v", cs.code, got, cs.err)
		}
		if cs.code == api.CodeMethod {
			continue // ErrBadRequest's code is bad_request
		}
		if got := ErrorCode(fmt.Errorf("%w: made by the client", cs.err)); got != cs.code {
			t.Errorf("ErrorCode(%v) = %q, want %q", cs.err, got, cs.code)
		}
	}
	for _, err := range []error{ErrTLS, ErrInvalidConfig, ErrClosed, errors.New("other")} {
		if got := ErrorCode(err); got != "" {
			t.Errorf("ErrorCode(%v) = %q, want none", err, got)
		}
	}
	// Not a cairn answer: no code, the sentinel's by status.
	if got := ErrorCode(errorFromResponse(http.StatusNotFound, http.Header{}, []byte("nginx"))); got != api.CodeNotFound {
		t.Errorf("a proxy's 404: %q", got)
	}
}
