package fsm

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// The property test: random transactions applied to the FSM and to a
// simple in-memory model must give the same answers to every read at every
// retained revision.

// modelKV is a key's state, or (with rev and deleted) a history entry.
type modelKV struct {
	value       string
	create, mod uint64
	rev         uint64 // history entries: the revision that wrote it
	deleted     bool   // history entries: a tombstone
}

type modelRecord struct {
	ops  []Op
	time int64
}

type model struct {
	rev     uint64
	compact uint64               // oldest readable revision
	time    int64                // last commit time
	states  []map[string]modelKV // states[r]: the objects at revision r
	history map[string][]modelKV // per key, oldest first, tombstones included
	records []modelRecord        // records[r-1]
}

func newModel() *model {
	return &model{compact: 1, states: []map[string]modelKV{{}}, history: map[string][]modelKV{}}
}

func (m *model) cur() map[string]modelKV { return m.states[m.rev] }

// txn applies a transaction the generator built (valid, or empty) and
// returns the expected result.
func (m *model) txn(t *Txn, batchTime int64) TxnResult {
	now := max(batchTime, m.time, 0)
	res := TxnResult{Time: time.Unix(0, now).UTC()}
	if len(t.Ops) == 0 {
		res.Err = ErrEmptyTxn
		return res
	}
	cur := m.cur()
	var conflicts []Conflict
	for _, p := range t.Preconditions {
		kv, ok := cur[p.Key]
		var hold bool
		switch p.Kind {
		case CondExists:
			hold = ok
		case CondAbsent:
			hold = !ok
		case CondRevision:
			hold = ok && kv.mod == p.Revision
		case CondValue:
			hold = ok && kv.value == string(p.Value)
		}
		if !hold {
			conflicts = append(conflicts, Conflict{Key: p.Key, Kind: p.Kind, CurrentRevision: kv.mod})
		}
	}
	if conflicts != nil {
		res.Err = &ConflictError{Conflicts: conflicts}
		return res
	}
	rev := m.rev + 1
	next := make(map[string]modelKV, len(cur))
	for k, v := range cur {
		next[k] = v
	}
	remove := func(k string) {
		old, ok := next[k]
		if !ok {
			return
		}
		delete(next, k)
		m.history[k] = append(m.history[k], modelKV{rev: rev, create: old.create, deleted: true})
	}
	for _, o := range t.Ops {
		switch o.Kind {
		case OpPut:
			create := rev
			if old, ok := next[o.Key]; ok {
				create = old.create
			}
			next[o.Key] = modelKV{value: string(o.Value), create: create, mod: rev}
			m.history[o.Key] = append(m.history[o.Key], modelKV{rev: rev, create: create, value: string(o.Value)})
		case OpDelete:
			remove(o.Key)
		case OpDeletePrefix:
			var keys []string
			for k := range next {
				if strings.HasPrefix(k, o.Key) {
					keys = append(keys, k)
				}
			}
			for _, k := range keys {
				remove(k)
			}
		}
	}
	m.rev, m.time = rev, now
	m.states = append(m.states, next)
	m.records = append(m.records, modelRecord{ops: t.Ops, time: now})
	res.Revision = rev
	return res
}

// compactAt returns the expected error of a Compact entry at rev.
func (m *model) compactAt(rev uint64) error {
	switch {
	case rev == 0 || rev > m.rev:
		return ErrFutureRevision
	case rev <= m.compact:
		return &CompactedError{Requested: rev, Oldest: m.compact}
	}
	m.compact = rev
	return nil
}

// retainedHistory is History's answer: versions after the compaction
// point, plus the one in force at it unless that is a tombstone; newest
// first.
func (m *model) retainedHistory(key string) []Version {
	var out []Version
	h := m.history[key]
	for i := len(h) - 1; i >= 0; i-- {
		v := h[i]
		if v.rev <= m.compact && v.deleted {
			break
		}
		out = append(out, Version{Key: key, Value: []byte(v.value), Revision: v.rev, CreateRevision: v.create, Deleted: v.deleted})
		if v.rev <= m.compact {
			break
		}
	}
	return out
}

