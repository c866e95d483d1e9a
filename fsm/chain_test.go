package fsm

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	bolt "go.etcd.io/bbolt"
)

// randomLog returns n raft entries of random transactions (with
// preconditions, so some conflict), compactions and idempotency keys, as a
// leader would propose them.
func randomLog(t testing.TB, rng *rand.Rand, n int) []*raft.Log {
	t.Helper()
	m := newModel()
	clock := int64(1_750_000_000) * 1e9
	var logs []*raft.Log
	for i := range n {
		var c Command
		if i > 10 && m.rev >= m.compact && rng.IntN(15) == 0 {
			c.Compact = &Compact{Revision: m.compact + uint64(rng.IntN(int(m.rev-m.compact)+1))}
			m.compactAt(c.Compact.Revision)
		} else {
			clock += int64(rng.IntN(2000)) * 1e6
			b := &Batch{Time: timeNs(clock), Limits: DefaultLimits()}
			for range 1 + rng.IntN(3) {
				txn := genTxn(rng, m)
				if rng.IntN(3) == 0 {
					txn.IdempotencyKey = fmt.Sprintf("req-%d", rng.IntN(20))
					txn.Meta = map[string]string{"client": "c", "attempt": fmt.Sprint(rng.IntN(3))}
				}
				b.Txns = append(b.Txns, txn)
				m.txn(&txn, clock) // keeps generated preconditions plausible
			}
			c.Batch = b
		}
		data, err := EncodeCommand(c)
		if err != nil {
			t.Fatal(err)
		}
		logs = append(logs, &raft.Log{Index: uint64(i + 1), Term: 1, Type: raft.LogCommand, Data: data})
	}
	return logs
}

func TestTwoFSMsSameLogSameChain(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	rng := rand.New(rand.NewPCG(seed, 1))
	t.Logf("seed %d", seed)
	logs := randomLog(t, rng, 150)

	f1 := openTestFSMConfig(t, func(c *Config) { c.CompactChunk = 2 })
	f2 := openTestFSM(t)
	r1 := applyGrouped(f1, logs, 1)
	r2 := applyGrouped(f2, logs, 7, 3, 50)
	for i := range r1 {
		if !reflect.DeepEqual(r1[i], r2[i]) {
			t.Fatalf("seed %d: responses to entry %d differ:\n%#v\n%#v", seed, i+1, r1[i], r2[i])
		}
	}
	// A third replica joins from a snapshot of the first, taken midway.
	f3src := openTestFSM(t)
	applyGrouped(f3src, logs[:80], 4)
	f3 := openTestFSM(t)
	if err := f3.restoreBytes(f3src.snapshotBytes()); err != nil {
		t.Fatal(err)
	}
	applyGrouped(f3, logs, 9) // raft re-sends; the FSM skips what the snapshot holds

	s1, s2, s3 := f1.status(), f2.status(), f3.status()
	if s1 != s2 || s1 != s3 {
		t.Fatalf("seed %d: status differs:\n%+v\n%+v\n%+v", seed, s1, s2, s3)
	}
	if s1.Revision < 50 {
		t.Fatalf("seed %d: only %d revisions committed", seed, s1.Revision)
	}
	for r := uint64(0); r <= s1.Revision; r++ {
		h1, err1 := f1.HashAt(r)
		h2, err2 := f2.HashAt(r)
		h3, err3 := f3.HashAt(r)
		if h1 != h2 || h1 != h3 || !sameErr(err1, err2) || !sameErr(err1, err3) {
			t.Fatalf("seed %d: HashAt(%d): %v %v / %v %v / %v %v", seed, r, h1, err1, h2, err2, h3, err3)
		}
	}
	l1, _, err1 := f1.Log(s1.CompactRevision, 0)
	l2, _, err2 := f2.Log(s1.CompactRevision, 0)
	l3, _, err3 := f3.Log(s1.CompactRevision, 0)
	if err1 != nil || err2 != nil || err3 != nil || !reflect.DeepEqual(l1, l2) || !reflect.DeepEqual(l1, l3) {
		t.Fatalf("seed %d: Log differs (%v %v %v)", seed, err1, err2, err3)
	}
	raw1, _, _ := f1.RawLog(s1.CompactRevision, 0)
	raw2, _, _ := f2.RawLog(s1.CompactRevision, 0)
	if !reflect.DeepEqual(raw1, raw2) {
		t.Fatalf("seed %d: RawLog differs", seed)
	}
	for _, f := range []*testFSM{f1, f2, f3} {
		rep, err := f.Verify(context.Background())
		if err != nil || rep.Head.Hash != s1.Head {
			t.Fatalf("seed %d: verify: %+v %v", seed, rep, err)
		}
	}
	if d1, d2 := f1.dump(), f2.dump(); !reflect.DeepEqual(d1, d2) {
		t.Fatalf("seed %d: reads differ", seed)
	}
}

