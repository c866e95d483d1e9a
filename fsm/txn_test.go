package fsm

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

// bucketCounts are the sizes of the buckets a transaction writes to.
type bucketCounts struct{ versions, txns, idem int }

func (tf *testFSM) counts() bucketCounts {
	tf.t.Helper()
	return bucketCounts{tf.count(bucketVersions), tf.count(bucketTxns), tf.count(bucketIdem)}
}

func TestPreconditions(t *testing.T) {
	f := openTestFSM(t)
	f.mustCommit(ops(put("a", "1"), put("b", "2"), put("e", ""))) // rev 1
	f.mustCommit(ops(put("b", "22")))                             // rev 2: a@1, b@2, c absent

	exists := func(k string) Precondition { return Precondition{Kind: CondExists, Key: k} }
	absent := func(k string) Precondition { return Precondition{Kind: CondAbsent, Key: k} }
	atRev := func(k string, r uint64) Precondition { return Precondition{Kind: CondRevision, Key: k, Revision: r} }
	value := func(k, v string) Precondition { return Precondition{Kind: CondValue, Key: k, Value: []byte(v)} }

	tests := []struct {
		name  string
		conds []Precondition
		want  []Conflict // nil: commits
	}{
		{"exists holds", []Precondition{exists("a")}, nil},
		{"exists fails", []Precondition{exists("c")}, []Conflict{{"c", CondExists, 0}}},
		{"absent holds", []Precondition{absent("c")}, nil},
		{"absent fails", []Precondition{absent("a")}, []Conflict{{"a", CondAbsent, 1}}},
		{"revision holds", []Precondition{atRev("b", 2)}, nil},
		{"revision stale", []Precondition{atRev("b", 1)}, []Conflict{{"b", CondRevision, 2}}},
		{"revision of absent key", []Precondition{atRev("c", 0)}, []Conflict{{"c", CondRevision, 0}}},
		{"value holds", []Precondition{value("b", "22")}, nil},
		{"value holds for empty value", []Precondition{value("e", "")}, nil},
		{"value differs", []Precondition{value("a", "x")}, []Conflict{{"a", CondValue, 1}}},
		{"value empty vs non-empty", []Precondition{value("a", "")}, []Conflict{{"a", CondValue, 1}}},
		{"value of absent key", []Precondition{value("c", "")}, []Conflict{{"c", CondValue, 0}}},
		{"all hold", []Precondition{exists("a"), absent("c"), atRev("a", 1), value("b", "22")}, nil},
		{
			"every failing key is reported",
			[]Precondition{exists("a"), absent("b"), atRev("a", 7), value("c", "v"), exists("d")},
			[]Conflict{{"b", CondAbsent, 2}, {"a", CondRevision, 1}, {"c", CondValue, 0}, {"d", CondExists, 0}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f.t = t
			before := f.status()
			counts := f.counts()
			zBefore, _, zErr := f.Get("z", 0)
			r := f.commit(Txn{Preconditions: tc.conds, Ops: []Op{put("z", tc.name)}})[0]
			if tc.want == nil {
				if r.Err != nil {
					t.Fatalf("want commit, got %v", r.Err)
				}
				if r.Revision != before.Revision+1 {
					t.Fatalf("revision %d, want %d", r.Revision, before.Revision+1)
				}
				kv, _, err := f.Get("z", 0)
				if err != nil || string(kv.Value) != tc.name || kv.ModRevision != r.Revision {
					t.Fatalf("z after commit: %+v %v", kv, err)
				}
				return
			}
			if !errors.Is(r.Err, ErrConflict) {
				t.Fatalf("want conflict, got %v", r.Err)
			}
			var ce *ConflictError
			if !errors.As(r.Err, &ce) {
				t.Fatalf("error %T is not a *ConflictError", r.Err)
			}
			if !reflect.DeepEqual(ce.Conflicts, tc.want) {
				t.Fatalf("conflicts %+v, want %+v", ce.Conflicts, tc.want)
			}
			for _, c := range tc.want {
				if !strings.Contains(r.Err.Error(), c.Key) {
					t.Errorf("message %q does not name %q", r.Err, c.Key)
				}
			}
			if r.Revision != 0 || r.Hash != (Hash{}) {
				t.Fatalf("conflict result carries revision %d hash %s", r.Revision, r.Hash)
			}
			if r.Time.IsZero() {
				t.Fatalf("conflict result has no time")
			}
			after := f.status()
			if after.Revision != before.Revision || after.Head != before.Head {
				t.Fatalf("conflict moved the state: %+v -> %+v", before, after)
			}
			if got := f.counts(); got != counts {
				t.Fatalf("conflict wrote: %+v -> %+v", counts, got)
			}
			zAfter, _, zErr2 := f.Get("z", 0)
			if !reflect.DeepEqual(zAfter, zBefore) || (zErr == nil) != (zErr2 == nil) {
				t.Fatalf("z changed: %+v %v -> %+v %v", zBefore, zErr, zAfter, zErr2)
			}
		})
	}
	f.t = t
}

