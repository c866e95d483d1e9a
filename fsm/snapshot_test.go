package fsm

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// dirNames lists a directory's entries.
func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out
}

// populated returns an FSM with history, a compaction, members and
// idempotency entries.
//
// Its memory map is large enough that writers never wait for a snapshot's
// read transaction to end (bbolt remaps only when no reader is open), as
// DefaultConfig's InitialMmapSize arranges in production.
func populated(t *testing.T, logEntries int) *testFSM {
	t.Helper()
	f := openTestFSMConfig(t, func(c *Config) { c.InitialMmapSize = 16 << 20 })
	applyGrouped(f, buildLog(t, logEntries), 3)
	f.index = f.status().AppliedIndex
	f.mustCommit(Txn{Ops: []Op{put("idem", "1")}, IdempotencyKey: "req-1"})
	return f
}

func TestSnapshotRestore(t *testing.T) {
	src := populated(t, 50)
	want := src.dump()
	wantStatus := src.status()
	wantMembers, _ := src.Members()

	// The snapshot is the state as of Snapshot(), whatever is applied
	// while it is persisted.
	snap, err := src.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	var sink testSink
	persisted := make(chan error, 1)
	go func() { persisted <- snap.Persist(&sink) }() // as raft does
	later := src.mustCommit(ops(put("after-snapshot", "x")))
	if err := <-persisted; err != nil {
		t.Fatal(err)
	}
	snap.Release()
	snap.Release() // twice is harmless
	stream := bytes.Clone(sink.Bytes())

	dst := openTestFSM(t)
	dst.mustCommit(ops(put("unrelated", "state"), put("idem", "other")))
	if err := dst.restoreBytes(stream); err != nil {
		t.Fatal(err)
	}
	if got := dst.dump(); !reflect.DeepEqual(got, want) {
		t.Fatalf("restored reads differ: head %+v, want %+v", got.Head, want.Head)
	}
	if got := dst.status(); got != wantStatus {
		t.Fatalf("restored status %+v, want %+v", got, wantStatus)
	}
	if got, _ := dst.Members(); !reflect.DeepEqual(got, wantMembers) || len(got) == 0 {
		t.Fatalf("restored members %+v, want %+v", got, wantMembers)
	}
	if _, _, err := dst.Get("unrelated", 0); !errors.Is(err, ErrNotFound) {
		t.Fatalf("old state survived the restore: %v", err)
	}
	if dst.Revision() != wantStatus.Revision {
		t.Fatalf("Revision() %d after restore, want %d", dst.Revision(), wantStatus.Revision)
	}
	if rep, err := dst.Verify(context.Background()); err != nil || rep.Head != want.Head {
		t.Fatalf("verify after restore: %+v %v", rep, err)
	}
	// The idempotency table came along.
	if r := dst.commit(Txn{Ops: []Op{put("idem", "2")}, IdempotencyKey: "req-1"})[0]; !r.Replayed {
		t.Fatalf("idempotency key lost in the snapshot: %+v", r)
	}

	// Feeding the restored FSM the entry the source applied after the
	// snapshot gives the same head.
	dst2 := openTestFSM(t)
	if err := dst2.restoreBytes(stream); err != nil {
		t.Fatal(err)
	}
	dst2.clock = src.clock.Add(-1e9) // the clock the source used for "later"
	if r := dst2.mustCommit(ops(put("after-snapshot", "x"))); r.Revision != later.Revision || r.Hash != later.Hash {
		t.Fatalf("after restore: %+v, source had %+v", r, later)
	}

	// The restored state is durable.
	dst2 = dst2.reopen()
	if h, err := dst2.Head(); err != nil || h.Hash != later.Hash {
		t.Fatalf("head after reopen: %+v %v", h, err)
	}
	// And restoring in place over the same FSM works too.
	if err := src.restoreBytes(stream); err != nil {
		t.Fatal(err)
	}
	if got := src.dump(); !reflect.DeepEqual(got, want) {
		t.Fatalf("restore over the source differs")
	}
}

