package httpapi

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"
)

// Stalled request bodies. A request's whole body must arrive within
// Limits.RequestBodyTimeout of the start of its handling (after its
// headers, which the server bounds with its ReadHeaderTimeout): the
// connection gets a read deadline for that long (http.ResponseController),
// lifted once the body has been read to its end. A body read that hits
// the deadline fails with ErrRequestTimeout, answered 408 request_timeout
// on a connection then closed. Requests without a body (GET, and so every
// watch stream) get no deadline: net/http's background read of an idle
// connection would take it for a closed one and end the request.

// timedBody is a request body read under a deadline.
type timedBody struct {
	io.ReadCloser
	rc      *http.ResponseController
	timeout time.Duration
	over    bool // the body ended (EOF or an error): the deadline is settled
}

// guardBody puts r's body, if it has one, under the deadline timeout from
// now. Writers without deadlines (tests' recorders) go without.
func guardBody(w http.ResponseWriter, r *http.Request, timeout time.Duration) {
	if timeout <= 0 || r.Body == nil || r.Body == http.NoBody {
		return
	}
	rc := http.NewResponseController(w)
	if err := rc.SetReadDeadline(time.Now().Add(timeout)); err != nil {
		return
	}
	r.Body = &timedBody{ReadCloser: r.Body, rc: rc, timeout: timeout}
}

func (b *timedBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err == nil || b.over {
		return n, err
	}
	b.over = true
	if errors.Is(err, os.ErrDeadlineExceeded) {
		// Leave the deadline: the connection is closed after the answer.
		return n, fmt.Errorf("%w: the request body did not arrive within %s", ErrRequestTimeout, b.timeout)
	}
	// The body is over: lift the deadline, so the connection's next
	// request and the wait for the answer are not cut off by it.
	_ = b.rc.SetReadDeadline(time.Time{})
	return n, err
}