func TestOperations(t *testing.T) {
	f := openTestFSM(t)
	r1 := f.mustCommit(ops(put("a", "1"), put("a/1", "x"), put("a/2", "y"), put("a/2/z", "z"), put("ab", "w"), put("b", "2")))
	if r1.Revision != 1 {
		t.Fatalf("first revision is %d, want 1", r1.Revision)
	}
	get := func(key string, rev uint64) (KeyValue, error) {
		t.Helper()
		kv, _, err := f.Get(key, rev)
		return kv, err
	}
	want := func(key string, rev uint64, value string, create, mod uint64) {
		t.Helper()
		kv, err := get(key, rev)
		if err != nil {
			t.Fatalf("get %q at %d: %v", key, rev, err)
		}
		if string(kv.Value) != value || kv.CreateRevision != create || kv.ModRevision != mod || kv.Key != key {
			t.Fatalf("get %q at %d = %+v, want value %q create %d mod %d", key, rev, kv, value, create, mod)
		}
	}
	gone := func(key string, rev uint64) {
		t.Helper()
		if kv, err := get(key, rev); !errors.Is(err, ErrNotFound) {
			t.Fatalf("get %q at %d = %+v, %v; want ErrNotFound", key, rev, kv, err)
		}
	}

	// put of a new key, put over an existing key.
	want("a", 0, "1", 1, 1)
	r2 := f.mustCommit(ops(put("a", "2")))
	want("a", 0, "2", 1, 2)
	want("a", 1, "1", 1, 1)

	// delete of an existing key, delete of a missing key (commits, writes
	// no history for it).
	r3 := f.mustCommit(ops(del("b")))
	gone("b", 0)
	want("b", 2, "2", 1, 1)
	r4 := f.mustCommit(ops(del("never")))
	if r4.Revision != r3.Revision+1 {
		t.Fatalf("delete of a missing key got revision %d, want %d", r4.Revision, r3.Revision+1)
	}
	if _, _, err := f.History("never", HistoryOptions{}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("history of a never-written key: %v", err)
	}

	// delete-prefix removes exactly the keys under the prefix.
	r5 := f.mustCommit(ops(delPrefix("a/")))
	for _, k := range []string{"a/1", "a/2", "a/2/z"} {
		gone(k, 0)
		h, _, err := f.History(k, HistoryOptions{})
		if err != nil || len(h) != 2 || !h[0].Deleted || h[0].Revision != r5.Revision {
			t.Fatalf("history of %q after delete-prefix: %+v %v", k, h, err)
		}
	}
	want("a/1", r4.Revision, "x", 1, 1)
	want("a", 0, "2", 1, r2.Revision)
	want("ab", 0, "w", 1, 1)
	if got := f.listAll("", 0); len(got) != 2 {
		t.Fatalf("after delete-prefix: %+v", got)
	}
	r6 := f.mustCommit(ops(delPrefix("zzz")))
	if r6.Revision != r5.Revision+1 {
		t.Fatalf("delete-prefix of nothing got revision %d", r6.Revision)
	}

	// Several operations in one transaction share one revision.
	r7 := f.mustCommit(Txn{Ops: []Op{put("p/1", "1"), put("q", "q"), del("ab"), del("a"), delPrefix("zz")},
		User: "alice", Description: "tidy", Meta: map[string]string{"k": "v"}, IdempotencyKey: "idem-7"})
	want("p/1", 0, "1", r7.Revision, r7.Revision)
	want("q", 0, "q", r7.Revision, r7.Revision)
	gone("ab", 0)
	gone("a", 0)
	recs, cur, err := f.Log(r7.Revision, 0)
	if err != nil || cur != r7.Revision || len(recs) != 1 {
		t.Fatalf("log at %d: %+v %d %v", r7.Revision, recs, cur, err)
	}
	rec := recs[0]
	if rec.Revision != r7.Revision || rec.User != "alice" || rec.Description != "tidy" ||
		!reflect.DeepEqual(rec.Meta, map[string]string{"k": "v"}) || rec.IdempotencyKey != "idem-7" ||
		!reflect.DeepEqual(rec.Ops, []Op{put("p/1", "1"), put("q", "q"), del("ab"), del("a"), delPrefix("zz")}) ||
		rec.Hash != r7.Hash || !rec.Time.Equal(r7.Time) {
		t.Fatalf("log record %+v does not match the transaction (result %+v)", rec, r7)
	}

	// Revisions are gapless from 1.
	for i, rec := range f.logAll() {
		if rec.Revision != uint64(i+1) {
			t.Fatalf("record %d has revision %d", i, rec.Revision)
		}
	}
}

