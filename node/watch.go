package node

// Watches (the change feed): GET /v1/watch streams committed transactions
// in revision order as newline-delimited JSON (api.WatchEvent), filtered by
// key prefix, from the answering node's local state (any member, non-voters
// included; nothing is forwarded).
//
// Nothing polls. One filler goroutine per node (running while watchers
// are open) waits on FSM.Changed, which is closed after every applied
// batch, reads the new transaction records once with FSM.Log and appends
// them to a bounded in-memory tail of the log (watchCache). Watchers that
// are caught up copy their next records from that tail and wait on its
// change channel, the progress ticker, the request's context and the
// node's shutdown; watchers behind the tail (a start in the past, a slow
// reader) read the FSM themselves in bounded chunks until they reach it.
// So the apply path never waits for a watcher, and a hundred watchers cost
// one log read per batch, not a hundred concurrent bbolt transactions. A
// watcher whose connection accepts no writes for Config.WatchWriteTimeout
// is cut off; the client resumes from its last revision.
//
// The fan-out is kept cheap (docs/performance.md, "Writes with
// watchers"): a record whose operations all match is encoded once for
// every watcher; a watcher gathers every line it can read at once into
// one buffer and sends it with one write and one flush, on a response
// without chunk framing; the filler wakes the waiting watchers at most
// once per 100 µs per stream (10 ms at most), so a wake-up carries many
// batches when they come fast; progress lines are encoded by hand.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cairn-db/cairn/api"
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
	// watchChunkRecords caps the records a watcher takes in one step;
	// watchChunkBytes shrinks the chunk when records are large, so a
	// watcher holds about that much at a time.
	watchChunkRecords = 256
	watchChunkBytes   = 1 << 20
	// watchCacheRecords and watchCacheBytes bound the shared tail of the
	// log kept for watchers.
	watchCacheRecords = 4096
	watchCacheBytes   = 16 << 20
	// watchWriteBytes: a watcher gathers the lines of the records it can
	// read at once into one write (one system call) of about this size;
	// a buffer grown past watchKeepBytes is dropped after its write.
	watchWriteBytes = 64 << 10
	watchKeepBytes  = 1 << 20
)

// watchHub is a node's watch state: the open streams, the shared tail of
// the log and its filler, and the shutdown signal. http.Server.Shutdown
// waits for active handlers, so streams must end when it starts (shutdown
// is registered with RegisterOnShutdown), not when the node's context is
// cancelled after Shutdown gave up.
type watchHub struct {
	mu      sync.Mutex
	active  int
	filling bool          // the filler goroutine runs
	idle    chan struct{} // tells the filler that active dropped to 0
	stop    chan struct{}
	closed  bool

	// maxDelay is Config.WatchMaxDelay (see wakeInterval).
	maxDelay time.Duration

	cache watchCache
}

// done returns a channel closed when the server starts shutting down.
func (w *watchHub) done() <-chan struct{} {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.stopLocked()
}

func (w *watchHub) stopLocked() chan struct{} {
	if w.stop == nil {
		w.stop = make(chan struct{})
	}
	return w.stop
}

// shutdown ends every watch stream (http.Server.RegisterOnShutdown).
func (w *watchHub) shutdown() {
	w.mu.Lock()
	defer w.mu.Unlock()
	stop := w.stopLocked()
	if !w.closed {
		w.closed = true
		close(stop)
	}
}

// acquire takes a watcher slot, starting the filler for f if it is not
// running; false when max streams are open.
func (w *watchHub) acquire(f *fsm.FSM, max int) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.active >= max {
		return false
	}
	w.active++
	if !w.filling {
		w.filling = true
		if w.idle == nil {
			w.idle = make(chan struct{}, 1)
		}
		w.cache.reset(f.Revision())
		go w.fill(f, w.stopLocked())
	}
	return true
}

func (w *watchHub) release() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.active--
	if w.active == 0 {
		select {
		case w.idle <- struct{}{}:
		default:
		}
	}
}

// wakeInterval is the least time between two wake-ups of the waiting
// watchers: Config.WatchMaxDelay/100 per open stream, at most
// WatchMaxDelay.
func (w *watchHub) wakeInterval() time.Duration {
	w.mu.Lock()
	n := w.active
	w.mu.Unlock()
	return min(w.maxDelay, time.Duration(n)*(w.maxDelay/100))
}

