package fsm

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Backup files. A backup is self-describing and self-checking:
//
//	magic "CAIRNBAK" | version u8 | header length u32 | header (JSON, BackupHeader) |
//	SHA-256 of the header | body
//
// A full backup's body is a snapshot stream (see Snapshot): the bbolt file
// and its SHA-256. An incremental backup's body is the transaction records
// after a revision, each
//
//	revision u64 | hash [32] | length u32 | canonical record
//
// ended by a revision of 0 and the SHA-256 of the body before it. Every
// record's hash is checked by recomputing the chain from the header's
// BaseHash, so a changed byte anywhere is found and named.
var backupMagic = []byte("CAIRNBAK")

const backupVersion byte = 1

// Backup kinds.
const (
	BackupFull        = "full"
	BackupIncremental = "incremental"
)

// BackupHeader describes a backup file.
type BackupHeader struct {
	Format    int       `json:"format"`
	Kind      string    `json:"kind"`
	ClusterID string    `json:"cluster_id,omitempty"`
	Created   time.Time `json:"created"`
	// Revision and Hash are the chain head the backup brings its restore to.
	Revision uint64 `json:"revision"`
	Hash     string `json:"hash"`
	// FromRevision is an incremental backup's first record; BaseHash is the
	// chain hash just before it (H(FromRevision-1)).
	FromRevision uint64 `json:"from_revision,omitempty"`
	BaseHash     string `json:"base_hash,omitempty"`
	// CompactRevision is a full backup's oldest available revision.
	CompactRevision uint64 `json:"compact_revision,omitempty"`
	// StateHash and Keys are the state hash at Revision (see StateHash):
	// what a restore up to this file must recompute. Files written before
	// the state hash existed have neither; their restore checks the chain
	// only.
	StateHash string `json:"state_hash,omitempty"`
	Keys      uint64 `json:"keys,omitempty"`
}

// ErrBadBackup means a backup file is damaged, truncated or inconsistent;
// the error names the file position or revision.
var ErrBadBackup = errors.New("fsm: bad backup")

func writeBackupHeader(w io.Writer, h *BackupHeader) error {
	js, err := json.Marshal(h)
	if err != nil {
		return err
	}
	b := make([]byte, 0, len(backupMagic)+5+len(js))
	b = append(append(b, backupMagic...), backupVersion)
	b = binary.BigEndian.AppendUint32(b, uint32(len(js)))
	b = append(b, js...)
	sum := sha256.Sum256(js)
	b = append(b, sum[:]...)
	_, err = w.Write(b)
	return err
}

// ReadBackupHeader reads a backup file's header, leaving r at the body.
func ReadBackupHeader(r io.Reader) (BackupHeader, error) {
	var h BackupHeader
	pre := make([]byte, len(backupMagic)+5)
	if _, err := io.ReadFull(r, pre); err != nil {
		return h, fmt.Errorf("%w: header: %w", ErrBadBackup, err)
	}
	if !bytes.Equal(pre[:len(backupMagic)], backupMagic) {
		return h, fmt.Errorf("%w: not a cairn backup", ErrBadBackup)
	}
	if v := pre[len(backupMagic)]; v != backupVersion {
		return h, fmt.Errorf("%w: %w: backup version %d (this build reads %d)", ErrBadBackup, ErrUnknownVersion, v, backupVersion)
	}
	n := binary.BigEndian.Uint32(pre[len(backupMagic)+1:])
	if n > 1<<20 {
		return h, fmt.Errorf("%w: header of %d bytes", ErrBadBackup, n)
	}
	js := make([]byte, n)
	if _, err := io.ReadFull(r, js); err != nil {
		return h, fmt.Errorf("%w: header: %w", ErrBadBackup, err)
	}
	sum := make([]byte, sha256.Size)
	if _, err := io.ReadFull(r, sum); err != nil {
		return h, fmt.Errorf("%w: header checksum: %w", ErrBadBackup, err)
	}
	if want := sha256.Sum256(js); !bytes.Equal(sum, want[:]) {
		return h, fmt.Errorf("%w: header checksum mismatch", ErrBadBackup)
	}
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&h); err != nil {
		return h, fmt.Errorf("%w: header: %w", ErrBadBackup, err)
	}
	if h.Kind != BackupFull && h.Kind != BackupIncremental {
		return h, fmt.Errorf("%w: unknown kind %q", ErrBadBackup, h.Kind)
	}
	return h, nil
}

