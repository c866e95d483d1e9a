package client

import (
	"net/url"
	"strconv"
	"time"

	"github.com/cairn-db/cairn/api"
)

// WriteOption modifies a write.
type WriteOption func(*writeOptions)

type writeOptions struct {
	ifRevision    uint64
	hasIfRevision bool
	ifAbsent      bool
	ifExists      bool
	idemKey       string
}

// IfRevision makes a Put or Delete conditional on the key's modification
// revision being r (0: the key must be absent).
func IfRevision(r uint64) WriteOption {
	return func(o *writeOptions) { o.ifRevision, o.hasIfRevision = r, true }
}

// IfAbsent makes a Put conditional on the key not existing.
func IfAbsent() WriteOption { return func(o *writeOptions) { o.ifAbsent = true } }

// IfExists makes a Put or Delete conditional on the key existing.
func IfExists() WriteOption { return func(o *writeOptions) { o.ifExists = true } }

// WithIdempotencyKey sets the write's idempotency key instead of a random
// one. Reusing a key within the server's idempotency window returns the
// first write's result without writing again.
func WithIdempotencyKey(k string) WriteOption { return func(o *writeOptions) { o.idemKey = k } }

func (o *writeOptions) hasConditions() bool { return o.hasIfRevision || o.ifAbsent || o.ifExists }

func (o *writeOptions) query(q url.Values) {
	if o.hasIfRevision {
		q.Set("if_revision", strconv.FormatUint(o.ifRevision, 10))
	}
	if o.ifAbsent {
		q.Set("if_absent", "true")
	}
	if o.ifExists {
		q.Set("if_exists", "true")
	}
}

// ReadOption modifies a read.
type ReadOption func(*readOptions)

type readOptions struct {
	revision     uint64
	consistency  string
	maxStaleness time.Duration
	minRevision  uint64
	limit        int
	endpoint     string
}

// AtRevision reads the state as of revision r (Get, List, ListPage).
func AtRevision(r uint64) ReadOption { return func(o *readOptions) { o.revision = r } }

// Consistency sets the read's consistency: api.Linearizable (the default)
// or api.Stale.
func Consistency(level string) ReadOption { return func(o *readOptions) { o.consistency = level } }

// MaxStaleness makes a stale read refuse (ErrUnavailable) on a follower
// that has not heard from the leader within d. It implies a stale read
// unless Consistency says otherwise.
func MaxStaleness(d time.Duration) ReadOption { return func(o *readOptions) { o.maxStaleness = d } }

// MinRevision makes the answering node wait until it has applied revision
// r. It implies a stale read unless Consistency says otherwise.
func MinRevision(r uint64) ReadOption { return func(o *readOptions) { o.minRevision = r } }

// Limit sets the page size of List and ListPage and the number of
// versions History returns.
func Limit(n int) ReadOption { return func(o *readOptions) { o.limit = n } }

// Endpoint pins the read to one node (a base URL or host:port), e.g. to
// read a follower's local state with Consistency(api.Stale).
func Endpoint(url string) ReadOption { return func(o *readOptions) { o.endpoint = url } }

// linearizable reports whether the server will treat the read as
// linearizable (its default when neither min_revision nor max_staleness
// is set).
func (o *readOptions) linearizable() bool {
	if o.consistency != "" {
		return o.consistency == api.Linearizable
	}
	return o.minRevision == 0 && o.maxStaleness == 0
}

// query sets the consistency parameters. session is the client's highest
// seen revision, added as min_revision to non-linearizable reads without
// one when ryw is set.
func (o *readOptions) query(q url.Values, ryw bool, session uint64) {
	if o.consistency != "" {
		q.Set("consistency", o.consistency)
	}
	if o.maxStaleness > 0 {
		q.Set("max_staleness", o.maxStaleness.String())
	}
	min := o.minRevision
	if ryw && min == 0 && !o.linearizable() {
		min = session
	}
	if min > 0 {
		q.Set("min_revision", strconv.FormatUint(min, 10))
	}
}
