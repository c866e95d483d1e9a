package fsm

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
	bolt "go.etcd.io/bbolt"

	"github.com/cairn-db/cairn/auth"
)

// Config configures an FSM.
type Config struct {
	// Path is the bbolt file. Restore writes a temporary file beside it.
	Path string
	// InitialMmapSize is bbolt's initial memory map, in bytes. A map large
	// enough for the database means writers never wait for a long read
	// transaction (a snapshot being persisted) to remap.
	InitialMmapSize int
	// CompactChunk is how many history entries one background compaction
	// step examines in one bbolt write transaction.
	CompactChunk int
	// OpenTimeout bounds the wait for the file lock when another process
	// holds the database open.
	OpenTimeout time.Duration
	// Logger receives the FSM's logs. Nil means discard.
	Logger *slog.Logger
	// SyncEveryCommit fsyncs every bbolt commit. When false (the default),
	// commits are not fsynced: raft's fsynced log and snapshots make them
	// recoverable, a process crash keeps them in the page cache, and after
	// an operating-system crash Open discards the database so that raft
	// rebuilds it (see durability.go). Where the boot id cannot be read,
	// every commit is fsynced regardless.
	SyncEveryCommit bool
	// OnCorrupt is called once, when the FSM marks itself corrupt during
	// this run (Corrupt), with the *CorruptError; synchronously, from the
	// goroutine that found the corruption (a reader's, raft's apply
	// goroutine, the compactor's) and never with the FSM's lock held. It
	// must not block for long. A store opened with a corrupt marker
	// reports it through Corrupt, not through OnCorrupt.
	OnCorrupt func(err error)
	// OnApplyStalled is called, from raft's apply goroutine, each time a
	// chunk of entries failed to commit for lack of disk space (ENOSPC or
	// EDQUOT); apply waits and tries again until it succeeds or the FSM is
	// closed.
	OnApplyStalled func(err error)
	// OnApplyResumed is called after a chunk that had stalled commits.
	OnApplyResumed func()
}

// DefaultConfig returns a Config for the database at path.
func DefaultConfig(path string) Config {
	return Config{
		Path:            path,
		InitialMmapSize: 1 << 30,
		CompactChunk:    1000,
		OpenTimeout:     5 * time.Second,
	}
}

// Validate reports whether c can be used.
func (c Config) Validate() error {
	switch {
	case c.Path == "":
		return fmt.Errorf("%w: Path is empty", ErrInvalidConfig)
	case c.InitialMmapSize < 0:
		return fmt.Errorf("%w: InitialMmapSize %d is negative", ErrInvalidConfig, c.InitialMmapSize)
	case c.CompactChunk < 1:
		return fmt.Errorf("%w: CompactChunk %d must be at least 1", ErrInvalidConfig, c.CompactChunk)
	case c.OpenTimeout < 0:
		return fmt.Errorf("%w: OpenTimeout %s is negative", ErrInvalidConfig, c.OpenTimeout)
	}
	return nil
}

// FSM is cairn's state machine. It implements raft.BatchingFSM. Reads may
// run concurrently with each other and with ApplyBatch.
type FSM struct {
	cfg Config
	log *slog.Logger

	// mu guards db: reads and applies hold it shared; Restore and Close
	// hold it exclusively while they swap or close the database.
	mu sync.RWMutex
	db *bolt.DB

	// unsynced is true when commits are not fsynced (Config.SyncEveryCommit
	// off and a boot id available).
	unsynced bool

	revision atomic.Uint64 // last committed revision, for WaitRevision
	applied  atomic.Uint64 // last applied raft index

	// authState is the committed access-control state (never nil once
	// open): loaded by Open and Restore, replaced after an apply that
	// changed it commits.
	authState atomic.Pointer[auth.State]

	// readOnly is whether the mirror mode is a standby's (ReadOnly):
	// loaded by Open and Restore, updated after an apply that changed the
	// mirror state commits.
	readOnly atomic.Bool

	waitMu  sync.Mutex
	changed chan struct{} // closed and replaced after every commit

	snapsMu sync.Mutex
	snaps   map[*snapshot]struct{} // open snapshots, for abortSnapshots

	// corrupt is the *CorruptError that marked the FSM corrupt (see
	// integrity.go), loaded from the marker file by Open.
	corrupt atomic.Pointer[CorruptError]
	// unclean is true when the previous run did not Close.
	unclean bool

	stateMu    sync.Mutex
	stateCache []StateDigest // the last few StateHash results, newest last

	compactWake chan struct{}
	stop        chan struct{}
	stopOnce    sync.Once
	wg          sync.WaitGroup
}