func TestRestoreRefusesBadStreams(t *testing.T) {
	src := populated(t, 30)
	stream := src.snapshotBytes()
	const hdr = len("CAIRNSNP") + 1 + 8

	dst := openTestFSM(t)
	dst.mustCommit(ops(put("mine", "1")))
	dst.mustCommit(ops(put("mine", "2"), put("other", "x")))
	want := dst.dump()
	wantStatus := dst.status()
	dir := filepath.Dir(dst.cfg.Path)
	files := dirNames(t, dir)

	type bad struct {
		name string
		data []byte
	}
	var cases []bad
	for _, n := range []int{0, 4, len("CAIRNSNP"), hdr - 1, hdr, hdr + 100, len(stream) / 2, len(stream) - 32, len(stream) - 1} {
		cases = append(cases, bad{"truncated to " + strconv.Itoa(n), stream[:n]})
	}
	rng := rand.New(rand.NewPCG(7, 7))
	positions := []int{0, 7, 8, 9, 16, hdr, hdr + 1, hdr + 4096, len(stream) - 33, len(stream) - 32, len(stream) - 1}
	for range 8 {
		positions = append(positions, rng.IntN(len(stream)))
	}
	for _, pos := range positions {
		for _, mask := range []byte{0x01, 0x80} {
			b := bytes.Clone(stream)
			b[pos] ^= mask
			cases = append(cases, bad{"byte " + strconv.Itoa(pos) + " flipped by " + strconv.Itoa(int(mask)), b})
		}
	}
	random := make([]byte, 8192)
	for i := range random {
		random[i] = byte(rng.Uint32())
	}
	cases = append(cases, bad{"random bytes", random})
	raw, err := os.ReadFile(src.cfg.Path)
	if err != nil {
		t.Fatal(err)
	}
	cases = append(cases, bad{"a bare bbolt file", raw})
	cases = append(cases, bad{"text", []byte(`{"not": "a snapshot"}`)})

	for _, c := range cases {
		err := dst.restoreBytes(c.data)
		if !errors.Is(err, ErrCorruptSnapshot) {
			t.Errorf("%s: %v, want ErrCorruptSnapshot", c.name, err)
			continue
		}
		if got := dst.status(); got != wantStatus {
			t.Fatalf("%s: status changed: %+v, want %+v", c.name, got, wantStatus)
		}
		if got := dirNames(t, dir); !slices.Equal(got, files) {
			t.Fatalf("%s: files left behind: %v (had %v)", c.name, got, files)
		}
	}
	if got := dst.dump(); !reflect.DeepEqual(got, want) {
		t.Fatalf("failed restores changed the reads")
	}
	if _, err := dst.Verify(context.Background()); err != nil {
		t.Fatal(err)
	}
	// Still writable, and a good stream still restores.
	dst.mustCommit(ops(put("mine", "3")))
	if err := dst.restoreBytes(stream); err != nil {
		t.Fatal(err)
	}
	if h, _ := dst.Head(); h.Hash != src.status().Head {
		t.Fatalf("restore after failures: head %s", h.Hash)
	}
}

// Reads during a restore see the old state or the new one, never an error
// or a mixture. Run with -race.
func TestRestoreWithConcurrentReads(t *testing.T) {
	a := openTestFSM(t)
	b := openTestFSM(t)
	for i := range 20 {
		a.mustCommit(ops(put("k", "A"), put("a-only", strconv.Itoa(i))))
	}
	for range 7 {
		b.mustCommit(ops(put("k", "B"), put("b-only", "x")))
	}
	snapA, snapB := a.snapshotBytes(), b.snapshotBytes()
	headA, headB := a.status().Head, b.status().Head

	target := openTestFSM(t)
	if err := target.restoreBytes(snapA); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	fail := func(err error) {
		select {
		case errs <- err:
		default:
		}
	}
	for range 3 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				kv, at, err := target.Get("k", 0)
				if err != nil {
					fail(err)
					return
				}
				if !(string(kv.Value) == "A" && at == 20) && !(string(kv.Value) == "B" && at == 7) {
					fail(errors.New("mixed read: " + string(kv.Value) + " at " + strconv.Itoa(int(at))))
					return
				}
				res, err := target.List("", ListOptions{Revision: 5})
				if err != nil || len(res.KVs) != 2 {
					fail(errors.New("list during restore failed"))
					return
				}
				h, err := target.Head()
				if err != nil || (h.Hash != headA && h.Hash != headB) {
					fail(errors.New("head during restore is neither snapshot's"))
					return
				}
				if _, err := target.HashAt(3); err != nil {
					fail(err)
					return
				}
			}
		})
	}
	for i := range 10 {
		s := snapB
		if i%2 == 1 {
			s = snapA
		}
		if err := target.restoreBytes(s); err != nil {
			t.Fatal(err)
		}
	}
	close(stop)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if h, _ := target.Head(); h.Hash != headA {
		t.Fatalf("final head %s, want %s", h.Hash, headA)
	}
}