var (
	modelKeys     = []string{"a", "a/1", "a/2", "a/2/x", "ab", "b", "b/1", "c"}
	modelPrefixes = []string{"", "a", "a/", "a/2", "ab", "b", "b/", "c", "d"}
	modelValues   = []string{"", "x", "y", "zz", "a longer value"}
)

// genTxn builds a random transaction over the small key set: valid, except
// that it is sometimes empty.
func genTxn(rng *rand.Rand, m *model) Txn {
	var t Txn
	if rng.IntN(40) == 0 {
		return t // refused: no operations
	}
	nOps := 1 + rng.IntN(3)
	for range nOps * 2 {
		if len(t.Ops) == nOps {
			break
		}
		var o Op
		switch n := rng.IntN(10); {
		case n < 6:
			o = Op{Kind: OpPut, Key: modelKeys[rng.IntN(len(modelKeys))], Value: []byte(modelValues[rng.IntN(len(modelValues))])}
		case n < 9:
			o = Op{Kind: OpDelete, Key: modelKeys[rng.IntN(len(modelKeys))]}
		default:
			p := modelPrefixes[1+rng.IntN(len(modelPrefixes)-1)]
			o = Op{Kind: OpDeletePrefix, Key: p}
		}
		ok := true
		for _, e := range t.Ops {
			if e.Key == o.Key ||
				e.Kind == OpDeletePrefix && strings.HasPrefix(o.Key, e.Key) ||
				o.Kind == OpDeletePrefix && strings.HasPrefix(e.Key, o.Key) {
				ok = false
			}
		}
		if ok {
			t.Ops = append(t.Ops, o)
		}
	}
	cur := m.cur()
	for range rng.IntN(3) {
		key := modelKeys[rng.IntN(len(modelKeys))]
		p := Precondition{Kind: CondKind(1 + rng.IntN(4)), Key: key}
		switch p.Kind {
		case CondRevision:
			if rng.IntN(2) == 0 {
				p.Revision = cur[key].mod
			} else {
				p.Revision = rng.Uint64N(m.rev + 2)
			}
		case CondValue:
			if kv, ok := cur[key]; ok && rng.IntN(2) == 0 {
				p.Value = []byte(kv.value)
			} else {
				p.Value = []byte(modelValues[rng.IntN(len(modelValues))])
			}
		}
		t.Preconditions = append(t.Preconditions, p)
	}
	if rng.IntN(4) == 0 {
		t.User = "u" + strconv.Itoa(rng.IntN(3))
	}
	return t
}

// modelSeeds returns the seeds to run: CAIRN_FSM_SEED alone when set,
// otherwise two fixed seeds and a fresh one. CAIRN_FSM_STEPS sets the
// length of each run (default 300).
func modelSeeds(t *testing.T) []uint64 {
	if s := os.Getenv("CAIRN_FSM_SEED"); s != "" {
		seed, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("CAIRN_FSM_SEED=%q: %v", s, err)
		}
		return []uint64{seed}
	}
	return []uint64{1, 2, uint64(time.Now().UnixNano())}
}

func TestModel(t *testing.T) {
	steps := 300
	if testing.Short() {
		steps = 100
	}
	if s := os.Getenv("CAIRN_FSM_STEPS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			t.Fatalf("CAIRN_FSM_STEPS=%q: want a positive number", s)
		}
		steps = n
	}
	for _, seed := range modelSeeds(t) {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			t.Cleanup(func() {
				if t.Failed() {
					t.Logf("reproduce with: CAIRN_FSM_SEED=%d go test -run 'TestModel' ./fsm/", seed)
				}
			})
			runModel(t, seed, steps)
		})
	}
}