func sameErr(a, b error) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	return a.Error() == b.Error()
}

// The chain is H(0) = 0, H(r) = SHA-256(H(r-1) || Canonical(record r)),
// recomputable from Log's records alone, as a backup or a mirror would.
func TestChainDefinition(t *testing.T) {
	f := openTestFSM(t)
	applyGrouped(f, buildLog(t, 40), 5)
	// buildLog compacts at 6, so recompute from H(5).
	st := f.status()
	if st.CompactRevision != 6 {
		t.Fatalf("compaction point %d", st.CompactRevision)
	}
	base, err := f.HashAt(5)
	if err != nil {
		t.Fatal(err)
	}
	prev := base.Hash
	recs, _, err := f.Log(6, 0)
	if err != nil {
		t.Fatal(err)
	}
	raw, _, err := f.RawLog(6, 0)
	if err != nil || len(raw) != len(recs) || len(recs) == 0 {
		t.Fatalf("raw log: %d records, %v", len(raw), err)
	}
	for i, rec := range recs {
		canon := Canonical(&rec)
		if !bytes.Equal(canon, raw[i].Canonical) {
			t.Fatalf("revision %d: Canonical(Log record) differs from the stored bytes", rec.Revision)
		}
		s := sha256.New()
		s.Write(prev[:])
		s.Write(canon)
		var h Hash
		s.Sum(h[:0])
		if h != rec.Hash || h != raw[i].Hash {
			t.Fatalf("revision %d: recomputed %s, stored %s", rec.Revision, h, rec.Hash)
		}
		if p, err := f.HashAt(rec.Revision); err != nil || p.Hash != h {
			t.Fatalf("HashAt(%d) = %+v %v", rec.Revision, p, err)
		}
		prev = h
	}
	if prev != st.Head {
		t.Fatalf("recomputed head %s, stored %s", prev, st.Head)
	}
	if p, err := f.HashAt(0); err != nil || p != (ChainPoint{}) {
		t.Fatalf("H(0) = %+v %v", p, err)
	}
}

func TestCanonicalRoundTrip(t *testing.T) {
	recs := []Record{
		{},
		{Revision: 1, Time: time.Unix(0, 1).UTC(), Ops: []Op{put("a", "")}},
		{
			Revision: 1 << 60, Time: time.Unix(1_700_000_000, 999).UTC(), User: "u", Description: "d",
			Meta: map[string]string{"z": "1", "a": "", "m": strings.Repeat("x", 300)}, IdempotencyKey: "k",
			Ops: []Op{put("a", "1"), del("b"), delPrefix("c"), {Kind: OpPut, Key: "d", Value: bytes.Repeat([]byte{0}, 200)}},
		},
		{Revision: 2, Time: time.Unix(-5, 0).UTC()},
		{Revision: 3, Time: time.Unix(7, 0).UTC(), User: "free-form", AuthUser: "alice", Ops: []Op{put("a", "1")}},
		{AuthUser: "日本"},
	}
	for i, rec := range recs {
		data := Canonical(&rec)
		got, err := DecodeCanonical(data)
		if err != nil {
			t.Fatalf("record %d: %v", i, err)
		}
		if tm, err := CanonicalTime(data); err != nil || !tm.Equal(got.Time) {
			t.Fatalf("record %d: CanonicalTime %s (%v), decoded %s", i, tm, err, got.Time)
		}
		if _, err := CanonicalTime(data[:16]); !errors.Is(err, ErrCorruptCommand) {
			t.Fatalf("record %d: CanonicalTime of 16 bytes: %v", i, err)
		}
		want := rec
		if want.Time.IsZero() {
			want.Time = time.Unix(0, rec.Time.UnixNano()).UTC()
		}
		for j := range want.Ops {
			if len(want.Ops[j].Value) == 0 {
				want.Ops[j].Value = nil
			}
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("record %d:\n got %#v\nwant %#v", i, got, want)
		}
		// Every strict prefix and any trailing byte is refused.
		for n := range len(data) {
			if _, err := DecodeCanonical(data[:n]); !errors.Is(err, ErrCorruptCommand) && !errors.Is(err, ErrUnknownVersion) {
				t.Fatalf("record %d truncated to %d: %v", i, n, err)
			}
		}
		if _, err := DecodeCanonical(append(bytes.Clone(data), 0)); err == nil {
			t.Fatalf("record %d: trailing byte accepted", i)
		}
		bad := bytes.Clone(data)
		bad[0] = RecordVersionAuth + 1
		if _, err := DecodeCanonical(bad); !errors.Is(err, ErrUnknownVersion) {
			t.Fatalf("record %d: version %d: %v", i, bad[0], err)
		}
	}
	// A count larger than the bytes left is refused without allocating.
	huge := append([]byte{RecordVersion}, make([]byte, 16)...)
	huge = append(huge, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x0f)
	if _, err := DecodeCanonical(huge); !errors.Is(err, ErrCorruptCommand) {
		t.Fatalf("huge meta count: %v", err)
	}
}

