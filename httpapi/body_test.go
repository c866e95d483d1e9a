package httpapi

import (
	"bufio"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/cairn-db/cairn/api"
)

// rawRequest sends head (and a partial body) on a new connection to srv
// and returns the connection, with a deadline for the test's own reads.
func rawRequest(t *testing.T, srv *httptest.Server, head string) net.Conn {
	t.Helper()
	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	if err := conn.SetDeadline(time.Now().Add(20 * time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(conn, head); err != nil {
		t.Fatal(err)
	}
	return conn
}

// TestStalledBodyCutOff: a client that sends its headers and 3 bytes of
// its body, then nothing, is answered 408 request_timeout after the body
// timeout, and its connection is closed; with a fixed length and chunked.
func TestStalledBodyCutOff(t *testing.T) {
	f := newFake()
	f.limits.RequestBodyTimeout = 200 * time.Millisecond
	srv := httptest.NewServer(New(f, Options{}))
	t.Cleanup(srv.Close)
	for name, head := range map[string]string{
		"length":  "PUT /v1/kv/a/x HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc",
		"chunked": "POST /v1/txn HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n{\"o\r\n",
	} {
		t.Run(name, func(t *testing.T) {
			conn := rawRequest(t, srv, head)
			br := bufio.NewReader(conn)
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatalf("no answer: %v", err)
			}
			var er api.ErrorResponse
			if err := json.NewDecoder(resp.Body).Decode(&er); err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusRequestTimeout || er.Error.Code != api.CodeRequestTimeout || !resp.Close {
				t.Fatalf("answer %d %+v (close %v), want 408 %s and the connection closed", resp.StatusCode, er.Error, resp.Close, api.CodeRequestTimeout)
			}
			// The server closes the connection: the next read ends.
			if _, err := br.ReadByte(); !errors.Is(err, io.EOF) {
				t.Fatalf("connection not closed: %v", err)
			}
			if n := len(f.store.recs); n != 3 {
				t.Fatalf("%d records: a cut-off write was applied", n)
			}
		})
	}
}

// TestBodyTimeoutSparesTheRest: a body that arrives in time is served, and
// the connection serves its next request after the timeout has passed; a
// watch stream (no body) outlives the timeout.
func TestBodyTimeoutSparesTheRest(t *testing.T) {
	f := newFake()
	f.limits.RequestBodyTimeout = 100 * time.Millisecond
	srv := httptest.NewServer(New(f, Options{}))
	t.Cleanup(srv.Close)
	conn := rawRequest(t, srv, "PUT /v1/kv/a/x HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc")
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusOK || resp.Close {
		t.Fatalf("put: %d, close %v", resp.StatusCode, resp.Close)
	}
	// A watch on the same connection, open past several timeouts: its
	// progress lines keep coming.
	if _, err := io.WriteString(conn, "GET /v1/watch?progress_interval=50ms HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err = http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("watch: %v %v", resp, err)
	}
	sc := bufio.NewScanner(resp.Body)
	start := time.Now()
	lines := 0
	for time.Since(start) < 5*f.limits.RequestBodyTimeout {
		if !sc.Scan() {
			t.Fatalf("watch ended after %s and %d lines: %v", time.Since(start), lines, sc.Err())
		}
		if !strings.Contains(sc.Text(), `"progress"`) {
			t.Fatalf("line %q", sc.Text())
		}
		lines++
	}
}
