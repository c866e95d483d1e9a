package fsm

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	bolt "go.etcd.io/bbolt"

	"github.com/cairn-db/cairn/internal/testutil"
)

// flipBytes flips one byte in every occurrence of pattern in the closed
// file at path and returns how many it found.
func flipBytes(t *testing.T, path string, pattern []byte) int {
	t.Helper()
	n := testutil.FlipBytes(t, path, pattern, 0x20)
	if n == 0 {
		t.Fatalf("pattern %q not found in %s", pattern, path)
	}
	return n
}

// TestFlippedValueByteIsNeverServed is the first scenario: one
// byte of a key's current value flipped in a stopped member's file.
func TestFlippedValueByteIsNeverServed(t *testing.T) {
	f := openTestFSM(t)
	const secret = "value-of-victim-0123456789abcdef"
	f.mustCommit(ops(put("victim", secret), put("other", "fine")))
	f.mustCommit(ops(put("other2", "fine too")))
	path := f.cfg.Path
	f.close()
	flipBytes(t, path, []byte(secret))

	var calls atomic.Int32
	var got atomic.Pointer[error]
	open := func() *testFSM {
		return openTestFSMConfigAt(t, path, func(c *Config) {
			c.OnCorrupt = func(err error) { calls.Add(1); got.Store(&err) }
		})
	}
	g := open()
	if g.Corrupt() != nil {
		t.Fatalf("corrupt before any read: %v", g.Corrupt())
	}
	_, _, err := g.Get("victim", 0)
	var ce *CorruptError
	if !errors.Is(err, ErrCorrupt) || !errors.As(err, &ce) {
		t.Fatalf("Get of the flipped value: %v, want a *CorruptError", err)
	}
	if ce.Key != "victim" || ce.Revision != 1 || ce.File != path || !strings.Contains(ce.Reason, "checksum") {
		t.Fatalf("corrupt error names %+v", ce)
	}
	if !strings.Contains(err.Error(), "cairn node repair") {
		t.Fatalf("error does not name the repair: %v", err)
	}
	if g.Corrupt() == nil || calls.Load() != 1 || !errors.Is(*got.Load(), ErrCorrupt) {
		t.Fatalf("Corrupt() = %v, OnCorrupt calls %d", g.Corrupt(), calls.Load())
	}
	// Every read is refused now, including other keys'.
	if _, _, err := g.Get("other", 0); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Get of another key: %v", err)
	}
	if _, err := g.List("", ListOptions{}); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("List: %v", err)
	}
	if _, _, err := g.History("other", HistoryOptions{}); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("History: %v", err)
	}
	if _, _, err := g.Log(1, 0); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Log: %v", err)
	}
	if _, err := g.StateHash(context.Background(), 0); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("StateHash: %v", err)
	}
	if _, err := g.Verify(context.Background()); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Verify: %v", err)
	}
	if _, err := g.Snapshot(); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Snapshot: %v", err)
	}
	if _, err := g.WriteFullBackup(&bytes.Buffer{}, g.clock); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("WriteFullBackup: %v", err)
	}
	// What raft and the node need keeps working.
	if _, err := g.Status(); err != nil {
		t.Fatalf("Status: %v", err)
	}
	if _, _, err := g.AppliedIndex(); err != nil {
		t.Fatalf("AppliedIndex: %v", err)
	}
	if _, err := g.Members(); err != nil {
		t.Fatalf("Members: %v", err)
	}
	if _, err := g.Usage(); err != nil {
		t.Fatalf("Usage: %v", err)
	}
	// Apply goes on, even through the corrupt entry, without a panic.
	r := g.commit(ops(put("victim", "overwritten")), ops(put("new", "1")))
	if r[0].Err != nil || r[1].Err != nil {
		t.Fatalf("apply on a corrupt FSM: %v %v", r[0].Err, r[1].Err)
	}
	if g.Revision() != 4 || calls.Load() != 1 {
		t.Fatalf("revision %d, OnCorrupt calls %d", g.Revision(), calls.Load())
	}
	if _, err := os.Stat(path + corruptSuffix); err != nil {
		t.Fatalf("marker: %v", err)
	}

	// The marker survives a restart: corrupt before any read.
	g.close()
	h := open()
	if c := h.Corrupt(); !errors.As(c, &ce) || ce.Key != "victim" {
		t.Fatalf("after reopen Corrupt() = %v", c)
	}
	if _, _, err := h.Get("other", 0); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Get after reopen: %v", err)
	}
	if calls.Load() != 1 {
		t.Fatalf("OnCorrupt called again at open: %d", calls.Load())
	}
	h.close()

	// A repaired member (a fresh store in the same place) is not corrupt.
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	fresh := open()
	if fresh.Corrupt() != nil {
		t.Fatalf("fresh store is corrupt: %v", fresh.Corrupt())
	}
	if _, err := os.Stat(path + corruptSuffix); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("stale marker kept: %v", err)
	}
}

