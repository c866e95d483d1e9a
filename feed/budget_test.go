package feed

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cairn-db/cairn/fsm"
)

// memSource is a Source over records in memory; a record's stored size
// is its recordSize.
type memSource struct {
	mu      sync.Mutex
	recs    []fsm.Record
	changed chan struct{}
	reads   int
}

func newMemSource(sizes ...int) *memSource {
	s := &memSource{changed: make(chan struct{})}
	for i, n := range sizes {
		s.recs = append(s.recs, fsm.Record{Revision: uint64(i + 1), Ops: []fsm.Op{{Kind: fsm.OpPut, Key: "k", Value: []byte(strings.Repeat("v", n))}}})
	}
	return s
}

func (s *memSource) Changed() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.changed
}

func (s *memSource) Revision() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return uint64(len(s.recs))
}

func (s *memSource) Status() (fsm.Status, error) {
	return fsm.Status{Revision: s.Revision(), CompactRevision: 1}, nil
}

func (s *memSource) LogChunk(from uint64, limit, maxBytes int) ([]fsm.Record, uint64, int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reads++
	at := uint64(len(s.recs))
	if from > at+1 {
		return nil, at, 0, fmt.Errorf("%w: %d", fsm.ErrFutureRevision, from)
	}
	var out []fsm.Record
	size := 0
	for _, r := range s.recs[from-1:] {
		if limit > 0 && len(out) == limit {
			break
		}
		n := recordSize(&r)
		if size+n > maxBytes {
			if len(out) == 0 {
				return nil, at, n, nil
			}
			break
		}
		size += n
		out = append(out, r)
	}
	return out, at, 0, nil
}

// TestBudgetOrder: requests are granted first come first served; a
// request above the whole budget waits until nothing is held and then
// gets it all; leaving the line wakes those behind.
func TestBudgetOrder(t *testing.T) {
	b := &budget{total: 100}
	a, big, c, d := &request{want: 60}, &request{want: 500}, &request{want: 10}, &request{want: 10}
	if ok, _ := b.acquire(a); !ok {
		t.Fatal("a: not granted with the budget free")
	}
	okBig, bigC := b.acquire(big)
	okC, cC := b.acquire(c) // fits, but big is in line first
	okD, dC := b.acquire(d)
	if okBig || okC || okD {
		t.Fatalf("granted past the line: big %v c %v d %v", okBig, okC, okD)
	}
	// d leaves the line; a gives back: big gets everything, c still waits.
	b.release(d)
	b.release(a)
	select {
	case <-bigC:
	default:
		t.Fatal("big not granted once the budget was free")
	}
	if used, waiting := b.inUse(); used != 100 || waiting != 1 || big.held != 100 {
		t.Fatalf("used %d, waiting %d, big holds %d; want 100, 1, 100", used, waiting, big.held)
	}
	select {
	case <-cC:
		t.Fatal("c granted while big holds the whole budget")
	case <-dC:
		t.Fatal("d granted after it left")
	default:
	}
	b.shrink(big, 80)
	select {
	case <-cC:
	default:
		t.Fatal("c not granted when big shrank")
	}
	if used, waiting := b.inUse(); used != 90 || waiting != 0 {
		t.Fatalf("used %d, waiting %d; want 90, 0", used, waiting)
	}
	b.release(big)
	b.release(c)
	if used, _ := b.inUse(); used != 0 {
		t.Fatalf("used %d after every release", used)
	}
}

// readAll reads s until it has revision head, recording the budget in use
// after each read, and waiting (with a deadline) whenever it must; then it
// reads once more, as a stream does once it has written a chunk, which
// gives the last chunk's grant back.
func readAll(t *testing.T, h *Hub, s *Subscription, head uint64, onRead func()) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for s.Progress() < head {
		recs, wait, err := s.Read()
		if err != nil {
			t.Error(err)
			return
		}
		if onRead != nil {
			onRead()
		}
		if len(recs) == 0 && wait != nil {
			select {
			case <-wait:
			case <-deadline:
				used, waiting := h.budget.inUse()
				t.Errorf("stuck at %d of %d (want %d held %d queued %v; budget used %d, %d waiting)", s.Progress(), head, s.req.want, s.req.held, s.req.queued, used, waiting)
				return
			}
		}
	}
	if _, _, err := s.Read(); err != nil {
		t.Error(err)
	}
}

