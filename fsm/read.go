package fsm

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// readRevision resolves the revision a read asks for (0 means current)
// against the state, refusing future and compacted revisions.
func readRevision(st *state, rev uint64) (uint64, error) {
	if rev == 0 {
		return st.revision, nil
	}
	if rev > st.revision {
		return 0, fmt.Errorf("%w: revision %d (current %d)", ErrFutureRevision, rev, st.revision)
	}
	if rev < st.compactRev {
		return 0, &CompactedError{Requested: rev, Oldest: st.compactRev}
	}
	return rev, nil
}

// Get returns key as of revision rev (0: current) and the revision read.
// A missing key returns ErrNotFound (with the revision read).
func (f *FSM) Get(key string, rev uint64) (KeyValue, uint64, error) {
	var kv KeyValue
	var at uint64
	err := f.view(func(tx *bolt.Tx) error {
		st := loadState(tx)
		var err error
		if at, err = readRevision(&st, rev); err != nil {
			return err
		}
		var found bool
		kv, found, err = getAt(tx, key, at)
		if err != nil {
			return err
		}
		if !found {
			return fmt.Errorf("%w: %q at revision %d", ErrNotFound, key, at)
		}
		return nil
	})
	return kv, at, err
}

// getAt reads one key at a revision: its newest history entry at or
// before it (a tombstone there means absent).
func getAt(tx *bolt.Tx, key string, at uint64) (KeyValue, bool, error) {
	k, v := seekAtOrBefore(tx.Bucket(bucketVersions).Cursor(), key, at)
	if k == nil {
		return KeyValue{}, false, nil
	}
	_, r, err := splitVersionKey(k)
	if err != nil {
		return KeyValue{}, false, err
	}
	tomb, cr, val, err := decodeVersion(k, v)
	if err != nil || tomb {
		return KeyValue{}, false, err
	}
	return KeyValue{Key: key, Value: bytes.Clone(val), CreateRevision: cr, ModRevision: r}, true, nil
}

// ListOptions selects a page of a prefix listing.
type ListOptions struct {
	// StartAfter skips keys up to and including this one.
	StartAfter string
	// Limit caps the page (0: no limit).
	Limit int
	// Revision reads as of this revision (0: current).
	Revision uint64
	// KeysOnly leaves values out.
	KeysOnly bool
}

// ListResult is a page of a prefix listing.
type ListResult struct {
	KVs []KeyValue
	// More is true when keys after the last one returned match too.
	More bool
	// Revision is the revision read.
	Revision uint64
}

// List returns the keys starting with prefix, in key order, as of one
// revision.
func (f *FSM) List(prefix string, opts ListOptions) (ListResult, error) {
	var res ListResult
	err := f.view(func(tx *bolt.Tx) error {
		st := loadState(tx)
		at, err := readRevision(&st, opts.Revision)
		if err != nil {
			return err
		}
		res.Revision = at
		emit := func(kv KeyValue) bool {
			if opts.Limit > 0 && len(res.KVs) == opts.Limit {
				res.More = true
				return false
			}
			if opts.KeysOnly {
				kv.Value = nil
			}
			res.KVs = append(res.KVs, kv)
			return true
		}
		if opts.Revision == 0 {
			return listCurrent(tx, prefix, opts.StartAfter, emit)
		}
		return listAt(tx, prefix, opts.StartAfter, at, emit)
	})
	return res, err
}

// seekStart positions a cursor at the first key matching prefix that
// sorts after startAfter.
func seekStart(prefix, startAfter string) []byte {
	if startAfter >= prefix {
		// Keys hold no NUL, so the smallest key greater than startAfter is
		// startAfter+"\x01". Seeking there also skips startAfter's own
		// history entries (startAfter | 0x00 | rev) when listAt walks the
		// versions bucket; startAfter+"\x00" would land on them.
		return append([]byte(startAfter), 1)
	}
	return []byte(prefix)
}