// ClusterID returns the cluster's id ("" until one is set).
func (f *FSM) ClusterID() (string, error) {
	var id string
	err := f.viewAlways(func(tx *bolt.Tx) error {
		id = string(tx.Bucket(bucketMeta).Get(metaClusterID))
		return nil
	})
	return id, err
}

// WriteFullBackup writes a full backup of the current state to w: a
// consistent copy from one bbolt read transaction, while writes go on.
// The header carries the state hash at the backup's revision, computed
// in the same read transaction.
func (f *FSM) WriteFullBackup(w io.Writer, created time.Time) (BackupHeader, error) {
	snap, err := f.Snapshot()
	if err != nil {
		return BackupHeader{}, err
	}
	s := snap.(*snapshot)
	defer s.Release()
	var h BackupHeader
	err = s.with(func(tx *bolt.Tx) (err error) {
		defer func() {
			if r := recover(); r != nil {
				err = &CorruptError{Reason: fmt.Sprintf("bbolt panicked reading the store: %v", r)}
			}
		}()
		st := loadState(tx)
		d, _, err := stateScan(context.Background(), tx, st.revision, false)
		if err != nil {
			return err
		}
		h = BackupHeader{Format: int(backupVersion), Kind: BackupFull, Created: created.UTC(),
			ClusterID: string(tx.Bucket(bucketMeta).Get(metaClusterID)),
			Revision:  st.revision, Hash: st.head.String(), CompactRevision: st.compactRev,
			StateHash: d.Hash.String(), Keys: d.Keys}
		if err := writeBackupHeader(w, &h); err != nil {
			return fmt.Errorf("fsm: backup: %w", err)
		}
		return writeSnapshot(tx, w)
	})
	if ce := asCorrupt(err); ce != nil {
		_ = f.markCorrupt(ce)
	}
	return h, err
}

// WriteIncrementalBackup writes the transaction records after revision
// since to w. since must be at least the compaction point minus one.
func (f *FSM) WriteIncrementalBackup(w io.Writer, since uint64, created time.Time) (BackupHeader, error) {
	var h BackupHeader
	base, err := f.HashAt(since)
	if err != nil {
		return h, err
	}
	id, err := f.ClusterID()
	if err != nil {
		return h, err
	}
	// Records are read in chunks; the header names the head at the start,
	// and the body stops there, so the file is consistent however long
	// the copy takes.
	head, err := f.Head()
	if err != nil {
		return h, err
	}
	h = BackupHeader{Format: int(backupVersion), Kind: BackupIncremental, Created: created.UTC(), ClusterID: id,
		Revision: head.Revision, Hash: head.Hash.String(), FromRevision: since + 1, BaseHash: base.Hash.String()}
	if head.Revision < since {
		return h, fmt.Errorf("%w: revision %d (current %d)", ErrFutureRevision, since, head.Revision)
	}
	d, err := f.StateHash(context.Background(), head.Revision)
	if err != nil {
		return h, err
	}
	h.StateHash, h.Keys = d.Hash.String(), d.Keys
	iw, err := NewIncrementalWriter(w, h)
	if err != nil {
		return h, err
	}
	for next := since + 1; next <= head.Revision; {
		recs, _, err := f.RawLog(next, 1024)
		if err != nil {
			return h, err
		}
		if len(recs) == 0 {
			return h, fmt.Errorf("fsm: backup: records after %d vanished", next)
		}
		for _, r := range recs {
			if r.Revision > head.Revision {
				break
			}
			if err := iw.Add(r); err != nil {
				return h, err
			}
			next = r.Revision + 1
		}
	}
	return h, iw.Close()
}

// IncrementalWriter writes an incremental backup file: the header, then
// records added in order, then (Close) the end mark and body checksum.
type IncrementalWriter struct {
	bw   *bufio.Writer
	out  io.Writer
	sum  hash.Hash
	next uint64
}