// TestCatchUpBudget: subscriptions reading the source hold at most the
// budget between them; one that does not fit waits (its Read returns a
// channel) and goes on when the other reads on; a record larger than the
// whole budget is read when nothing else is held.
func TestCatchUpBudget(t *testing.T) {
	sizes := make([]int, 200)
	for i := range sizes {
		sizes[i] = 1000
	}
	sizes[150] = 20000 // larger than the whole budget
	src := newMemSource(sizes...)
	const total = 8 * 1200
	h := New(src, Config{MaxSubscribers: 4, MaxDelay: time.Millisecond, CatchUpBytes: total})
	defer h.Shutdown()
	s1, err := h.Subscribe(1)
	if err != nil {
		t.Fatal(err)
	}
	defer s1.Close()
	s2, err := h.Subscribe(1)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	// s1 takes a chunk: an eighth of the budget.
	recs, wait, err := s1.Read()
	if err != nil || wait != nil || len(recs) == 0 {
		t.Fatalf("s1: %d records, wait %v, %v", len(recs), wait, err)
	}
	size := 0
	for _, e := range recs {
		size += e.size
	}
	if size > h.budget.chunkWant() {
		t.Fatalf("s1's chunk is %d bytes, more than its grant of %d", size, h.budget.chunkWant())
	}
	// Hold the rest of the budget: s2 must wait.
	hog := &request{want: total}
	if ok, _ := h.budget.acquire(hog); ok {
		t.Fatal("hog granted the whole budget while s1 holds part of it")
	}
	recs, wait, err = s2.Read()
	if err != nil || len(recs) != 0 || wait == nil {
		t.Fatalf("s2 over the budget: %d records, wait %v, %v", len(recs), wait, err)
	}
	h.budget.release(hog)
	// s1 reads on (giving back its chunk): s2's turn comes.
	if _, _, err := s1.Read(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-wait:
	case <-time.After(10 * time.Second):
		t.Fatal("s2 not woken when the budget had room")
	}
	// Both read to the end, concurrently; the budget is never exceeded
	// except by the large record read alone.
	var mu sync.Mutex
	peak := 0
	check := func() {
		used, _ := h.budget.inUse()
		mu.Lock()
		peak = max(peak, used)
		mu.Unlock()
	}
	var wg sync.WaitGroup
	for _, s := range []*Subscription{s1, s2} {
		wg.Go(func() { readAll(t, h, s, uint64(len(sizes)), check) })
	}
	wg.Wait()
	if peak > total {
		t.Fatalf("budget in use peaked at %d, above %d", peak, total)
	}
	s1.Close()
	s2.Close()
	if used, waiting := h.budget.inUse(); used != 0 || waiting != 0 {
		t.Fatalf("after Close: %d bytes held, %d waiting", used, waiting)
	}
}

// add appends a record of a value of n bytes and signals the change.
func (s *memSource) add(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.recs = append(s.recs, fsm.Record{Revision: uint64(len(s.recs) + 1), Ops: []fsm.Op{{Kind: fsm.OpPut, Key: "k", Value: make([]byte, n)}}})
	close(s.changed)
	s.changed = make(chan struct{})
}

// TestTailTakesLargeRecords: the filler reads a record larger than its
// chunk bound into the shared tail alone, and a caught-up subscription
// gets it there, outside the catch-up budget.
func TestTailTakesLargeRecords(t *testing.T) {
	src := newMemSource(10)
	h := New(src, Config{MaxSubscribers: 1, MaxDelay: time.Millisecond, CatchUpBytes: 64 << 10})
	defer h.Shutdown()
	s, err := h.Subscribe(0)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	src.add(2 * chunkBytes)
	src.add(10)
	var got []uint64
	deadline := time.After(10 * time.Second)
	for len(got) < 2 {
		recs, wait, err := s.Read()
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range recs {
			if e.Memo == nil {
				t.Fatalf("revision %d not from the tail", e.Rec.Revision)
			}
			got = append(got, e.Rec.Revision)
		}
		if used, _ := h.budget.inUse(); used != 0 {
			t.Fatalf("a caught-up subscription holds %d bytes of the catch-up budget", used)
		}
		if wait != nil {
			select {
			case <-wait:
			case <-deadline:
				t.Fatalf("got %v, waiting for revisions 2 and 3", got)
			}
		}
	}
	if got[0] != 2 || got[1] != 3 {
		t.Fatalf("revisions %v, want [2 3]", got)
	}
}

