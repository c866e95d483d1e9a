package client

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/cairn-db/cairn/api"
)

// FuzzWatchStream feeds arbitrary bytes to the watch stream parser (the
// first line, then every event until the stream breaks or a final event),
// resuming at a revision the fuzzer chooses. Invariants: no panic; the
// first line is a progress event or the stream is refused; transactions
// come in strictly increasing revisions, after every revision a progress
// event said was complete, never before the resume point; progress never
// goes back; every event names the member; a final event is an error
// event whose Err is an *APIError for compacted, permission_denied or
// unauthenticated; the resume point never goes back nor wraps to 0.
func FuzzWatchStream(f *testing.F) {
	for _, s := range []struct {
		stream string
		from   uint64
	}{
		{`{"type":"progress","revision":3}` + "\n" +
			`{"type":"txn","revision":4,"time":"2026-01-02T03:04:05Z","user":"u","auth_user":"a","description":"d","meta":{"m":"1"},` +
			`"operations":[{"op":"put","key":"a/1","value":"eA=="},{"op":"delete_prefix","key":"a/"}],"hash":"00ff"}` + "\n" +
			`{"type":"progress","revision":9}` + "\n" + `{"type":"txn","revision":7}` + "\n" + `{"type":"txn","revision":10}` + "\n", 0},
		{`{"type":"progress","revision":1}` + "\n" + `{"type":"error","error":{"code":"compacted","message":"gone","oldest_revision":5}}` + "\n", 2},
		{`{"type":"progress","revision":1}` + "\n" + `{"type":"error","error":{"code":"permission_denied","message":"no"}}`, 0},
		{`{"type":"progress","revision":1}` + "\n" + `{"type":"error","error":{"code":"unauthenticated","message":"no"}}`, 0},
		{`{"type":"progress","revision":1}` + "\n" + `{"type":"error","error":{"code":"unavailable","message":"stopping"}}`, 0},
		{`{"type":"progress","revision":1}` + "\n" + `{"type":"error"}` + "\n", 0},
		{`{"type":"progress","revision":1}` + "\n" + `{"type":"future"}` + "\n" + `null` + "\n" + `{"type":"txn","revision":2}`, 0},
		{`{"type":"progress","revision":18446744073709551614}` + "\n" + `{"type":"txn","revision":18446744073709551615}` + "\n" + `{"type":"txn","revision":1}`, 0},
		{`{"type":"progress","revision":18446744073709551615}`, 0},
		{`{"type":"progress","revision":2}` + "\n" + `{"type":"progress","revision":18446744073709551615}` + "\n" + `{"type":"txn","revision":3}`, 0},
		{`{"type":"txn","revision":1}`, 0},
		{`{"type":"progress","revision":1}{"type":"txn","revision":"x"}`, 0},
		{`{"type":"progress","revision":1}` + "\n" + `{"type":"txn","revision":2,"operations":[{"op":"put","key":"a\ud800","value":"!"}]}`, 0},
		{"", 0},
	} {
		f.Add([]byte(s.stream), s.from)
	}
	f.Fuzz(func(t *testing.T, stream []byte, from uint64) {
		c := &Client{log: slog.New(slog.DiscardHandler)}
		w := &watch{c: c, next: from}
		idle := time.AfterFunc(time.Hour, func() {})
		defer idle.Stop()
		s := &watchStream{node: "n1", body: io.NopCloser(bytes.NewReader(stream)), dec: json.NewDecoder(bytes.NewReader(stream)), idle: idle}
		if err := w.first(s); err != nil {
			return // refused: connect tries another member
		}
		if w.next == 0 {
			t.Fatalf("resume point 0 after the first line (from %d)", from)
		}
		start := w.next
		// The last transaction delivered, and the revision up to which
		// the stream is complete (progress, or the resume point).
		lastTxn, complete := uint64(0), start-1
		for n := 0; ; n++ {
			before := w.next
			ev, final, err := w.nextEvent(s)
			if w.next < before || w.next == 0 {
				t.Fatalf("event %d: resume point went from %d to %d", n, before, w.next)
			}
			if err != nil {
				if final {
					t.Fatalf("event %d: final with error %v", n, err)
				}
				return // the stream broke: the watch resumes at w.next
			}
			if ev.Node != "n1" {
				t.Fatalf("event %d: node %q", n, ev.Node)
			}
			switch ev.Type {
			case api.WatchTxn:
				if final || ev.Err != nil {
					t.Fatalf("event %d: final transaction %+v", n, ev)
				}
				if ev.Revision < start || ev.Revision <= lastTxn || ev.Revision <= complete {
					t.Fatalf("event %d: transaction at %d (start %d, last %d, complete up to %d)", n, ev.Revision, start, lastTxn, complete)
				}
				lastTxn = ev.Revision
				if w.next != ev.Revision+1 {
					t.Fatalf("event %d: resume point %d after transaction %d", n, w.next, ev.Revision)
				}
			case api.WatchProgress:
				if final || ev.Err != nil || ev.Revision < complete || ev.Revision < lastTxn || ev.Revision != w.next-1 {
					t.Fatalf("event %d: progress %+v (complete up to %d, last transaction %d, next %d)", n, ev, complete, lastTxn, w.next)
				}
				complete = ev.Revision
			case api.WatchError:
				var ae *APIError
				if !final || !errors.As(ev.Err, &ae) || ev.Revision != w.next-1 {
					t.Fatalf("event %d: error event %+v (final %v)", n, ev, final)
				}
				if !errors.Is(ev.Err, ErrCompacted) && !errors.Is(ev.Err, ErrPermissionDenied) && !errors.Is(ev.Err, ErrUnauthenticated) {
					t.Fatalf("event %d: final error %v is not compacted, permission_denied or unauthenticated", n, ev.Err)
				}
				return
			default:
				t.Fatalf("event %d: type %q delivered", n, ev.Type)
			}
			if final {
				t.Fatalf("event %d: final %s event", n, ev.Type)
			}
		}
	})
}
