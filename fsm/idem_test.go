package fsm

import (
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

func TestIdempotency(t *testing.T) {
	f := openTestFSM(t)
	f.mustCommit(ops(put("a", "0")))

	first := f.mustCommit(Txn{Ops: []Op{put("a", "1")}, IdempotencyKey: "req-1"})
	before := f.status()
	counts := f.counts()

	// The retry, even one that lands in a later batch, writes nothing and
	// answers the stored result.
	again := f.commit(Txn{Ops: []Op{put("a", "1")}, IdempotencyKey: "req-1"})[0]
	if !again.Replayed || again.Err != nil || again.Revision != first.Revision || again.Hash != first.Hash || !again.Time.Equal(first.Time) {
		t.Fatalf("retry: %+v, first %+v", again, first)
	}
	if first.Replayed {
		t.Fatalf("the first application says Replayed")
	}
	if st := f.status(); st.Revision != before.Revision || st.Head != before.Head {
		t.Fatalf("retry moved the state")
	}
	if got := f.counts(); got != counts {
		t.Fatalf("retry wrote: %+v -> %+v", counts, got)
	}
	// The key identifies the request, whatever the retry carries.
	other := f.commit(Txn{Ops: []Op{put("b", "other")}, IdempotencyKey: "req-1"})[0]
	if !other.Replayed || other.Revision != first.Revision {
		t.Fatalf("retry with another body: %+v", other)
	}
	if _, _, err := f.Get("b", 0); !errors.Is(err, ErrNotFound) {
		t.Fatalf("a replayed request wrote: %v", err)
	}

	// Two copies in one batch: the second is a replay of the first.
	rs := f.commit(Txn{Ops: []Op{put("c", "1")}, IdempotencyKey: "req-2"}, Txn{Ops: []Op{put("c", "1")}, IdempotencyKey: "req-2"})
	if rs[0].Replayed || rs[0].Err != nil || !rs[1].Replayed || rs[1].Revision != rs[0].Revision {
		t.Fatalf("same key twice in a batch: %+v", rs)
	}

	// A conflict is remembered too, even after the precondition would hold.
	cond := Txn{Preconditions: []Precondition{{Kind: CondAbsent, Key: "a"}, {Kind: CondRevision, Key: "c", Revision: 1}},
		Ops: []Op{put("z", "1")}, IdempotencyKey: "req-3"}
	c1 := f.commit(cond)[0]
	var ce *ConflictError
	if !errors.As(c1.Err, &ce) || len(ce.Conflicts) != 2 || c1.Replayed {
		t.Fatalf("conflict: %+v", c1)
	}
	f.mustCommit(ops(del("a"))) // now "absent a" holds
	before = f.status()
	counts = f.counts()
	c2 := f.commit(cond)[0]
	if !c2.Replayed || !reflect.DeepEqual(c2.Err, c1.Err) || c2.Revision != 0 || !c2.Time.Equal(c1.Time) {
		t.Fatalf("retry of a conflict: %+v, first %+v", c2, c1)
	}
	if !errors.Is(c2.Err, ErrConflict) {
		t.Fatalf("replayed conflict does not match ErrConflict: %v", c2.Err)
	}
	if st := f.status(); st.Revision != before.Revision || f.counts() != counts {
		t.Fatalf("retry of a conflict wrote")
	}

	// A refused transaction is not remembered: fixed, it commits.
	bad := f.commit(Txn{IdempotencyKey: "req-4"})[0]
	if !errors.Is(bad.Err, ErrEmptyTxn) || bad.Replayed {
		t.Fatalf("refusal: %+v", bad)
	}
	if r := f.commit(Txn{Ops: []Op{put("d", "1")}, IdempotencyKey: "req-4"})[0]; r.Err != nil || r.Replayed {
		t.Fatalf("fixed request after a refusal: %+v", r)
	}

	// The table survives a restart.
	f = f.reopen()
	if r := f.commit(Txn{Ops: []Op{put("a", "1")}, IdempotencyKey: "req-1"})[0]; !r.Replayed || r.Revision != first.Revision {
		t.Fatalf("after reopen: %+v", r)
	}
}

func TestIdempotencyWindow(t *testing.T) {
	f := openTestFSM(t)
	t0 := time.Unix(1_900_000_000, 0).UTC()
	limits := Limits{MaxValueSize: 1024, IdempotencyWindow: 10 * time.Second}
	at := func(d time.Duration, txns ...Txn) []TxnResult {
		t.Helper()
		res := f.applyBatch(Batch{Time: t0.Add(d), Limits: limits, Txns: txns})
		if res.Err != nil {
			t.Fatal(res.Err)
		}
		return res.Txns
	}
	txn := Txn{Ops: []Op{put("k", "v")}, IdempotencyKey: "req"}
	r1 := at(0, txn)[0]
	if r := at(9*time.Second, txn)[0]; !r.Replayed || r.Revision != r1.Revision {
		t.Fatalf("inside the window: %+v", r)
	}
	// At the end of the window (log time, from the batch) it applies anew.
	r2 := at(10*time.Second, txn)[0]
	if r2.Replayed || r2.Err != nil || r2.Revision != r1.Revision+1 {
		t.Fatalf("after the window: %+v", r2)
	}
	// And the new result has a window of its own.
	if r := at(19*time.Second, txn)[0]; !r.Replayed || r.Revision != r2.Revision {
		t.Fatalf("inside the second window: %+v", r)
	}
	// A proposer clock that goes back does not reopen an expired window:
	// log time is clamped.
	if r := at(-time.Hour, txn)[0]; !r.Replayed || r.Revision != r2.Revision {
		t.Fatalf("with an earlier proposer clock: %+v", r)
	}
}

func TestIdempotencySweep(t *testing.T) {
	f := openTestFSM(t)
	t0 := time.Unix(1_900_000_000, 0).UTC()
	limits := Limits{IdempotencyWindow: time.Minute}
	var txns []Txn
	for i := range 40 {
		txns = append(txns, Txn{Ops: []Op{put(fmt.Sprintf("k%d", i), "v")}, IdempotencyKey: fmt.Sprintf("req-%d", i)})
	}
	f.applyBatch(Batch{Time: t0, Limits: limits, Txns: txns[:20]})
	f.applyBatch(Batch{Time: t0.Add(30 * time.Second), Limits: limits, Txns: txns[20:]})
	if n, m := f.count(bucketIdem), f.count(bucketIdemExp); n != 40 || m != 40 {
		t.Fatalf("idempotency table holds %d entries (%d in the expiry index), want 40", n, m)
	}
	// A batch after the first twenty expired sweeps them, even one that
	// commits nothing.
	res := f.applyBatch(Batch{Time: t0.Add(time.Minute), Limits: limits, Txns: []Txn{{}}})
	if !errors.Is(res.Txns[0].Err, ErrEmptyTxn) {
		t.Fatalf("empty txn: %+v", res.Txns[0])
	}
	if n, m := f.count(bucketIdem), f.count(bucketIdemExp); n != 20 || m != 20 {
		t.Fatalf("after the first expiry: %d entries (%d indexed), want 20", n, m)
	}
	// An expired key re-used before the sweep replaces its entry cleanly.
	f.applyBatch(Batch{Time: t0.Add(2 * time.Minute), Limits: limits, Txns: []Txn{txns[25]}})
	if n, m := f.count(bucketIdem), f.count(bucketIdemExp); n != 1 || m != 1 {
		t.Fatalf("after the second expiry: %d entries (%d indexed), want 1", n, m)
	}
	f.applyBatch(Batch{Time: t0.Add(10 * time.Minute), Limits: limits, Txns: []Txn{ops(put("x", "y"))}})
	if n, m := f.count(bucketIdem), f.count(bucketIdemExp); n != 0 || m != 0 {
		t.Fatalf("after everything expired: %d entries (%d indexed)", n, m)
	}
}

// A replayed result must not depend on how far a replica's background
// compactor has got: one replica with physical compaction finished and one
// where it never ran answer the same.
func TestIdempotentReplayIgnoresCompactorProgress(t *testing.T) {
	var logs []*raft.Log
	clock := time.Unix(1_900_000_000, 0).UTC()
	add := func(c Command) {
		data, err := EncodeCommand(c)
		if err != nil {
			t.Fatal(err)
		}
		logs = append(logs, &raft.Log{Index: uint64(len(logs) + 1), Term: 1, Type: raft.LogCommand, Data: data})
	}
	batch := func(txns ...Txn) {
		clock = clock.Add(time.Second)
		add(Command{Batch: &Batch{Time: clock, Limits: DefaultLimits(), Txns: txns}})
	}
	batch(Txn{Ops: []Op{put("a", "1")}, IdempotencyKey: "old"})    // 1
	batch(Txn{Ops: []Op{put("a", "2")}, IdempotencyKey: "before"}) // 2
	batch(Txn{Ops: []Op{put("a", "3")}, IdempotencyKey: "at"})     // 3
	batch(ops(put("a", "4")))                                      // 4
	add(Command{Compact: &Compact{Revision: 3}})

	fast := openTestFSM(t)
	slow := openTestFSM(t)
	slow.stopCompactor()
	applyGrouped(fast, logs, 1)
	applyGrouped(slow, logs, 1)
	fast.index, slow.index = uint64(len(logs)), uint64(len(logs))
	fast.waitPhysicalCompaction()
	if slow.physicalCompactionDone() {
		t.Fatalf("the stopped compactor ran")
	}
	for _, key := range []string{"old", "before", "at"} {
		txn := Txn{Ops: []Op{put("a", "x")}, IdempotencyKey: key}
		a := fast.commit(txn)[0]
		b := slow.commit(txn)[0]
		if !a.Replayed || !reflect.DeepEqual(a, b) {
			t.Fatalf("replay of %q: %+v vs %+v", key, a, b)
		}
	}
	// A result at the compaction point still carries its hash.
	r := fast.commit(Txn{Ops: []Op{put("a", "x")}, IdempotencyKey: "at"})[0]
	if p, err := fast.HashAt(3); err != nil || r.Hash != p.Hash || r.Hash == (Hash{}) {
		t.Fatalf("replay at the compaction point: %+v, H(3) %+v %v", r, p, err)
	}
	if a, b := fast.status(), slow.status(); a.Revision != b.Revision || a.Head != b.Head || a.Revision != 4 {
		t.Fatalf("replays wrote: status %+v vs %+v", a, b)
	}
}

// Log time advances with every batch, also one whose transactions all
// fail, so a later batch with an earlier proposer clock cannot bring an
// expired idempotency result back.
func TestIdempotencyLogTimeAdvancesOnConflicts(t *testing.T) {
	f := openTestFSM(t)
	t0 := time.Unix(1_900_000_000, 0).UTC()
	limits := Limits{MaxValueSize: 1024, IdempotencyWindow: 10 * time.Second}
	at := func(d time.Duration, txns ...Txn) TxnResult {
		t.Helper()
		res := f.applyBatch(Batch{Time: t0.Add(d), Limits: limits, Txns: txns})
		if res.Err != nil {
			t.Fatal(res.Err)
		}
		return res.Txns[0]
	}
	r1 := at(0, Txn{Ops: []Op{put("k", "v")}, IdempotencyKey: "req"})
	// A batch at +20s that only conflicts: the window of "req" has passed.
	if r := at(20*time.Second, Txn{Preconditions: []Precondition{{Kind: CondAbsent, Key: "k"}}, Ops: []Op{put("k", "w")}}); !errors.Is(r.Err, ErrConflict) {
		t.Fatalf("want a conflict: %+v", r)
	}
	// A proposer stamping +5s must not see the expired result.
	r := at(5*time.Second, Txn{Ops: []Op{put("k", "v")}, IdempotencyKey: "req"})
	if r.Replayed || r.Revision != r1.Revision+1 {
		t.Fatalf("expired key replayed after a conflict-only batch: %+v", r)
	}
}

// A window beyond MaxIdempotencyWindow is capped, so expiry times cannot
// overflow and the entry is still replayed and swept.
func TestIdempotencyWindowCapped(t *testing.T) {
	f := openTestFSM(t)
	t0 := time.Unix(1_900_000_000, 0).UTC()
	limits := Limits{MaxValueSize: 1024, IdempotencyWindow: time.Duration(1<<63 - 1)}
	at := func(d time.Duration) TxnResult {
		t.Helper()
		res := f.applyBatch(Batch{Time: t0.Add(d), Limits: limits, Txns: []Txn{{Ops: []Op{put("k", "v")}, IdempotencyKey: "req"}}})
		if res.Err != nil {
			t.Fatal(res.Err)
		}
		return res.Txns[0]
	}
	r1 := at(0)
	if r := at(time.Hour); !r.Replayed || r.Revision != r1.Revision {
		t.Fatalf("inside the capped window: %+v", r)
	}
	if r := at(MaxIdempotencyWindow); r.Replayed {
		t.Fatalf("after the capped window: %+v", r)
	}
}
