package httpapi

import (
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"slices"
	"testing"

	"github.com/cairn-db/cairn/api"
	"github.com/cairn-db/cairn/fsm"
	"github.com/cairn-db/cairn/internal/mirrorstream"
)

// readStream parses a mirror stream answer's frames.
func readStream(t *testing.T, body io.Reader) []mirrorstream.Frame {
	t.Helper()
	rd := mirrorstream.NewReader(body, 1<<20)
	var out []mirrorstream.Frame
	for {
		f, err := rd.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatalf("frame %d: %v", len(out), err)
		}
		out = append(out, f)
	}
}

func TestMirrorStreamFrames(t *testing.T) {
	recs := []fsm.RawRecord{{Revision: 2, Hash: fsm.Hash{2}, Canonical: []byte("two")}, {Revision: 3, Hash: fsm.Hash{3}, Canonical: []byte("three")}}
	for _, gz := range []bool{false, true} {
		t.Run(fmt.Sprint("gzip=", gz), func(t *testing.T) {
			f := newFake()
			f.streamRecords = recs
			f.streamErr = fmt.Errorf("gone: %w", fsm.ErrCompacted)
			hdr := map[string]string{}
			if gz {
				hdr["Accept-Encoding"] = "gzip"
			}
			rec := call(f, "GET", "/v1/mirror/stream?from=2&id=c2", "", hdr)
			if rec.Code != 200 {
				t.Fatalf("status %d: %s", rec.Code, rec.Body)
			}
			if ct := rec.Header().Get("Content-Type"); ct != mirrorstream.ContentType {
				t.Fatalf("Content-Type %q", ct)
			}
			var body io.Reader = rec.Body
			if enc := rec.Header().Get("Content-Encoding"); (enc == "gzip") != gz {
				t.Fatalf("Content-Encoding %q with gzip=%v", enc, gz)
			}
			if gz {
				zr, err := gzip.NewReader(rec.Body)
				if err != nil {
					t.Fatal(err)
				}
				body = zr
			}
			frames := readStream(t, body)
			if len(frames) != 5 {
				t.Fatalf("%d frames, want header, 2 records, heartbeat, error", len(frames))
			}
			if h := frames[0].Header; h == nil || h.From != 2 || h.ClusterID != "c1" {
				t.Fatalf("header %+v", frames[0].Header)
			}
			for i, r := range recs {
				got := frames[1+i].Record
				if got == nil || got.Revision != r.Revision || got.Hash != r.Hash || !bytes.Equal(got.Canonical, r.Canonical) {
					t.Fatalf("record %d: %+v", i, got)
				}
			}
			if frames[3].Heartbeat == nil || frames[3].Heartbeat.Head != 3 {
				t.Fatalf("heartbeat %+v", frames[3])
			}
			if e := frames[4].Err; e == nil || e.Code != api.CodeCompacted {
				t.Fatalf("last frame %+v, want a compacted error", frames[4])
			}
			if f.streamFrom != 2 || !slices.Contains(f.mirrorCalls, "stream c2") {
				t.Fatalf("service got from=%d, calls %v", f.streamFrom, f.mirrorCalls)
			}
		})
	}
}