var _ raft.BatchingFSM = (*FSM)(nil)

// Open opens (creating if needed) the FSM's database and starts its
// background compactor. Close stops it.
func Open(cfg Config) (*FSM, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	f := &FSM{
		cfg:         cfg,
		log:         cfg.Logger,
		changed:     make(chan struct{}),
		snaps:       map[*snapshot]struct{}{},
		compactWake: make(chan struct{}, 1),
		stop:        make(chan struct{}),
	}
	if f.log == nil {
		f.log = slog.New(slog.DiscardHandler)
	}
	// A crash during Restore or Defrag can leave its temporary file behind.
	if err := os.Remove(cfg.Path + ".defrag"); err == nil {
		f.log.Info("removed an unfinished defrag", "file", cfg.Path+".defrag")
	}
	if stale, _ := filepath.Glob(filepath.Join(dirOf(cfg.Path), ".restore-*")); len(stale) > 0 {
		for _, p := range stale {
			if err := os.Remove(p); err == nil {
				f.log.Info("removed an unfinished restore", "file", p)
			}
		}
	}
	boot := bootID()
	f.unsynced = !cfg.SyncEveryCommit && boot != ""
	if _, err := f.checkUnsynced(cfg.Path, boot); err != nil {
		return nil, err
	}
	if _, err := os.Stat(cfg.Path); errors.Is(err, fs.ErrNotExist) {
		// A fresh store (a repaired member, a first start, a database
		// discarded above): a corrupt marker left beside the old one no
		// longer applies.
		if err := removeMarker(cfg.Path + corruptSuffix); err != nil {
			return nil, err
		}
	}
	if f.unsynced {
		if err := writeUnsynced(cfg.Path, boot); err != nil {
			if !isNoSpace(err) {
				return nil, err
			}
			// A full disk must not keep the member from starting (reads
			// go on; apply waits for space): fsync every commit instead.
			f.log.Warn("no space for the unsynced marker; every commit is fsynced", "err", err)
			f.unsynced = false
		}
	}
	ce, err := readCorruptMarker(cfg.Path)
	if err != nil {
		return nil, err
	}
	if ce != nil {
		f.corrupt.Store(ce)
		f.log.Error("the store was marked corrupt; reads are refused until the member is repaired",
			"file", cfg.Path, "reason", ce.Reason, "key", ce.Key, "revision", ce.Revision, "since", ce.Time)
	}
	f.unclean, err = markOpen(cfg.Path)
	if err != nil {
		if !isNoSpace(err) {
			return nil, err
		}
		f.log.Warn("no space for the open marker; the next start cannot tell a crash", "err", err)
	}
	db, err := f.openDB(cfg.Path)
	if err != nil {
		return nil, err
	}
	f.db = db
	if !f.unsynced {
		// An earlier run of this boot may have left unsynced commits.
		if _, err := os.Stat(cfg.Path + unsyncedSuffix); err == nil {
			if err := db.Sync(); err != nil {
				_ = db.Close()
				return nil, fmt.Errorf("fsm: sync %s: %w", cfg.Path, err)
			}
			if err := removeUnsynced(cfg.Path); err != nil {
				_ = db.Close()
				return nil, err
			}
		}
	}
	if err := f.loadCounters(); err != nil {
		_ = db.Close()
		return nil, damaged(cfg.Path, err)
	}
	f.wg.Add(1)
	go f.runCompactor()
	f.wakeCompactor()
	return f, nil
}