func listCurrent(tx *bolt.Tx, prefix, startAfter string, emit func(KeyValue) bool) error {
	return eachCurrent(tx.Bucket(bucketVersions).Cursor(), prefix, startAfter, nil, func(key string, mod uint64, k, v []byte) (bool, error) {
		_, cr, val, err := decodeVersion(k, v)
		if err != nil {
			return false, err
		}
		return emit(KeyValue{Key: key, Value: bytes.Clone(val), CreateRevision: cr, ModRevision: mod}), nil
	})
}

// eachCurrent calls fn, in key order, for every existing key under prefix
// that sorts after startAfter, with its newest history entry's revision,
// bbolt key and value bytes (valid until the transaction ends), until fn
// returns false. It goes from one key's newest entry to the next key's
// with one seek per key, however long their histories are. An entry that
// fails its check is an error, unless lenient is set (apply): then it is
// passed to lenient and its decoded fields are used.
func eachCurrent(c *bolt.Cursor, prefix, startAfter string, lenient func(*CorruptError), fn func(key string, modRev uint64, k, v []byte) (bool, error)) error {
	p := []byte(prefix)
	k, _ := c.Seek(seekStart(prefix, startAfter))
	for k != nil && bytes.HasPrefix(k, p) {
		key, _, err := splitVersionKey(k)
		if err != nil {
			return err
		}
		lk, lv := seekAtOrBefore(c, key, ^uint64(0))
		if lk == nil {
			return fmt.Errorf("fsm: history of %q not found again", key)
		}
		_, r, err := splitVersionKey(lk)
		if err != nil {
			return err
		}
		tomb, _, _, err := decodeLenient(lk, lv, lenient)
		if err != nil {
			return err
		}
		if !tomb {
			if ok, err := fn(key, r, lk, lv); err != nil || !ok {
				return err
			}
		}
		k, _ = c.Next()
	}
	return nil
}

// listAt walks the history bucket: for every key under prefix, the newest
// entry at or before at decides whether and how the key exists.
func listAt(tx *bolt.Tx, prefix, startAfter string, at uint64, emit func(KeyValue) bool) error {
	c := tx.Bucket(bucketVersions).Cursor()
	p := []byte(prefix)
	var (
		cur     string
		bestK   []byte // key and value of the newest entry <= at for cur
		best    []byte
		bestRev uint64
		have    bool
	)
	flush := func() (bool, error) {
		if !have {
			return true, nil
		}
		have = false
		tomb, cr, val, err := decodeVersion(bestK, best)
		if err != nil || tomb {
			return true, err
		}
		return emit(KeyValue{Key: cur, Value: bytes.Clone(val), CreateRevision: cr, ModRevision: bestRev}), nil
	}
	for k, v := c.Seek(seekStart(prefix, startAfter)); k != nil && bytes.HasPrefix(k, p); k, v = c.Next() {
		key, r, err := splitVersionKey(k)
		if err != nil {
			return err
		}
		if key != cur {
			if ok, err := flush(); err != nil || !ok {
				return err
			}
			cur = key
		}
		if r <= at {
			bestK, best, bestRev, have = k, v, r, true
		}
	}
	_, err := flush()
	return err
}

// HistoryOptions selects part of a key's history.
type HistoryOptions struct {
	// Limit caps the number of versions (0: no limit).
	Limit int
	// Before returns only versions older than this revision (0: all).
	Before uint64
}

// History returns a key's retained versions, newest first, tombstones
// included, and the current revision. Versions superseded at or before the
// compaction point are not retained. A key that never existed (or whose
// history was compacted away entirely) returns ErrNotFound.
func (f *FSM) History(key string, opts HistoryOptions) ([]Version, uint64, error) {
	var out []Version
	var at uint64
	err := f.view(func(tx *bolt.Tx) error {
		st := loadState(tx)
		at = st.revision
		c := tx.Bucket(bucketVersions).Cursor()
		// floor is the newest entry at or before the compaction point: the
		// only one of those that is retained (and only if not a tombstone).
		var floor uint64
		if fk, _ := seekAtOrBefore(c, key, st.compactRev); fk != nil {
			_, floor, _ = splitVersionKey(fk)
		}
		top := uint64(^uint64(0))
		if opts.Before > 0 {
			top = opts.Before - 1
		}
		for k, v := seekAtOrBefore(c, key, top); k != nil; k, v = c.Prev() {
			vkey, r, err := splitVersionKey(k)
			if err != nil {
				return err
			}
			if vkey != key || r < floor {
				break
			}
			tomb, cr, val, err := decodeVersion(k, v)
			if err != nil {
				return err
			}
			if r <= st.compactRev && (r != floor || tomb) {
				break
			}
			out = append(out, Version{Key: key, Value: bytes.Clone(val), Revision: r, CreateRevision: cr, Deleted: tomb})
			if opts.Limit > 0 && len(out) == opts.Limit {
				break
			}
		}
		if len(out) == 0 && opts.Before == 0 {
			return fmt.Errorf("%w: %q has no history", ErrNotFound, key)
		}
		return nil
	})
	return out, at, err
}