// fill appends newly applied records to the cache until no watcher is
// left or the server shuts down.
//
// Records are appended as soon as they are applied, but the watchers
// waiting on the cache are woken (publish) at most once per
// wakeInterval: a write after a quiet spell wakes them at once, while
// under a steady stream of batches each wake-up carries the batches of
// up to WatchMaxDelay (25 ms by default). Every wake-up costs each watcher
// a write system call (and its reader a read), so with 100 watchers this
// bounds the fan-out to about 100 x 40 writes per second however small
// and frequent the batches are, at the price of up to 25 ms of extra
// delivery delay while writes stream in. A watcher that is still busy writing does not
// wait: it takes the new records from the cache when it is done.
func (w *watchHub) fill(f *fsm.FSM, stop <-chan struct{}) {
	var (
		last    time.Time // the last publication
		pending bool      // records loaded but not published
		timer   = time.NewTimer(time.Hour)
		timerC  <-chan time.Time
	)
	timer.Stop()
	defer timer.Stop()
	for {
		changed := f.Changed()
		if f.Revision() > w.cache.head() {
			n, err := w.cache.load(f)
			if err == nil {
				pending = pending || n > 0
				continue // more may follow at once
			}
			if errors.Is(err, fsm.ErrClosed) {
				w.exitFill(true)
				return
			}
			// Compacted past the tail (a snapshot restore far ahead, say):
			// restart it at the head; watchers behind it read the FSM and
			// meet the compaction there.
			w.cache.reset(f.Revision())
		}
		if pending && timerC == nil {
			if d := w.wakeInterval() - time.Since(last); d > 0 {
				timer.Reset(d)
				timerC = timer.C
			} else {
				w.cache.publish()
				last, pending = time.Now(), false
			}
		}
		select {
		case <-changed:
		case <-timerC:
			timerC = nil
			w.cache.publish()
			last, pending = time.Now(), false
		case <-stop:
			w.exitFill(true)
			return
		case <-w.idle:
			if w.exitFill(false) {
				return
			}
		}
	}
}

// exitFill stops the filler when force or no watcher is left, and
// disables the cache (remaining watchers read the FSM); it reports whether
// the filler stops.
func (w *watchHub) exitFill(force bool) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !force && w.active > 0 {
		return false
	}
	w.filling = false
	w.cache.disable()
	return true
}

// watchEntry is a record as watchers take it.
type watchEntry struct {
	rec  *fsm.Record
	size int
	// line, for cached records, is the record's txn event with every
	// operation, encoded once for all the watchers it matches entirely.
	line *encodedLine
}

func newWatchEntry(rec *fsm.Record) watchEntry {
	return watchEntry{rec: rec, size: recordSize(rec)}
}

// encodedLine is a lazily encoded event line.
type encodedLine struct {
	once sync.Once
	b    []byte
}

func (l *encodedLine) get(rec *fsm.Record) []byte {
	l.once.Do(func() {
		b, err := json.Marshal(txnEvent(rec, MatchOps("", rec.Ops)))
		if err == nil {
			l.b = append(b, '\n')
		}
	})
	return l.b
}

func txnEvent(rec *fsm.Record, ops []api.Operation) api.WatchEvent {
	return api.WatchEvent{Type: api.WatchTxn, Revision: rec.Revision, Time: rec.Time, User: rec.User,
		Description: rec.Description, Meta: rec.Meta, Operations: ops, Hash: rec.Hash.String()}
}

// watchCache is the tail of the transaction log: every record from first
// to head (none when first = head+1), bounded by watchCacheRecords and
// watchCacheBytes.
type watchCache struct {
	mu      sync.RWMutex
	recs    []watchEntry
	bytes   int
	first   uint64
	last    uint64 // head: the newest revision covered
	changed chan struct{}
}

// reset empties the cache at revision head and wakes its waiters.
func (c *watchCache) reset(head uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.reset0(head)
	c.notifyLocked()
}

func (c *watchCache) reset0(head uint64) {
	clear(c.recs)
	c.recs, c.bytes = nil, 0
	c.first, c.last = head+1, head
}

// disable empties the cache and sends its readers to the FSM.
func (c *watchCache) disable() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.reset0(0)
	if c.changed != nil {
		close(c.changed)
		c.changed = nil
	}
}

func (c *watchCache) notifyLocked() {
	if c.changed != nil {
		close(c.changed)
	}
	c.changed = make(chan struct{})
}

func (c *watchCache) head() uint64 {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.last
}