func TestMirrorRoutes(t *testing.T) {
	cases := []struct {
		name, method, target, body string
		err                        error
		status                     int
		code                       string
		call                       string // what reached the service ("" nothing)
	}{
		{"stream without from", "GET", "/v1/mirror/stream?id=x", "", nil, 400, api.CodeBadRequest, ""},
		{"stream from 0", "GET", "/v1/mirror/stream?from=0&id=x", "", nil, 400, api.CodeBadRequest, ""},
		{"stream unknown param", "GET", "/v1/mirror/stream?from=1&x=1", "", nil, 400, api.CodeBadRequest, ""},
		{"stream compacted before the header", "GET", "/v1/mirror/stream?from=1&id=x", "",
			&fsm.CompactedError{Requested: 1, Oldest: 5}, 410, api.CodeCompacted, "stream x"},
		{"checkpoint", "POST", "/v1/mirror/checkpoint", `{"id":"c2","revision":9}`, nil, 200, "", "checkpoint c2 9"},
		{"checkpoint without id", "POST", "/v1/mirror/checkpoint", `{"revision":9}`, nil, 400, api.CodeBadRequest, ""},
		{"checkpoint unknown field", "POST", "/v1/mirror/checkpoint", `{"id":"c2","rev":9}`, nil, 400, api.CodeBadRequest, ""},
		{"status", "GET", "/v1/mirror/status", "", nil, 200, "", "status"},
		{"status fresh", "GET", "/v1/mirror/status?source_head=fresh", "", nil, 200, "", "status fresh"},
		{"status fresh, no source answers", "GET", "/v1/mirror/status?source_head=fresh", "", fmt.Errorf("%w: x", ErrMirrorSource), 503, api.CodeUnavailable, "status fresh"},
		{"status source_head unknown value", "GET", "/v1/mirror/status?source_head=last", "", nil, 400, api.CodeBadRequest, ""},
		{"status source_head empty", "GET", "/v1/mirror/status?source_head=", "", nil, 400, api.CodeBadRequest, ""},
		{"status source_head twice", "GET", "/v1/mirror/status?source_head=fresh&source_head=fresh", "", nil, 400, api.CodeBadRequest, ""},
		{"status unknown param", "GET", "/v1/mirror/status?fresh=1", "", nil, 400, api.CodeBadRequest, ""},
		{"start", "POST", "/v1/mirror/start", `{"sources":["http://a:1","http://b:2"]}`, nil, 200, "", "start http://a:1,http://b:2"},
		{"start without sources", "POST", "/v1/mirror/start", `{}`, nil, 400, api.CodeBadRequest, ""},
		{"start with a max rate", "POST", "/v1/mirror/start", `{"sources":["http://a:1"],"max_rate":1048576}`, nil, 200, "", "start http://a:1 max-rate 1048576"},
		{"start with max rate 0", "POST", "/v1/mirror/start", `{"sources":["http://a:1"],"max_rate":0}`, nil, 200, "", "start http://a:1"},
		{"start negative max rate", "POST", "/v1/mirror/start", `{"sources":["http://a:1"],"max_rate":-1}`, nil, 400, api.CodeBadRequest, ""},
		{"start max rate with a unit", "POST", "/v1/mirror/start", `{"sources":["http://a:1"],"max_rate":"10MiB"}`, nil, 400, api.CodeBadRequest, ""},
		{"start fractional max rate", "POST", "/v1/mirror/start", `{"sources":["http://a:1"],"max_rate":1.5}`, nil, 400, api.CodeBadRequest, ""},
		{"start loop", "POST", "/v1/mirror/start", `{"sources":["http://a:1"]}`, fmt.Errorf("%w: x", fsm.ErrMirrorLoop), 409, api.CodeMirrorState, "start http://a:1"},
		{"start unreachable source", "POST", "/v1/mirror/start", `{"sources":["http://a:1"]}`, fmt.Errorf("%w: x", ErrMirrorSource), 503, api.CodeUnavailable, "start http://a:1"},
		{"stop", "POST", "/v1/mirror/stop", "", nil, 200, "", "stop"},
		{"stop with a body", "POST", "/v1/mirror/stop", `{"x":1}`, nil, 400, api.CodeBadRequest, ""},
		{"promote", "POST", "/v1/mirror/promote", "", nil, 200, "", "promote"},
		{"promote a primary", "POST", "/v1/mirror/promote", "", fmt.Errorf("%w: x", fsm.ErrMirrorState), 409, api.CodeMirrorState, "promote"},
		{"promote filtered", "POST", "/v1/mirror/promote", "", fsm.ErrMirrorFiltered, 409, api.CodeMirrorState, "promote"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := newFake()
			f.mirrorErr = c.err
			f.mirror = api.MirrorStatus{Node: "n1", State: api.MirrorFollowing}
			rec := call(f, c.method, c.target, c.body, nil)
			if rec.Code != c.status {
				t.Fatalf("status %d, want %d: %s", rec.Code, c.status, rec.Body)
			}
			if c.code != "" {
				if e := errorOf(t, rec); e.Code != c.code {
					t.Fatalf("code %q, want %q", e.Code, c.code)
				}
			}
			var want []string
			if c.call != "" {
				want = []string{c.call}
			}
			if !slices.Equal(f.mirrorCalls, want) {
				t.Fatalf("service calls %v, want %v", f.mirrorCalls, want)
			}
		})
	}
}

// TestReadOnlyWrite: a write refused as read-only answers read_only
// (409) with nothing else written.
func TestReadOnlyWrite(t *testing.T) {
	f := newFake()
	f.writeFn = func(fsm.Txn) (fsm.TxnResult, error) {
		return fsm.TxnResult{Err: fmt.Errorf("%w: a standby", fsm.ErrReadOnly)}, nil
	}
	rec := call(f, "PUT", "/v1/kv/a", "v", nil)
	if rec.Code != 409 || errorOf(t, rec).Code != api.CodeReadOnly {
		t.Fatalf("got %d %s, want 409 read_only", rec.Code, rec.Body)
	}
}
