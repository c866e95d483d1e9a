// Package feed is a member's change feed: the committed transaction
// records in revision order, read by many subscribers (watch streams)
// from the member's local state, without polling and without making the
// apply path wait for any of them.
//
// One filler goroutine per Hub (running while subscriptions are open)
// waits on Source.Changed, which the state machine closes after every
// applied batch, reads the new records once and appends them to a bounded
// in-memory tail of the log. Subscribers that are caught up copy their
// next records from that tail and wait on its change channel; subscribers
// behind the tail (a start in the past, a slow reader) read the source
// themselves in bounded chunks until they reach it. So a hundred
// subscribers cost one log read per batch, not a hundred concurrent
// storage transactions.
//
// Memory is bounded (docs/performance.md, "Watchers catching up"): a
// subscriber reads the source in chunks of at most chunkBytes of stored
// records (fsm.LogChunk checks each record's size before decoding it), and
// the chunks held at once by all the subscribers reading the source are
// bounded by the hub's catch-up budget (Config.CatchUpBytes): a subscriber
// whose chunk does not fit waits for its turn, its Read returning a
// channel, instead of allocating. The shared tail is bounded by
// cacheRecords and cacheBytes (encodings included); subscribers reading it
// hold no copies of its records.
//
// CPU is shared too: a subscriber reading the source holds one of the
// hub's catch-up CPU tokens (Config.CatchUpStreams) while it reads a chunk
// and while its consumer encodes it, and gives it up (Pause) before it
// writes to its connection, so that catch-up streams leave the rest of the
// member's cores to writes, and a slow reader, waiting on its socket,
// holds no token. Subscribers reading the shared tail take none.
//
// The filler wakes waiting subscribers at most once per MaxDelay/100 per
// open subscription (MaxDelay at most): a write after a quiet spell wakes
// them at once, while under a steady stream of batches each wake-up
// carries many. The feed knows nothing of HTTP or JSON: an Entry carries
// a Memo in which a consumer keeps an encoding of the record that every
// subscriber can share.
package feed

import (
	"errors"
	"fmt"
	"runtime"
	"sync"
	"time"

	"github.com/cairn-db/cairn/fsm"
)

// Errors returned by Subscribe.
var (
	// ErrTooManySubscribers means the hub already serves its maximum of
	// subscriptions.
	ErrTooManySubscribers = errors.New("feed: too many subscribers")
	// ErrClosed means the hub has shut down.
	ErrClosed = errors.New("feed: shut down")
)

// Bounds of the feed's memory.
const (
	// chunkRecords caps the records a subscriber takes in one step;
	// chunkBytes caps the stored bytes of a chunk the filler reads into
	// the tail (one larger record is read alone), and shrinks the step
	// taken from the tail when records are large.
	chunkRecords = 256
	chunkBytes   = 1 << 20
	// catchUpChunkBytes caps the stored bytes of a chunk that a
	// subscription reads from the source (one larger record is read
	// alone), out of the catch-up budget.
	catchUpChunkBytes = 256 << 10
	// cacheRecords and cacheBytes bound the shared tail of the log; its
	// bytes count each record and its shared encoding (Memo).
	cacheRecords = 4096
	cacheBytes   = 8 << 20
	// DefaultCatchUpBytes is the default of Config.CatchUpBytes.
	DefaultCatchUpBytes = 8 << 20
)

// Source is the committed state a hub follows. *fsm.FSM implements it.
type Source interface {
	// Changed returns a channel closed after the next applied change.
	Changed() <-chan struct{}
	// Revision returns the last applied revision.
	Revision() uint64
	// Status returns the revision and the oldest available one.
	Status() (fsm.Status, error)
	// LogChunk returns up to limit records from revision from, of at
	// most maxBytes stored bytes, and the revision they were read at;
	// when the first record alone is larger, no records and its size
	// (need). See fsm.FSM.LogChunk.
	LogChunk(from uint64, limit, maxBytes int) (recs []fsm.Record, at uint64, need int, err error)
}