// NewIncrementalWriter writes h (which must already name the head the
// records will reach) and returns a writer for the records from
// h.FromRevision on.
func NewIncrementalWriter(w io.Writer, h BackupHeader) (*IncrementalWriter, error) {
	if err := writeBackupHeader(w, &h); err != nil {
		return nil, fmt.Errorf("fsm: backup: %w", err)
	}
	sum := sha256.New()
	return &IncrementalWriter{bw: bufio.NewWriter(io.MultiWriter(w, sum)), out: w, sum: sum, next: h.FromRevision}, nil
}

// Add writes the next record.
func (iw *IncrementalWriter) Add(r RawRecord) error {
	if r.Revision != iw.next {
		return fmt.Errorf("%w: record %d where %d was expected", ErrBadBackup, r.Revision, iw.next)
	}
	var pre [44]byte
	binary.BigEndian.PutUint64(pre[:], r.Revision)
	copy(pre[8:], r.Hash[:])
	binary.BigEndian.PutUint32(pre[40:], uint32(len(r.Canonical)))
	if _, err := iw.bw.Write(pre[:]); err != nil {
		return err
	}
	if _, err := iw.bw.Write(r.Canonical); err != nil {
		return err
	}
	iw.next++
	return nil
}

// Close writes the end mark and the body checksum.
func (iw *IncrementalWriter) Close() error {
	if _, err := iw.bw.Write(make([]byte, 8)); err != nil {
		return err
	}
	if err := iw.bw.Flush(); err != nil {
		return err
	}
	_, err := iw.out.Write(iw.sum.Sum(nil))
	return err
}

// ReadIncremental reads an incremental backup's body (after its header)
// and checks the chain from h.BaseHash, calling fn for each record. It
// names the revision of the first record that does not check out.
func ReadIncremental(r io.Reader, h BackupHeader, fn func(RawRecord) error) error {
	br := bufio.NewReader(r)
	sum := sha256.New()
	last, complete, err := readRecords(io.TeeReader(br, sum), h, fn)
	if err != nil {
		return err
	}
	if !complete {
		return fmt.Errorf("%w: truncated after revision %d", ErrBadBackup, last.Revision)
	}
	body := sum.Sum(nil)
	trailer := make([]byte, sha256.Size)
	if _, err := io.ReadFull(br, trailer); err != nil {
		return fmt.Errorf("%w: missing checksum: %w", ErrBadBackup, err)
	}
	if !bytes.Equal(body, trailer) {
		return fmt.Errorf("%w: body checksum mismatch", ErrBadBackup)
	}
	if last.Revision != h.Revision || last.Hash.String() != h.Hash {
		return fmt.Errorf("%w: records end at %d (%s), header says %d (%s)", ErrBadBackup, last.Revision, last.Hash, h.Revision, h.Hash)
	}
	return nil
}

// ReadPartialIncremental reads the records of an incremental backup that
// was cut short (an interrupted download): every record up to the first
// one that is missing, truncated or does not check out, which it returns
// as the point to resume from (its revision and chain hash).
func ReadPartialIncremental(r io.Reader, h BackupHeader, fn func(RawRecord) error) (ChainPoint, error) {
	last, _, err := readRecords(bufio.NewReader(r), h, fn)
	if errors.Is(err, ErrBadBackup) {
		err = nil // the damaged tail is what gets fetched again
	}
	return ChainPoint{Revision: last.Revision, Hash: last.Hash}, err
}