// openDB opens the bbolt file, creates missing buckets and migrates an
// older schema. A store bbolt cannot read (a damaged meta page, a page it
// panics on, a malformed entry met by the migration) is ErrDamaged.
func (f *FSM) openDB(path string) (db *bolt.DB, err error) {
	defer func() {
		if r := recover(); r != nil {
			// bbolt panicked inside Open or a transaction: the handle (and
			// its file lock) cannot be closed; the process is expected to
			// stop and the member to be repaired.
			db, err = nil, damaged(path, fmt.Errorf("bbolt: %v", r))
		}
	}()
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	if err := preflight(path, f.cfg.OpenTimeout); err != nil {
		return nil, err
	}
	db, err = bolt.Open(path, 0o600, &bolt.Options{
		Timeout:         f.cfg.OpenTimeout,
		InitialMmapSize: f.cfg.InitialMmapSize,
		FreelistType:    bolt.FreelistMapType,
		NoFreelistSync:  true,
		NoSync:          f.unsynced,
	})
	if err != nil {
		if isDamage(err) {
			return nil, damaged(path, err)
		}
		return nil, fmt.Errorf("fsm: open %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range allBuckets {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		meta := tx.Bucket(bucketMeta)
		if meta.Get(metaSchema) == nil {
			return meta.Put(metaSchema, u64(schemaVersion))
		}
		return migrate(tx)
	})
	if err == nil {
		err = migrateVersions(db)
	}
	if err != nil {
		_ = db.Close()
		if errors.Is(err, ErrCorrupt) {
			return nil, damaged(path, err)
		}
		return nil, fmt.Errorf("fsm: prepare %s: %w", path, err)
	}
	return db, nil
}

func (f *FSM) loadCounters() (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("bbolt: %v", r)
		}
	}()
	return f.db.View(func(tx *bolt.Tx) error {
		as, err := loadAuth(tx)
		if err != nil {
			return err
		}
		ms, err := loadMirror(tx)
		if err != nil {
			return err
		}
		st := loadState(tx)
		f.revision.Store(st.revision)
		f.applied.Store(st.appliedIndex)
		f.authState.Store(as)
		f.readOnly.Store(ms.Mode.ReadOnlyMode())
		return nil
	})
}

// Close stops the background compactor and closes the database. The
// context bounds the wait for the compactor's current step.
func (f *FSM) Close(ctx context.Context) error {
	f.stopOnce.Do(func() { close(f.stop) })
	done := make(chan struct{})
	go func() { f.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		return fmt.Errorf("fsm: close: %w", ctx.Err())
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.db == nil {
		return nil
	}
	f.abortSnapshots()
	var err error
	if f.unsynced {
		err = f.db.Sync()
	}
	if cerr := f.db.Close(); err == nil {
		err = cerr
	}
	f.db = nil
	if err == nil && f.unsynced {
		err = removeUnsynced(f.cfg.Path)
	}
	if err == nil {
		err = removeMarker(f.cfg.Path + openSuffix)
	}
	if err != nil {
		return fmt.Errorf("fsm: close: %w", err)
	}
	return nil
}

// view runs fn in a bbolt read transaction for a read method: it refuses
// with the *CorruptError once the FSM is corrupt, and marks it corrupt
// when fn (or bbolt, by panicking) finds corruption.
func (f *FSM) view(fn func(tx *bolt.Tx) error) error {
	if ce := f.corrupt.Load(); ce != nil {
		return ce
	}
	return f.viewAlways(fn)
}

// viewAlways is view for the methods that keep working on a corrupt FSM
// (Status, AppliedIndex, Members, ClusterID): raft and the node need them.
func (f *FSM) viewAlways(fn func(tx *bolt.Tx) error) error {
	err := f.viewLocked(fn)
	if ce := asCorrupt(err); ce != nil {
		f.markCorrupt(ce)
	}
	return err
}

func (f *FSM) viewLocked(fn func(tx *bolt.Tx) error) (err error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	if f.db == nil {
		return ErrClosed
	}
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			err = &CorruptError{Reason: fmt.Sprintf("bbolt panicked reading the store: %v", r)}
		}
	}()
	return f.db.View(fn)
}

