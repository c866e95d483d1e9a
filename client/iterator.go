package client

import (
	"context"

	"github.com/cairn-db/cairn/api"
)

// Iterator walks a listing page by page. Every page after the first is
// read at the first page's revision, so the listing is one consistent
// snapshot (ErrCompacted if that revision is compacted meanwhile).
//
//	it := c.List(ctx, "users/")
//	for it.Next() {
//		kv := it.KV()
//		...
//	}
//	if err := it.Err(); err != nil { ... }
type Iterator struct {
	c      *Client
	ctx    context.Context
	prefix string
	opts   []ReadOption

	page    []api.KeyValue
	i       int
	rev     uint64
	next    string
	more    bool
	started bool
	kv      KeyValue
	err     error
}

// List returns an iterator over the keys under prefix, in key order.
// Limit sets the page size.
func (c *Client) List(ctx context.Context, prefix string, opts ...ReadOption) *Iterator {
	return &Iterator{c: c, ctx: ctx, prefix: prefix, opts: opts}
}

// Next advances to the next key, fetching a page when needed; it returns
// false at the end or on error (see Err).
func (it *Iterator) Next() bool {
	if it.err != nil {
		return false
	}
	for it.i >= len(it.page) {
		if it.started && !it.more {
			return false
		}
		if !it.fetch() {
			return false
		}
	}
	kv := it.page[it.i]
	it.i++
	it.kv = KeyValue{Key: kv.Key, Value: kv.Value, CreateRevision: kv.CreateRevision, ModRevision: kv.ModRevision, Revision: it.rev}
	return true
}

func (it *Iterator) fetch() bool {
	opts := it.opts
	if it.started {
		// Pin later pages to the first page's snapshot, and make sure a
		// stale read's node has it.
		opts = append(append([]ReadOption(nil), opts...), AtRevision(it.rev))
		if o, _ := it.c.readOpts(opts); !o.linearizable() && o.minRevision < it.rev {
			opts = append(opts, MinRevision(it.rev))
		}
	}
	lr, err := it.c.ListPage(it.ctx, it.prefix, it.next, 0, opts...)
	if err != nil {
		it.err = err
		return false
	}
	if !it.started {
		it.rev = lr.Revision
		it.started = true
	}
	it.page, it.i, it.more, it.next = lr.KVs, 0, lr.More, lr.Next
	if it.more && it.next == "" && len(lr.KVs) > 0 {
		it.next = lr.KVs[len(lr.KVs)-1].Key
	}
	if it.more && len(lr.KVs) == 0 {
		it.more = false // no progress possible; end rather than loop
	}
	return true
}

// KV returns the current key. Its Revision is the listing's snapshot.
func (it *Iterator) KV() KeyValue { return it.kv }

// Revision returns the revision the listing reflects (0 before the first
// page).
func (it *Iterator) Revision() uint64 { return it.rev }

// Err returns the error that ended the iteration, if any.
func (it *Iterator) Err() error { return it.err }
