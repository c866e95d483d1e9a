package feed

import "sync"

// budget is the bytes that subscriptions reading the source (catching up)
// may hold at once, shared by all of them: a subscription takes a grant
// before it reads a chunk and gives it back at its next Read or Close. A
// request that does not fit waits in line, first come first served, so
// that a large request is not passed over forever by small ones; waiting
// is a channel the subscriber selects on (it goes on sending progress
// meanwhile), never a blocked goroutine.
type budget struct {
	mu    sync.Mutex
	total int
	used  int
	queue []*request
}

// request is a subscription's grant: asked for (want), then held.
type request struct {
	want    int
	held    int
	queued  bool
	granted chan struct{} // closed when a queued request is granted
}

// chunkWant is what a subscription asks for to read its next chunk: at
// most catchUpChunkBytes, and at most an eighth of the budget so that
// several subscriptions read at once. Chunks are small because a stream
// holds its chunk while it writes it to the connection: a slow reader
// must not sit on much of the budget.
func (b *budget) chunkWant() int { return max(1, min(catchUpChunkBytes, b.total/8)) }

// acquire grants r its want at once when it fits and nobody waits before
// it, and reports true; otherwise it queues r (once) and returns the
// channel closed when r is granted. A want above the whole budget is
// granted when nothing else is held (the grant is then the whole budget
// and its holder may exceed it alone).
func (b *budget) acquire(r *request) (bool, <-chan struct{}) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if r.held > 0 {
		return true, nil
	}
	if r.queued {
		return false, r.granted
	}
	if len(b.queue) == 0 && b.fits(r.want) {
		b.grant(r)
		return true, nil
	}
	r.queued = true
	r.granted = make(chan struct{})
	b.queue = append(b.queue, r)
	return false, r.granted
}

func (b *budget) fits(want int) bool {
	return b.used+min(want, b.total) <= b.total
}

func (b *budget) grant(r *request) {
	r.held = min(r.want, b.total)
	b.used += r.held
}

// shrink gives back what r holds beyond keep.
func (b *budget) shrink(r *request, keep int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if r.held > keep {
		b.used -= r.held - keep
		r.held = keep
		b.wakeLocked()
	}
}

// release gives back r's grant, or takes r out of the line.
func (b *budget) release(r *request) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if r.queued {
		for i, q := range b.queue {
			if q == r {
				b.queue = append(b.queue[:i], b.queue[i+1:]...)
				break
			}
		}
		r.queued = false
	}
	if r.held > 0 {
		b.used -= r.held
		r.held = 0
	}
	b.wakeLocked()
}

// wakeLocked grants the waiting requests that fit, in order.
func (b *budget) wakeLocked() {
	for len(b.queue) > 0 && b.fits(b.queue[0].want) {
		r := b.queue[0]
		b.queue[0] = nil
		b.queue = b.queue[1:]
		r.queued = false
		b.grant(r)
		close(r.granted)
	}
}

// inUse returns the bytes granted and the requests waiting.
func (b *budget) inUse() (used, waiting int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.used, len(b.queue)
}