// Golden values pin the canonical record format and the chain: changing
// either breaks every existing backup and mirror.
func TestCanonicalGolden(t *testing.T) {
	rec := Record{
		Revision:       7,
		Time:           time.Unix(1_700_000_000, 123).UTC(),
		User:           "alice",
		Description:    "d",
		Meta:           map[string]string{"b": "2", "a": "1"},
		IdempotencyKey: "k",
		Ops:            []Op{put("x", "v"), del("y"), delPrefix("z/")},
	}
	const want = "01" + "0000000000000007" + "17979cfe362a007b" + // version, revision, time
		"05616c696365" + "0164" + // user, description
		"02" + "0161" + "0131" + "0162" + "0132" + // meta, sorted by key
		"016b" + // idempotency key
		"03" + "01" + "0178" + "0176" + "02" + "0179" + "00" + "03" + "027a2f" + "00" // ops
	got := fmt.Sprintf("%x", Canonical(&rec))
	if got != want {
		t.Fatalf("canonical encoding changed:\n got %s\nwant %s", got, want)
	}
	h := chainHash(Hash{}, Canonical(&rec))
	if exp := sha256.Sum256(append(make([]byte, 32), Canonical(&rec)...)); h != Hash(exp) {
		t.Fatalf("chain hash %s is not SHA-256(H(r-1) || canonical)", h)
	}
}

// Map order must not reach the hash: two replicas encoding and applying a
// transaction with a large Meta map get the same chain.
func TestMetaOrderDoesNotMatter(t *testing.T) {
	meta := map[string]string{}
	for i := range 300 {
		meta[fmt.Sprintf("key-%03d", i)] = strings.Repeat("v", i%7)
	}
	f1, f2 := openTestFSM(t), openTestFSM(t)
	var heads [2][]Hash
	for i, f := range []*testFSM{f1, f2} {
		for range 5 {
			// Each commit encodes the map afresh, in whatever order Go
			// iterates it this time.
			copied := make(map[string]string, len(meta))
			for k, v := range meta {
				copied[k] = v
			}
			r := f.mustCommit(Txn{Ops: []Op{put("k", "v")}, Meta: copied, User: "u"})
			heads[i] = append(heads[i], r.Hash)
		}
	}
	if !reflect.DeepEqual(heads[0], heads[1]) {
		t.Fatalf("hashes differ:\n%v\n%v", heads[0], heads[1])
	}
	c := Canonical(&Record{Meta: meta})
	for range 20 {
		if !bytes.Equal(Canonical(&Record{Meta: meta}), c) {
			t.Fatalf("Canonical is not deterministic")
		}
	}
	e, _ := EncodeCommand(Command{Batch: &Batch{Txns: []Txn{{Ops: []Op{put("k", "v")}, Meta: meta}}}})
	for range 20 {
		if e2, _ := EncodeCommand(Command{Batch: &Batch{Txns: []Txn{{Ops: []Op{put("k", "v")}, Meta: meta}}}}); !bytes.Equal(e, e2) {
			t.Fatalf("EncodeCommand is not deterministic")
		}
	}
	recs := f1.logAll()
	if !reflect.DeepEqual(recs[0].Meta, meta) {
		t.Fatalf("meta not stored as given")
	}
}

// tamper changes the FSM's database in place.
func (tf *testFSM) tamper(fn func(tx *bolt.Tx) error) {
	tf.t.Helper()
	tf.mu.RLock()
	defer tf.mu.RUnlock()
	if err := tf.db.Update(fn); err != nil {
		tf.t.Fatal(err)
	}
}