// Log returns up to limit (0: no limit) committed transaction records
// starting at revision from, and the current revision. from may be one past
// the current revision (an empty answer); further is ErrFutureRevision, and
// before the compaction point is *CompactedError.
func (f *FSM) Log(from uint64, limit int) ([]Record, uint64, error) {
	var out []Record
	at, err := f.scanLog(from, limit, func(rev uint64, stored []byte) error {
		rec, err := decodeStoredRecord(stored)
		if err != nil {
			return fmt.Errorf("revision %d: %w", rev, err)
		}
		out = append(out, rec)
		return nil
	})
	return out, at, err
}

// RawRecord is a stored transaction record: its chain hash and canonical
// bytes, as an incremental backup carries them.
type RawRecord struct {
	Revision  uint64
	Hash      Hash
	Canonical []byte
}

// RawLog is Log without decoding: the canonical bytes of each record.
func (f *FSM) RawLog(from uint64, limit int) ([]RawRecord, uint64, error) {
	var out []RawRecord
	at, err := f.scanLog(from, limit, func(rev uint64, stored []byte) error {
		if len(stored) < 32 {
			return fmt.Errorf("%w: record %d is %d bytes", ErrCorruptCommand, rev, len(stored))
		}
		r := RawRecord{Revision: rev, Canonical: bytes.Clone(stored[32:])}
		copy(r.Hash[:], stored)
		out = append(out, r)
		return nil
	})
	return out, at, err
}

// scanLog calls fn for up to limit stored records from revision from, in one
// read transaction, and returns the current revision. stored is only valid
// during the call. Each record's chain hash is recomputed from the one
// before it as it goes, so a damaged record or hash is never served: it is
// a *CorruptError (matching ErrChainMismatch too).
func (f *FSM) scanLog(from uint64, limit int, fn func(rev uint64, stored []byte) error) (uint64, error) {
	var at uint64
	err := f.view(func(tx *bolt.Tx) error {
		st := loadState(tx)
		at = st.revision
		if from == 0 {
			from = 1
		}
		if from < st.compactRev {
			return &CompactedError{Requested: from, Oldest: st.compactRev}
		}
		if from > st.revision+1 {
			return fmt.Errorf("%w: revision %d (current %d)", ErrFutureRevision, from, st.revision)
		}
		txns := tx.Bucket(bucketTxns)
		prev := st.compactBase
		if from > st.compactRev {
			p := txns.Get(u64(from - 1))
			if len(p) < 32 {
				return corruptRecord(from-1, fmt.Sprintf("record is %d bytes", len(p)))
			}
			copy(prev[:], p)
		}
		c := txns.Cursor()
		n := 0
		next := from
		for k, v := c.Seek(u64(from)); k != nil && (limit <= 0 || n < limit); k, v = c.Next() {
			rev := getU64(k)
			switch {
			case rev != next:
				return corruptRecord(next, fmt.Sprintf("record missing (next stored is %d)", rev))
			case len(v) < 32:
				return corruptRecord(rev, fmt.Sprintf("record is %d bytes", len(v)))
			}
			if h := chainHash(prev, v[32:]); !bytes.Equal(h[:], v[:32]) {
				return corruptRecord(rev, fmt.Sprintf("stored hash %x, recomputed %s", v[:32], h))
			}
			copy(prev[:], v[:32])
			if err := fn(rev, v); err != nil {
				return err
			}
			next++
			n++
		}
		return nil
	})
	return at, err
}

