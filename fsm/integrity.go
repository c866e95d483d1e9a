package fsm

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io/fs"
	"os"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Integrity: corruption, the state hash, markers beside the database.
//
// A versions entry that fails its checksum (schema.go), a malformed one,
// or a page bbolt panics on while reading is a *CorruptError. Whoever
// finds it marks the FSM corrupt (markCorrupt): the error is kept, written
// to <Path>.corrupt (JSON) so that it survives a restart, logged, and
// passed to Config.OnCorrupt, once. From then on the read methods refuse
// with it; Status, AppliedIndex, Members, ClusterID, AuthState, DataSize and Usage
// go on (raft and the node need them), and so does apply: the raft log is
// intact, and the member's state is rebuilt by its repair (a fresh store,
// which has no marker) or by the next snapshot raft installs (Restore
// replaces the whole file with a checked copy and removes the marker).

// Marker files beside the database.
const (
	corruptSuffix = ".corrupt" // JSON *CorruptError: the FSM is corrupt
	openSuffix    = ".open"    // exists while the database is open: UncleanStart
)

// Corrupt returns nil, or the *CorruptError that marked the FSM corrupt
// (during this run or, through the marker file, an earlier one).
func (f *FSM) Corrupt() error {
	if ce := f.corrupt.Load(); ce != nil {
		return ce
	}
	return nil
}

// MarkCorrupt marks the FSM corrupt for a reason found outside it (the
// node's scrubber, when its state hash disagrees with the majority's). It
// does nothing when the FSM is already corrupt; the error is a failure to
// write the marker file (the FSM is marked in memory regardless).
func (f *FSM) MarkCorrupt(reason string) error {
	return f.markCorrupt(&CorruptError{Reason: reason})
}

// UncleanStart reports whether the previous run of this database did not
// Close it (the process crashed or was killed).
func (f *FSM) UncleanStart() bool { return f.unclean }

// markCorrupt marks the FSM corrupt with ce, unless it already is. It
// must not be called with f.mu held: OnCorrupt may call back into the FSM.
func (f *FSM) markCorrupt(ce *CorruptError) error {
	if ce.File == "" {
		ce.File = f.cfg.Path
	}
	if ce.Time.IsZero() {
		ce.Time = time.Now().UTC()
	}
	if !f.corrupt.CompareAndSwap(nil, ce) {
		return nil
	}
	f.stateMu.Lock()
	f.stateCache = nil
	f.stateMu.Unlock()
	f.log.Error("the store is corrupt: reads are refused until the member is repaired ("+repairHint+")",
		"file", ce.File, "reason", ce.Reason, "key", ce.Key, "revision", ce.Revision)
	err := writeCorruptMarker(f.cfg.Path, ce)
	if err != nil {
		f.log.Error("could not persist the corrupt marker", "err", err)
	}
	if f.cfg.OnCorrupt != nil {
		f.cfg.OnCorrupt(ce)
	}
	return err
}

// asCorrupt returns the *CorruptError in err's chain, or nil.
func asCorrupt(err error) *CorruptError {
	var ce *CorruptError
	if errors.As(err, &ce) {
		return ce
	}
	return nil
}

func writeCorruptMarker(path string, ce *CorruptError) error {
	js, err := json.Marshal(ce)
	if err != nil {
		return err
	}
	return writeMarker(path+corruptSuffix, append(js, '\n'))
}

// readCorruptMarker returns the *CorruptError recorded beside path, or nil.
// A marker that does not parse still marks the store corrupt.
func readCorruptMarker(path string) (*CorruptError, error) {
	b, err := os.ReadFile(path + corruptSuffix)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("fsm: read %s: %w", path+corruptSuffix, err)
	}
	ce := &CorruptError{}
	if err := json.Unmarshal(b, ce); err != nil || ce.Reason == "" {
		ce = &CorruptError{Reason: fmt.Sprintf("marker %s does not parse: %q", path+corruptSuffix, b)}
	}
	if ce.File == "" {
		ce.File = path
	}
	return ce, nil
}

// markOpen creates the open marker beside path, reporting whether it was
// there already (the previous run did not Close).
func markOpen(path string) (existed bool, err error) {
	if _, err := os.Stat(path + openSuffix); err == nil {
		existed = true
	}
	return existed, writeMarker(path+openSuffix, []byte(fmt.Sprintf("%d\n", os.Getpid())))
}

// writeMarker writes a small file durably (the file and its directory).
func writeMarker(name string, data []byte) error {
	fh, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("fsm: write %s: %w", name, err)
	}
	_, err = fh.Write(data)
	if err == nil {
		err = fh.Sync()
	}
	if cerr := fh.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = syncDir(name)
	}
	if err != nil {
		return fmt.Errorf("fsm: write %s: %w", name, err)
	}
	return nil
}

