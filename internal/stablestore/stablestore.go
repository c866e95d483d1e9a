// Package stablestore is raft's StableStore for a cairn member: the
// current term and the last vote (hashicorp/raft's keys "CurrentTerm",
// "LastVoteTerm" and "LastVoteCand"), kept in one small file that never
// needs new disk space after it is created.
//
// hashicorp/raft panics when it cannot save its current term
// (Raft.setCurrentTerm: "failed to save current term"), which a follower
// does on seeing a higher term and a candidate on starting an election.
// Kept in raft.db (bbolt), that save needs free pages and may grow the
// file, so a member whose filesystem is full could die on an election.
// Raft's log writes failing for lack of space return errors and are
// handled elsewhere; this package removes the one write that panics.
//
// The file (raft-stable.dat in the data directory, 8 KiB) holds two
// fixed 4 KiB slots. Open creates it when it is missing: every byte of
// both slots is written (so its blocks are allocated, not holes or
// unwritten extents), the file is fsynced under a temporary name, renamed
// into place, and the directory is fsynced. Every update then encodes the
// whole key/value set into the slot that does not hold the newest state,
// with a sequence number one higher and a CRC-32C over the slot, writes it
// in place (pwrite) and fdatasyncs. Overwriting allocated blocks does not
// allocate on ext4, xfs or tmpfs, so updates succeed on a full
// filesystem. Copy-on-write filesystems (btrfs, zfs) allocate on every
// overwrite and may still refuse an update with ENOSPC: there raft's
// panic remains possible, and a data directory there needs free space
// like any other.
//
// Open reads both slots and takes the valid one with the higher
// sequence: a write torn by a crash damages only the slot being written,
// and the other still holds the state before it (which raft had not yet
// acted on, since the write had not returned). Both slots invalid is an
// error naming the file. The store holds any key up to the slot's
// capacity (Capacity bytes of keys, values and their lengths) and refuses
// an update past it with ErrFull.
//
// Migration and downgrades: Options.Fallback is the member's raft.db
// BoltStore, which held these values before this package. When the file
// does not exist, Open copies raft's keys from it into the new file. Every
// later update is written through to it too, best effort (a failure is
// logged at WARN and otherwise ignored; the file is authoritative), so
// that a member downgraded to a build without this file finds its current
// term and vote in raft.db rather than older ones, with which it could
// vote twice in one term. For the same reason Open, when the file exists,
// takes the fallback's current term or vote when it is newer than the
// file's (a downgraded build ran and advanced them), and writes it to
// the file.
package stablestore

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"sync"

	"github.com/hashicorp/raft"
)

// Errors.
var (
	// ErrKeyNotFound is returned by Get and GetUint64 for a key never
	// set. Its text is "not found", which hashicorp/raft checks for (as
	// raft-boltdb's).
	ErrKeyNotFound = errors.New("not found")
	// ErrFull refuses an update that would not fit in a slot.
	ErrFull = errors.New("stablestore: capacity exceeded")
	// ErrCorrupt says neither slot of the file holds a valid state.
	ErrCorrupt = errors.New("stablestore: no valid slot")
	// ErrClosed is returned after Close.
	ErrClosed = errors.New("stablestore: closed")
)

// Raft's keys in its StableStore (hashicorp/raft raft.go), copied from
// Options.Fallback when the file is created.
var (
	KeyCurrentTerm  = []byte("CurrentTerm")
	KeyLastVoteTerm = []byte("LastVoteTerm")
	KeyLastVoteCand = []byte("LastVoteCand")
)

