package httpapi

// Watches: GET /v1/watch streams committed transactions in revision order
// as newline-delimited JSON (api.WatchEvent), filtered by key prefix, from
// the answering member's change feed (package feed; any member,
// non-voters included; nothing is forwarded). A stream whose connection
// accepts no writes for Limits.WatchWriteTimeout is cut off; the client
// resumes from its last revision.
//
// The fan-out is kept cheap (docs/performance.md, "Writes with
// watchers"): a record whose operations all match is encoded once for
// every stream (the feed entry's Memo); a stream gathers the lines it can
// read at once into one buffer, up to watchWriteBytes, and sends it with
// one write and one flush, on a response without chunk framing; progress
// lines are encoded by hand. A stream's memory is bounded: the records of
// its current chunk (the feed bounds them, and their total across streams
// catching up) and up to watchWriteBytes of lines plus one.
//
// A stream catching up (reading the log, not the shared tail) encodes its
// records holding one of the feed's catch-up CPU tokens and gives it up
// (Subscription.Pause) before every write to its connection, taking it
// back (Resume) to encode more: at most that many streams decode and
// encode at once, leaving the member's other cores to writes, and a slow
// reader holds no token while its socket drains.
//
// Streams are also bounded per client (clientSlots): one user with access
// control on, one remote IP address otherwise, holds at most
// Limits.MaxWatchersPerClient of them.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cairn-db/cairn/api"
	"github.com/cairn-db/cairn/auth"
	"github.com/cairn-db/cairn/feed"
	"github.com/cairn-db/cairn/fsm"
)

// Watch stream parameters.
const (
	// DefaultProgressInterval is the period of progress events when the
	// request does not set progress_interval.
	DefaultProgressInterval = time.Second
	// MinProgressInterval and MaxProgressInterval bound progress_interval.
	MinProgressInterval = 50 * time.Millisecond
	MaxProgressInterval = 10 * time.Minute
	// watchWriteBytes: a stream gathers the lines of the records it can
	// read at once into one write (one system call) of about this size;
	// a buffer grown past watchKeepBytes is dropped after its write.
	watchWriteBytes = 64 << 10
	watchKeepBytes  = 256 << 10
)

// watch serves GET /v1/watch?prefix=P&from_revision=R&progress_interval=D.
func (h *handler) watch(w http.ResponseWriter, r *http.Request) error {
	if err := knownParams(r, "prefix", "from_revision", "progress_interval"); err != nil {
		return err
	}
	q := query(r)
	prefix := q.Get("prefix")
	if prefix != "" {
		if err := fsm.ValidateKey(prefix); err != nil {
			return err
		}
	}
	from, err := queryUint(r, "from_revision")
	if err != nil {
		return err
	}
	interval := DefaultProgressInterval
	if s := q.Get("progress_interval"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d < MinProgressInterval || d > MaxProgressInterval {
			return badRequest("progress_interval=%q is not a duration between %s and %s", s, MinProgressInterval, MaxProgressInterval)
		}
		interval = d
	}
	c := callerOf(r.Context())
	need := auth.Need{Access: auth.Read, Key: prefix, Prefix: true}
	exact := false
	if c.on() && c.cred != credMember && c.state.Allowed(c.user, need) != nil {
		// The access check let it through on read of the key equal to
		// the prefix: the stream shows that key only.
		exact, need = true, auth.Need{Access: auth.Read, Key: prefix}
	}
	release, err := h.watchSlots.acquire(watchClient(r, c), h.svc.Limits().MaxWatchersPerClient)
	if err != nil {
		return err
	}
	defer release()
	sub, err := h.svc.Subscribe(from)
	if err != nil {
		if errors.Is(err, feed.ErrTooManySubscribers) {
			return fmt.Errorf("%w; try another member", err)
		}
		return err
	}
	defer sub.Close()
	st := &stream{sub: sub, prefix: prefix, exact: exact, interval: interval, writeTimeout: h.svc.Limits().WatchWriteTimeout,
		caller: c, need: need, authState: h.svc.AuthState}
	if c.state != nil {
		st.authRev, st.authKnown = c.state.Revision, true
	}
	return st.serve(w, r)
}

// clientSlots counts the watch streams each client holds open.
type clientSlots struct {
	mu   sync.Mutex
	open map[string]int
}