// publish wakes the cache's waiters.
func (c *watchCache) publish() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.changed != nil {
		c.notifyLocked()
	}
}

// load appends the records after the head (one chunk) and returns how
// many. It does not wake the waiters (publish does).
func (c *watchCache) load(f *fsm.FSM) (int, error) {
	from := c.head() + 1
	recs, _, err := f.Log(from, watchChunkRecords)
	if err != nil || len(recs) == 0 {
		return 0, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if from != c.last+1 || c.changed == nil {
		return 0, nil // reset or disabled meanwhile
	}
	for i := range recs {
		e := newWatchEntry(&recs[i])
		e.line = new(encodedLine)
		c.recs = append(c.recs, e)
		c.bytes += e.size
	}
	c.last = recs[len(recs)-1].Revision
	// Drop the oldest beyond the bounds. The array's front is cleared;
	// append moves only the live entries when it fills up.
	drop := 0
	for len(c.recs)-drop > watchCacheRecords || (c.bytes > watchCacheBytes && len(c.recs)-drop > 1) {
		c.bytes -= c.recs[drop].size
		drop++
	}
	if drop > 0 {
		clear(c.recs[:drop])
		c.recs = c.recs[drop:]
		c.first += uint64(drop)
	}
	return len(recs), nil
}

// get copies up to limit records from revision next into buf. ok is false
// when next is before the cache (read the FSM); otherwise recs are the
// records (none when next is past the head), head the newest revision
// covered, and changed a channel closed when the cache changes next.
func (c *watchCache) get(next uint64, limit int, buf []watchEntry) (recs []watchEntry, head uint64, changed <-chan struct{}, ok bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if next < c.first || c.changed == nil {
		return nil, c.last, c.changed, false
	}
	i := next - c.first
	if i >= uint64(len(c.recs)) {
		return buf[:0], c.last, c.changed, true
	}
	end := min(uint64(len(c.recs)), i+uint64(limit))
	return append(buf[:0], c.recs[i:end]...), c.last, c.changed, true
}

// Watchers returns the number of open watch streams.
func (n *Node) Watchers() int {
	n.watches.mu.Lock()
	defer n.watches.mu.Unlock()
	return n.watches.active
}

// watchService is what the watch handler needs beyond service. *Node
// implements it.
type watchService interface {
	watchHub() *watchHub
	watchLimits() (maxWatchers int, writeTimeout time.Duration)
}

func (n *Node) watchHub() *watchHub { return &n.watches }

func (n *Node) watchLimits() (int, time.Duration) {
	return n.cfg.MaxWatchers, n.cfg.WatchWriteTimeout
}

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
	ws, ok := h.svc.(watchService)
	if !ok {
		return fmt.Errorf("%w: this server does not serve watches", ErrShuttingDown)
	}
	hub := ws.watchHub()
	maxWatchers, writeTimeout := ws.watchLimits()
	f := h.svc.State()
	if !hub.acquire(f, maxWatchers) {
		return fmt.Errorf("%w: %d watch streams open on this node (limit %d); try another member",
			ErrTooManyWatchers, maxWatchers, maxWatchers)
	}
	defer hub.release()
	wt := &watcher{f: f, cache: &hub.cache, prefix: prefix, interval: interval, writeTimeout: writeTimeout,
		stop: hub.done(), limit: watchChunkRecords}
	return wt.serve(w, r, from)
}

// watcher is one watch stream.
type watcher struct {
	f            *fsm.FSM
	cache        *watchCache // nil: read the FSM only
	prefix       string
	interval     time.Duration
	writeTimeout time.Duration
	stop         <-chan struct{}
	// limit is the number of records the next step takes.
	limit int
	buf   []watchEntry

	w  io.Writer
	rc *http.ResponseController
	// out holds the lines not yet written; enc encodes into it. A
	// wake-up's lines go to the connection in one write and one flush.
	out bytes.Buffer
	enc *json.Encoder
	// deadlineAt is the connection's write deadline.
	deadlineAt time.Time
	scratch    [64]byte
	// next is the next revision to send; at is the node's revision as of
	// the last read. Every matching transaction up to min(next-1, at) has
	// been written.
	next, at uint64
	failed   bool // a write failed: the connection is gone
}

