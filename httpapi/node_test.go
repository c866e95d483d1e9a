package httpapi_test

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/cairn-db/cairn/api"
	"github.com/cairn-db/cairn/internal/testutil"
	"github.com/cairn-db/cairn/node"
)

// TestOddInputsRealNode sends the odd inputs of issue 17 to a real
// member (the handler over *node.Node, behind net/http's server): each is
// refused with a JSON 400 or 405, nothing is written, nothing redirects,
// and nothing is logged at ERROR.
func TestOddInputsRealNode(t *testing.T) {
	var logs testutil.SyncBuffer
	cfg := node.DefaultConfig()
	cfg.ID = "n1"
	cfg.DataDir = t.TempDir()
	cfg.Bootstrap = true
	cfg.HTTPAddr = "127.0.0.1:0"
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg.RaftAddr = ln.Addr().String()
	ln.Close()
	cfg.HeartbeatTimeout, cfg.ElectionTimeout, cfg.LeaderLeaseTimeout = 200*time.Millisecond, 200*time.Millisecond, 100*time.Millisecond
	cfg.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	n, err := node.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = n.Close(ctx)
	})
	testutil.WaitFor(t, "n1 ready", 10*time.Second, n.Ready)
	base := n.HTTPURL()
	hc := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	do := func(method, target, body string) (*http.Response, api.Error) {
		t.Helper()
		req, err := http.NewRequest(method, base+target, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var er api.ErrorResponse
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode >= 300 {
			if err := json.Unmarshal(b, &er); err != nil {
				t.Fatalf("%s %s: %d %q is not a JSON error", method, target, resp.StatusCode, b)
			}
		}
		return resp, er.Error
	}
	if resp, e := do("PUT", "/v1/kv/b", "before"); resp.StatusCode != 200 {
		t.Fatalf("put: %d %+v", resp.StatusCode, e)
	}
	for _, tc := range []struct{ method, target, body string }{
		{"POST", "/v1/txn", `{"operations":[{"op":"put","key":"a` + "\xff" + `","value":"eA=="}]}`},
		{"POST", "/v1/txn", `{"operations":[{"op":"put","key":"a\udc00","value":"eA=="}]}`},
		{"POST", "/v1/txn", `{"operations":[{"op":"put","key":"a","value":"eA==","key":"b"}]}`},
		{"PUT", "/v1/kv/a/../b", "after"},
		{"PUT", "/v1/kv/a//b", "after"},
		{"DELETE", "/v1/kv/x/../b", ""},
		{"GET", "/v1/kv?prefix=b&prefix=a", ""},
	} {
		resp, e := do(tc.method, tc.target, tc.body)
		if resp.StatusCode != 400 || e.Code != api.CodeBadRequest {
			t.Errorf("%s %s: %d %+v, want 400 bad_request", tc.method, tc.target, resp.StatusCode, e)
		}
	}
	if resp, e := do("PATCH", "/v1/kv/b", ""); resp.StatusCode != 405 || e.Code != api.CodeMethod || resp.Header.Get("Allow") != "DELETE, GET, HEAD, PUT" {
		t.Errorf("PATCH: %d %+v, Allow %q", resp.StatusCode, e, resp.Header.Get("Allow"))
	}
	// A malformed chunked body.
	u, _ := url.Parse(base)
	conn, err := net.Dial("tcp", u.Host)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := io.WriteString(conn, "PUT /v1/kv/b HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcXX\r\n0\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 400 {
		t.Errorf("malformed chunked body: %d", resp.StatusCode)
	}
	// Nothing was written: b keeps its value, no other key exists.
	var l api.ListResponse
	req, _ := http.NewRequest("GET", base+"/v1/kv?prefix=", nil)
	lr, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer lr.Body.Close()
	if err := json.NewDecoder(lr.Body).Decode(&l); err != nil {
		t.Fatal(err)
	}
	if len(l.KVs) != 1 || l.KVs[0].Key != "b" || string(l.KVs[0].Value) != "before" {
		t.Errorf("keys after the odd inputs: %+v", l.KVs)
	}
	if testutil.HasLine(logs.String(), "level=ERROR") {
		t.Errorf("logged at ERROR:\n%s", logs.String())
	}
}
