package fsm

import (
	"context"
	"fmt"
	"os"
	"time"

	bolt "go.etcd.io/bbolt"
)

// defragTxMaxSize is how many bytes of data Defrag copies per write
// transaction of the new file.
const defragTxMaxSize = 64 << 20

// Defrag gives back the database file's free pages: it copies the live
// data into a new file beside it (bbolt's Compact), fsyncs it, renames it
// over the database and reopens it. It holds the FSM's lock exclusively
// throughout, so reads and applies pause for as long as the copy takes
// (about the time to write InUseBytes), and it ends the read transactions
// of open snapshots (a Persist in progress fails with ErrSnapshotAborted;
// raft takes the snapshot again). It returns the file's size before and
// after. On an error before the rename the database is untouched. A
// corrupt FSM refuses (repair it instead). The context is checked before
// the copy starts; the copy itself is not interrupted.
func (f *FSM) Defrag(ctx context.Context) (before, after int64, err error) {
	if ce := f.corrupt.Load(); ce != nil {
		return 0, 0, ce
	}
	defer func() {
		if ce := asCorrupt(err); ce != nil {
			_ = f.markCorrupt(ce)
		}
	}()
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.defragLocked(ctx)
}

func (f *FSM) defragLocked(ctx context.Context) (before, after int64, err error) {
	if f.db == nil {
		return 0, 0, ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return 0, 0, fmt.Errorf("fsm: defrag: %w", err)
	}
	path := f.cfg.Path
	fi, err := os.Stat(path)
	if err != nil {
		return 0, 0, fmt.Errorf("fsm: defrag: %w", err)
	}
	before = fi.Size()
	start := time.Now()

	tmp := path + ".defrag"
	_ = os.Remove(tmp)
	defer os.Remove(tmp) // no-op after the rename
	if err := f.copyCompact(tmp); err != nil {
		return before, before, err
	}
	f.abortSnapshots()
	if err := f.db.Close(); err != nil {
		// bbolt closed the handle regardless; reopen the file in place.
		f.db = nil
		db, oerr := f.openDB(path)
		if oerr != nil {
			return before, before, fmt.Errorf("fsm: defrag: close: %w; reopen: %w", err, oerr)
		}
		f.db = db
		return before, before, fmt.Errorf("fsm: defrag: close: %w", err)
	}
	f.db = nil
	renameErr := os.Rename(tmp, path)
	if renameErr == nil {
		renameErr = syncDir(path)
	}
	db, err := f.openDB(path)
	if err != nil {
		return before, 0, fmt.Errorf("fsm: defrag: reopen: %w", err)
	}
	f.db = db
	if renameErr != nil {
		return before, before, fmt.Errorf("fsm: defrag: install: %w", renameErr)
	}
	if fi, err := os.Stat(path); err == nil {
		after = fi.Size()
	}
	f.log.Info("defragmented the store", "before_bytes", before, "after_bytes", after, "took", time.Since(start))
	return before, after, nil
}

// copyCompact copies the open database into a new, fsynced file at tmp.
// The copy's commits are fsynced regardless of Config.SyncEveryCommit:
// the new file replaces the database by rename, and the unsynced marker
// (durability.go) stays as it was, covering later commits only.
func (f *FSM) copyCompact(tmp string) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = &CorruptError{Reason: fmt.Sprintf("bbolt panicked copying the store: %v", r)}
		}
	}()
	dst, err := bolt.Open(tmp, 0o600, &bolt.Options{
		Timeout:        time.Second,
		FreelistType:   bolt.FreelistMapType,
		NoFreelistSync: true,
		NoSync:         true,
	})
	if err != nil {
		return fmt.Errorf("fsm: defrag: %w", err)
	}
	if err := bolt.Compact(dst, f.db, defragTxMaxSize); err != nil {
		_ = dst.Close()
		return fmt.Errorf("fsm: defrag: copy: %w", err)
	}
	if err := dst.Sync(); err != nil {
		_ = dst.Close()
		return fmt.Errorf("fsm: defrag: sync: %w", err)
	}
	if err := dst.Close(); err != nil {
		return fmt.Errorf("fsm: defrag: %w", err)
	}
	return nil
}