// serve runs the stream. It returns an error only before the response
// has started (bad or compacted start, storage failure); once streaming,
// errors end the stream with an error line, or silently when the
// connection is gone.
func (wt *watcher) serve(w http.ResponseWriter, r *http.Request, from uint64) error {
	ctx := r.Context()
	st, err := wt.f.Status()
	if err != nil {
		return err
	}
	if from == 0 {
		from = st.Revision + 1
	}
	if from < st.CompactRevision {
		return &fsm.CompactedError{Requested: from, Oldest: st.CompactRevision}
	}
	wt.next = from
	// Everything up to start is behind the watcher before the first read.
	start := min(from-1, st.Revision)
	recs, wait, err := wt.read()
	if err != nil {
		return err
	}
	wt.w = w
	wt.rc = http.NewResponseController(w)
	wt.enc = json.NewEncoder(&wt.out)
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
	setRevision(w, st.Revision)
	wt.deadline()
	w.WriteHeader(http.StatusOK)
	// The first line says where the stream starts; it goes out at once.
	wt.progressAt(start)
	if !wt.flush() {
		return nil
	}
	tick := time.NewTicker(wt.interval)
	defer tick.Stop()
	shutdown := fmt.Errorf("%w: the node is shutting down; resume from another member", ErrShuttingDown)
	for {
		wt.emit(recs)
		// Lines of records that can be read at once join the same
		// write, up to watchWriteBytes; a caught-up watcher writes what
		// it has before it waits.
		if (wait != nil || wt.out.Len() >= watchWriteBytes) && !wt.flush() {
			return nil
		}
		if wait == nil {
			// More to read at once; stay responsive to the end of the
			// request and keep progress going between chunks.
			select {
			case <-ctx.Done():
				return nil
			case <-wt.stop:
				wt.fail(shutdown)
				return nil
			case <-tick.C:
				wt.progress()
			default:
			}
		} else {
		waiting:
			for {
				select {
				case <-wait:
					break waiting
				case <-tick.C:
					if wt.progress(); !wt.flush() {
						return nil
					}
				case <-ctx.Done():
					return nil
				case <-wt.stop:
					wt.fail(shutdown)
					return nil
				}
			}
		}
		if wt.failed {
			return nil
		}
		if recs, wait, err = wt.read(); err != nil {
			wt.fail(err)
			return nil
		}
	}
}

// read takes the next records from wt.next, from the shared cache when it
// holds them, else from the FSM, and advances next and at past them. wait
// is nil when more can be read at once, else a channel closed when there
// may be more.
func (wt *watcher) read() (recs []watchEntry, wait <-chan struct{}, err error) {
	if wt.cache != nil {
		recs, head, changed, ok := wt.cache.get(wt.next, wt.limit, wt.buf)
		if ok {
			wt.buf = recs
			wt.at = head
			if len(recs) == 0 {
				return nil, changed, nil // caught up (or a start past the head)
			}
			wt.next = recs[len(recs)-1].rec.Revision + 1
			wt.adapt(recs)
			return recs, nil, nil
		}
	}
	// Behind the cache (or none): read the FSM. Take the change channel
	// first, so a batch applied after the read closes it.
	changed := wt.f.Changed()
	if cur := wt.f.Revision(); wt.next > cur+1 {
		// A client resuming on a member behind its resume point.
		wt.at = cur
		return nil, changed, nil
	}
	log, at, err := wt.f.Log(wt.next, wt.limit)
	if errors.Is(err, fsm.ErrFutureRevision) {
		wt.at = wt.f.Revision()
		return nil, changed, nil
	}
	if err != nil {
		return nil, nil, err
	}
	wt.at = at
	if len(log) == 0 {
		wt.next = max(wt.next, at+1)
		return nil, changed, nil
	}
	recs = wt.buf[:0]
	for i := range log {
		recs = append(recs, newWatchEntry(&log[i]))
	}
	wt.buf = recs
	wt.next = log[len(log)-1].Revision + 1
	wt.adapt(recs)
	// Read on at once: the FSM or the cache may hold more.
	return recs, nil, nil
}

// adapt sizes the next step so it holds about watchChunkBytes.
func (wt *watcher) adapt(recs []watchEntry) {
	size := 0
	for _, e := range recs {
		size += e.size
	}
	switch {
	case size > watchChunkBytes:
		wt.limit = max(1, len(recs)*watchChunkBytes/size)
	case len(recs) == wt.limit && size < watchChunkBytes/2:
		wt.limit = min(watchChunkRecords, wt.limit*2)
	}
}

