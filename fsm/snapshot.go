package fsm

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/hashicorp/raft"
	bolt "go.etcd.io/bbolt"
)

// Snapshot format, written by Persist and read by Restore:
//
//	magic "CAIRNSNP" | version u8 | bbolt size u64 | bbolt file | SHA-256 of the bbolt file
var snapshotMagic = []byte("CAIRNSNP")

const snapshotVersion byte = 1

// Snapshot implements raft.FSM. It opens a bbolt read transaction: the copy
// Persist streams is the state as of this call, while writes go on.
//
// A corrupt FSM refuses (with its *CorruptError): its state must not
// travel to another member or into a backup.
func (f *FSM) Snapshot() (raft.FSMSnapshot, error) {
	if ce := f.corrupt.Load(); ce != nil {
		return nil, ce
	}
	f.mu.RLock()
	defer f.mu.RUnlock()
	if f.db == nil {
		return nil, ErrClosed
	}
	tx, err := f.db.Begin(false)
	if err != nil {
		return nil, fmt.Errorf("fsm: snapshot: %w", err)
	}
	s := &snapshot{tx: tx, f: f}
	f.snapsMu.Lock()
	f.snaps[s] = struct{}{}
	f.snapsMu.Unlock()
	return s, nil
}

// snapshot is an open bbolt read transaction. Restore aborts the ones
// still open (see abortSnapshots); mu keeps an abort from closing the
// transaction under a running Persist.
type snapshot struct {
	f       *FSM
	mu      sync.Mutex
	tx      *bolt.Tx // nil once released or aborted
	aborted bool
}

// with runs fn on the snapshot's transaction, unless it was released or
// aborted by a Restore.
func (s *snapshot) with(fn func(tx *bolt.Tx) error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.tx == nil {
		if s.aborted {
			return ErrSnapshotAborted
		}
		return fmt.Errorf("fsm: snapshot already released")
	}
	return fn(s.tx)
}

// Persist streams the snapshot into sink.
func (s *snapshot) Persist(sink raft.SnapshotSink) error {
	if err := s.with(func(tx *bolt.Tx) error { return writeSnapshot(tx, sink) }); err != nil {
		_ = sink.Cancel()
		return err
	}
	return sink.Close()
}

// writeSnapshot writes the snapshot stream of tx to w.
func writeSnapshot(tx *bolt.Tx, w io.Writer) error {
	hdr := make([]byte, 0, len(snapshotMagic)+9)
	hdr = append(append(hdr, snapshotMagic...), snapshotVersion)
	hdr = append(hdr, u64(uint64(tx.Size()))...)
	if _, err := w.Write(hdr); err != nil {
		return fmt.Errorf("fsm: snapshot header: %w", err)
	}
	failpoint("persist-mid")
	sum := sha256.New()
	if _, err := tx.WriteTo(io.MultiWriter(w, sum)); err != nil {
		return fmt.Errorf("fsm: snapshot body: %w", err)
	}
	if _, err := w.Write(sum.Sum(nil)); err != nil {
		return fmt.Errorf("fsm: snapshot trailer: %w", err)
	}
	return nil
}

// Release ends the snapshot's read transaction.
func (s *snapshot) Release() {
	s.mu.Lock()
	if s.tx != nil {
		_ = s.tx.Rollback()
		s.tx = nil
	}
	s.mu.Unlock()
	s.f.snapsMu.Lock()
	delete(s.f.snaps, s)
	s.f.snapsMu.Unlock()
}

// abortSnapshots ends every open snapshot's read transaction (waiting for
// a Persist in progress to finish), so the database can close. Raft may
// hold a snapshot taken before a Restore and wait for its main loop, which
// waits for the Restore: waiting for that snapshot's Release would
// deadlock. Its Persist then fails with ErrSnapshotAborted.
func (f *FSM) abortSnapshots() {
	f.snapsMu.Lock()
	open := make([]*snapshot, 0, len(f.snaps))
	for s := range f.snaps {
		open = append(open, s)
	}
	f.snaps = map[*snapshot]struct{}{}
	f.snapsMu.Unlock()
	for _, s := range open {
		s.mu.Lock()
		if s.tx != nil {
			_ = s.tx.Rollback()
			s.tx, s.aborted = nil, true
		}
		s.mu.Unlock()
	}
}