// Config configures a Hub.
type Config struct {
	// MaxSubscribers caps the open subscriptions.
	MaxSubscribers int
	// MaxDelay: waiting subscribers are woken at most every MaxDelay
	// under load (MaxDelay/100 per open subscription).
	MaxDelay time.Duration
	// CatchUpBytes bounds the records held at once by all the
	// subscriptions reading the source rather than the shared tail
	// (0: DefaultCatchUpBytes). It counts stored bytes; a record larger
	// than the whole budget is read when nothing else is held.
	CatchUpBytes int
	// CatchUpStreams is the number of subscriptions reading the source
	// that may read and encode at once (0: DefaultCatchUpStreams).
	CatchUpStreams int
}

// DefaultCatchUpStreams is the default of Config.CatchUpStreams: half the
// cores Go uses (GOMAXPROCS), at least one, so that a flood of watchers
// catching up leaves the other half to writes.
func DefaultCatchUpStreams() int { return max(1, runtime.GOMAXPROCS(0)/2) }

// Hub is a member's feed: its open subscriptions, the shared tail of the
// log and its filler.
type Hub struct {
	src      Source
	max      int
	maxDelay time.Duration

	mu      sync.Mutex
	active  int
	filling bool          // the filler goroutine runs
	idle    chan struct{} // tells the filler that active dropped to 0
	stop    chan struct{} // closed by Shutdown
	closed  bool
	fillers sync.WaitGroup

	cache  cache
	budget budget
	// cpu holds the catch-up CPU tokens (one unit each).
	cpu budget
}

// NewHub returns a hub over src serving at most max subscriptions, whose
// waiting subscribers are woken at most every maxDelay under load, with
// the default catch-up budget.
func NewHub(src Source, max int, maxDelay time.Duration) *Hub {
	return New(src, Config{MaxSubscribers: max, MaxDelay: maxDelay})
}

// New returns a hub over src configured by cfg.
func New(src Source, cfg Config) *Hub {
	if cfg.CatchUpBytes <= 0 {
		cfg.CatchUpBytes = DefaultCatchUpBytes
	}
	if cfg.CatchUpStreams <= 0 {
		cfg.CatchUpStreams = DefaultCatchUpStreams()
	}
	return &Hub{src: src, max: cfg.MaxSubscribers, maxDelay: cfg.MaxDelay, idle: make(chan struct{}, 1), stop: make(chan struct{}),
		budget: budget{total: cfg.CatchUpBytes}, cpu: budget{total: cfg.CatchUpStreams}}
}

// CatchUp returns the catch-up budget's bytes granted now and the
// subscriptions waiting for a grant.
func (h *Hub) CatchUp() (held, waiting int) { return h.budget.inUse() }

// CatchUpCPU returns the catch-up CPU tokens held now and the
// subscriptions waiting for one.
func (h *Hub) CatchUpCPU() (held, waiting int) { return h.cpu.inUse() }

// Done returns a channel closed when the hub shuts down.
func (h *Hub) Done() <-chan struct{} { return h.stop }

// Shutdown ends every subscription (their readers see Done) and waits
// for the filler to stop. Subscribe refuses from then on.
func (h *Hub) Shutdown() {
	h.mu.Lock()
	if !h.closed {
		h.closed = true
		close(h.stop)
	}
	h.mu.Unlock()
	h.fillers.Wait()
}

// Active returns the number of open subscriptions.
func (h *Hub) Active() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.active
}