// acquire takes one of client's slots, or fails with ErrTooManyRequests
// when it holds max already (max <= 0: no cap). release gives it back.
func (cs *clientSlots) acquire(client string, max int) (release func(), err error) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if max > 0 && cs.open[client] >= max {
		return nil, fmt.Errorf("%w: %s has %d watch streams open on this member (limit %d)", ErrTooManyRequests, client, cs.open[client], max)
	}
	if cs.open == nil {
		cs.open = map[string]int{}
	}
	cs.open[client]++
	var once sync.Once
	return func() {
		once.Do(func() {
			cs.mu.Lock()
			defer cs.mu.Unlock()
			if cs.open[client]--; cs.open[client] <= 0 {
				delete(cs.open, client)
			}
		})
	}, nil
}

// watchClient names the client a watch stream counts against: its user
// while access control is on and the request authenticated one, else its
// remote IP address (every port of an address is the same client).
func watchClient(r *http.Request, c caller) string {
	if c.on() && c.user != "" {
		return "user " + strconv.Quote(c.user)
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		host = ip.Unmap().WithZone("").String()
	}
	return "address " + host
}

// stream is one watch stream.
type stream struct {
	sub    *feed.Subscription
	prefix string
	// exact shows the key equal to prefix only (a user allowed to read
	// that key but not the whole prefix).
	exact        bool
	interval     time.Duration
	writeTimeout time.Duration

	// caller opened the stream; need is what it must be allowed to go
	// on. authState is the member's current auth state: when its
	// revision moves past authRev, the stream decides again (recheck)
	// and ends with an error event if the caller may no longer read.
	caller    caller
	need      auth.Need
	authState func() *auth.State
	authRev   uint64
	authKnown bool

	w  io.Writer
	rc *http.ResponseController
	// out holds the lines not yet written; enc encodes into it. A
	// wake-up's lines go to the connection in one write and one flush.
	out bytes.Buffer
	enc *json.Encoder
	// deadlineAt is the connection's write deadline.
	deadlineAt time.Time
	scratch    [64]byte
	failed     bool // a write failed: the connection is gone
}

// serve runs the stream. It returns an error only before the response
// has started (a storage failure on the first read); once streaming,
// errors end the stream with an error line, or silently when the
// connection is gone.
func (st *stream) serve(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	recs, wait, err := st.sub.Read()
	if err != nil {
		return err
	}
	st.w = w
	st.rc = http.NewResponseController(w)
	st.enc = json.NewEncoder(&st.out)
	hdr := w.Header()
	hdr.Set("Content-Type", "application/x-ndjson")
	hdr.Set("Cache-Control", "no-store")
	hdr.Set("X-Content-Type-Options", "nosniff")
	// A stream's connection is not reused: it carries a write deadline.
	hdr.Set("Connection", "close")
	// The body ends with the connection (HTTP/1.1 without chunking, as
	// for server-sent events): a write is then one system call, where
	// chunk framing splits one larger than net/http's 4 KiB buffer in
	// two. (HTTP/2 drops this header.)
	hdr.Set("Transfer-Encoding", "identity")
	setRevision(w, st.sub.Head())
	st.deadline()
	w.WriteHeader(http.StatusOK)
	// The first line says where the stream starts; it goes out at once.
	st.progressAt(st.sub.Start())
	if !st.flush() {
		return nil
	}
	tick := time.NewTicker(st.interval)
	defer tick.Stop()
	// Idle streams re-check access at least every authRecheckInterval;
	// every wake-up re-checks it too, before it sends anything.
	var authTick <-chan time.Time
	if st.interval > authRecheckInterval {
		t := time.NewTicker(authRecheckInterval)
		defer t.Stop()
		authTick = t.C
	}
	stop := st.sub.Done()
	shutdown := fmt.Errorf("%w: the node is shutting down; resume from another member", ErrShuttingDown)
	for {
		if err := st.checkAuth(); err != nil {
			st.fail(err)
			return nil
		}
		if !st.emit(ctx, recs) {
			select {
			case <-stop:
				st.fail(shutdown)
			default:
			}
			return nil
		}
		// Lines of records that can be read at once join the same
		// write, up to watchWriteBytes; a caught-up stream writes what
		// it has before it waits.
		if (wait != nil || st.out.Len() >= watchWriteBytes) && !st.flush() {
			return nil
		}
		if wait == nil {
			// More to read at once; stay responsive to the end of the
			// request and keep progress going between chunks.
			select {
			case <-ctx.Done():
				return nil
			case <-stop:
				st.fail(shutdown)
				return nil
			case <-tick.C:
				st.progress()
			case <-authTick:
			default:
			}
		} else {
		waiting:
			for {
				select {
				case <-wait:
					break waiting
				case <-tick.C:
					if err := st.checkAuth(); err != nil {
						st.fail(err)
						return nil
					}
					if st.progress(); !st.flush() {
						return nil
					}
				case <-authTick:
					if err := st.checkAuth(); err != nil {
						st.fail(err)
						return nil
					}
				case <-ctx.Done():
					return nil
				case <-stop:
					st.fail(shutdown)
					return nil
				}
			}
		}
		if st.failed {
			return nil
		}
		if recs, wait, err = st.sub.Read(); err != nil {
			st.fail(err)
			return nil
		}
	}
}