func runModel(t *testing.T, seed uint64, steps int) {
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	f := openTestFSMConfig(t, func(c *Config) { c.CompactChunk = 1 + rng.IntN(8) })
	m := newModel()
	clock := time.Unix(1_800_000_000, 0).UnixNano()

	for step := range steps {
		switch n := rng.IntN(100); {
		case n < 6: // compaction, sometimes refused
			lo, hi := int64(m.compact)-1, int64(m.rev)+1
			rev := uint64(lo + rng.Int64N(hi-lo+1))
			want := m.compactAt(rev)
			got := f.compact(rev)
			if !sameError(got, want) {
				t.Fatalf("step %d: compact at %d: %v, want %v", step, rev, got, want)
			}
		case n < 8: // crash and restart
			f = f.reopen()
		default: // one ApplyBatch of 1-3 entries of 1-3 transactions each
			var logs []*raft.Log
			var want [][]TxnResult
			for range 1 + rng.IntN(3) {
				clock += int64(rng.IntN(3000)-500) * int64(time.Millisecond) // sometimes backwards
				var b Batch
				b.Time = time.Unix(0, clock).UTC()
				b.Limits = DefaultLimits()
				m.time = max(clock, m.time, 0) // log time advances with every batch
				var exp []TxnResult
				for range 1 + rng.IntN(3) {
					txn := genTxn(rng, m)
					b.Txns = append(b.Txns, txn)
					exp = append(exp, m.txn(&txn, clock))
				}
				logs = append(logs, f.entry(Command{Batch: &b}))
				want = append(want, exp)
			}
			got := f.apply(logs...)
			for i := range logs {
				br := got[i].(*BatchResult)
				if br.Err != nil {
					t.Fatalf("step %d: batch refused: %v", step, br.Err)
				}
				for j, r := range br.Txns {
					w := want[i][j]
					if r.Revision != w.Revision || !r.Time.Equal(w.Time) || !sameError(r.Err, w.Err) {
						t.Fatalf("step %d entry %d txn %d: got %+v, want %+v", step, i, j, r, w)
					}
				}
			}
		}
		checkCurrent(t, f, m, step)
		if step%50 == 49 {
			checkAll(t, f, m, rng, step)
		}
	}
	checkAll(t, f, m, rng, steps)
	f.waitPhysicalCompaction()
	checkAll(t, f, m, rng, steps)
	if _, err := f.Verify(context.Background()); err != nil {
		t.Fatalf("verify: %v", err)
	}
}

// sameError compares an FSM error with the model's expectation: the same
// sentinel, and for conflicts and compactions the same details.
func sameError(got, want error) bool {
	if want == nil || got == nil {
		return got == nil && want == nil
	}
	var wc, gc *ConflictError
	if errors.As(want, &wc) {
		return errors.As(got, &gc) && reflect.DeepEqual(gc.Conflicts, wc.Conflicts)
	}
	var wce, gce *CompactedError
	if errors.As(want, &wce) {
		return errors.As(got, &gce) && *gce == *wce
	}
	return errors.Is(got, want)
}

func kvEqual(got KeyValue, key string, want modelKV) bool {
	return got.Key == key && string(got.Value) == want.value && got.CreateRevision == want.create && got.ModRevision == want.mod
}

// checkCurrent compares the current state.
func checkCurrent(t *testing.T, f *testFSM, m *model, step int) {
	t.Helper()
	if st := f.status(); st.Revision != m.rev || st.CompactRevision != m.compact || st.Time.UnixNano() != m.time && m.rev > 0 {
		t.Fatalf("step %d: status %+v, model revision %d compact %d time %d", step, st, m.rev, m.compact, m.time)
	}
	if f.Revision() != m.rev {
		t.Fatalf("step %d: Revision() %d, want %d", step, f.Revision(), m.rev)
	}
	checkAt(t, f, m, 0, m.cur(), step)
}