func TestRefusals(t *testing.T) {
	long := strings.Repeat("k", MaxKeySize)
	tooLong := long + "k"
	small := Limits{MaxValueSize: 8}
	tests := []struct {
		name   string
		limits Limits
		txn    Txn
		want   error // nil: must commit
	}{
		{"no operations", Limits{}, Txn{}, ErrEmptyTxn},
		{"preconditions only", Limits{}, Txn{Preconditions: []Precondition{{Kind: CondExists, Key: "x"}}}, ErrEmptyTxn},
		{"put twice", Limits{}, ops(put("a", "1"), put("a", "2")), ErrDuplicateKey},
		{"put and delete", Limits{}, ops(put("a", "1"), del("a")), ErrDuplicateKey},
		{"delete twice", Limits{}, ops(del("a"), del("a")), ErrDuplicateKey},
		{"delete-prefix twice", Limits{}, ops(delPrefix("a"), delPrefix("a")), ErrDuplicateKey},
		{"put under delete-prefix", Limits{}, ops(delPrefix("a/"), put("a/b", "1")), ErrDuplicateKey},
		{"put before its delete-prefix", Limits{}, ops(put("a/b", "1"), delPrefix("a/")), ErrDuplicateKey},
		{"delete under delete-prefix", Limits{}, ops(del("ax"), delPrefix("a")), ErrDuplicateKey},
		{"delete-prefix under delete-prefix", Limits{}, ops(delPrefix("a"), delPrefix("a/b")), ErrDuplicateKey},
		{"key over 1 KiB", Limits{}, ops(put(tooLong, "v")), ErrKeyTooLarge},
		{"delete key over 1 KiB", Limits{}, ops(del(tooLong)), ErrKeyTooLarge},
		{"precondition key over 1 KiB", Limits{}, Txn{Preconditions: []Precondition{{Kind: CondAbsent, Key: tooLong}}, Ops: []Op{put("a", "")}}, ErrKeyTooLarge},
		{"empty key", Limits{}, ops(put("", "v")), ErrInvalidKey},
		{"empty delete-prefix", Limits{}, ops(delPrefix("")), ErrInvalidKey},
		{"NUL in key", Limits{}, ops(put("a\x00b", "v")), ErrInvalidKey},
		{"NUL in precondition key", Limits{}, Txn{Preconditions: []Precondition{{Kind: CondExists, Key: "\x00"}}, Ops: []Op{put("a", "")}}, ErrInvalidKey},
		{"value over the batch limit", small, ops(put("a", "123456789")), ErrValueTooLarge},
		{"precondition value over the batch limit", small, Txn{Preconditions: []Precondition{{Kind: CondValue, Key: "a", Value: []byte("123456789")}}, Ops: []Op{put("a", "")}}, ErrValueTooLarge},
		{"value over the default limit", Limits{}, ops(Op{Kind: OpPut, Key: "a", Value: make([]byte, DefaultMaxValueSize+1)}), ErrValueTooLarge},
		{"unknown operation", Limits{}, ops(Op{Kind: 9, Key: "a"}), ErrInvalidTxn},
		{"unknown precondition", Limits{}, Txn{Preconditions: []Precondition{{Kind: 9, Key: "a"}}, Ops: []Op{put("a", "")}}, ErrInvalidTxn},
		{"delete with a value", Limits{}, ops(Op{Kind: OpDelete, Key: "a", Value: []byte("v")}), ErrInvalidTxn},
		{"metadata too large", Limits{}, Txn{Ops: []Op{put("a", "")}, Meta: map[string]string{"m": strings.Repeat("x", MaxMetaSize)}}, ErrInvalidTxn},
		{"idempotency key over 1 KiB", Limits{}, Txn{Ops: []Op{put("a", "")}, IdempotencyKey: tooLong}, ErrInvalidTxn},
		// bbolt refuses keys over 32 KiB: this one used to fail the apply
		// (a panic on every replica).
		{"idempotency key over 32 KiB", Limits{}, Txn{Ops: []Op{put("a", "")}, IdempotencyKey: strings.Repeat("i", 40_000)}, ErrInvalidTxn},

		// Boundaries that must be accepted.
		{"key of exactly 1 KiB", Limits{}, ops(put(long, "v")), nil},
		{"idempotency key of exactly 1 KiB", Limits{}, Txn{Ops: []Op{put("a", "")}, IdempotencyKey: long}, nil},
		{"value at the batch limit", small, ops(put("a", "12345678")), nil},
		{"value at the default limit", Limits{}, ops(Op{Kind: OpPut, Key: "big", Value: make([]byte, DefaultMaxValueSize)}), nil},
		{"sibling of a delete-prefix", Limits{}, ops(delPrefix("a/"), put("ab", "1"), put("a", "2")), nil},
		{"non-ASCII key", Limits{}, ops(put("clé/日本", "v")), nil},
		{"precondition on a key the transaction writes", Limits{}, Txn{Preconditions: []Precondition{{Kind: CondExists, Key: "a"}}, Ops: []Op{put("a", "x")}}, nil},
	}

	f := openTestFSM(t)
	f.mustCommit(ops(put("a", "1"))) // so "a" exists for the accepted cases
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f.t = t
			// The proposer-side check refuses exactly what the FSM refuses.
			if err := ValidateTxn(&tc.txn, tc.limits); !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
				t.Fatalf("ValidateTxn: %v, want %v", err, tc.want)
			}
			before := f.status()
			counts := f.counts()
			f.clock = f.clock.Add(time.Second)
			res := f.applyBatch(Batch{Time: f.clock, Limits: tc.limits, Txns: []Txn{tc.txn}})
			if res.Err != nil {
				t.Fatalf("batch refused as a whole: %v", res.Err)
			}
			r := res.Txns[0]
			if tc.want == nil {
				if r.Err != nil || r.Revision != before.Revision+1 {
					t.Fatalf("want commit at %d, got %+v", before.Revision+1, r)
				}
				return
			}
			if !errors.Is(r.Err, tc.want) {
				t.Fatalf("got %v, want %v", r.Err, tc.want)
			}
			if r.Revision != 0 || r.Hash != (Hash{}) || r.Replayed {
				t.Fatalf("refusal result %+v", r)
			}
			after := f.status()
			if after.Revision != before.Revision || after.Head != before.Head {
				t.Fatalf("refusal moved the state: %+v -> %+v", before, after)
			}
			if got := f.counts(); got != counts {
				t.Fatalf("refusal wrote: %+v -> %+v", counts, got)
			}
			// The next commit takes the next revision: none was consumed.
			if r := f.mustCommit(ops(put("next", tc.name))); r.Revision != before.Revision+1 {
				t.Fatalf("commit after refusal at %d, want %d", r.Revision, before.Revision+1)
			}
		})
	}
	f.t = t

	// A refusal inside a batch consumes no revision between two commits.
	before := f.status().Revision
	res := f.commit(ops(put("m1", "1")), Txn{}, ops(put("m2", "1"), put("m2", "2")), ops(put("m3", "1")))
	if res[0].Revision != before+1 || !errors.Is(res[1].Err, ErrEmptyTxn) ||
		!errors.Is(res[2].Err, ErrDuplicateKey) || res[3].Revision != before+2 {
		t.Fatalf("mixed batch: %+v", res)
	}
}

