package feed

import (
	"errors"
	"fmt"
	"sync"

	"github.com/cairn-db/cairn/fsm"
)

// Subscription is one subscriber's position in the feed. It is used by
// one goroutine at a time.
type Subscription struct {
	h *Hub
	// start is the revision the subscription is complete up to before
	// its first read; head the member's revision when it opened.
	start, head uint64
	// limit is the number of records the next step takes.
	limit int
	buf   []Entry
	// next is the next revision to read; at is the member's revision as
	// of the last read. Every record up to min(next-1, at) has been read.
	next, at uint64
	// req is the subscription's grant of the hub's catch-up budget: held
	// while the records of a source read are in use (until the next
	// Read), or waited for.
	req request
	// asked: req is granted or in line; chunk: the records last read
	// came from the source and hold req's grant.
	asked, chunk bool
	// cpu is the subscription's claim on one of the hub's catch-up CPU
	// tokens: taken to read a chunk from the source and to encode it
	// (Resume), given up before writing (Pause) and at the next Read.
	// cpuAsked: cpu is held or in line.
	cpu       request
	cpuAsked  bool
	closeOnce sync.Once
}

// Start returns the revision the subscription is complete up to before
// its first read (the one before its start, or the member's head when the
// start is past it).
func (s *Subscription) Start() uint64 { return s.start }

// Head returns the member's revision when the subscription opened.
func (s *Subscription) Head() uint64 { return s.head }

// Progress returns the revision up to which every record has been read.
func (s *Subscription) Progress() uint64 { return min(s.next-1, s.at) }

// Done returns a channel closed when the hub shuts down.
func (s *Subscription) Done() <-chan struct{} { return s.h.stop }

// Close releases the subscription's slot and its share of the catch-up
// budget. It is safe to call twice.
func (s *Subscription) Close() {
	s.closeOnce.Do(func() {
		s.h.budget.release(&s.req)
		s.h.cpu.release(&s.cpu)
		clear(s.buf)
		s.h.release()
	})
}

// Read takes the next records, from the shared tail when it holds them,
// else from the source. wait is nil when more can be read at once, else a
// channel closed when there may be more (or when the catch-up budget has
// room for the subscription's next chunk). The entries are valid until
// the next Read.
//
// Records read from the source come with one of the hub's catch-up CPU
// tokens, held until Pause or the next Read: their consumer encodes them
// holding it, calls Pause before it writes to its connection and Resume
// before it encodes more of them.
func (s *Subscription) Read() (recs []Entry, wait <-chan struct{}, err error) {
	if s.chunk {
		// The previous chunk (from the source) is no longer used: its
		// grant goes back and its records may be collected.
		s.giveBack()
		clear(s.buf)
	}
	if recs, head, changed, ok := s.h.cache.get(s.next, s.limit, s.buf); ok {
		if s.asked {
			s.giveBack() // the tail caught up with a waiting subscription
		}
		s.buf = recs
		s.at = head
		if len(recs) == 0 {
			return nil, changed, nil // caught up (or a start past the head)
		}
		s.next = recs[len(recs)-1].Rec.Revision + 1
		s.adapt(recs)
		return recs, nil, nil
	}
	// Behind the tail (or none): read the source. Take the change channel
	// first, so a batch applied after the read closes it.
	src := s.h.src
	changed := src.Changed()
	if cur := src.Revision(); s.next > cur+1 {
		// A client resuming on a member behind its resume point.
		if s.asked {
			s.giveBack()
		}
		s.at = cur
		return nil, changed, nil
	}
	// Take a grant of the catch-up budget first, then a CPU token, or
	// wait for them.
	if ok, granted := s.grants(); !ok {
		return nil, granted, nil
	}
	log, at, need, err := src.LogChunk(s.next, s.limit, max(s.req.held, s.req.want))
	if err == nil && need > 0 {
		// The next record alone is larger than the grant: ask for its
		// size (at most the whole budget; the record is then read alone,
		// past the budget).
		s.giveBack()
		s.req.want = need
		if ok, granted := s.grants(); !ok {
			return nil, granted, nil
		}
		log, at, need, err = src.LogChunk(s.next, 1, max(s.req.held, s.req.want))
	}
	s.req.want = s.h.budget.chunkWant()
	switch {
	case err == nil && need > 0:
		err = fmt.Errorf("feed: revision %d (%d bytes) did not fit a read of its size", s.next, need)
	case errors.Is(err, fsm.ErrFutureRevision):
		s.giveBack()
		s.at = src.Revision()
		return nil, changed, nil
	}
	if err != nil {
		s.giveBack()
		return nil, nil, err
	}
	s.at = at
	if len(log) == 0 {
		s.giveBack()
		s.next = max(s.next, at+1)
		return nil, changed, nil
	}
	recs = s.buf[:0]
	size := 0
	for i := range log {
		e := newEntry(&log[i])
		size += e.size
		recs = append(recs, e)
	}
	// Hold what the chunk takes until the next Read; the rest of the
	// grant goes back at once.
	s.h.budget.shrink(&s.req, size)
	s.chunk = true
	s.buf = recs
	s.next = log[len(log)-1].Revision + 1
	s.adapt(recs)
	// Read on at once: the source or the tail may hold more.
	return recs, nil, nil
}

// grants takes the subscription's grant of the catch-up budget, then a
// CPU token (never the token while waiting for the budget), or returns the
// channel to wait on for the one missing.
func (s *Subscription) grants() (bool, <-chan struct{}) {
	s.asked = true
	if ok, granted := s.h.budget.acquire(&s.req); !ok {
		return false, granted
	}
	s.cpuAsked = true
	return s.h.cpu.acquire(&s.cpu)
}

// giveBack returns the subscription's grant and CPU token, or leaves
// their lines.
func (s *Subscription) giveBack() {
	s.h.budget.release(&s.req)
	s.asked, s.chunk = false, false
	s.pause()
}

// Pause gives up the catch-up CPU token that came with the records of the
// last Read (or leaves its line): their consumer calls it before writing
// to its connection, so that a slow reader holds none while its socket
// drains, and Resume before it encodes more of them. A token asked for by
// a Read that returned a channel is kept (the next Read uses it).
func (s *Subscription) Pause() {
	if s.chunk {
		s.pause()
	}
}

func (s *Subscription) pause() {
	if s.cpuAsked {
		s.h.cpu.release(&s.cpu)
		s.cpuAsked = false
	}
}

// Resume takes the catch-up CPU token back to go on encoding the records
// of the last Read, after a Pause. It reports true when the subscription
// may go on at once (it holds the token, or its records came from the
// shared tail and need none); otherwise it returns the channel closed when
// the token is granted (call Resume again then). The consumer waits on it
// holding nothing else.
func (s *Subscription) Resume() (bool, <-chan struct{}) {
	if !s.chunk {
		return true, nil
	}
	s.cpuAsked = true
	return s.h.cpu.acquire(&s.cpu)
}

// adapt sizes the next step so it holds about chunkBytes.
func (s *Subscription) adapt(recs []Entry) {
	size := 0
	for _, e := range recs {
		size += e.size
	}
	switch {
	case size > chunkBytes:
		s.limit = max(1, len(recs)*chunkBytes/size)
	case len(recs) == s.limit && size < chunkBytes/2:
		s.limit = min(chunkRecords, s.limit*2)
	}
}