// Restore implements raft.FSM. It replaces the FSM's state with the
// snapshot, all or nothing: the stream is written to a temporary file,
// checked (length, checksum, bbolt consistency, schema), fsynced and only
// then renamed over the database. On any error the old state is intact.
func (f *FSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	tmp, err := f.receiveSnapshot(rc)
	if err != nil {
		return err
	}
	defer os.Remove(tmp) // no-op after a successful rename
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.db == nil {
		return ErrClosed
	}
	f.abortSnapshots()
	if err := f.db.Close(); err != nil {
		return fmt.Errorf("fsm: restore: close old database: %w", err)
	}
	f.db = nil
	failpoint("restore-before-rename")
	renameErr := os.Rename(tmp, f.cfg.Path)
	if renameErr == nil {
		renameErr = syncDir(f.cfg.Path)
		failpoint("restore-after-rename")
	}
	// Reopen whichever file is in place: the new one, or the old one if the
	// rename failed.
	db, err := f.openDB(f.cfg.Path)
	if err != nil {
		return fmt.Errorf("fsm: restore: reopen: %w", err)
	}
	f.db = db
	if renameErr != nil {
		return fmt.Errorf("fsm: restore: install snapshot: %w", renameErr)
	}
	var st state
	if err := db.View(func(tx *bolt.Tx) error {
		st = loadState(tx)
		as, err := loadAuth(tx)
		if err != nil {
			return err
		}
		ms, err := loadMirror(tx)
		if err != nil {
			return err
		}
		f.authState.Store(as)
		f.readOnly.Store(ms.Mode.ReadOnlyMode())
		return nil
	}); err != nil {
		return fmt.Errorf("fsm: restore: %w", err)
	}
	f.revision.Store(st.revision)
	f.applied.Store(st.appliedIndex)
	f.clearStateCache()
	if ce := f.corrupt.Load(); ce != nil {
		// The whole state was replaced by a checked copy: what was corrupt
		// is gone.
		if err := removeMarker(f.cfg.Path + corruptSuffix); err != nil {
			return fmt.Errorf("fsm: restore: %w", err)
		}
		f.corrupt.Store(nil)
		f.log.Info("a snapshot replaced the corrupt state; reads are served again", "was", ce.Reason)
	}
	f.notify()
	f.wakeCompactor()
	f.log.Info("restored snapshot", "revision", st.revision, "applied_index", st.appliedIndex)
	return nil
}

// receiveSnapshot writes the stream to a checked, fsynced temporary file
// beside the database and returns its path.
func (f *FSM) receiveSnapshot(r io.Reader) (path string, err error) {
	hdr := make([]byte, len(snapshotMagic)+9)
	if _, err := io.ReadFull(r, hdr); err != nil {
		return "", fmt.Errorf("%w: header: %w", ErrCorruptSnapshot, err)
	}
	if !bytes.Equal(hdr[:len(snapshotMagic)], snapshotMagic) {
		return "", fmt.Errorf("%w: not a cairn snapshot", ErrCorruptSnapshot)
	}
	if v := hdr[len(snapshotMagic)]; v != snapshotVersion {
		// Both: the caller learns the stream is unusable (and the state
		// unchanged) and why.
		return "", fmt.Errorf("%w: %w: snapshot version %d (this build reads %d)", ErrCorruptSnapshot, ErrUnknownVersion, v, snapshotVersion)
	}
	size := int64(getU64(hdr[len(snapshotMagic)+1:]))
	tmp, err := os.CreateTemp(dirOf(f.cfg.Path), ".restore-*")
	if err != nil {
		return "", fmt.Errorf("fsm: restore: %w", err)
	}
	defer func() {
		if err != nil {
			_ = tmp.Close()
			_ = os.Remove(tmp.Name())
		}
	}()
	sum := sha256.New()
	if _, err := io.CopyN(io.MultiWriter(tmp, sum), r, size); err != nil {
		return "", fmt.Errorf("%w: body: %w", ErrCorruptSnapshot, err)
	}
	want := make([]byte, sha256.Size)
	if _, err := io.ReadFull(r, want); err != nil {
		return "", fmt.Errorf("%w: trailer: %w", ErrCorruptSnapshot, err)
	}
	if !bytes.Equal(want, sum.Sum(nil)) {
		return "", fmt.Errorf("%w: checksum mismatch", ErrCorruptSnapshot)
	}
	if err := tmp.Sync(); err != nil {
		return "", fmt.Errorf("fsm: restore: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return "", fmt.Errorf("fsm: restore: %w", err)
	}
	if err := checkDatabase(tmp.Name()); err != nil {
		return "", err
	}
	return tmp.Name(), nil
}

// checkDatabase opens a bbolt file read-only and checks its pages and
// schema.
func checkDatabase(path string) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: bbolt: %v", ErrCorruptSnapshot, r)
		}
	}()
	// tx.Check rebuilds the freelist in a goroutine that cannot recover
	// from a damaged page's panic; walk the pages first (pagewalk.go).
	if err := walkPagesSafe(path, time.Second); err != nil {
		return fmt.Errorf("%w: %w", ErrCorruptSnapshot, err)
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		return fmt.Errorf("%w: %w", ErrCorruptSnapshot, err)
	}
	defer db.Close()
	return db.View(func(tx *bolt.Tx) error {
		var errs []error
		for e := range tx.Check() {
			errs = append(errs, e)
		}
		if len(errs) > 0 {
			return fmt.Errorf("%w: bbolt check: %w", ErrCorruptSnapshot, errors.Join(errs...))
		}
		for _, b := range requiredBuckets {
			if tx.Bucket(b) == nil {
				return fmt.Errorf("%w: bucket %q missing", ErrCorruptSnapshot, b)
			}
		}
		// Older schemas are migrated when the restored file is opened.
		v := getU64(tx.Bucket(bucketMeta).Get(metaSchema))
		if !knownSchema(v) {
			return fmt.Errorf("%w: %w: database schema %d (this build reads 1 to %d)", ErrCorruptSnapshot, ErrUnknownVersion, v, schemaVersion)
		}
		if v == schemaVersion && tx.Bucket(bucketMeta).Get(metaMigrateCursor) == nil {
			// Every versions entry's checksum: a snapshot of a store that
			// went bad unnoticed is not installed.
			if _, _, err := stateScan(context.Background(), tx, loadState(tx).revision, true); err != nil {
				return fmt.Errorf("%w: %w", ErrCorruptSnapshot, err)
			}
		}
		return nil
	})
}