func TestInvalidUTF8KeyNeverReachesTheLog(t *testing.T) {
	for _, key := range []string{"\xff", "a\xc3", "\xed\xa0\x80"} {
		txn := ops(put(key, "v"))
		if err := ValidateTxn(&txn, DefaultLimits()); !errors.Is(err, ErrInvalidKey) {
			t.Errorf("ValidateTxn(%q): %v, want ErrInvalidKey", key, err)
		}
		// The log format (protobuf strings) cannot carry it either.
		if _, err := EncodeCommand(Command{Batch: &Batch{Txns: []Txn{txn}}}); err == nil {
			t.Errorf("EncodeCommand accepted key %q", key)
		}
		if err := ValidateKey(key); !errors.Is(err, ErrInvalidKey) {
			t.Errorf("ValidateKey(%q): %v", key, err)
		}
	}
}

func TestCommitTimeNeverGoesBackwards(t *testing.T) {
	f := openTestFSM(t)
	t0 := time.Date(2030, 1, 2, 3, 4, 5, 6, time.UTC)
	commitAt := func(at time.Time, txns ...Txn) []TxnResult {
		t.Helper()
		res := f.applyBatch(Batch{Time: at, Limits: DefaultLimits(), Txns: txns})
		if res.Err != nil {
			t.Fatal(res.Err)
		}
		return res.Txns
	}
	r1 := commitAt(t0, ops(put("a", "1")))[0]
	if !r1.Time.Equal(t0) {
		t.Fatalf("commit time %v, want %v", r1.Time, t0)
	}
	// Earlier proposer clocks get the previous commit time.
	r2 := commitAt(t0.Add(-time.Hour), ops(put("a", "2")))[0]
	r3 := commitAt(time.Time{}, ops(put("a", "3")))[0]
	if !r2.Time.Equal(t0) || !r3.Time.Equal(t0) {
		t.Fatalf("commit times %v, %v after %v", r2.Time, r3.Time, t0)
	}
	conflict := commitAt(t0.Add(-time.Minute), Txn{Preconditions: []Precondition{{Kind: CondAbsent, Key: "a"}}, Ops: []Op{put("a", "x")}})[0]
	if conflict.Err == nil || conflict.Time.Before(t0) {
		t.Fatalf("conflict result %+v", conflict)
	}
	t1 := t0.Add(time.Minute)
	r4 := commitAt(t1, ops(put("a", "4")))[0]
	if !r4.Time.Equal(t1) {
		t.Fatalf("commit time %v, want %v", r4.Time, t1)
	}
	if st := f.status(); !st.Time.Equal(t1) {
		t.Fatalf("status time %v, want %v", st.Time, t1)
	}
	var prev time.Time
	for _, rec := range f.logAll() {
		if rec.Time.Before(prev) {
			t.Fatalf("record %d time %v before %v", rec.Revision, rec.Time, prev)
		}
		prev = rec.Time
	}
	if !prev.Equal(t1) {
		t.Fatalf("last record time %v", prev)
	}
	// The clamp survives a restart.
	f = f.reopen()
	if r := commitAt(t0, ops(put("a", "5")))[0]; !r.Time.Equal(t1) {
		t.Fatalf("after reopen: commit time %v, want %v", r.Time, t1)
	}
}