const (
	slotSize   = 4096
	fileSize   = 2 * slotSize
	magic      = "CAIRNSTB"
	version    = 1
	headerSize = 8 + 4 + 4 + 8 // magic, version, payload length, sequence
	crcSize    = 4
	// Capacity is the most bytes a slot's entries take: for each key,
	// 2 bytes of key length, the key, 2 bytes of value length, the value.
	Capacity = slotSize - headerSize - crcSize
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Options configure Open.
type Options struct {
	// Path is the file's path.
	Path string
	// Fallback is the store these values were kept in before (raft.db):
	// the source of the migration when Path does not exist, and the
	// target of a best-effort write-through of every update. Nil: none.
	Fallback raft.StableStore
	// Logger gets the warnings (a failed write-through, a damaged slot).
	Logger *slog.Logger
}

// Store is a raft.StableStore kept in two fixed slots of one file. It is
// safe for concurrent use.
type Store struct {
	path     string
	fallback raft.StableStore
	log      *slog.Logger

	mu     sync.Mutex
	f      *os.File
	values map[string][]byte
	seq    uint64 // sequence of the newest valid slot
	cur    int    // the slot holding it
	buf    []byte
}

var _ raft.StableStore = (*Store)(nil)

// Open opens the file at o.Path, creating it (from o.Fallback's values)
// when it does not exist.
func Open(o Options) (*Store, error) {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Store{path: o.Path, fallback: o.Fallback, log: o.Logger, values: map[string][]byte{},
		buf: make([]byte, slotSize)}
	if _, err := os.Stat(o.Path); errors.Is(err, fs.ErrNotExist) {
		if err := s.create(); err != nil {
			return nil, err
		}
	} else if err != nil {
		return nil, fmt.Errorf("stablestore: %w", err)
	}
	f, err := os.OpenFile(o.Path, os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("stablestore: %w", err)
	}
	s.f = f
	if err := s.load(); err != nil {
		f.Close()
		return nil, err
	}
	if err := s.catchUp(); err != nil {
		f.Close()
		return nil, err
	}
	return s, nil
}

// create writes a new file holding the fallback's raft keys in both
// slots, under a temporary name first so that a crash leaves no half
// file at Path.
func (s *Store) create() error {
	if s.fallback != nil {
		for _, k := range [][]byte{KeyCurrentTerm, KeyLastVoteTerm, KeyLastVoteCand} {
			v, err := s.fallback.Get(k)
			if err != nil && err.Error() != ErrKeyNotFound.Error() {
				return fmt.Errorf("stablestore: migrate %s from the old store: %w", k, err)
			}
			if err == nil && v != nil {
				s.values[string(k)] = bytes.Clone(v)
			}
		}
	}
	data := make([]byte, fileSize)
	for slot := range 2 {
		if err := encode(data[slot*slotSize:(slot+1)*slotSize], uint64(slot+1), s.values); err != nil {
			return err
		}
	}
	tmp := s.path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("stablestore: create %s: %w", tmp, err)
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, s.path)
	}
	if err == nil {
		err = syncDir(filepath.Dir(s.path))
	}
	if err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("stablestore: create %s: %w", s.path, err)
	}
	if len(s.values) > 0 {
		s.log.Info("raft's term and vote moved to their own file", "file", s.path,
			"current_term", u64(s.values[string(KeyCurrentTerm)]))
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// load reads both slots and keeps the valid one with the higher sequence.
func (s *Store) load() error {
	var (
		errs [2]error
		seqs [2]uint64
		vals [2]map[string][]byte
	)
	for slot := range 2 {
		n, err := s.f.ReadAt(s.buf, int64(slot*slotSize))
		if n < slotSize {
			errs[slot] = fmt.Errorf("short slot (%d bytes): %v", n, err)
			continue
		}
		seqs[slot], vals[slot], errs[slot] = decode(s.buf)
	}
	switch {
	case errs[0] != nil && errs[1] != nil:
		return fmt.Errorf("%w in %s: slot 0: %v; slot 1: %v", ErrCorrupt, s.path, errs[0], errs[1])
	case errs[0] == nil && (errs[1] != nil || seqs[0] > seqs[1]):
		s.cur = 0
	default:
		s.cur = 1
	}
	if other := 1 - s.cur; errs[other] != nil {
		// A write torn by a crash, or damage: the next update rewrites it.
		s.log.Warn("raft stable store: one slot is invalid, using the other", "file", s.path,
			"invalid_slot", other, "error", errs[other].Error(), "seq", seqs[s.cur])
	}
	s.seq, s.values = seqs[s.cur], vals[s.cur]
	return nil
}

// catchUp takes the fallback's current term, and its vote, when they are
// newer than the file's: a build without this file ran on the data
// directory since the file was last written.
func (s *Store) catchUp() error {
	if s.fallback == nil {
		return nil
	}
	next := cloneMap(s.values)
	changed := false
	for _, group := range [][][]byte{{KeyCurrentTerm}, {KeyLastVoteTerm, KeyLastVoteCand}} {
		theirs, err := s.fallback.Get(group[0])
		if err != nil || len(theirs) != 8 {
			continue // not there (or not raft's): nothing newer
		}
		if ours, ok := s.values[string(group[0])]; ok && len(ours) == 8 && u64(ours) >= u64(theirs) {
			continue
		}
		for _, k := range group {
			v, err := s.fallback.Get(k)
			if err != nil {
				delete(next, string(k))
				continue
			}
			next[string(k)] = bytes.Clone(v)
		}
		changed = true
		s.log.Warn("raft stable store: raft.db holds a newer value (written by an older build); taking it",
			"file", s.path, "key", string(group[0]), "value", u64(theirs))
	}
	if !changed {
		return nil
	}
	return s.write(next)
}

// write stores next in the slot not holding the newest state, then makes
// it the newest. On error nothing changes: the newest slot is untouched.
func (s *Store) write(next map[string][]byte) error {
	if err := encode(s.buf, s.seq+1, next); err != nil {
		return err
	}
	slot := 1 - s.cur
	if _, err := s.f.WriteAt(s.buf, int64(slot*slotSize)); err != nil {
		return fmt.Errorf("stablestore: write %s: %w", s.path, err)
	}
	if err := fdatasync(s.f); err != nil {
		return fmt.Errorf("stablestore: sync %s: %w", s.path, err)
	}
	s.cur, s.seq, s.values = slot, s.seq+1, next
	return nil
}

// encode lays out one slot in b (slotSize bytes): header, entries sorted
// by key, zero padding, and the CRC-32C of everything before it at the
// slot's end.
func encode(b []byte, seq uint64, values map[string][]byte) error {
	size := 0
	for k, v := range values {
		size += 4 + len(k) + len(v)
		if len(k) > 0xffff || len(v) > 0xffff {
			size = Capacity + 1
		}
	}
	if size > Capacity {
		return fmt.Errorf("%w: the keys and values would take %d bytes, the store holds %d", ErrFull, size, Capacity)
	}
	clear(b)
	copy(b, magic)
	binary.BigEndian.PutUint32(b[8:], version)
	binary.BigEndian.PutUint32(b[12:], uint32(size))
	binary.BigEndian.PutUint64(b[16:], seq)
	keys := make([]string, 0, len(values))
	for k := range values {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	p := b[headerSize:]
	for _, k := range keys {
		v := values[k]
		binary.BigEndian.PutUint16(p, uint16(len(k)))
		p = p[2+copy(p[2:], k):]
		binary.BigEndian.PutUint16(p, uint16(len(v)))
		p = p[2+copy(p[2:], v):]
	}
	binary.BigEndian.PutUint32(b[slotSize-crcSize:], crc32.Checksum(b[:slotSize-crcSize], castagnoli))
	return nil
}

// decode checks and reads one slot.
func decode(b []byte) (uint64, map[string][]byte, error) {
	if got, want := binary.BigEndian.Uint32(b[slotSize-crcSize:]), crc32.Checksum(b[:slotSize-crcSize], castagnoli); got != want {
		return 0, nil, fmt.Errorf("checksum mismatch (stored %08x, computed %08x)", got, want)
	}
	if string(b[:8]) != magic {
		return 0, nil, fmt.Errorf("not a stable store slot (magic %q)", b[:8])
	}
	if v := binary.BigEndian.Uint32(b[8:]); v != version {
		return 0, nil, fmt.Errorf("unknown format version %d", v)
	}
	size := int(binary.BigEndian.Uint32(b[12:]))
	if size > Capacity {
		return 0, nil, fmt.Errorf("entries of %d bytes exceed the slot", size)
	}
	seq := binary.BigEndian.Uint64(b[16:])
	values := map[string][]byte{}
	p := b[headerSize : headerSize+size]
	for len(p) > 0 {
		var k, v []byte
		var ok bool
		if k, p, ok = field(p); !ok {
			return 0, nil, errors.New("truncated key")
		}
		if v, p, ok = field(p); !ok {
			return 0, nil, errors.New("truncated value")
		}
		values[string(k)] = bytes.Clone(v)
	}
	return seq, values, nil
}

func field(p []byte) (f, rest []byte, ok bool) {
	if len(p) < 2 {
		return nil, nil, false
	}
	n := int(binary.BigEndian.Uint16(p))
	if len(p) < 2+n {
		return nil, nil, false
	}
	return p[2 : 2+n], p[2+n:], true
}

func cloneMap(m map[string][]byte) map[string][]byte {
	c := make(map[string][]byte, len(m)+1)
	for k, v := range m {
		c[k] = v // values are never modified in place
	}
	return c
}

func u64(b []byte) uint64 {
	if len(b) != 8 {
		return 0
	}
	return binary.BigEndian.Uint64(b)
}

// Set stores val under key, durably, then writes it through to the
// fallback store (best effort).
func (s *Store) Set(key, val []byte) error {
	return s.set(key, val, func() error { return s.fallback.Set(key, val) })
}

// SetUint64 stores val under key (8 bytes, big-endian, as raft-boltdb),
// durably, then writes it through to the fallback store (best effort).
func (s *Store) SetUint64(key []byte, val uint64) error {
	return s.set(key, binary.BigEndian.AppendUint64(nil, val), func() error { return s.fallback.SetUint64(key, val) })
}

// set writes the file, then the fallback store through writeThrough,
// under the lock so that both see the updates in the same order.
func (s *Store) set(key, val []byte, writeThrough func() error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.f == nil {
		return ErrClosed
	}
	if old, ok := s.values[string(key)]; ok && bytes.Equal(old, val) {
		return nil // durable already
	}
	next := cloneMap(s.values)
	next[string(key)] = bytes.Clone(val)
	if err := s.write(next); err != nil {
		return err
	}
	if s.fallback != nil {
		if err := writeThrough(); err != nil {
			s.log.Warn("raft stable store: could not copy an update to raft.db (it is kept in the stable file, which is authoritative)",
				"file", s.path, "key", string(key), "error", err.Error())
		}
	}
	return nil
}

// Get returns key's value, or ErrKeyNotFound.
func (s *Store) Get(key []byte) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.f == nil {
		return nil, ErrClosed
	}
	v, ok := s.values[string(key)]
	if !ok {
		return nil, ErrKeyNotFound
	}
	return bytes.Clone(v), nil
}

// GetUint64 returns key's value set by SetUint64, or ErrKeyNotFound.
func (s *Store) GetUint64(key []byte) (uint64, error) {
	v, err := s.Get(key)
	if err != nil {
		return 0, err
	}
	if len(v) != 8 {
		return 0, fmt.Errorf("stablestore: %s holds %d bytes, not a uint64", key, len(v))
	}
	return binary.BigEndian.Uint64(v), nil
}

// Close closes the file. The fallback store is the caller's to close.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.f == nil {
		return nil
	}
	err := s.f.Close()
	s.f = nil
	return err
}

// Path returns the file's path.
func (s *Store) Path() string { return s.path }
