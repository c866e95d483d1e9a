package node

import (
	"bufio"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/cairn-db/cairn/api"
)

// TestMemberClientLimits: a member answers a stalled request body 408
// request_timeout after --request-body-timeout and closes the connection
// (raw TCP: headers and 3 bytes of a 10-byte body, then nothing), and
// refuses a client's watch stream past --max-watchers-per-client with 429.
func TestMemberClientLimits(t *testing.T) {
	n := startSingle(t, func(c *Config) {
		c.RequestBodyTimeout = 300 * time.Millisecond
		c.MaxWatchersPerClient = 1
	})
	addr := strings.TrimPrefix(n.HTTPURL(), "http://")
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(20 * time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(conn, "PUT /v1/kv/stalled HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc"); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("no answer to a stalled body: %v", err)
	}
	var er api.ErrorResponse
	_ = json.NewDecoder(resp.Body).Decode(&er)
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestTimeout || er.Error.Code != api.CodeRequestTimeout {
		t.Fatalf("stalled body: HTTP %d %+v", resp.StatusCode, er.Error)
	}
	if _, err := br.ReadByte(); err != io.EOF {
		t.Fatalf("connection still open after 408: %v", err)
	}
	if code, _ := do(t, "GET", n.HTTPURL()+"/v1/kv/stalled", ""); code != http.StatusNotFound {
		t.Fatalf("the stalled write: GET answers %d, want 404", code)
	}

	first := openWatch(t, n.HTTPURL()+"/v1/watch")
	if ev := first.next(true); ev.Type != api.WatchProgress {
		t.Fatalf("first line %+v", ev)
	}
	code, body := do(t, "GET", n.HTTPURL()+"/v1/watch", "")
	if code != http.StatusTooManyRequests || !strings.Contains(body, api.CodeTooManyRequests) {
		t.Fatalf("second watch from the same address: %d %s", code, body)
	}
}