// recordSize approximates a record's memory.
func recordSize(r *fsm.Record) int {
	n := 128 + len(r.User) + len(r.Description)
	for k, v := range r.Meta {
		n += len(k) + len(v)
	}
	for _, o := range r.Ops {
		n += 32 + len(o.Key) + len(o.Value)
	}
	return n
}

// emit queues a txn event for every record with a matching operation.
// A record whose operations all match takes its line encoded once for
// every watcher.
func (wt *watcher) emit(recs []watchEntry) {
	for _, e := range recs {
		if wt.failed {
			return
		}
		rec := e.rec
		n := matching(wt.prefix, rec.Ops)
		if n == 0 {
			continue
		}
		if n == len(rec.Ops) && e.line != nil {
			if b := e.line.get(rec); b != nil {
				wt.out.Write(b)
				continue
			}
		}
		wt.write(txnEvent(rec, MatchOps(wt.prefix, rec.Ops)))
	}
}

// progress queues a progress event for the revision the watcher is
// complete up to: the events queued before it cover every matching
// transaction up to there.
func (wt *watcher) progress() { wt.progressAt(min(wt.next-1, wt.at)) }

// progressAt queues a progress event for rev, encoded by hand (it is the
// most frequent line of an idle stream; TestProgressLine checks it
// against encoding/json).
func (wt *watcher) progressAt(rev uint64) {
	if wt.failed {
		return
	}
	wt.out.Write(appendProgress(wt.scratch[:0], rev))
}

func appendProgress(b []byte, rev uint64) []byte {
	b = append(b, `{"type":"progress","revision":`...)
	b = strconv.AppendUint(b, rev, 10)
	return append(b, "}\n"...)
}

// fail ends the stream with an error line, after the queued ones.
func (wt *watcher) fail(err error) {
	wt.write(api.WatchEvent{Type: api.WatchError, Revision: min(wt.next-1, wt.at), Error: watchError(err)})
	wt.flush()
}

// watchError turns an error into its wire form.
func watchError(err error) *api.Error {
	e := &api.Error{Code: errorCode(err), Message: err.Error()}
	var ce *fsm.CompactedError
	if errors.As(err, &ce) {
		e.OldestRevision = ce.Oldest
	}
	return e
}

// deadline gives the write that follows at least WatchWriteTimeout to
// reach the connection. Moving the deadline costs a timer update, so it
// is moved only when less than WatchWriteTimeout is left, to
// 1.125 x WatchWriteTimeout from now: a stuck write fails after between
// one and 1.125 timeouts. Writers that do not support deadlines (tests)
// go without.
func (wt *watcher) deadline() {
	if wt.rc == nil {
		return
	}
	now := time.Now()
	if wt.deadlineAt.Sub(now) >= wt.writeTimeout {
		return
	}
	wt.deadlineAt = now.Add(wt.writeTimeout + wt.writeTimeout/8)
	_ = wt.rc.SetWriteDeadline(wt.deadlineAt)
}

// write queues an event.
func (wt *watcher) write(ev api.WatchEvent) {
	if wt.failed {
		return
	}
	if err := wt.enc.Encode(ev); err != nil {
		wt.failed = true
	}
}

// flush writes the queued lines to the connection in one write and
// flushes it; false when the connection is gone (or too slow: past the
// write deadline).
func (wt *watcher) flush() bool {
	if wt.failed {
		return false
	}
	if wt.out.Len() == 0 {
		return true
	}
	wt.deadline()
	if _, err := wt.w.Write(wt.out.Bytes()); err != nil {
		wt.failed = true
		return false
	}
	if wt.out.Cap() > watchKeepBytes {
		wt.out = bytes.Buffer{} // enc holds &wt.out, which stays
	} else {
		wt.out.Reset()
	}
	if err := wt.rc.Flush(); err != nil && !errors.Is(err, http.ErrNotSupported) {
		wt.failed = true
	}
	return !wt.failed
}

// matching counts the operations MatchOps would return.
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

// MatchOps returns the operations of a transaction that concern the keys
// under prefix, in wire form: a put or delete of a key with the prefix, and
// a delete_prefix whose prefix and the watched one overlap (one is a prefix
// of the other). An empty prefix matches everything.
func MatchOps(prefix string, ops []fsm.Op) []api.Operation {
	var out []api.Operation
	for _, o := range ops {
		if opMatches(prefix, o) {
			out = append(out, api.Operation{Op: o.Kind.String(), Key: o.Key, Value: o.Value})
		}
	}
	return out
}