// checkAt compares Get of every key and List of every prefix at rev.
func checkAt(t *testing.T, f *testFSM, m *model, rev uint64, state map[string]modelKV, step int) {
	t.Helper()
	for _, key := range modelKeys {
		kv, at, err := f.Get(key, rev)
		want, ok := state[key]
		if rev != 0 && at != rev {
			t.Fatalf("step %d: get %q at %d answered revision %d", step, key, rev, at)
		}
		if !ok {
			if !errors.Is(err, ErrNotFound) {
				t.Fatalf("step %d: get %q at %d: %+v %v, want not found", step, key, rev, kv, err)
			}
			continue
		}
		if err != nil || !kvEqual(kv, key, want) {
			t.Fatalf("step %d: get %q at %d: %+v %v, want %+v", step, key, rev, kv, err, want)
		}
	}
	for _, prefix := range modelPrefixes {
		var want []string
		for k := range state {
			if strings.HasPrefix(k, prefix) {
				want = append(want, k)
			}
		}
		slices.Sort(want)
		got := f.listAll(prefix, rev)
		if len(got) != len(want) {
			t.Fatalf("step %d: list %q at %d: %v, want %v", step, prefix, rev, keysOf(got), want)
		}
		for i, kv := range got {
			if !kvEqual(kv, want[i], state[want[i]]) {
				t.Fatalf("step %d: list %q at %d: entry %+v, want %q %+v", step, prefix, rev, kv, want[i], state[want[i]])
			}
		}
		for _, limit := range []int{1, 2} {
			if paged := f.pageAll(prefix, rev, limit); !reflect.DeepEqual(paged, got) {
				t.Fatalf("step %d: paging %q at %d by %d: %v, want %v", step, prefix, rev, limit, keysOf(paged), want)
			}
		}
	}
}

// checkAll compares reads at every retained revision, histories, the log
// and the compacted errors before the compaction point.
func checkAll(t *testing.T, f *testFSM, m *model, rng *rand.Rand, step int) {
	t.Helper()
	for r := m.compact; r <= m.rev; r++ {
		if r == 0 {
			continue
		}
		checkAt(t, f, m, r, m.states[r], step)
	}
	if m.compact > 1 {
		r := 1 + rng.Uint64N(m.compact-1)
		_, _, err := f.Get(modelKeys[0], r)
		if !sameError(err, &CompactedError{Requested: r, Oldest: m.compact}) {
			t.Fatalf("step %d: get at compacted %d: %v", step, r, err)
		}
		_, err = f.List("", ListOptions{Revision: r})
		if !sameError(err, &CompactedError{Requested: r, Oldest: m.compact}) {
			t.Fatalf("step %d: list at compacted %d: %v", step, r, err)
		}
	}
	for _, key := range modelKeys {
		want := m.retainedHistory(key)
		got, _, err := f.History(key, HistoryOptions{})
		if len(want) == 0 {
			if !errors.Is(err, ErrNotFound) {
				t.Fatalf("step %d: history %q: %+v %v, want not found", step, key, got, err)
			}
			continue
		}
		for i := range got {
			if len(got[i].Value) == 0 {
				got[i].Value = []byte{}
			}
		}
		for i := range want {
			if len(want[i].Value) == 0 {
				want[i].Value = []byte{}
			}
		}
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Fatalf("step %d: history %q:\n got %+v\nwant %+v (%v)", step, key, got, want, err)
		}
	}
	recs, cur, err := f.Log(m.compact, 0)
	if err != nil || cur != m.rev || uint64(len(recs)) != m.rev-m.compact+1 {
		t.Fatalf("step %d: log from %d: %d records, current %d, %v", step, m.compact, len(recs), cur, err)
	}
	for i, rec := range recs {
		want := m.records[m.compact-1+uint64(i)]
		if rec.Revision != m.compact+uint64(i) || rec.Time.UnixNano() != want.time || len(rec.Ops) != len(want.ops) {
			t.Fatalf("step %d: record %+v, want %+v", step, rec, want)
		}
		for j, o := range rec.Ops {
			w := want.ops[j]
			if o.Kind != w.Kind || o.Key != w.Key || string(o.Value) != string(w.Value) {
				t.Fatalf("step %d: record %d op %d: %+v, want %+v", step, rec.Revision, j, o, w)
			}
		}
	}
}