// corruptRecord is the *CorruptError for a stored transaction record that
// does not check out.
func corruptRecord(rev uint64, reason string) *CorruptError {
	err := fmt.Errorf("%w: at revision %d: %s", ErrChainMismatch, rev, reason)
	return &CorruptError{Revision: rev, Reason: err.Error(), Err: err}
}

func decodeStoredRecord(v []byte) (Record, error) {
	if len(v) < 32 {
		return Record{}, fmt.Errorf("%w: record is %d bytes", ErrCorruptCommand, len(v))
	}
	rec, err := DecodeCanonical(v[32:])
	if err != nil {
		return Record{}, err
	}
	copy(rec.Hash[:], v)
	return rec, nil
}

// Head returns the current revision and its chain hash.
func (f *FSM) Head() (ChainPoint, error) {
	var p ChainPoint
	err := f.view(func(tx *bolt.Tx) error {
		st := loadState(tx)
		p = ChainPoint{Revision: st.revision, Hash: st.head}
		return nil
	})
	return p, err
}

// HashAt returns the chain hash at revision rev: any retained revision, the
// one just before the compaction point, or 0 (32 zero bytes).
func (f *FSM) HashAt(rev uint64) (ChainPoint, error) {
	var p ChainPoint
	err := f.view(func(tx *bolt.Tx) error {
		st := loadState(tx)
		switch {
		case rev > st.revision:
			return fmt.Errorf("%w: revision %d (current %d)", ErrFutureRevision, rev, st.revision)
		case rev == 0:
			p = ChainPoint{}
		case rev == st.compactRev-1:
			p = ChainPoint{Revision: rev, Hash: st.compactBase}
		case rev < st.compactRev:
			return &CompactedError{Requested: rev, Oldest: st.compactRev}
		default:
			v := tx.Bucket(bucketTxns).Get(u64(rev))
			if len(v) < 32 {
				return fmt.Errorf("%w: record %d missing", ErrChainMismatch, rev)
			}
			p.Revision = rev
			copy(p.Hash[:], v)
		}
		return nil
	})
	return p, err
}

// Status returns a summary of the FSM's state.
func (f *FSM) Status() (Status, error) {
	var s Status
	err := f.viewAlways(func(tx *bolt.Tx) error {
		st := loadState(tx)
		s = Status{Revision: st.revision, Time: time.Unix(0, st.time).UTC(), Head: st.head,
			CompactRevision: st.compactRev, AppliedIndex: st.appliedIndex, AppliedTerm: st.appliedTerm}
		return nil
	})
	return s, err
}

// Members returns the replicated member records, ordered by id.
func (f *FSM) Members() ([]Member, error) {
	var out []Member
	err := f.viewAlways(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketMembers).ForEach(func(k, v []byte) error {
			m, err := decodeMember(string(k), v)
			if err != nil {
				return err
			}
			out = append(out, m)
			return nil
		})
	})
	return out, err
}

// VerifyReport is the result of a deep verification.
type VerifyReport struct {
	// From and To are the first and last revisions checked.
	From, To uint64
	// Head is the recomputed chain head.
	Head ChainPoint
	// Records is how many transaction records were recomputed.
	Records uint64
	// State is the state hash at To, recomputed from the versions entries.
	State StateDigest
	// Versions is how many versions entries had their checksum checked
	// (all of them).
	Versions uint64
}

// Verify recomputes the hash chain from the stored records, from the
// compaction point to the head, inside one read transaction. It returns
// ErrChainMismatch naming the first revision whose stored hash, record or
// sequence is wrong, and checks the recomputed head against the stored
// one. In the same transaction it checks every versions entry's checksum
// (a mismatch is a *CorruptError and marks the FSM corrupt) and computes
// the state hash at the head. The context can stop a long verification.
//
// A chain mismatch is stored data that is wrong, too: it is returned as a
// *CorruptError that also matches ErrChainMismatch, and marks the FSM
// corrupt.
func (f *FSM) Verify(ctx context.Context) (VerifyReport, error) {
	var rep VerifyReport
	err := f.view(func(tx *bolt.Tx) error {
		err := verifyTx(ctx, tx, &rep)
		if errors.Is(err, ErrChainMismatch) {
			return &CorruptError{Reason: err.Error(), Err: err}
		}
		return err
	})
	return rep, err
}