// state is the meta bucket's counters, loaded at the start of a write
// transaction and saved at its end.
type state struct {
	appliedIndex, appliedTerm uint64
	revision                  uint64
	time                      int64
	head                      Hash
	compactRev                uint64
	compactBase               Hash
}

func loadState(tx *bolt.Tx) state {
	m := tx.Bucket(bucketMeta)
	st := state{
		appliedIndex: getU64(m.Get(metaAppliedIndex)),
		appliedTerm:  getU64(m.Get(metaAppliedTerm)),
		revision:     getU64(m.Get(metaRevision)),
		time:         int64(getU64(m.Get(metaTime))),
		compactRev:   getU64(m.Get(metaCompactRev)),
	}
	copy(st.head[:], m.Get(metaHead))
	copy(st.compactBase[:], m.Get(metaCompactBase))
	if st.compactRev == 0 {
		st.compactRev = 1
	}
	return st
}

func (st *state) save(tx *bolt.Tx) error {
	m := tx.Bucket(bucketMeta)
	for _, kv := range []struct{ k, v []byte }{
		{metaAppliedIndex, u64(st.appliedIndex)},
		{metaAppliedTerm, u64(st.appliedTerm)},
		{metaRevision, u64(st.revision)},
		{metaTime, u64(uint64(st.time))},
		{metaHead, st.head[:]},
		{metaCompactRev, u64(st.compactRev)},
		{metaCompactBase, st.compactBase[:]},
	} {
		if err := m.Put(kv.k, kv.v); err != nil {
			return err
		}
	}
	return nil
}

// AppliedIndex returns the last raft index and term the FSM has applied,
// as stored in its database. On start, raft must restore the newest
// snapshot only when its index is above this one.
func (f *FSM) AppliedIndex() (index, term uint64, err error) {
	err = f.viewAlways(func(tx *bolt.Tx) error {
		st := loadState(tx)
		index, term = st.appliedIndex, st.appliedTerm
		return nil
	})
	return index, term, err
}

// LastApplied returns the last raft index the FSM applied. Raft does not
// deliver barrier and no-op entries to a BatchingFSM, so this may trail
// raft's own applied index.
func (f *FSM) LastApplied() uint64 { return f.applied.Load() }

// DataSize returns the size of the database's pages in use, in bytes (a
// snapshot's size); the file itself may be larger, as bbolt grows it
// ahead of need.
//
// It works on a corrupt FSM.
func (f *FSM) DataSize() (int64, error) {
	var n int64
	err := f.viewAlways(func(tx *bolt.Tx) error { n = tx.Size(); return nil })
	return n, err
}

// Revision returns the last committed revision.
func (f *FSM) Revision() uint64 { return f.revision.Load() }

// WaitRevision blocks until the FSM has committed revision rev or the
// context ends.
func (f *FSM) WaitRevision(ctx context.Context, rev uint64) error {
	for {
		f.waitMu.Lock()
		ch := f.changed
		f.waitMu.Unlock()
		if f.revision.Load() >= rev {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("fsm: waiting for revision %d (at %d): %w", rev, f.revision.Load(), ctx.Err())
		}
	}
}

// Changed returns a channel that is closed when the next batch of entries
// has been applied.
func (f *FSM) Changed() <-chan struct{} {
	f.waitMu.Lock()
	defer f.waitMu.Unlock()
	return f.changed
}

func (f *FSM) notify() {
	f.waitMu.Lock()
	close(f.changed)
	f.changed = make(chan struct{})
	f.waitMu.Unlock()
}