// openTestFSMConfigAt opens path with a modified default config.
func openTestFSMConfigAt(t testing.TB, path string, mod func(*Config)) *testFSM {
	t.Helper()
	cfg := DefaultConfig(path)
	cfg.InitialMmapSize = 0
	mod(&cfg)
	f, err := Open(cfg)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	tf := &testFSM{FSM: f, t: t, clock: timeNs(1_700_000_000_000_000_000)}
	idx, _, err := f.AppliedIndex()
	if err != nil {
		t.Fatal(err)
	}
	tf.index = idx
	t.Cleanup(func() { tf.close() })
	return tf
}

// TestCorruptChecks covers what decodeVersion refuses: a flipped flag, a
// missing checksum bit, a truncated entry, an entry moved to another key.
func TestCorruptChecks(t *testing.T) {
	k := versionKey("a", 7)
	good := encodeVersion(k, false, 3, []byte("hello"))
	if tomb, cr, v, err := decodeVersion(k, good); err != nil || tomb || cr != 3 || string(v) != "hello" {
		t.Fatalf("good entry: %v %v %d %q", err, tomb, cr, v)
	}
	mut := func(fn func(b []byte) []byte) []byte { return fn(bytes.Clone(good)) }
	cases := map[string]struct{ k, v []byte }{
		"value byte":     {k, mut(func(b []byte) []byte { b[len(b)-1] ^= 1; return b })},
		"tombstone flag": {k, mut(func(b []byte) []byte { b[0] |= verTombstone; return b })},
		"no crc bit":     {k, mut(func(b []byte) []byte { b[0] &^= verChecksummed; return b })},
		"unknown flag":   {k, mut(func(b []byte) []byte { b[0] |= 0x80; return b })},
		"create rev":     {k, mut(func(b []byte) []byte { b[12] ^= 1; return b })},
		"crc":            {k, mut(func(b []byte) []byte { b[1] ^= 1; return b })},
		"truncated":      {k, good[:versionHeader-1]},
		"other key":      {versionKey("b", 7), good},
		"other revision": {versionKey("a", 8), good},
	}
	for name, c := range cases {
		_, _, _, err := decodeVersion(c.k, c.v)
		var ce *CorruptError
		if !errors.As(err, &ce) || !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: %v, want a *CorruptError", name, err)
		}
	}
}

// TestCorruptPanicInRead: a bbolt panic inside a read transaction is
// recovered into a *CorruptError and marks the FSM corrupt.
func TestCorruptPanicInRead(t *testing.T) {
	f := openTestFSM(t)
	f.mustCommit(ops(put("a", "1")))
	err := f.view(func(tx *bolt.Tx) error { panic("page 7: has unexpected type/flags: 0x99") })
	if !errors.Is(err, ErrCorrupt) || f.Corrupt() == nil {
		t.Fatalf("panic in a read: %v, Corrupt %v", err, f.Corrupt())
	}
	if !strings.Contains(f.Corrupt().Error(), "unexpected type") {
		t.Fatalf("reason lost: %v", f.Corrupt())
	}
}

