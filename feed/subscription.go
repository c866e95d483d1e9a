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
	closeOnce    sync.Once
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
		clear(s.buf)
		s.h.release()
	})
}

// Read takes the next records, from the shared tail when it holds them,
// else from the source. wait is nil when more can be read at once, else a
// channel closed when there may be more (or when the catch-up budget has
// room for the subscription's next chunk). The entries are valid until
// the next Read.
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
		s.at = cur
		return nil, changed, nil
	}
	// Take a grant of the catch-up budget first, or wait for one.
	s.asked = true
	if ok, granted := s.h.budget.acquire(&s.req); !ok {
		return nil, granted, nil
	}
	log, at, need, err := src.LogChunk(s.next, s.limit, max(s.req.held, s.req.want))
	if err == nil && need > 0 {
		// The next record alone is larger than the grant: ask for its
		// size (at most the whole budget; the record is then read alone,
		// past the budget).
		s.giveBack()
		s.req.want = need
		s.asked = true
		if ok, granted := s.h.budget.acquire(&s.req); !ok {
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

// giveBack returns the subscription's grant, or leaves the line.
func (s *Subscription) giveBack() {
	s.h.budget.release(&s.req)
	s.asked, s.chunk = false, false
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
