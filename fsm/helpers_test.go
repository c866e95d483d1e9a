package fsm

import (
	"bytes"
	"context"
	"errors"
	"io"
	"path/filepath"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	bolt "go.etcd.io/bbolt"
)

// testFSM is an FSM with a raft log position, for tests.
type testFSM struct {
	*FSM
	t     testing.TB
	index uint64
	clock time.Time
}

func openTestFSM(t testing.TB) *testFSM {
	t.Helper()
	return openTestFSMAt(t, filepath.Join(t.TempDir(), "fsm.db"))
}

func openTestFSMAt(t testing.TB, path string) *testFSM {
	t.Helper()
	cfg := DefaultConfig(path)
	cfg.InitialMmapSize = 0
	f, err := Open(cfg)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	tf := &testFSM{FSM: f, t: t, clock: time.Unix(1_700_000_000, 0).UTC()}
	idx, _, err := f.AppliedIndex()
	if err != nil {
		t.Fatal(err)
	}
	tf.index = idx
	t.Cleanup(func() { tf.close() })
	return tf
}

// close closes the FSM (once) after checking bbolt's consistency.
func (tf *testFSM) close() {
	tf.t.Helper()
	tf.FSM.mu.RLock()
	db := tf.FSM.db
	if db != nil {
		err := checkBolt(db)
		if err != nil {
			tf.t.Errorf("bbolt check: %v", err)
		}
	}
	tf.FSM.mu.RUnlock()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := tf.FSM.Close(ctx); err != nil {
		tf.t.Errorf("close: %v", err)
	}
}

// checkBolt runs bbolt's consistency check. It runs in a writable
// transaction (rolled back): bbolt documents that a check in a read-only
// transaction is unsafe while another writer (here the background
// compactor) commits, and reports pages freed by that writer as
// "reachable freed".
func checkBolt(db *bolt.DB) error {
	tx, err := db.Begin(true)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback() }()
	var errs []error
	for e := range tx.Check() {
		errs = append(errs, e)
	}
	return errors.Join(errs...)
}

// entry encodes a command as the next raft log entry.
func (tf *testFSM) entry(c Command) *raft.Log {
	tf.t.Helper()
	data, err := EncodeCommand(c)
	if err != nil {
		tf.t.Fatalf("encode: %v", err)
	}
	tf.index++
	return &raft.Log{Index: tf.index, Term: 1, Type: raft.LogCommand, Data: data}
}

// commit applies txns as one batch entry, advancing the test clock by one
// second, and returns their results.
func (tf *testFSM) commit(txns ...Txn) []TxnResult {
	tf.t.Helper()
	tf.clock = tf.clock.Add(time.Second)
	l := tf.entry(Command{Batch: &Batch{Time: tf.clock, Limits: DefaultLimits(), Txns: txns}})
	res := tf.ApplyBatch([]*raft.Log{l})[0].(*BatchResult)
	if res.Err != nil {
		tf.t.Fatalf("batch refused: %v", res.Err)
	}
	return res.Txns
}

// mustCommit commits one transaction and fails the test unless it commits.
func (tf *testFSM) mustCommit(txn Txn) TxnResult {
	tf.t.Helper()
	r := tf.commit(txn)[0]
	if r.Err != nil {
		tf.t.Fatalf("commit: %v", r.Err)
	}
	return r
}

func put(key, value string) Op { return Op{Kind: OpPut, Key: key, Value: []byte(value)} }
func del(key string) Op        { return Op{Kind: OpDelete, Key: key} }
func delPrefix(p string) Op    { return Op{Kind: OpDeletePrefix, Key: p} }
func ops(o ...Op) Txn          { return Txn{Ops: o} }

// openTestFSMConfig opens an FSM in a fresh directory with a modified
// default config.
func openTestFSMConfig(t testing.TB, mod func(*Config)) *testFSM {
	t.Helper()
	cfg := DefaultConfig(filepath.Join(t.TempDir(), "fsm.db"))
	cfg.InitialMmapSize = 0
	mod(&cfg)
	f, err := Open(cfg)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	tf := &testFSM{FSM: f, t: t, clock: time.Unix(1_700_000_000, 0).UTC()}
	t.Cleanup(func() { tf.close() })
	return tf
}

// reopen closes the FSM without a snapshot (as a crash would leave it: every
// ApplyBatch is already committed) and opens the same file again, keeping
// the test clock. The raft position restarts at the stored applied index.
func (tf *testFSM) reopen() *testFSM {
	tf.t.Helper()
	tf.close()
	nf := openTestFSMAt(tf.t, tf.cfg.Path)
	nf.clock = tf.clock
	return nf
}

// apply applies entries in one ApplyBatch call and returns the responses.
func (tf *testFSM) apply(logs ...*raft.Log) []interface{} {
	tf.t.Helper()
	return tf.ApplyBatch(logs)
}

// applyBatch applies b as one entry and returns its result.
func (tf *testFSM) applyBatch(b Batch) *BatchResult {
	tf.t.Helper()
	return tf.apply(tf.entry(Command{Batch: &b}))[0].(*BatchResult)
}

// compact applies a Compact entry at rev and returns the command's error.
func (tf *testFSM) compact(rev uint64) error {
	tf.t.Helper()
	res := tf.apply(tf.entry(Command{Compact: &Compact{Revision: rev, Time: tf.clock}}))[0]
	cr, ok := res.(*CommandResult)
	if !ok {
		tf.t.Fatalf("compact response is %T (%v)", res, res)
	}
	return cr.Err
}