// TestMarkCorrupt: the scrubber's way in; the first reason is kept.
func TestMarkCorrupt(t *testing.T) {
	var calls atomic.Int32
	f := openTestFSMConfig(t, func(c *Config) { c.OnCorrupt = func(error) { calls.Add(1) } })
	f.mustCommit(ops(put("a", "1")))
	if err := f.MarkCorrupt("state hash differs from the majority's at revision 1"); err != nil {
		t.Fatal(err)
	}
	if err := f.MarkCorrupt("second"); err != nil {
		t.Fatal(err)
	}
	if calls.Load() != 1 || !strings.Contains(f.Corrupt().Error(), "majority") {
		t.Fatalf("calls %d, Corrupt %v", calls.Load(), f.Corrupt())
	}
	if _, _, err := f.Get("a", 0); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Get: %v", err)
	}
	g := f.reopen()
	if g.Corrupt() == nil || !strings.Contains(g.Corrupt().Error(), "majority") {
		t.Fatalf("after reopen: %v", g.Corrupt())
	}
	// A snapshot from a healthy member replaces the state and clears it.
	healthy := openTestFSM(t)
	healthy.mustCommit(ops(put("a", "1")))
	if err := g.restoreBytes(healthy.snapshotBytes()); err != nil {
		t.Fatal(err)
	}
	if g.Corrupt() != nil {
		t.Fatalf("corrupt after a restore: %v", g.Corrupt())
	}
	if kv, _, err := g.Get("a", 0); err != nil || string(kv.Value) != "1" {
		t.Fatalf("Get after restore: %v %v", kv, err)
	}
	if _, err := os.Stat(g.cfg.Path + corruptSuffix); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("marker after restore: %v", err)
	}
}

// TestRestoreRefusesCorruptSnapshot: a snapshot whose versions entry fails
// its checksum is not installed.
func TestRestoreRefusesCorruptSnapshot(t *testing.T) {
	src := openTestFSM(t)
	const secret = "snapshot-secret-value-0123456789"
	src.mustCommit(ops(put("k", secret)))
	path := src.cfg.Path
	src.close()
	flipBytes(t, path, []byte(secret))
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	dst := openTestFSM(t)
	dst.mustCommit(ops(put("mine", "1")))
	if err := dst.restoreBytes(streamOf(t, b)); !errors.Is(err, ErrCorruptSnapshot) || !errors.Is(err, ErrCorrupt) {
		t.Fatalf("restore of a corrupt snapshot: %v", err)
	}
	if kv, _, err := dst.Get("mine", 0); err != nil || string(kv.Value) != "1" {
		t.Fatalf("state changed: %v %v", kv, err)
	}
}

// TestOpenDamagedStore is the "corrupted bbolt page" scenario:
// Open answers ErrDamaged naming the file and the repair, never panics.
func TestOpenDamagedStore(t *testing.T) {
	build := func(t *testing.T) string {
		f := openTestFSM(t)
		for i := 0; i < 300; i++ {
			f.mustCommit(ops(put(fmt.Sprintf("key/%04d", i), strings.Repeat("v", 200))))
		}
		path := f.cfg.Path
		f.close()
		return path
	}
	garbage := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(i*131 + 7)
		}
		return b
	}
	for _, tc := range []struct {
		name      string
		from, to  int64 // byte range overwritten; to 0: the end
		pageFlags bool  // instead: page from's header gets bad flags
	}{
		{"data pages", 2 * 4096, 0, false},
		{"both meta pages", 0, 2 * 4096, false},
		{"one branch of pages", 4 * 4096, 8 * 4096, false},
		{"page flags 3", 3 * 4096, 3*4096 + 16, true},
		{"page flags 4", 4 * 4096, 4*4096 + 16, true},
		{"page flags 6", 6 * 4096, 6*4096 + 16, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := build(t)
			fh, err := os.OpenFile(path, os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			fi, _ := fh.Stat()
			to := tc.to
			if to == 0 {
				to = fi.Size()
			}
			data := garbage(int(to - tc.from))
			if tc.pageFlags {
				// A page header that names itself but has no valid type:
				// "page N: has unexpected type/flags".
				data = make([]byte, 16)
				binary.LittleEndian.PutUint64(data, uint64(tc.from/4096))
				binary.LittleEndian.PutUint16(data[8:], 0x55)
			}
			if _, err := fh.WriteAt(data, tc.from); err != nil {
				t.Fatal(err)
			}
			fh.Close()
			cfg := DefaultConfig(path)
			cfg.InitialMmapSize = 0
			g, err := Open(cfg)
			if err == nil {
				// bbolt did not notice at open (the damaged pages were not
				// read): the first reads must.
				defer g.Close(context.Background())
				_, verr := g.Verify(context.Background())
				if !errors.Is(verr, ErrCorrupt) && !errors.Is(verr, ErrChainMismatch) {
					t.Fatalf("open of a damaged store succeeded and Verify says %v", verr)
				}
				return
			}
			t.Logf("open: %v", err)
			if !errors.Is(err, ErrDamaged) || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "cairn node repair") {
				t.Fatalf("open: %v, want ErrDamaged naming %s and the repair", err, path)
			}
		})
	}
}