// verifyTx is Verify's work inside its read transaction.
func verifyTx(ctx context.Context, tx *bolt.Tx, rep *VerifyReport) error {
	{
		st := loadState(tx)
		rep.From, rep.To = st.compactRev, st.revision
		prev := st.compactBase
		next := st.compactRev
		c := tx.Bucket(bucketTxns).Cursor()
		k, v := c.Seek(u64(st.compactRev))
		for ; k != nil; k, v = c.Next() {
			if rep.Records%1024 == 0 {
				if err := ctx.Err(); err != nil {
					return fmt.Errorf("fsm: verify: %w", err)
				}
			}
			r := getU64(k)
			if r != next {
				return fmt.Errorf("%w: expected record %d, found %d", ErrChainMismatch, next, r)
			}
			if len(v) < 32 {
				return fmt.Errorf("%w: record %d is %d bytes", ErrChainMismatch, r, len(v))
			}
			rec, err := DecodeCanonical(v[32:])
			if err != nil {
				return fmt.Errorf("%w: record %d: %w", ErrChainMismatch, r, err)
			}
			if rec.Revision != r {
				return fmt.Errorf("%w: record stored at %d says revision %d", ErrChainMismatch, r, rec.Revision)
			}
			h := chainHash(prev, v[32:])
			if !bytes.Equal(h[:], v[:32]) {
				return fmt.Errorf("%w: at revision %d: stored %x, recomputed %s", ErrChainMismatch, r, v[:32], h)
			}
			prev = h
			next++
			rep.Records++
		}
		if next != st.revision+1 {
			return fmt.Errorf("%w: records end at %d, revision is %d", ErrChainMismatch, next-1, st.revision)
		}
		if prev != st.head {
			return fmt.Errorf("%w: recomputed head %s, stored head %s", ErrChainMismatch, prev, st.head)
		}
		rep.Head = ChainPoint{Revision: st.revision, Hash: prev}
		var err error
		rep.State, rep.Versions, err = stateScan(ctx, tx, st.revision, true)
		return err
	}
}

// seekAtOrBefore positions c at key's newest history entry with revision
// <= at and returns it, or nil when key has none.
func seekAtOrBefore(c *bolt.Cursor, key string, at uint64) ([]byte, []byte) {
	var k, v []byte
	if at == ^uint64(0) {
		k, _ = c.Seek(append([]byte(key), 1))
	} else {
		k, _ = c.Seek(versionKey(key, at+1))
	}
	if k == nil {
		k, v = c.Last()
	} else {
		k, v = c.Prev()
	}
	if k == nil {
		return nil, nil
	}
	if vkey, _, err := splitVersionKey(k); err != nil || vkey != key {
		return nil, nil
	}
	return k, v
}

// FirstRevisionSince returns the oldest retained revision committed at or
// after t, or the next revision to be committed when none is. Commit times
// never go backwards, so it is a binary search over the records.
func (f *FSM) FirstRevisionSince(t time.Time) (uint64, error) {
	var out uint64
	err := f.view(func(tx *bolt.Tx) error {
		st := loadState(tx)
		txns := tx.Bucket(bucketTxns)
		lo, hi := st.compactRev, st.revision+1 // answer in [lo, hi]
		for lo < hi {
			mid := lo + (hi-lo)/2
			v := txns.Get(u64(mid))
			// stored: hash [32] | version u8 | revision u64 | time i64 ...
			if len(v) < 32+17 {
				return fmt.Errorf("%w: record %d missing", ErrChainMismatch, mid)
			}
			if int64(getU64(v[32+9:32+17])) >= t.UnixNano() {
				hi = mid
			} else {
				lo = mid + 1
			}
		}
		out = lo
		return nil
	})
	return out, err
}