// A snapshot persisted while entries are applied is the state as of
// Snapshot(). Run with -race.
func TestSnapshotPersistDuringApply(t *testing.T) {
	f := populated(t, 30)
	want := f.dump()
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	var sink testSink
	done := make(chan error, 1)
	go func() { done <- snap.Persist(&sink); snap.Release() }()
	for i := range 30 {
		f.mustCommit(ops(put("during", strconv.Itoa(i))))
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	dst := openTestFSM(t)
	if err := dst.restoreBytes(sink.Bytes()); err != nil {
		t.Fatal(err)
	}
	if got := dst.dump(); !reflect.DeepEqual(got, want) {
		t.Fatalf("snapshot taken before the writes holds them: head %+v, want %+v", got.Head, want.Head)
	}
}

// streamOf wraps a bbolt file into a snapshot stream with a valid
// checksum.
func streamOf(t *testing.T, db []byte) []byte {
	t.Helper()
	out := append([]byte("CAIRNSNP"), snapshotVersion)
	out = append(out, u64(uint64(len(db)))...)
	out = append(out, db...)
	sum := sha256.Sum256(db)
	return append(out, sum[:]...)
}

// boltFile builds a bbolt file with fn and returns its bytes.
func boltFile(t *testing.T, fn func(tx *bolt.Tx) error) []byte {
	t.Helper()
	path := filepath.Join(t.TempDir(), "other.db")
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(fn); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Well-formed streams holding a database this build cannot use are
// refused too.
func TestRestoreRefusesForeignDatabases(t *testing.T) {
	dst := openTestFSM(t)
	dst.mustCommit(ops(put("mine", "1")))
	want := dst.status()

	withSchema := func(schema uint64) func(tx *bolt.Tx) error {
		return func(tx *bolt.Tx) error {
			for _, b := range allBuckets {
				if _, err := tx.CreateBucket(b); err != nil {
					return err
				}
			}
			return tx.Bucket(bucketMeta).Put(metaSchema, u64(schema))
		}
	}
	good := streamOf(t, boltFile(t, withSchema(schemaVersion)))
	cases := []struct {
		name    string
		stream  []byte
		unknown bool // also ErrUnknownVersion
	}{
		{"newer schema", streamOf(t, boltFile(t, withSchema(schemaVersion+1))), true},
		{"no buckets", streamOf(t, boltFile(t, func(*bolt.Tx) error { return nil })), false},
		{"not a bbolt file", streamOf(t, bytes.Repeat([]byte("x"), 8192)), false},
		{"newer snapshot format", append(append([]byte("CAIRNSNP"), snapshotVersion+1), good[9:]...), true},
	}
	for _, c := range cases {
		err := dst.restoreBytes(c.stream)
		if !errors.Is(err, ErrCorruptSnapshot) || c.unknown != errors.Is(err, ErrUnknownVersion) {
			t.Errorf("%s: %v", c.name, err)
		}
		if got := dst.status(); got != want {
			t.Fatalf("%s: state changed", c.name)
		}
	}
	// The same construction with the right schema is accepted: the cases
	// above fail for the reason they name.
	if err := dst.restoreBytes(good); err != nil {
		t.Fatalf("empty database of the right schema: %v", err)
	}
	if st := dst.status(); st.Revision != 0 {
		t.Fatalf("after restoring an empty database: %+v", st)
	}
}

// A Restore while an earlier snapshot is still open (raft holds one while
// its snapshot goroutine waits for the main loop, which waits for the
// Restore) must not wait for that snapshot's Release: it aborts it, and the
// snapshot's Persist then fails instead of copying a closed database.
func TestRestoreAbortsOpenSnapshots(t *testing.T) {
	src := populated(t, 20)
	stream := src.snapshotBytes()

	dst := populated(t, 5)
	open, err := dst.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	restored := make(chan error, 1)
	go func() { restored <- dst.restoreBytes(stream) }()
	select {
	case err := <-restored:
		if err != nil {
			t.Fatalf("restore: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("restore waited for an open snapshot")
	}
	if got, want := dst.status(), src.status(); got.Head != want.Head {
		t.Fatalf("restored head %s, want %s", got.Head, want.Head)
	}
	var sink testSink
	if err := open.Persist(&sink); !errors.Is(err, ErrSnapshotAborted) {
		t.Fatalf("persist of the aborted snapshot: %v, want ErrSnapshotAborted", err)
	}
	if !sink.cancelled {
		t.Fatal("aborted persist did not cancel its sink")
	}
	open.Release() // harmless after the abort
}

// A crash during Restore leaves its temporary file; the next Open removes
// it.
func TestOpenRemovesUnfinishedRestore(t *testing.T) {
	dir := t.TempDir()
	stale := filepath.Join(dir, ".restore-123")
	if err := os.WriteFile(stale, []byte("half a database"), 0o600); err != nil {
		t.Fatal(err)
	}
	openTestFSMAt(t, filepath.Join(dir, "fsm.db"))
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Fatalf("unfinished restore left in place: %v", err)
	}
}