func removeMarker(name string) error {
	if err := os.Remove(name); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("fsm: remove %s: %w", name, err)
	}
	return nil
}

// damaged is the error for a store Open cannot read: it names the file and
// the repair.
func damaged(path string, cause error) error {
	if errors.Is(cause, ErrCorrupt) {
		return fmt.Errorf("%w: %s: %w; %s", ErrDamaged, path, cause, repairHint)
	}
	return fmt.Errorf("%w: %s: %v; %s", ErrDamaged, path, cause, repairHint)
}

// isDamage reports whether an error of bolt.Open means the file's contents
// are damaged (rather than locked, missing or not permitted).
func isDamage(err error) bool {
	if errors.Is(err, fs.ErrPermission) || errors.Is(err, fs.ErrNotExist) || strings.Contains(err.Error(), "timeout") {
		return false
	}
	var errno syscall.Errno
	return !errors.As(err, &errno)
}

// isNoSpace reports whether a storage error means the disk (or the quota)
// is full. bbolt formats some errors with %s, losing the errno, hence the
// text match.
func isNoSpace(err error) bool {
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
		return true
	}
	s := err.Error()
	return strings.Contains(s, syscall.ENOSPC.Error()) || strings.Contains(s, syscall.EDQUOT.Error())
}

// The state hash.
//
// StateHash(R) covers the object state at revision R: every key that
// exists at R, in key order, each as
//
//	len(key) u64 | key | createRevision u64 | modRevision u64 | len(value) u64 | value
//
// after the domain prefix stateHashDomain, all integers big-endian,
// hashed with SHA-256. The revision itself is not hashed (callers compare
// at a common revision) and neither are tombstones or older versions, so
// the hash does not depend on how far either store has compacted: any
// store that still has R gives the same hash iff the state at R is the
// same. Keys counts the keys hashed.
const stateHashDomain = "cairn/state-hash/v1\x00"

// StateDigest is the state hash at a revision.
type StateDigest struct {
	Revision uint64
	Hash     Hash
	Keys     uint64
}

type stateHasher struct {
	h    hash.Hash
	keys uint64
	buf  []byte
}

func newStateHasher() *stateHasher {
	s := &stateHasher{h: sha256.New()}
	s.h.Write([]byte(stateHashDomain))
	return s
}

func (s *stateHasher) add(key string, createRev, modRev uint64, value []byte) {
	b := s.buf[:0]
	b = binary.BigEndian.AppendUint64(b, uint64(len(key)))
	b = append(b, key...)
	b = binary.BigEndian.AppendUint64(b, createRev)
	b = binary.BigEndian.AppendUint64(b, modRev)
	b = binary.BigEndian.AppendUint64(b, uint64(len(value)))
	s.h.Write(b)
	s.h.Write(value)
	s.buf = b
	s.keys++
}

func (s *stateHasher) digest(rev uint64) StateDigest {
	d := StateDigest{Revision: rev, Keys: s.keys}
	copy(d.Hash[:], s.h.Sum(nil))
	return d
}

// stateCacheSize is how many StateHash results are kept: the state at a
// revision never changes once committed (only Restore replaces it, and
// clears the cache), and peers comparing with this member ask for the
// same few revisions.
const stateCacheSize = 4

// StateHash returns the state hash at revision rev (0: the current one).
// rev must be retained (*CompactedError below the compaction point,
// ErrFutureRevision above the head). It walks the versions bucket (seeking
// over long histories), checking the checksum of each entry it reads; the
// context stops it. The last few results are cached.
func (f *FSM) StateHash(ctx context.Context, rev uint64) (StateDigest, error) {
	var d StateDigest
	err := f.view(func(tx *bolt.Tx) error {
		st := loadState(tx)
		at, err := readRevision(&st, rev)
		if err != nil {
			return err
		}
		if c, ok := f.cachedState(at); ok {
			d = c
			return nil
		}
		d, _, err = stateScan(ctx, tx, at, false)
		return err
	})
	if err != nil {
		return StateDigest{}, err
	}
	f.cacheState(d)
	return d, nil
}

func (f *FSM) cachedState(rev uint64) (StateDigest, bool) {
	f.stateMu.Lock()
	defer f.stateMu.Unlock()
	for _, d := range f.stateCache {
		if d.Revision == rev {
			return d, true
		}
	}
	return StateDigest{}, false
}

func (f *FSM) cacheState(d StateDigest) {
	if f.corrupt.Load() != nil {
		return
	}
	f.stateMu.Lock()
	defer f.stateMu.Unlock()
	for _, c := range f.stateCache {
		if c.Revision == d.Revision {
			return
		}
	}
	f.stateCache = append(f.stateCache, d)
	if len(f.stateCache) > stateCacheSize {
		f.stateCache = f.stateCache[1:]
	}
}