func TestHistory(t *testing.T) {
	f := openTestFSM(t)
	f.mustCommit(ops(put("k", "v1")))    // 1
	f.mustCommit(ops(put("k", "v2")))    // 2
	f.mustCommit(ops(put("other", "o"))) // 3
	f.mustCommit(ops(del("k")))          // 4
	r5 := f.mustCommit(ops(put("k", "v3")))

	// Right after delete and recreate, the key is new again.
	kv, _, err := f.Get("k", 0)
	if err != nil || kv.CreateRevision != r5.Revision || kv.ModRevision != r5.Revision || string(kv.Value) != "v3" {
		t.Fatalf("get after recreate: %+v %v", kv, err)
	}
	f.mustCommit(ops(put("k", "v4"))) // 6
	kv, _, err = f.Get("k", 0)
	if err != nil || kv.CreateRevision != 5 || kv.ModRevision != 6 {
		t.Fatalf("get after update: %+v %v", kv, err)
	}
	if _, _, err := f.Get("k", 4); !errors.Is(err, ErrNotFound) {
		t.Fatalf("get at the deleting revision: %v", err)
	}
	if kv, _, err := f.Get("k", 3); err != nil || string(kv.Value) != "v2" || kv.CreateRevision != 1 || kv.ModRevision != 2 {
		t.Fatalf("get at 3: %+v %v", kv, err)
	}

	full := []Version{
		{Key: "k", Value: []byte("v4"), Revision: 6, CreateRevision: 5},
		{Key: "k", Value: []byte("v3"), Revision: 5, CreateRevision: 5},
		{Key: "k", Revision: 4, CreateRevision: 1, Deleted: true},
		{Key: "k", Value: []byte("v2"), Revision: 2, CreateRevision: 1},
		{Key: "k", Value: []byte("v1"), Revision: 1, CreateRevision: 1},
	}
	norm := func(vs []Version) []Version {
		for i := range vs {
			if len(vs[i].Value) == 0 {
				vs[i].Value = nil
			}
		}
		return vs
	}
	h, cur, err := f.History("k", HistoryOptions{})
	if err != nil || cur != 6 || !reflect.DeepEqual(norm(h), full) {
		t.Fatalf("history: %+v (current %d) %v\nwant %+v", h, cur, err, full)
	}
	h, _, err = f.History("k", HistoryOptions{Limit: 2})
	if err != nil || !reflect.DeepEqual(norm(h), full[:2]) {
		t.Fatalf("history limit 2: %+v %v", h, err)
	}
	h, _, err = f.History("k", HistoryOptions{Before: 5})
	if err != nil || !reflect.DeepEqual(norm(h), full[2:]) {
		t.Fatalf("history before 5: %+v %v", h, err)
	}
	h, _, err = f.History("k", HistoryOptions{Before: 5, Limit: 1})
	if err != nil || !reflect.DeepEqual(norm(h), full[2:3]) {
		t.Fatalf("history before 5 limit 1: %+v %v", h, err)
	}
	if _, _, err := f.History("missing", HistoryOptions{}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("history of a missing key: %v", err)
	}
	// A key that is a prefix of another has only its own history.
	f.mustCommit(ops(put("k2", "x"), put("j", "y")))
	if h, _, err := f.History("k", HistoryOptions{}); err != nil || len(h) != len(full) {
		t.Fatalf("history of k after writing k2: %+v %v", h, err)
	}
}

// Metadata that is not UTF-8 cannot be encoded into a log entry, so the
// proposer-side check must refuse it before anything reaches raft.
func TestValidateTxnRefusesNonUTF8Metadata(t *testing.T) {
	bad := string([]byte{0xff, 0xfe})
	for name, txn := range map[string]Txn{
		"user":            {Ops: []Op{put("a", "")}, User: bad},
		"description":     {Ops: []Op{put("a", "")}, Description: bad},
		"idempotency key": {Ops: []Op{put("a", "")}, IdempotencyKey: bad},
		"meta key":        {Ops: []Op{put("a", "")}, Meta: map[string]string{bad: "v"}},
		"meta value":      {Ops: []Op{put("a", "")}, Meta: map[string]string{"k": bad}},
	} {
		if err := ValidateTxn(&txn, Limits{}); !errors.Is(err, ErrInvalidTxn) {
			t.Errorf("%s: ValidateTxn = %v, want ErrInvalidTxn", name, err)
		}
		txn.User, txn.Description, txn.IdempotencyKey, txn.Meta = "", "", "", nil
		if err := ValidateTxn(&txn, Limits{}); err != nil {
			t.Errorf("%s: the same transaction with UTF-8 metadata: %v", name, err)
		}
	}
}