// TestCatchUpCPU: subscriptions reading the source take one of the hub's
// CPU tokens with their chunk; beyond the tokens a Read returns a channel;
// Pause gives the token to the next in line and Resume waits behind it;
// a subscription reading the shared tail takes none; concurrent readers
// never hold more than the tokens.
func TestCatchUpCPU(t *testing.T) {
	sizes := make([]int, 400)
	for i := range sizes {
		sizes[i] = 100
	}
	src := newMemSource(sizes...)
	h := New(src, Config{MaxSubscribers: 8, MaxDelay: time.Millisecond, CatchUpStreams: 1})
	defer h.Shutdown()
	sub := func(from uint64) *Subscription {
		t.Helper()
		s, err := h.Subscribe(from)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(s.Close)
		return s
	}
	closed := func(c <-chan struct{}) bool {
		select {
		case <-c:
			return true
		default:
			return false
		}
	}
	s1, s2 := sub(1), sub(1)
	recs, wait, err := s1.Read()
	if err != nil || wait != nil || len(recs) == 0 {
		t.Fatalf("s1: %d records, wait %v, %v", len(recs), wait, err)
	}
	if held, _ := h.CatchUpCPU(); held != 1 {
		t.Fatalf("%d tokens held after s1's read, want 1", held)
	}
	// s1 encodes: s2 waits for the token.
	recs, w2, err := s2.Read()
	if err != nil || len(recs) != 0 || w2 == nil {
		t.Fatalf("s2 with the token taken: %d records, wait %v, %v", len(recs), w2, err)
	}
	if closed(w2) {
		t.Fatal("s2 woken while s1 holds the token")
	}
	// s1 writes (Pause): s2 gets the token and reads; s1's Resume waits.
	s1.Pause()
	if !closed(w2) {
		t.Fatal("s2 not woken when s1 paused")
	}
	if ok, _ := s1.Resume(); ok {
		t.Fatal("s1 resumed while s2 holds the token")
	}
	if recs, wait, err := s2.Read(); err != nil || wait != nil || len(recs) == 0 {
		t.Fatalf("s2 after its turn came: %d records, wait %v, %v", len(recs), wait, err)
	}
	if held, waiting := h.CatchUpCPU(); held != 1 || waiting != 1 {
		t.Fatalf("tokens: %d held, %d waiting; want 1, 1", held, waiting)
	}
	// A caught-up subscription reads the tail without a token.
	tail := sub(0)
	src.add(10)
	deadline := time.After(10 * time.Second)
	for tail.Progress() < uint64(len(sizes)+1) {
		recs, wait, err := tail.Read()
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range recs {
			if e.Memo == nil {
				t.Fatalf("revision %d not from the tail", e.Rec.Revision)
			}
		}
		if ok, _ := tail.Resume(); !ok {
			t.Fatal("a subscription reading the tail waits for a token")
		}
		if wait != nil {
			select {
			case <-wait:
			case <-deadline:
				t.Fatal("the tail subscription did not get the new record")
			}
		}
	}
	// s2 gives its token up at its next Read: s1 resumes.
	s2.Pause()
	if ok, _ := s1.Resume(); !ok {
		t.Fatal("s1 not resumed once s2 paused")
	}
	s1.Pause()
	// Both read to the end concurrently, pausing after each read as a
	// stream does before it writes: never more than one token held.
	var mu sync.Mutex
	peak := 0
	check := func() {
		held, _ := h.CatchUpCPU()
		mu.Lock()
		peak = max(peak, held)
		mu.Unlock()
	}
	var wg sync.WaitGroup
	for _, s := range []*Subscription{s1, s2} {
		wg.Go(func() { readAll(t, h, s, uint64(len(sizes)+1), func() { check(); s.Pause() }) })
	}
	wg.Wait()
	if peak > 1 {
		t.Fatalf("%d tokens held at once, above 1", peak)
	}
	s1.Close()
	s2.Close()
	tail.Close()
	if held, waiting := h.CatchUpCPU(); held != 0 || waiting != 0 {
		t.Fatalf("after Close: %d tokens held, %d waiting", held, waiting)
	}
}