// readRecords reads records from an incremental body, checking the chain
// from h.BaseHash, until the end mark (complete) or the first bad record
// (an ErrBadBackup error). last is the last good record (Revision
// h.FromRevision-1 and the base hash when there is none).
func readRecords(r io.Reader, h BackupHeader, fn func(RawRecord) error) (last RawRecord, complete bool, err error) {
	prev, err := ParseHash(h.BaseHash)
	if err != nil {
		return last, false, fmt.Errorf("%w: base hash: %w", ErrBadBackup, err)
	}
	last = RawRecord{Revision: h.FromRevision - 1, Hash: prev}
	for {
		var rev [8]byte
		if _, err := io.ReadFull(r, rev[:]); err != nil {
			return last, false, fmt.Errorf("%w: truncated after revision %d: %w", ErrBadBackup, last.Revision, err)
		}
		n := binary.BigEndian.Uint64(rev[:])
		if n == 0 {
			return last, true, nil
		}
		if n != last.Revision+1 {
			return last, false, fmt.Errorf("%w: record %d where %d was expected", ErrBadBackup, n, last.Revision+1)
		}
		var pre [36]byte
		if _, err := io.ReadFull(r, pre[:]); err != nil {
			return last, false, fmt.Errorf("%w: truncated at revision %d: %w", ErrBadBackup, n, err)
		}
		size := binary.BigEndian.Uint32(pre[32:])
		if size > 64<<20 {
			return last, false, fmt.Errorf("%w: record %d claims %d bytes", ErrBadBackup, n, size)
		}
		canon := make([]byte, size)
		if _, err := io.ReadFull(r, canon); err != nil {
			return last, false, fmt.Errorf("%w: truncated at revision %d: %w", ErrBadBackup, n, err)
		}
		rr := RawRecord{Revision: n, Canonical: canon}
		copy(rr.Hash[:], pre[:32])
		if got := chainHash(last.Hash, canon); got != rr.Hash {
			return last, false, fmt.Errorf("%w: hash mismatch at revision %d", ErrBadBackup, n)
		}
		if rec, err := DecodeCanonical(canon); err != nil || rec.Revision != n {
			return last, false, fmt.Errorf("%w: record %d does not decode: %v", ErrBadBackup, n, err)
		}
		if err := fn(rr); err != nil {
			return last, false, err
		}
		last = rr
	}
}

// ApplyRecords replays transaction records (from an incremental backup)
// onto the state, outside raft: each must be the next revision, its
// recomputed chain hash must equal the recorded one and its operations
// must be ones apply can write; otherwise nothing of the call is written.
// Records at or below the current revision must match the stored hash and
// are skipped (overlapping backups). A standby's leader proposes a
// mirror's records in MirrorRecords entries instead, which are checked and
// written by the same code.
func (f *FSM) ApplyRecords(recs []RawRecord) error {
	if ce := f.corrupt.Load(); ce != nil {
		return ce
	}
	st, err := f.applyRecords(recs)
	if ce := asCorrupt(err); ce != nil {
		_ = f.markCorrupt(ce)
	}
	if err != nil {
		return err
	}
	f.revision.Store(st.revision)
	f.notify()
	return nil
}

func (f *FSM) applyRecords(recs []RawRecord) (st state, err error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	if f.db == nil {
		return st, ErrClosed
	}
	defer func() {
		if r := recover(); r != nil {
			err = &CorruptError{Reason: fmt.Sprintf("bbolt panicked applying records: %v", r)}
		}
	}()
	err = f.db.Update(func(tx *bolt.Tx) error {
		st = loadState(tx)
		a := applier{tx: tx, st: &st}
		// The same check and write as a mirror's MirrorRecords entry.
		checked, err := a.checkVerbatim(recs)
		if err != nil {
			return err
		}
		if err := a.writeVerbatim(checked); err != nil {
			return err
		}
		return st.save(tx)
	})
	return st, err
}

// RestoreBackup lays down the FSM database at path from a full backup and
// any number of incremental backups, in order. Every file's chain is
// checked (gaps, overlaps that disagree, hash mismatches are refused, naming
// the file and revision) and the result is verified end to end before it
// is renamed into place. The restored state keeps its data, revisions,
// chain and cluster id, but no raft position and no members: it is the
// state of a new cluster's first node. It is a primary: the mirror state
// and the mirror checkpoints are cleared, so a backup of a standby
// restores as a writable cluster that follows nothing until a mirror
// start, and a backup of a source holds back no compaction for the old
// cluster's mirrors. path must not exist.
func RestoreBackup(ctx context.Context, path string, full string, incrementals ...string) (BackupHeader, error) {
	return RestoreBackupWith(ctx, path, RestoreOptions{}, full, incrementals...)
}

// RestoreOptions are the options of RestoreBackupWith.
type RestoreOptions struct {
	// Progress, when not nil, is given every byte read from the backup
	// files, in order, as it is read (for a progress display). Its
	// errors are ignored.
	Progress io.Writer
}

