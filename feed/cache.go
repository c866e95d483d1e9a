package feed

import (
	"fmt"
	"sync"
)

// cache is the tail of the transaction log: every record from first to
// head (none when first = head+1), bounded by cacheRecords and cacheBytes.
type cache struct {
	mu      sync.RWMutex
	recs    []Entry
	bytes   int
	first   uint64
	last    uint64 // head: the newest revision covered
	changed chan struct{}
}

// reset empties the cache at revision head and wakes its waiters.
func (c *cache) reset(head uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.reset0(head)
	c.notifyLocked()
}

func (c *cache) reset0(head uint64) {
	clear(c.recs)
	c.recs, c.bytes = nil, 0
	c.first, c.last = head+1, head
}

// disable empties the cache and sends its readers to the source.
func (c *cache) disable() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.reset0(0)
	if c.changed != nil {
		close(c.changed)
		c.changed = nil
	}
}

func (c *cache) notifyLocked() {
	if c.changed != nil {
		close(c.changed)
	}
	c.changed = make(chan struct{})
}

func (c *cache) head() uint64 {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.last
}

// publish wakes the cache's waiters.
func (c *cache) publish() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.changed != nil {
		c.notifyLocked()
	}
}

// load appends the records after the head (one chunk: at most
// chunkRecords and chunkBytes, or one larger record) and returns how many.
// It does not wake the waiters (publish does).
func (c *cache) load(src Source) (int, error) {
	from := c.head() + 1
	recs, _, need, err := src.LogChunk(from, chunkRecords, chunkBytes)
	if err == nil && need > 0 {
		if recs, _, _, err = src.LogChunk(from, 1, need); err == nil && len(recs) == 0 {
			// Not read at its own size: never loop on it (the filler
			// restarts the tail at the head instead).
			err = fmt.Errorf("feed: revision %d (%d bytes) did not fit a read of its size", from, need)
		}
	}
	if err != nil || len(recs) == 0 {
		return 0, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if from != c.last+1 || c.changed == nil {
		return 0, nil // reset or disabled meanwhile
	}
	for i := range recs {
		e := newEntry(&recs[i])
		e.Memo = new(Memo)
		c.recs = append(c.recs, e)
		c.bytes += cachedSize(e)
	}
	c.last = recs[len(recs)-1].Revision
	// Drop the oldest beyond the bounds. The array's front is cleared;
	// append moves only the live entries when it fills up.
	drop := 0
	for len(c.recs)-drop > cacheRecords || (c.bytes > cacheBytes && len(c.recs)-drop > 1) {
		c.bytes -= cachedSize(c.recs[drop])
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
// when next is before the cache (read the source); otherwise recs are the
// records (none when next is past the head), head the newest revision
// covered, and changed a channel closed when the cache changes next.
func (c *cache) get(next uint64, limit int, buf []Entry) (recs []Entry, head uint64, changed <-chan struct{}, ok bool) {
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

// cachedSize is what a record costs in the tail: the record and the
// encoding that its Memo may come to hold (JSON with base64 values, about
// 4/3 of the record).
func cachedSize(e Entry) int { return e.size + e.size*4/3 }