// emit queues a txn event for every record with a matching operation,
// writing the queued lines out whenever they reach watchWriteBytes: a
// stream holds at most that much plus one line, however large the chunk
// (a slow reader no longer holds a chunk's worth of encoded lines). A
// record whose operations all match takes its line encoded once for
// every stream. Records read from the log are encoded holding the feed's
// CPU token, given up for each write (flush) and taken back after it. It
// returns false when the stream ends: the connection is gone, the request
// ended or the hub shut down while the stream waited for the token.
func (st *stream) emit(ctx context.Context, recs []feed.Entry) bool {
	if !st.resume(ctx) {
		return false
	}
	for _, e := range recs {
		if st.failed {
			return false
		}
		if st.out.Len() >= watchWriteBytes && (!st.flush() || !st.resume(ctx)) {
			return false
		}
		rec := e.Rec
		n := st.matching(rec.Ops)
		if n == 0 {
			continue
		}
		if n == len(rec.Ops) && e.Memo != nil {
			if b := e.Memo.Get(func() []byte { return eventLine(rec) }); b != nil {
				st.out.Write(b)
				continue
			}
		}
		st.write(txnEvent(rec, st.matchOps(rec.Ops)))
	}
	return !st.failed
}

// resume takes the feed's CPU token back for the records of the last
// read (at once when they need none or it is free), waiting for it until
// the request ends or the hub shuts down (false).
func (st *stream) resume(ctx context.Context) bool {
	for {
		ok, wait := st.sub.Resume()
		if ok {
			return true
		}
		select {
		case <-wait:
		case <-ctx.Done():
			return false
		case <-st.sub.Done():
			return false
		}
	}
}

// checkAuth decides again whether the stream may go on, when the auth
// revision changed since it last did: nil, or the error that ends it.
func (st *stream) checkAuth() error {
	if st.authState == nil {
		return nil
	}
	cur := st.authState()
	if cur == nil || (st.authKnown && cur.Revision == st.authRev) {
		return nil
	}
	st.authRev, st.authKnown = cur.Revision, true
	return recheck(st.caller, cur, st.need)
}

// opMatches reports whether the stream shows o.
func (st *stream) opMatches(o fsm.Op) bool {
	if st.exact {
		return o.Key == st.prefix || (o.Kind == fsm.OpDeletePrefix && strings.HasPrefix(st.prefix, o.Key))
	}
	return opMatches(st.prefix, o)
}

// matching counts the operations the stream shows.
func (st *stream) matching(ops []fsm.Op) int {
	if !st.exact {
		return matching(st.prefix, ops)
	}
	n := 0
	for _, o := range ops {
		if st.opMatches(o) {
			n++
		}
	}
	return n
}

// matchOps returns the operations the stream shows, in wire form.
func (st *stream) matchOps(ops []fsm.Op) []api.Operation {
	if !st.exact {
		return matchOps(st.prefix, ops)
	}
	var out []api.Operation
	for _, o := range ops {
		if st.opMatches(o) {
			out = append(out, api.Operation{Op: o.Kind.String(), Key: o.Key, Value: o.Value})
		}
	}
	return out
}

// eventLine encodes a record's txn event with every operation, with its
// newline (nil if it cannot be encoded).
func eventLine(rec *fsm.Record) []byte {
	b, err := json.Marshal(txnEvent(rec, matchOps("", rec.Ops)))
	if err != nil {
		return nil
	}
	return append(b, '\n')
}