// TestStateHash checks the state hash's contract.
func TestStateHash(t *testing.T) {
	ctx := context.Background()
	a, b := openTestFSM(t), openTestFSM(t)
	for _, f := range []*testFSM{a, b} {
		f.mustCommit(ops(put("x", "1"), put("y", "2"), put("dir/1", "a")))
		f.mustCommit(ops(put("x", "10"), del("y")))
		f.mustCommit(ops(delPrefix("dir/"), put("z", "3")))
		f.mustCommit(ops(put("y", "again")))
	}
	ha, err := a.StateHash(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	hb, err := b.StateHash(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	if ha != hb || ha.Revision != 4 || ha.Keys != 3 {
		t.Fatalf("same transactions, hashes %+v and %+v", ha, hb)
	}

	// The documented encoding, computed here independently.
	h := sha256.New()
	h.Write([]byte("cairn/state-hash/v1\x00"))
	for _, kv := range []struct {
		k       string
		cr, mod uint64
		v       string
	}{{"x", 1, 2, "10"}, {"y", 4, 4, "again"}, {"z", 3, 3, "3"}} {
		var buf []byte
		buf = binary.BigEndian.AppendUint64(buf, uint64(len(kv.k)))
		buf = append(buf, kv.k...)
		buf = binary.BigEndian.AppendUint64(buf, kv.cr)
		buf = binary.BigEndian.AppendUint64(buf, kv.mod)
		buf = binary.BigEndian.AppendUint64(buf, uint64(len(kv.v)))
		buf = append(buf, kv.v...)
		h.Write(buf)
	}
	if want := h.Sum(nil); !bytes.Equal(ha.Hash[:], want) {
		t.Fatalf("state hash %s, documented encoding gives %x", ha.Hash, want)
	}

	// At an older revision, both the scan and the fast path agree with a
	// store that stopped there.
	c := openTestFSM(t)
	c.mustCommit(ops(put("x", "1"), put("y", "2"), put("dir/1", "a")))
	c.mustCommit(ops(put("x", "10"), del("y")))
	hc, _ := c.StateHash(ctx, 0)
	ha2, err := a.StateHash(ctx, 2)
	if err != nil || ha2 != hc {
		t.Fatalf("hash at 2: %+v (%v), a store at 2: %+v", ha2, err, hc)
	}
	// Later writes do not change the hash at an earlier revision.
	a.mustCommit(ops(put("later", "1")))
	if again, err := a.StateHash(ctx, 2); err != nil || again != ha2 {
		t.Fatalf("hash at 2 after a write: %+v %v", again, err)
	}
	a.clearStateCache()
	if again, err := a.StateHash(ctx, 2); err != nil || again != ha2 {
		t.Fatalf("hash at 2 recomputed: %+v %v", again, err)
	}
	// One differing value gives a different hash.
	b.mustCommit(ops(put("later", "2")))
	la, _ := a.StateHash(ctx, 0)
	lb, _ := b.StateHash(ctx, 0)
	if la.Hash == lb.Hash || la.Keys != lb.Keys {
		t.Fatalf("different values, same hash %+v %+v", la, lb)
	}
	// Compacted differently: the same at a revision both retain.
	b.mustCompact(4)
	b.waitPhysicalCompaction()
	a.mustCompact(2)
	a.waitPhysicalCompaction()
	for _, r := range []uint64{4} {
		x, err1 := a.StateHash(ctx, r)
		a.clearStateCache()
		y, err2 := b.StateHash(ctx, r)
		if err1 != nil || err2 != nil || x != y {
			t.Fatalf("at %d: %+v %v / %+v %v", r, x, err1, y, err2)
		}
	}
	if _, err := b.StateHash(ctx, 3); !errors.Is(err, ErrCompacted) {
		t.Fatalf("below the compaction point: %v", err)
	}
	if _, err := b.StateHash(ctx, 99); !errors.Is(err, ErrFutureRevision) {
		t.Fatalf("future: %v", err)
	}
	// An empty store has a hash too.
	e := openTestFSM(t)
	if d, err := e.StateHash(ctx, 0); err != nil || d.Keys != 0 {
		t.Fatalf("empty: %+v %v", d, err)
	}
}

// TestVerifyChecksAllVersions: deep verify reads every versions entry and
// computes the state hash at the head.
func TestVerifyChecksAllVersions(t *testing.T) {
	f := openTestFSM(t)
	for i := 0; i < 50; i++ {
		f.mustCommit(ops(put(fmt.Sprintf("k%02d", i%10), fmt.Sprint(i))))
	}
	f.mustCommit(ops(del("k03")))
	rep, err := f.Verify(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want, _ := f.StateHash(context.Background(), 0)
	if rep.State != want || rep.Versions != uint64(f.count(bucketVersions)) || rep.Versions != 51 {
		t.Fatalf("verify: %+v, state hash %+v, %d entries", rep, want, f.count(bucketVersions))
	}

	// An old version (not the current one) flipped: reads at the head do
	// not see it, Verify does, and the chain still checks out.
	g := openTestFSM(t)
	g.mustCommit(ops(put("k", "old value")))
	g.mustCommit(ops(put("k", "new")))
	g.tamper(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketVersions)
		v := bytes.Clone(b.Get(versionKey("k", 1)))
		v[len(v)-1] ^= 1
		return b.Put(versionKey("k", 1), v)
	})
	if kv, _, err := g.Get("k", 0); err != nil || string(kv.Value) != "new" {
		t.Fatalf("current value: %v %v", kv, err)
	}
	_, err = g.Verify(context.Background())
	var ce *CorruptError
	if !errors.As(err, &ce) || errors.Is(err, ErrChainMismatch) || ce.Key != "k" || ce.Revision != 1 {
		t.Fatalf("verify: %v", err)
	}
	if g.Corrupt() == nil {
		t.Fatal("not marked corrupt")
	}

	// A flipped record byte is a chain mismatch, and corruption too.
	h := openTestFSM(t)
	const rec = "a-record-value-0123456789abcdef"
	h.mustCommit(ops(put("r", rec)))
	h.mustCommit(ops(put("r", "x")))
	path := h.cfg.Path
	h.close()
	flipBytes(t, path, []byte(rec))
	i := openTestFSMAt(t, path)
	if _, err := i.Verify(context.Background()); !errors.Is(err, ErrCorrupt) || !errors.Is(err, ErrChainMismatch) {
		t.Fatalf("verify: %v", err)
	}
	if i.Corrupt() == nil {
		t.Fatal("not marked corrupt")
	}
}

// TestUncleanStart: the open marker tells a crash from a clean Close.
func TestUncleanStart(t *testing.T) {
	f := openTestFSM(t)
	if f.UncleanStart() {
		t.Fatal("a new store started unclean")
	}
	f.mustCommit(ops(put("a", "1")))
	// Copy the files as a crash leaves them (the FSM still open).
	crashed := filepath.Join(t.TempDir(), "fsm.db")
	for _, suffix := range []string{"", openSuffix} {
		b, err := os.ReadFile(f.cfg.Path + suffix)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(crashed+suffix, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	g := f.reopen()
	if g.UncleanStart() {
		t.Fatal("unclean after a clean Close")
	}
	h := openTestFSMAt(t, crashed)
	if !h.UncleanStart() {
		t.Fatal("clean after a crash")
	}
	if kv, _, err := h.Get("a", 0); err != nil || string(kv.Value) != "1" {
		t.Fatalf("data after the crash: %v %v", kv, err)
	}
	if h.reopen().UncleanStart() {
		t.Fatal("still unclean after a clean Close")
	}
}

// TestDefragShrinksAndKeepsData: fill, delete, compact; Defrag gives the
// free pages back and changes no answer.
func TestDefragShrinksAndKeepsData(t *testing.T) {
	ctx := context.Background()
	f := openTestFSM(t)
	big := strings.Repeat("x", 2000)
	for i := 0; i < 100; i++ {
		txn := Txn{}
		for j := 0; j < 20; j++ {
			txn.Ops = append(txn.Ops, put(fmt.Sprintf("fill/%03d/%02d", i, j), big))
		}
		f.mustCommit(txn)
	}
	f.mustCommit(ops(put("keep", "me")))
	f.mustCommit(ops(delPrefix("fill/")))
	f.mustCompact(f.Revision())
	f.waitPhysicalCompaction()
	f.mustCommit(ops(put("after", "compaction")))
	want := f.dump()
	wantHash, err := f.StateHash(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	u1, err := f.Usage()
	if err != nil {
		t.Fatal(err)
	}
	if u1.InUseBytes >= u1.FileBytes/2 {
		t.Fatalf("usage before defrag %+v: expected mostly free pages", u1)
	}
	before, after, err := f.Defrag(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if before != u1.FileBytes || after >= before/2 {
		t.Fatalf("defrag %d -> %d (usage %+v)", before, after, u1)
	}
	u2, _ := f.Usage()
	if u2.FileBytes != after || u2.InUseBytes > u2.FileBytes {
		t.Fatalf("usage after defrag %+v, after %d", u2, after)
	}
	f.clearStateCache()
	if got := f.dump(); !reflect.DeepEqual(got, want) {
		t.Fatalf("reads changed:\n got %+v\nwant %+v", got, want)
	}
	if h, err := f.StateHash(ctx, 0); err != nil || h != wantHash {
		t.Fatalf("state hash changed: %+v %v", h, err)
	}
	if _, err := f.Verify(ctx); err != nil {
		t.Fatal(err)
	}
	// Writes go on, and survive a reopen.
	f.mustCommit(ops(put("post", "defrag")))
	g := f.reopen()
	if kv, _, err := g.Get("post", 0); err != nil || string(kv.Value) != "defrag" {
		t.Fatalf("after reopen: %v %v", kv, err)
	}
	if _, err := os.Stat(g.cfg.Path + ".defrag"); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("temporary file left: %v", err)
	}
}

// TestLogNeverServesDamagedRecords: Log and RawLog recompute each record's
// chain hash as they read; a damaged record is corruption, not an answer.
func TestLogNeverServesDamagedRecords(t *testing.T) {
	f := openTestFSM(t)
	for i := 0; i < 10; i++ {
		f.mustCommit(ops(put("k", fmt.Sprint(i))))
	}
	f.mustCompact(3)
	f.waitPhysicalCompaction()
	for _, from := range []uint64{3, 4, 7} {
		if recs, _, err := f.Log(from, 0); err != nil || len(recs) != int(11-from) {
			t.Fatalf("log from %d: %d records, %v", from, len(recs), err)
		}
	}
	f.tamper(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketTxns)
		v := bytes.Clone(b.Get(u64(8)))
		v[len(v)-1] ^= 1
		return b.Put(u64(8), v)
	})
	// Records before the damaged one are still served.
	if recs, _, err := f.Log(3, 5); err != nil || len(recs) != 5 {
		t.Fatalf("log before the damage: %d %v", len(recs), err)
	}
	_, _, err := f.RawLog(5, 0)
	var ce *CorruptError
	if !errors.As(err, &ce) || !errors.Is(err, ErrChainMismatch) || ce.Revision != 8 {
		t.Fatalf("raw log over a damaged record: %v", err)
	}
	if f.Corrupt() == nil {
		t.Fatal("not marked corrupt")
	}
}

// TestStateHashMatchesListing checks the state hash, with its seeks over
// long histories, against a hash of what List answers at every retained
// revision, on keys with short and long histories, tombstones and
// re-creations, before and after compaction.
func TestStateHashMatchesListing(t *testing.T) {
	ctx := context.Background()
	f := openTestFSM(t)
	for i := 0; i < 120; i++ {
		txn := ops(put(fmt.Sprintf("hot/%d", i%3), fmt.Sprint(i)))
		switch {
		case i%17 == 0:
			txn = ops(del(fmt.Sprintf("hot/%d", i%3)), put(fmt.Sprintf("cold/%d", i), "c"))
		case i%29 == 0:
			txn = ops(delPrefix("cold/"))
		case i%5 == 0:
			txn.Ops = append(txn.Ops, put(fmt.Sprintf("warm/%d", i%11), fmt.Sprint(i)))
		}
		f.mustCommit(txn)
	}
	check := func() {
		t.Helper()
		st := f.status()
		for r := st.CompactRevision; r <= st.Revision; r++ {
			ref := newStateHasher()
			for _, kv := range f.listAll("", r) {
				ref.add(kv.Key, kv.CreateRevision, kv.ModRevision, kv.Value)
			}
			want := ref.digest(r)
			f.clearStateCache()
			got, err := f.StateHash(ctx, r)
			if err != nil || got != want {
				t.Fatalf("at %d: state hash %+v (%v), listing gives %+v", r, got, err, want)
			}
		}
	}
	check()
	f.mustCompact(60)
	f.waitPhysicalCompaction()
	check()
}

// TestOpenDamagedTree: pages whose headers look right but whose tree is
// wrong (a cycle, a child outside the file, an element or overflow past
// the page) are ErrDamaged at Open; bbolt itself would loop, recurse or
// fault on them.
func TestOpenDamagedTree(t *testing.T) {
	const ps = 4096
	build := func(t *testing.T) (string, []byte) {
		f := openTestFSM(t)
		for i := 0; i < 400; i++ {
			f.mustCommit(ops(put(fmt.Sprintf("key/%04d", i), strings.Repeat("v", 300))))
		}
		path := f.cfg.Path
		f.close()
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		return path, b
	}
	// firstPage returns the offset of the first page with the given flags.
	firstPage := func(t *testing.T, b []byte, flags uint16) int {
		for off := 2 * ps; off+ps <= len(b); off += ps {
			if binary.LittleEndian.Uint64(b[off:]) == uint64(off/ps) && binary.LittleEndian.Uint16(b[off+8:]) == flags {
				return off
			}
		}
		t.Fatalf("no page with flags %#x", flags)
		return 0
	}
	for name, mutate := range map[string]func(t *testing.T, b []byte){
		"branch child is itself": func(t *testing.T, b []byte) {
			off := firstPage(t, b, branchPageFlag)
			binary.LittleEndian.PutUint64(b[off+16+8:], uint64(off/ps))
		},
		"branch child outside the file": func(t *testing.T, b []byte) {
			off := firstPage(t, b, branchPageFlag)
			binary.LittleEndian.PutUint64(b[off+16+8:], 1<<40)
		},
		"two branch children share a page": func(t *testing.T, b []byte) {
			off := firstPage(t, b, branchPageFlag)
			copy(b[off+16+16+8:off+16+16+16], b[off+16+8:off+16+16])
		},
		"leaf element past the page": func(t *testing.T, b []byte) {
			off := firstPage(t, b, leafPageFlag)
			binary.LittleEndian.PutUint32(b[off+16+12:], 1<<30)
		},
		"overflow past the file": func(t *testing.T, b []byte) {
			off := firstPage(t, b, leafPageFlag)
			binary.LittleEndian.PutUint32(b[off+12:], 1<<24)
		},
	} {
		t.Run(name, func(t *testing.T) {
			path, b := build(t)
			mutate(t, b)
			if err := os.WriteFile(path, b, 0o600); err != nil {
				t.Fatal(err)
			}
			cfg := DefaultConfig(path)
			cfg.InitialMmapSize = 0
			_, err := Open(cfg)
			if !errors.Is(err, ErrDamaged) || !strings.Contains(err.Error(), "cairn node repair") {
				t.Fatalf("open: %v", err)
			}
			t.Logf("open: %v", err)
		})
	}
}

// TestApplyFindsCorruption: apply's own reads check entries too; it
// records the corruption (OnCorrupt, Corrupt) and goes on without a panic.
func TestApplyFindsCorruption(t *testing.T) {
	f := openTestFSM(t)
	const secret = "apply-reads-this-value-0123456789"
	f.mustCommit(ops(put("k", secret), put("other", "x")))
	path := f.cfg.Path
	f.close()
	flipBytes(t, path, []byte(secret))
	var calls atomic.Int32
	g := openTestFSMConfigAt(t, path, func(c *Config) { c.OnCorrupt = func(error) { calls.Add(1) } })
	// The precondition and the put read k's newest entry.
	r := g.commit(Txn{Preconditions: []Precondition{{Kind: CondExists, Key: "k"}}, Ops: []Op{put("k", "new")}})
	if r[0].Err != nil || r[0].Revision != 2 {
		t.Fatalf("apply over a corrupt entry: %+v", r[0])
	}
	if calls.Load() != 1 || g.Corrupt() == nil {
		t.Fatalf("OnCorrupt calls %d, Corrupt %v", calls.Load(), g.Corrupt())
	}
	if _, _, err := g.Get("other", 0); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("read after apply found corruption: %v", err)
	}
}

// TestApplyRecoversBboltPanic: a bbolt panic inside an apply transaction
// (here raised where the commit would happen) marks the FSM corrupt and
// leaves the chunk unapplied, answering the error; no panic escapes.
func TestApplyRecoversBboltPanic(t *testing.T) {
	f := openTestFSM(t)
	f.mustCommit(ops(put("a", "1")))
	idx, _, _ := f.AppliedIndex()
	commitHook = func() error { panic("page 9: has unexpected type/flags: 0x55") }
	defer func() { commitHook = nil }()
	l1 := f.entry(Command{Batch: &Batch{Time: f.clock.Add(time.Second), Limits: DefaultLimits(), Txns: []Txn{ops(put("b", "2"))}}})
	l2 := f.entry(Command{SetClusterID: &SetClusterID{ID: "c"}})
	res := f.ApplyBatch([]*raft.Log{l1, l2})
	if br, ok := res[0].(*BatchResult); !ok || !errors.Is(br.Err, ErrCorrupt) {
		t.Fatalf("batch result %#v", res[0])
	}
	if cr, ok := res[1].(*CommandResult); !ok || !errors.Is(cr.Err, ErrCorrupt) {
		t.Fatalf("command result %#v", res[1])
	}
	if after, _, _ := f.AppliedIndex(); after != idx || f.Revision() != 1 {
		t.Fatalf("applied index %d (was %d), revision %d", after, idx, f.Revision())
	}
	if f.Corrupt() == nil || !strings.Contains(f.Corrupt().Error(), "unexpected type") {
		t.Fatalf("Corrupt %v", f.Corrupt())
	}
}

// TestOpenLockedIsNotDamage: a store another FSM holds open is a timeout,
// not ErrDamaged (the page walk waits for the lock like bbolt does).
func TestOpenLockedIsNotDamage(t *testing.T) {
	f := openTestFSM(t)
	f.mustCommit(ops(put("a", "1")))
	cfg := DefaultConfig(f.cfg.Path)
	cfg.InitialMmapSize = 0
	cfg.OpenTimeout = 50 * time.Millisecond
	_, err := Open(cfg)
	if err == nil || errors.Is(err, ErrDamaged) || !strings.Contains(err.Error(), "timeout") {
		t.Fatalf("open of a locked store: %v", err)
	}
}

// TestDefragAbortsSnapshotsAndHonoursContext: an open snapshot is aborted
// (its Persist fails with ErrSnapshotAborted), a cancelled context
// defrags nothing, and a corrupt FSM refuses.
func TestDefragAbortsSnapshotsAndHonoursContext(t *testing.T) {
	f := openTestFSM(t)
	f.mustCommit(ops(put("a", "1")))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, _, err := f.Defrag(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("defrag with a cancelled context: %v", err)
	}
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := f.Defrag(context.Background()); err != nil {
		t.Fatal(err)
	}
	sink := &testSink{}
	if err := snap.Persist(sink); !errors.Is(err, ErrSnapshotAborted) || !sink.cancelled {
		t.Fatalf("persist after defrag: %v (cancelled %v)", err, sink.cancelled)
	}
	snap.Release()
	if kv, _, err := f.Get("a", 0); err != nil || string(kv.Value) != "1" {
		t.Fatalf("after defrag: %v %v", kv, err)
	}
	if err := f.MarkCorrupt("test"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := f.Defrag(context.Background()); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("defrag of a corrupt FSM: %v", err)
	}
}