func (f *FSM) clearStateCache() {
	f.stateMu.Lock()
	f.stateCache = nil
	f.stateMu.Unlock()
}

// stateSkipAfter is how many entries of one key's history the state
// hash reads one by one before it seeks to the entry it needs and on to
// the next key: a short history is cheaper to walk than to seek over, a
// long one the other way round.
const stateSkipAfter = 8

// stateScan hashes the state at revision at, walking the versions bucket
// in key order and checking the checksum of every entry it decodes. With
// all set (Verify, a received snapshot) it decodes every entry; otherwise
// it skips over long histories (stateSkipAfter), decoding each key's
// entry at at. It returns how many entries it checked.
func stateScan(ctx context.Context, tx *bolt.Tx, at uint64, all bool) (StateDigest, uint64, error) {
	s := newStateHasher()
	var (
		checked, steps uint64
		cur            string
		run            int // entries of cur read so far
		have           bool
		best           struct {
			tomb    bool
			cr, rev uint64
			val     []byte
		}
	)
	flush := func() {
		if have && !best.tomb {
			s.add(cur, best.cr, best.rev, best.val)
		}
		have = false
	}
	c := tx.Bucket(bucketVersions).Cursor()
	for k, v := c.First(); k != nil; {
		if steps++; steps%1024 == 0 {
			if err := ctx.Err(); err != nil {
				return StateDigest{}, checked, fmt.Errorf("fsm: state hash: %w", err)
			}
		}
		key, r, err := splitVersionKey(k)
		if err != nil {
			return StateDigest{}, checked, err
		}
		if key != cur {
			flush()
			cur, run = key, 0
		}
		run++
		if !all && run > stateSkipAfter {
			// A long history: the entry at or before at, then the next key.
			bk, bv := seekAtOrBefore(c, key, at)
			have = bk != nil
			if have {
				_, br, err := splitVersionKey(bk)
				if err != nil {
					return StateDigest{}, checked, err
				}
				tomb, cr, val, err := decodeVersion(bk, bv)
				if err != nil {
					return StateDigest{}, checked, err
				}
				checked++
				best.tomb, best.cr, best.rev, best.val = tomb, cr, br, val
			}
			k, v = c.Seek(append([]byte(key), 1))
			run = 0
			continue
		}
		tomb, cr, val, err := decodeVersion(k, v)
		if err != nil {
			return StateDigest{}, checked, err
		}
		checked++
		if r <= at {
			have = true
			best.tomb, best.cr, best.rev, best.val = tomb, cr, r, val
		}
		k, v = c.Next()
	}
	flush()
	return s.digest(at), checked, nil
}

// Usage is the size of the FSM's database file.
type Usage struct {
	// FileBytes is the file's size.
	FileBytes int64
	// InUseBytes is the size of the pages holding data: the pages up to
	// bbolt's high-water mark, less its free and pending pages. The rest
	// of the file is what Defrag gives back.
	InUseBytes int64
}

// Usage returns the database file's size and how much of it is in use. It
// works on a corrupt FSM.
func (f *FSM) Usage() (Usage, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	if f.db == nil {
		return Usage{}, ErrClosed
	}
	fi, err := os.Stat(f.cfg.Path)
	if err != nil {
		return Usage{}, fmt.Errorf("fsm: usage: %w", err)
	}
	tx, err := f.db.Begin(false)
	if err != nil {
		return Usage{}, fmt.Errorf("fsm: usage: %w", err)
	}
	hwm := tx.Size()
	_ = tx.Rollback()
	st := f.db.Stats()
	free := int64(st.FreePageN+st.PendingPageN) * int64(f.db.Info().PageSize)
	return Usage{FileBytes: fi.Size(), InUseBytes: max(hwm-free, 0)}, nil
}

// preflight checks the page tree of the store at path (walkPages),
// read-only, before Open opens it for writing: bbolt's Open (with
// NoFreelistSync) rebuilds the freelist by walking the pages in a
// goroutine of its own, where a damaged page's panic ("page N: has
// unexpected type/flags") cannot be recovered and kills the process. A
// missing or empty file is left to bolt.Open.
func preflight(path string, timeout time.Duration) error {
	if fi, err := os.Stat(path); err != nil || fi.Size() == 0 {
		return nil
	}
	err := walkPagesSafe(path, timeout)
	var oe *openError
	if errors.As(err, &oe) && !isDamage(oe.err) {
		return fmt.Errorf("fsm: open %s: %w", path, oe.err)
	}
	if err != nil {
		return damaged(path, err)
	}
	return nil
}

// walkPagesSafe is walkPages with bbolt's own panics (opening the file,
// reading its meta page) recovered and memory faults turned into panics.
func walkPagesSafe(path string, timeout time.Duration) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("bbolt: %v", r)
		}
	}()
	return walkPages(path, timeout)
}