func txnEvent(rec *fsm.Record, ops []api.Operation) api.WatchEvent {
	return api.WatchEvent{Type: api.WatchTxn, Revision: rec.Revision, Time: rec.Time, User: rec.User, AuthUser: rec.AuthUser,
		Description: rec.Description, Meta: rec.Meta, Operations: ops, Hash: rec.Hash.String()}
}

// progress queues a progress event for the revision the stream is
// complete up to: the events queued before it cover every matching
// transaction up to there.
func (st *stream) progress() { st.progressAt(st.sub.Progress()) }

// progressAt queues a progress event for rev, encoded by hand (it is the
// most frequent line of an idle stream; TestProgressLine checks it
// against encoding/json).
func (st *stream) progressAt(rev uint64) {
	if st.failed {
		return
	}
	st.out.Write(appendProgress(st.scratch[:0], rev))
}

func appendProgress(b []byte, rev uint64) []byte {
	b = append(b, `{"type":"progress","revision":`...)
	b = strconv.AppendUint(b, rev, 10)
	return append(b, "}\n"...)
}

// fail ends the stream with an error line, after the queued ones.
func (st *stream) fail(err error) {
	e := watchError(err)
	st.write(api.WatchEvent{Type: api.WatchError, Revision: st.sub.Progress(), Error: &e})
	st.flush()
}

// watchError turns an error into its wire form.
func watchError(err error) api.Error {
	e := api.Error{Code: errorCode(err), Message: err.Error()}
	var ce *fsm.CompactedError
	if errors.As(err, &ce) {
		e.OldestRevision = ce.Oldest
	}
	return e
}

// deadline gives the write that follows at least writeTimeout to reach
// the connection. Moving the deadline costs a timer update, so it is
// moved only when less than writeTimeout is left, to 1.125 x writeTimeout
// from now: a stuck write fails after between one and 1.125 timeouts.
// Writers that do not support deadlines (tests) go without.
func (st *stream) deadline() {
	if st.rc == nil || st.writeTimeout <= 0 {
		return
	}
	now := time.Now()
	if st.deadlineAt.Sub(now) >= st.writeTimeout {
		return
	}
	st.deadlineAt = now.Add(st.writeTimeout + st.writeTimeout/8)
	_ = st.rc.SetWriteDeadline(st.deadlineAt)
}

// write queues an event.
func (st *stream) write(ev api.WatchEvent) {
	if st.failed {
		return
	}
	if err := st.enc.Encode(ev); err != nil {
		st.failed = true
	}
}

// flush writes the queued lines to the connection in one write and
// flushes it; false when the connection is gone (or too slow: past the
// write deadline).
func (st *stream) flush() bool {
	// No CPU token is held while writing (a slow reader's write waits).
	st.sub.Pause()
	if st.failed {
		return false
	}
	if st.out.Len() == 0 {
		return true
	}
	st.deadline()
	if _, err := st.w.Write(st.out.Bytes()); err != nil {
		st.failed = true
		return false
	}
	if st.out.Cap() > watchKeepBytes {
		st.out = bytes.Buffer{} // enc holds &st.out, which stays
	} else {
		st.out.Reset()
	}
	if err := st.rc.Flush(); err != nil && !errors.Is(err, http.ErrNotSupported) {
		st.failed = true
	}
	return !st.failed
}

// matching counts the operations matchOps would return.
func matching(prefix string, ops []fsm.Op) int {
	n := 0
	for _, o := range ops {
		if opMatches(prefix, o) {
			n++
		}
	}
	return n
}

func opMatches(prefix string, o fsm.Op) bool {
	return strings.HasPrefix(o.Key, prefix) || (o.Kind == fsm.OpDeletePrefix && strings.HasPrefix(prefix, o.Key))
}

// matchOps returns the operations of a transaction that concern the keys
// under prefix, in wire form: a put or delete of a key with the prefix, and
// a delete_prefix whose prefix and the watched one overlap (one is a prefix
// of the other). An empty prefix matches everything.
func matchOps(prefix string, ops []fsm.Op) []api.Operation {
	var out []api.Operation
	for _, o := range ops {
		if opMatches(prefix, o) {
			out = append(out, api.Operation{Op: o.Kind.String(), Key: o.Key, Value: o.Value})
		}
	}
	return out
}