func TestVerify(t *testing.T) {
	build := func(t *testing.T) *testFSM {
		f := openTestFSMConfig(t, func(c *Config) { c.CompactChunk = 2 })
		for i := range 20 {
			f.mustCommit(Txn{Ops: []Op{put(fmt.Sprintf("k%d", i%4), fmt.Sprint(i))}, User: "u"})
		}
		return f
	}
	t.Run("healthy", func(t *testing.T) {
		f := build(t)
		rep, err := f.Verify(context.Background())
		st := f.status()
		if err != nil || rep.From != 1 || rep.To != 20 || rep.Records != 20 || rep.Head != (ChainPoint{Revision: 20, Hash: st.Head}) {
			t.Fatalf("verify: %+v %v", rep, err)
		}
		f.mustCompact(12)
		rep, err = f.Verify(context.Background()) // before physical compaction is done, or not
		if err != nil || rep.From != 12 || rep.Records != 9 || rep.Head.Hash != st.Head {
			t.Fatalf("verify after compaction: %+v %v", rep, err)
		}
		f.waitPhysicalCompaction()
		rep, err = f.Verify(context.Background())
		if err != nil || rep.From != 12 || rep.Records != 9 || rep.Head.Hash != st.Head {
			t.Fatalf("verify after physical compaction: %+v %v", rep, err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if _, err := f.Verify(ctx); !errors.Is(err, context.Canceled) {
			t.Fatalf("verify with a cancelled context: %v", err)
		}
		// An empty FSM verifies too.
		if rep, err := openTestFSM(t).Verify(context.Background()); err != nil || rep.Head != (ChainPoint{}) {
			t.Fatalf("empty: %+v %v", rep, err)
		}
	})

	recordKey := func(r uint64) []byte { return u64(r) }
	cases := []struct {
		name    string
		compact uint64
		rev     uint64
		tamper  func(t *testing.T, v []byte) []byte // new stored value; nil deletes
		naming  string
	}{
		{"stored hash", 0, 7, func(t *testing.T, v []byte) []byte {
			v[3] ^= 1
			return v
		}, "revision 7"},
		{"record field", 0, 9, func(t *testing.T, v []byte) []byte {
			rec, err := DecodeCanonical(v[32:])
			if err != nil {
				t.Fatal(err)
			}
			rec.User = "mallory"
			return append(v[:32:32], Canonical(&rec)...)
		}, "revision 9"},
		{"record value byte", 0, 20, func(t *testing.T, v []byte) []byte {
			v[len(v)-1] ^= 0x40
			return v
		}, "revision 20"},
		{"record revision", 0, 4, func(t *testing.T, v []byte) []byte {
			rec, _ := DecodeCanonical(v[32:])
			rec.Revision = 5
			return append(v[:32:32], Canonical(&rec)...)
		}, "at 4"},
		{"undecodable record", 0, 3, func(t *testing.T, v []byte) []byte { return v[:40] }, "record 3"},
		{"missing record", 0, 11, func(t *testing.T, v []byte) []byte { return nil }, "record 11"},
		{"after compaction", 10, 15, func(t *testing.T, v []byte) []byte {
			v[32+12] ^= 1 // in the commit time
			return v
		}, "revision 15"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := build(t)
			if c.compact > 0 {
				f.mustCompact(c.compact)
				f.waitPhysicalCompaction()
			}
			f.tamper(func(tx *bolt.Tx) error {
				b := tx.Bucket(bucketTxns)
				v := bytes.Clone(b.Get(recordKey(c.rev)))
				nv := c.tamper(t, v)
				if nv == nil {
					return b.Delete(recordKey(c.rev))
				}
				return b.Put(recordKey(c.rev), nv)
			})
			_, err := f.Verify(context.Background())
			if !errors.Is(err, ErrChainMismatch) {
				t.Fatalf("verify: %v, want ErrChainMismatch", err)
			}
			if !strings.Contains(err.Error(), c.naming) {
				t.Fatalf("verify error %q does not name %q", err, c.naming)
			}
		})
	}
	t.Run("stored head", func(t *testing.T) {
		f := build(t)
		f.tamper(func(tx *bolt.Tx) error {
			h := bytes.Clone(tx.Bucket(bucketMeta).Get(metaHead))
			h[0] ^= 1
			return tx.Bucket(bucketMeta).Put(metaHead, h)
		})
		if _, err := f.Verify(context.Background()); !errors.Is(err, ErrChainMismatch) || !strings.Contains(err.Error(), "head") {
			t.Fatalf("verify: %v", err)
		}
	})
}
