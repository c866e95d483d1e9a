package feed

import (
	"errors"
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
	next, at  uint64
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

// Close releases the subscription's slot. It is safe to call twice.
func (s *Subscription) Close() { s.closeOnce.Do(s.h.release) }

// Read takes the next records, from the shared tail when it holds them,
// else from the source. wait is nil when more can be read at once, else a
// channel closed when there may be more. The entries are valid until the
// next Read.
func (s *Subscription) Read() (recs []Entry, wait <-chan struct{}, err error) {
	if recs, head, changed, ok := s.h.cache.get(s.next, s.limit, s.buf); ok {
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
	log, at, err := src.Log(s.next, s.limit)
	if errors.Is(err, fsm.ErrFutureRevision) {
		s.at = src.Revision()
		return nil, changed, nil
	}
	if err != nil {
		return nil, nil, err
	}
	s.at = at
	if len(log) == 0 {
		s.next = max(s.next, at+1)
		return nil, changed, nil
	}
	recs = s.buf[:0]
	for i := range log {
		recs = append(recs, newEntry(&log[i]))
	}
	s.buf = recs
	s.next = log[len(log)-1].Revision + 1
	s.adapt(recs)
	// Read on at once: the source or the tail may hold more.
	return recs, nil, nil
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