// tee returns r, whose bytes also go to o.Progress when there is one.
func (o RestoreOptions) tee(r io.Reader) io.Reader {
	if o.Progress == nil {
		return r
	}
	return io.TeeReader(r, progressWriter{o.Progress})
}

// progressWriter passes bytes on to w and never fails, so that a
// progress display cannot stop a restore.
type progressWriter struct{ w io.Writer }

func (p progressWriter) Write(b []byte) (int, error) {
	_, _ = p.w.Write(b)
	return len(b), nil
}

// RestoreBackupWith is RestoreBackup with options.
func RestoreBackupWith(ctx context.Context, path string, o RestoreOptions, full string, incrementals ...string) (BackupHeader, error) {
	var head BackupHeader
	if _, err := os.Stat(path); err == nil {
		return head, fmt.Errorf("fsm: restore: %s already exists", path)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return head, err
	}
	fh, err := os.Open(full)
	if err != nil {
		return head, err
	}
	defer fh.Close()
	in := o.tee(fh)
	h, err := ReadBackupHeader(in)
	if err != nil {
		return head, fmt.Errorf("%s: %w", full, err)
	}
	if h.Kind != BackupFull {
		return head, fmt.Errorf("%s: %w: the first file must be a full backup, not %s", full, ErrBadBackup, h.Kind)
	}
	tmpPath := path + ".restoring"
	_ = os.Remove(tmpPath)
	recv := &FSM{cfg: Config{Path: tmpPath}}
	tmp, err := recv.receiveSnapshot(bufio.NewReader(in))
	if err != nil {
		return head, fmt.Errorf("%s: %w", full, err)
	}
	defer os.Remove(tmp)
	if err := os.Rename(tmp, tmpPath); err != nil {
		return head, err
	}
	defer os.Remove(tmpPath)
	cfg := DefaultConfig(tmpPath)
	cfg.InitialMmapSize = 0
	f, err := Open(cfg)
	if err != nil {
		return head, err
	}
	closed := false
	closeFSM := func() error {
		if closed {
			return nil
		}
		closed = true
		cctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		return f.Close(cctx)
	}
	defer closeFSM()
	cur, err := f.Head()
	if err != nil {
		return head, err
	}
	if cur.Revision != h.Revision || cur.Hash.String() != h.Hash {
		return head, fmt.Errorf("%s: %w: header says revision %d (%s), data holds %d (%s)", full, ErrBadBackup, h.Revision, h.Hash, cur.Revision, cur.Hash)
	}
	if err := checkStateHash(ctx, f, full, h); err != nil {
		return head, err
	}
	head = h
	for _, name := range incrementals {
		ih, err := applyIncrementalFile(f, name, o)
		if err != nil {
			return head, err
		}
		if err := checkStateHash(ctx, f, name, ih); err != nil {
			return head, err
		}
		head = ih
	}
	if _, err := f.Verify(ctx); err != nil {
		return head, fmt.Errorf("fsm: restore: verify: %w", err)
	}
	if err := f.resetRaftPosition(); err != nil {
		return head, err
	}
	if err := closeFSM(); err != nil {
		return head, err
	}
	if err := os.Rename(tmpPath, path); err != nil {
		return head, err
	}
	return head, syncDir(path)
}

// checkStateHash recomputes the state hash of the restore in progress at
// h.Revision and compares it with the one file name's header carries, if
// any (older files carry none).
func checkStateHash(ctx context.Context, f *FSM, name string, h BackupHeader) error {
	if h.StateHash == "" {
		return nil
	}
	want, err := ParseHash(h.StateHash)
	if err != nil {
		return fmt.Errorf("%s: %w: state hash: %w", name, ErrBadBackup, err)
	}
	d, err := f.StateHash(ctx, h.Revision)
	if err != nil {
		return fmt.Errorf("%s: state hash: %w", name, err)
	}
	if d.Hash != want || d.Keys != h.Keys {
		return fmt.Errorf("%s: %w at revision %d: the backup says %s (%d keys), the restored data gives %s (%d keys)",
			name, ErrStateMismatch, h.Revision, h.StateHash, h.Keys, d.Hash, d.Keys)
	}
	return nil
}