// mustCompact compacts at rev and fails the test unless it is accepted.
func (tf *testFSM) mustCompact(rev uint64) {
	tf.t.Helper()
	if err := tf.compact(rev); err != nil {
		tf.t.Fatalf("compact at %d: %v", rev, err)
	}
}

// physicalCompactionDone reports whether the background compactor has
// finished (the meta key compact_cursor is absent).
func (tf *testFSM) physicalCompactionDone() bool {
	tf.t.Helper()
	done := false
	err := tf.view(func(tx *bolt.Tx) error {
		done = tx.Bucket(bucketMeta).Get(metaCompactCursor) == nil
		return nil
	})
	if err != nil {
		tf.t.Fatalf("view: %v", err)
	}
	return done
}

// waitPhysicalCompaction polls, with a deadline, until the background
// compactor has finished.
func (tf *testFSM) waitPhysicalCompaction() {
	tf.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !tf.physicalCompactionDone() {
		if time.Now().After(deadline) {
			tf.t.Fatalf("physical compaction not done after 20s")
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// count returns the number of entries in a bucket.
func (tf *testFSM) count(bucket []byte) int {
	tf.t.Helper()
	n := 0
	err := tf.view(func(tx *bolt.Tx) error {
		n = tx.Bucket(bucket).Stats().KeyN
		return nil
	})
	if err != nil {
		tf.t.Fatalf("view: %v", err)
	}
	return n
}

// status returns the FSM's status or fails the test.
func (tf *testFSM) status() Status {
	tf.t.Helper()
	s, err := tf.Status()
	if err != nil {
		tf.t.Fatalf("status: %v", err)
	}
	return s
}

// listAll lists every key under prefix at rev in one call.
func (tf *testFSM) listAll(prefix string, rev uint64) []KeyValue {
	tf.t.Helper()
	res, err := tf.List(prefix, ListOptions{Revision: rev})
	if err != nil {
		tf.t.Fatalf("list %q at %d: %v", prefix, rev, err)
	}
	if res.More {
		tf.t.Fatalf("list %q at %d: More without a limit", prefix, rev)
	}
	return res.KVs
}

// logAll returns every retained transaction record.
func (tf *testFSM) logAll() []Record {
	tf.t.Helper()
	st := tf.status()
	recs, _, err := tf.Log(st.CompactRevision, 0)
	if err != nil {
		tf.t.Fatalf("log: %v", err)
	}
	return recs
}

// stateView is a dump of everything readable: every key at every retained
// revision, the retained log and the chain head. Two FSMs with equal views
// answer every read the same.
type stateView struct {
	Head    ChainPoint
	Compact uint64
	At      map[uint64][]KeyValue
	Log     []Record
	Hashes  []ChainPoint
}

func (tf *testFSM) dump() stateView {
	tf.t.Helper()
	st := tf.status()
	v := stateView{Head: ChainPoint{Revision: st.Revision, Hash: st.Head}, Compact: st.CompactRevision,
		At: map[uint64][]KeyValue{0: tf.listAll("", 0)}, Log: tf.logAll()}
	for r := st.CompactRevision; r <= st.Revision && r > 0; r++ {
		v.At[r] = tf.listAll("", r)
	}
	for r := st.CompactRevision - 1; r <= st.Revision; r++ {
		p, err := tf.HashAt(r)
		if err != nil {
			tf.t.Fatalf("hash at %d: %v", r, err)
		}
		v.Hashes = append(v.Hashes, p)
	}
	return v
}

// testSink is a raft.SnapshotSink that keeps the stream in memory.
type testSink struct {
	bytes.Buffer
	closed, cancelled bool
}

func (s *testSink) ID() string    { return "test" }
func (s *testSink) Close() error  { s.closed = true; return nil }
func (s *testSink) Cancel() error { s.cancelled = true; return nil }

var _ raft.SnapshotSink = (*testSink)(nil)

// snapshotBytes takes a snapshot and persists it into memory.
func (tf *testFSM) snapshotBytes() []byte {
	tf.t.Helper()
	snap, err := tf.Snapshot()
	if err != nil {
		tf.t.Fatalf("snapshot: %v", err)
	}
	defer snap.Release()
	var sink testSink
	if err := snap.Persist(&sink); err != nil {
		tf.t.Fatalf("persist: %v", err)
	}
	if !sink.closed || sink.cancelled {
		tf.t.Fatalf("persist left the sink closed=%v cancelled=%v", sink.closed, sink.cancelled)
	}
	return sink.Bytes()
}

// restoreBytes restores the FSM from an in-memory snapshot stream.
func (tf *testFSM) restoreBytes(b []byte) error {
	tf.t.Helper()
	err := tf.Restore(io.NopCloser(bytes.NewReader(b)))
	if err == nil {
		idx, _, ierr := tf.AppliedIndex()
		if ierr != nil {
			tf.t.Fatal(ierr)
		}
		tf.index = idx
	}
	return err
}

// timeNs is a UTC time from unix nanoseconds.
func timeNs(ns int64) time.Time { return time.Unix(0, ns).UTC() }

// stopCompactor stops the background compactor for good (Close still
// works), so that physical compaction never happens.
func (tf *testFSM) stopCompactor() {
	tf.stopOnce.Do(func() { close(tf.stop) })
	tf.wg.Wait()
}