// Subscribe opens a subscription from revision from (0: the next
// revision to commit). It fails with ErrTooManySubscribers, ErrClosed, a
// *fsm.CompactedError for a start before the oldest revision, or the
// source's error. Close releases it.
func (h *Hub) Subscribe(from uint64) (*Subscription, error) {
	st, err := h.src.Status()
	if err != nil {
		return nil, err
	}
	if from == 0 {
		from = st.Revision + 1
	}
	if from < st.CompactRevision {
		return nil, &fsm.CompactedError{Requested: from, Oldest: st.CompactRevision}
	}
	if err := h.acquire(); err != nil {
		return nil, err
	}
	return &Subscription{h: h, next: from, head: st.Revision, start: min(from-1, st.Revision), limit: chunkRecords,
		req: request{want: h.budget.chunkWant()}, cpu: request{want: 1}}, nil
}

func (h *Hub) acquire() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return ErrClosed
	}
	if h.active >= h.max {
		return fmt.Errorf("%w: %d open (limit %d)", ErrTooManySubscribers, h.active, h.max)
	}
	h.active++
	if !h.filling {
		h.filling = true
		h.cache.reset(h.src.Revision())
		h.fillers.Add(1)
		go func() {
			defer h.fillers.Done()
			h.fill()
		}()
	}
	return nil
}

func (h *Hub) release() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.active--
	if h.active == 0 {
		select {
		case h.idle <- struct{}{}:
		default:
		}
	}
}

// wakeInterval is the least time between two wake-ups of the waiting
// subscribers: maxDelay/100 per open subscription, at most maxDelay.
func (h *Hub) wakeInterval() time.Duration {
	h.mu.Lock()
	n := h.active
	h.mu.Unlock()
	return min(h.maxDelay, time.Duration(n)*(h.maxDelay/100))
}

// fill appends newly applied records to the cache until no subscriber is
// left or the hub shuts down. Records are appended as soon as they are
// applied; the waiters are woken (publish) at most once per wakeInterval.
// A subscriber still busy with earlier records does not wait: it takes
// the new ones from the cache when it is done.
func (h *Hub) fill() {
	var (
		last    time.Time // the last publication
		pending bool      // records loaded but not published
		timer   = time.NewTimer(time.Hour)
		timerC  <-chan time.Time
	)
	timer.Stop()
	defer timer.Stop()
	for {
		changed := h.src.Changed()
		if h.src.Revision() > h.cache.head() {
			n, err := h.cache.load(h.src)
			if err == nil {
				pending = pending || n > 0
				continue // more may follow at once
			}
			if errors.Is(err, fsm.ErrClosed) {
				h.exitFill(true)
				return
			}
			// Compacted past the tail (a snapshot restore far ahead, say):
			// restart it at the head; subscribers behind it read the
			// source and meet the compaction there.
			h.cache.reset(h.src.Revision())
		}
		if pending && timerC == nil {
			if d := h.wakeInterval() - time.Since(last); d > 0 {
				timer.Reset(d)
				timerC = timer.C
			} else {
				h.cache.publish()
				last, pending = time.Now(), false
			}
		}
		select {
		case <-changed:
		case <-timerC:
			timerC = nil
			h.cache.publish()
			last, pending = time.Now(), false
		case <-h.stop:
			h.exitFill(true)
			return
		case <-h.idle:
			if h.exitFill(false) {
				return
			}
		}
	}
}

// exitFill stops the filler when force or no subscriber is left, and
// disables the cache (remaining subscribers read the source); it reports
// whether the filler stops.
func (h *Hub) exitFill(force bool) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !force && h.active > 0 {
		return false
	}
	h.filling = false
	h.cache.disable()
	return true
}

// Entry is a record as subscribers take it.
type Entry struct {
	Rec  *fsm.Record
	size int
	// Memo, for records from the shared tail, is shared by every
	// subscriber that takes the record (nil otherwise).
	Memo *Memo
}

func newEntry(rec *fsm.Record) Entry { return Entry{Rec: rec, size: recordSize(rec)} }

// Memo keeps one lazily computed encoding of a record for every
// subscriber.
type Memo struct {
	once sync.Once
	b    []byte
}

// Get returns the encoding, computing it with encode on first use.
func (m *Memo) Get(encode func() []byte) []byte {
	m.once.Do(func() { m.b = encode() })
	return m.b
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