func applyIncrementalFile(f *FSM, name string, o RestoreOptions) (BackupHeader, error) {
	fh, err := os.Open(name)
	if err != nil {
		return BackupHeader{}, err
	}
	defer fh.Close()
	in := o.tee(fh)
	h, err := ReadBackupHeader(in)
	if err != nil {
		return h, fmt.Errorf("%s: %w", name, err)
	}
	if h.Kind != BackupIncremental {
		return h, fmt.Errorf("%s: %w: expected an incremental backup, got %s", name, ErrBadBackup, h.Kind)
	}
	cur, err := f.Head()
	if err != nil {
		return h, err
	}
	if h.FromRevision > cur.Revision+1 {
		return h, fmt.Errorf("%s: %w: starts at revision %d, restore is at %d (a gap)", name, ErrBadBackup, h.FromRevision, cur.Revision)
	}
	if base, err := f.HashAt(h.FromRevision - 1); err == nil && base.Hash.String() != h.BaseHash {
		return h, fmt.Errorf("%s: %w: does not continue this chain at revision %d", name, ErrBadBackup, h.FromRevision-1)
	}
	var batch []RawRecord
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		err := f.ApplyRecords(batch)
		batch = batch[:0]
		return err
	}
	err = ReadIncremental(in, h, func(r RawRecord) error {
		batch = append(batch, r)
		if len(batch) == 256 {
			return flush()
		}
		return nil
	})
	if err == nil {
		err = flush()
	}
	if err != nil {
		return h, fmt.Errorf("%s: %w", name, err)
	}
	return h, nil
}

// resetRaftPosition forgets the raft index, members, cluster id, mirror
// state and mirror checkpoints of the cluster the state came from, so a
// new cluster's log (from index 1) applies to it, and its first leader
// names it anew: two clusters restored from one backup, or a standby
// seeded from its source's backup, are not the same cluster (mirrors tell
// clusters apart by their ids). The backup's header keeps the id it was
// taken under.
func (f *FSM) resetRaftPosition() error {
	return f.update(func(tx *bolt.Tx) error {
		if err := clearMirror(tx); err != nil {
			return err
		}
		m := tx.Bucket(bucketMeta)
		if err := m.Delete(metaClusterID); err != nil {
			return err
		}
		if err := m.Put(metaAppliedIndex, u64(0)); err != nil {
			return err
		}
		if err := m.Put(metaAppliedTerm, u64(0)); err != nil {
			return err
		}
		if err := tx.DeleteBucket(bucketMembers); err != nil {
			return err
		}
		_, err := tx.CreateBucket(bucketMembers)
		return err
	})
}

// update runs fn in a bbolt write transaction.
func (f *FSM) update(fn func(tx *bolt.Tx) error) error {
	f.mu.RLock()
	defer f.mu.RUnlock()
	if f.db == nil {
		return ErrClosed
	}
	return f.db.Update(fn)
}

// VerifyBackupFile checks a backup file offline: header, checksums, the
// bbolt file, the chain, every versions entry's checksum and the state
// hash (against the header's, when it has one) inside a full backup, and
// the chain of an incremental one (whose state hash needs the state it
// applies to: restore checks it). It returns the header.
func VerifyBackupFile(ctx context.Context, name string) (BackupHeader, error) {
	fh, err := os.Open(name)
	if err != nil {
		return BackupHeader{}, err
	}
	defer fh.Close()
	h, err := ReadBackupHeader(fh)
	if err != nil {
		return h, fmt.Errorf("%s: %w", name, err)
	}
	if h.Kind == BackupIncremental {
		if err := ReadIncremental(fh, h, func(RawRecord) error { return nil }); err != nil {
			return h, fmt.Errorf("%s: %w", name, err)
		}
		return h, nil
	}
	dir, err := os.MkdirTemp("", "cairn-verify-")
	if err != nil {
		return h, err
	}
	defer os.RemoveAll(dir)
	if _, err := RestoreBackup(ctx, filepath.Join(dir, "fsm.db"), name); err != nil {
		return h, err
	}
	return h, nil
}
