package fsm

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"testing"
	"time"
)

// control applies a MirrorControl entry at the test clock and returns its
// result.
func (tf *testFSM) control(c MirrorControl) *CommandResult {
	tf.t.Helper()
	if c.Time.IsZero() {
		tf.clock = tf.clock.Add(time.Second)
		c.Time = tf.clock
	}
	return tf.commandResult(Command{MirrorControl: &c})
}

// commandResult applies c as the next entry and returns its *CommandResult.
func (tf *testFSM) commandResult(c Command) *CommandResult {
	tf.t.Helper()
	res := tf.apply(tf.entry(c))[0]
	cr, ok := res.(*CommandResult)
	if !ok {
		tf.t.Fatalf("response is %T (%v)", res, res)
	}
	return cr
}

// mustControl applies a MirrorControl entry and fails unless it applies.
func (tf *testFSM) mustControl(c MirrorControl) {
	tf.t.Helper()
	if res := tf.control(c); res.Err != nil {
		tf.t.Fatalf("mirror control %+v: %v", c, res.Err)
	}
}

// startMirror makes tf a standby of cluster "source" (filtered when include
// or exclude is given).
func (tf *testFSM) startMirror(include, exclude []string) {
	tf.t.Helper()
	tf.mustControl(MirrorControl{Start: &MirrorStart{Sources: []string{"http://source:7000"},
		SourceClusterID: "source", Include: include, Exclude: exclude}})
}

// mirrorRecords applies one MirrorRecords entry and returns its result.
func (tf *testFSM) mirrorRecords(recs []RawRecord, sourceHead uint64) *CommandResult {
	tf.t.Helper()
	tf.clock = tf.clock.Add(time.Millisecond)
	return tf.commandResult(Command{MirrorRecords: &MirrorRecords{Records: recs, SourceHead: sourceHead,
		SourceHeadTime: tf.clock.Add(-time.Second), Time: tf.clock}})
}

// mirrorState returns Mirror() or fails the test.
func (tf *testFSM) mirrorState() MirrorState {
	tf.t.Helper()
	ms, err := tf.Mirror()
	if err != nil {
		tf.t.Fatalf("mirror: %v", err)
	}
	return ms
}

// rawAll returns every record of tf from revision 1.
func (tf *testFSM) rawAll() []RawRecord {
	tf.t.Helper()
	recs, _, err := tf.RawLog(1, 0)
	if err != nil {
		tf.t.Fatalf("raw log: %v", err)
	}
	return recs
}

// stateHash returns the state hash at rev or fails the test.
func (tf *testFSM) stateHash(rev uint64) StateDigest {
	tf.t.Helper()
	d, err := tf.StateHash(context.Background(), rev)
	if err != nil {
		tf.t.Fatalf("state hash at %d: %v", rev, err)
	}
	return d
}

// fillSource commits n transactions of every kind: puts, deletes,
// delete-prefixes, users, descriptions, meta, idempotency keys and an
// authenticated user (access control off: it is recorded, not checked).
func fillSource(tf *testFSM, n int) {
	tf.t.Helper()
	for i := 1; i <= n; i++ {
		txn := Txn{Ops: []Op{put(fmt.Sprintf("app/%d", i%7), strconv.Itoa(i)), put(fmt.Sprintf("other/%d", i%5), "o")}}
		switch i % 6 {
		case 1:
			txn.User, txn.Description, txn.Meta = "alice", "desc "+strconv.Itoa(i), map[string]string{"ticket": strconv.Itoa(i)}
		case 2:
			txn.IdempotencyKey = "req-" + strconv.Itoa(i)
		case 3:
			txn.AuthUser = "bob"
			txn.Ops = append(txn.Ops, del(fmt.Sprintf("app/%d", (i+1)%7)))
		case 4:
			txn.Ops = []Op{delPrefix("other/"), put("app/secret/"+strconv.Itoa(i), "s")}
		case 5:
			txn.Ops = []Op{delPrefix("app/secret/"), put("zzz", strconv.Itoa(i))}
		}
		tf.mustCommit(txn)
	}
}

// feed sends recs to the standby in entries of the given sizes (cycling).
func feed(t *testing.T, standby *testFSM, recs []RawRecord, sizes []int) {
	t.Helper()
	head := recs[len(recs)-1].Revision
	for i, k := 0, 0; i < len(recs); k++ {
		end := min(i+sizes[k%len(sizes)], len(recs))
		if res := standby.mirrorRecords(recs[i:end], head); res.Err != nil {
			t.Fatalf("records %d..%d: %v", recs[i].Revision, recs[end-1].Revision, res.Err)
		}
		i = end
	}
}

// An unfiltered standby fed the source's records holds the same history:
// the same head hash, records and state at every revision.
func TestMirrorVerbatim(t *testing.T) {
	src := openTestFSM(t)
	fillSource(src, 60)
	recs := src.rawAll()
	standby := openTestFSM(t)
	standby.startMirror(nil, nil)
	feed(t, standby, recs, []int{1, 2, 3, 5, 8, 13, 21})

	sh, dh := src.status(), standby.status()
	if sh.Revision != dh.Revision || sh.Head != dh.Head {
		t.Fatalf("standby head %d %s, source %d %s", dh.Revision, dh.Head, sh.Revision, sh.Head)
	}
	for rev := uint64(1); rev <= sh.Revision; rev += 4 {
		if a, b := src.stateHash(rev), standby.stateHash(rev); a != b {
			t.Fatalf("state hash at %d: standby %+v, source %+v", rev, b, a)
		}
	}
	if a, b := src.logAll(), standby.logAll(); !reflect.DeepEqual(a, b) {
		t.Fatalf("logs differ")
	}
	if a, b := recs, standby.rawAll(); !reflect.DeepEqual(a, b) {
		t.Fatalf("raw logs differ")
	}
	if _, err := standby.Verify(context.Background()); err != nil {
		t.Fatalf("verify: %v", err)
	}
	ms := standby.mirrorState()
	last := src.logAll()[len(recs)-1]
	if ms.Mode != MirrorFollowing || ms.SourceRevision != sh.Revision || ms.SourceHash != sh.Head ||
		ms.SourceHead != sh.Revision || !ms.LastApplied.Equal(last.Time) || ms.LastEntryTime != standby.clock {
		t.Fatalf("mirror state %+v", ms)
	}
	// The idempotency entries came along: after promotion a client's
	// retry of a source transaction is answered, not applied again.
	standby.mustControl(MirrorControl{Promote: &MirrorPromote{}})
	r := standby.commit(Txn{Ops: []Op{put("app/x", "retry")}, IdempotencyKey: "req-2"})[0]
	if r.Err != nil || !r.Replayed || r.Revision != 2 || r.Hash != recs[1].Hash {
		t.Fatalf("retry after promotion: %+v", r)
	}
}

func TestMirrorRecordsResult(t *testing.T) {
	src := openTestFSM(t)
	fillSource(src, 5)
	standby := openTestFSM(t)
	standby.startMirror(nil, nil)
	res := standby.mirrorRecords(src.rawAll()[:3], 5)
	if res.Err != nil || res.MirrorRevision != 3 || res.SourceRevision != 3 {
		t.Fatalf("result %+v", res)
	}
}

// A new standby leader re-proposing records the standby has: they are
// skipped when their hashes match.
func TestMirrorRecordsOverlapSkipped(t *testing.T) {
	src := openTestFSM(t)
	fillSource(src, 15)
	recs := src.rawAll()
	standby := openTestFSM(t)
	standby.startMirror(nil, nil)
	feed(t, standby, recs[:10], []int{10})
	if res := standby.mirrorRecords(recs[4:10], 15); res.Err != nil || res.MirrorRevision != 10 {
		t.Fatalf("all-overlapping entry: %+v", res)
	}
	if res := standby.mirrorRecords(recs[4:15], 15); res.Err != nil || res.MirrorRevision != 15 {
		t.Fatalf("overlapping entry: %+v", res)
	}
	if h := standby.status().Head; h != src.status().Head {
		t.Fatalf("head %s, source %s", h, src.status().Head)
	}
}

// A gap, a hash that does not recompute, an overlap with another hash or a
// record of another chain refuse the whole entry: nothing is written.
func TestMirrorRecordsRefusedWriteNothing(t *testing.T) {
	src := openTestFSM(t)
	fillSource(src, 20)
	recs := src.rawAll()
	other := openTestFSM(t)
	other.clock = other.clock.Add(time.Hour)
	fillSource(other, 20)
	otherRecs := other.rawAll()

	standby := openTestFSM(t)
	standby.startMirror(nil, nil)
	feed(t, standby, recs[:10], []int{4})
	before, beforeState, beforeMirror := standby.status(), standby.stateHash(0), standby.mirrorState()
	idem := standby.count(bucketIdem)

	tampered := recs[10]
	tampered.Canonical = append([]byte(nil), tampered.Canonical...)
	tampered.Canonical[len(tampered.Canonical)-1] ^= 1
	wrongHash := recs[11]
	wrongHash.Hash[0] ^= 1
	overlap := recs[5]
	overlap.Hash[3] ^= 1
	cases := map[string][]RawRecord{
		"gap":              {recs[11], recs[12]},
		"gap after good":   {recs[10], recs[12]},
		"tampered":         {tampered},
		"wrong hash later": {recs[10], wrongHash, recs[12]},
		"overlap differs":  {overlap, recs[10]},
		"another chain":    otherRecs[10:12],
	}
	for name, rs := range cases {
		res := standby.mirrorRecords(rs, 20)
		if !errors.Is(res.Err, ErrChainMismatch) {
			t.Errorf("%s: %v, want ErrChainMismatch", name, res.Err)
		}
		if st := standby.status(); st.Revision != before.Revision || st.Head != before.Head {
			t.Fatalf("%s: head moved to %d", name, st.Revision)
		}
		if d := standby.stateHash(0); d != beforeState {
			t.Fatalf("%s: state changed", name)
		}
		if ms := standby.mirrorState(); !reflect.DeepEqual(ms, beforeMirror) {
			t.Fatalf("%s: mirror state changed: %+v", name, ms)
		}
		if n := standby.count(bucketIdem); n != idem {
			t.Fatalf("%s: %d idempotency entries, was %d", name, n, idem)
		}
	}
	// The standby still follows from where it was.
	feed(t, standby, recs[10:], []int{3})
	if standby.status().Head != src.status().Head {
		t.Fatal("standby did not catch up after the refusals")
	}
}

func TestMirrorRecordsNeedFollowing(t *testing.T) {
	src := openTestFSM(t)
	fillSource(src, 3)
	recs := src.rawAll()
	tf := openTestFSM(t)
	if res := tf.mirrorRecords(recs, 3); !errors.Is(res.Err, ErrNotStandby) {
		t.Fatalf("primary: %v, want ErrNotStandby", res.Err)
	}
	tf.startMirror(nil, nil)
	tf.mustControl(MirrorControl{Stop: &MirrorStop{}})
	if res := tf.mirrorRecords(recs, 3); !errors.Is(res.Err, ErrNotStandby) {
		t.Fatalf("stopped: %v, want ErrNotStandby", res.Err)
	}
	if rev := tf.status().Revision; rev != 0 {
		t.Fatalf("revision %d", rev)
	}
}

// A standby refuses every transaction of a batch; promotion makes it
// writable, with the promotion recorded in its chain.
func TestMirrorReadOnlyAndPromote(t *testing.T) {
	src := openTestFSM(t)
	fillSource(src, 8)
	tf := openTestFSM(t)
	tf.mustCommit(ops(put("local", "1"))) // a primary's own history
	tf.mustCommit(ops(put("local", "2")))
	if tf.ReadOnly() {
		t.Fatal("a primary is read-only")
	}
	tf.startMirror(nil, nil)
	if !tf.ReadOnly() {
		t.Fatal("a following standby is writable")
	}
	batch := func() []TxnResult {
		return tf.commit(Txn{Ops: []Op{put("a", "1")}, IdempotencyKey: "k1"}, ops(put("b", "2")))
	}
	for _, mode := range []string{"following", "stopped"} {
		if mode == "stopped" {
			tf.mustControl(MirrorControl{Stop: &MirrorStop{}})
			if !tf.ReadOnly() {
				t.Fatal("a stopped standby is writable")
			}
		}
		before := tf.status()
		for i, r := range batch() {
			if !errors.Is(r.Err, ErrReadOnly) || r.Revision != 0 {
				t.Fatalf("%s: txn %d: %+v, want ErrReadOnly", mode, i, r)
			}
		}
		if st := tf.status(); st.Revision != before.Revision || st.Head != before.Head || st.Time != before.Time {
			t.Fatalf("%s: a refused batch changed the status: %+v", mode, st)
		}
		if n := tf.count(bucketIdem); n != 0 {
			t.Fatalf("%s: %d idempotency entries", mode, n)
		}
	}
	// Compaction, members, the cluster id and access control are the
	// standby's own.
	tf.mustCompact(2)
	if res := tf.commandResult(Command{SetMember: &Member{ID: "n2", HTTPAddr: "http://n2", RaftAddr: "n2:1"}}); res.Err != nil {
		t.Fatalf("set member: %v", res.Err)
	}
	if res := tf.changeAuth(chAddUser("carol")); res.Err != nil {
		t.Fatalf("auth: %v", res.Err)
	}

	head := tf.status()
	tf.clock = tf.clock.Add(time.Minute)
	res := tf.control(MirrorControl{Promote: &MirrorPromote{}, Time: tf.clock})
	if res.Err != nil || res.MirrorRevision != head.Revision+1 {
		t.Fatalf("promote: %+v", res)
	}
	if tf.ReadOnly() {
		t.Fatal("read-only after promotion")
	}
	recs := tf.logAll()
	p := recs[len(recs)-1]
	want := map[string]string{MetaMirror: "promoted", MetaMirrorSourceCluster: "source",
		MetaMirrorSourceRevision: strconv.FormatUint(head.Revision, 10)}
	if p.Revision != head.Revision+1 || !p.Time.Equal(tf.clock) || len(p.Ops) != 0 ||
		p.Description != PromotionDescription || !reflect.DeepEqual(p.Meta, want) {
		t.Fatalf("promotion record %+v", p)
	}
	ms := tf.mirrorState()
	if ms.Mode != MirrorNone || ms.PromotedAt != p.Revision || ms.PromotedFrom != "source" || !ms.PromotedTime.Equal(p.Time) {
		t.Fatalf("mirror state after promotion %+v", ms)
	}
	r := batch()
	if r[0].Err != nil || r[0].Revision != p.Revision+1 || r[1].Revision != p.Revision+2 {
		t.Fatalf("batch after promotion: %+v", r)
	}
	if _, err := tf.Verify(context.Background()); err != nil {
		t.Fatalf("verify: %v", err)
	}
	// Kept through a restart.
	tf = tf.reopen()
	if ms2 := tf.mirrorState(); !reflect.DeepEqual(ms, ms2) || tf.ReadOnly() {
		t.Fatalf("after reopen %+v", ms2)
	}
}

func TestMirrorPromoteFilteredRefused(t *testing.T) {
	tf := openTestFSM(t)
	tf.startMirror([]string{"app/"}, nil)
	before := tf.mirrorState()
	if res := tf.control(MirrorControl{Promote: &MirrorPromote{}}); !errors.Is(res.Err, ErrMirrorFiltered) {
		t.Fatalf("promote filtered: %v, want ErrMirrorFiltered", res.Err)
	}
	if ms := tf.mirrorState(); !reflect.DeepEqual(ms, before) || tf.status().Revision != 0 || !tf.ReadOnly() {
		t.Fatalf("a refused promotion changed the state: %+v", ms)
	}
}

// TestFilteredMirrorRestoredWritable: the way docs/mirror.md gives to make
// a filtered standby's data writable: its backup, restored, is a primary
// (no mirror state, not read-only) holding the filtered keys and its own
// chain, and takes writes.
func TestFilteredMirrorRestoredWritable(t *testing.T) {
	src := openTestFSM(t)
	fillSource(src, 20)
	tf := openTestFSM(t)
	tf.startMirror([]string{"app/"}, nil)
	feed(t, tf, src.rawAll(), []int{3})
	want := tf.listAll("", 0)
	if len(want) == 0 {
		t.Fatal("the filtered standby holds nothing")
	}
	full := writeFile(t, "filtered.bak", func(w *bytes.Buffer) error {
		_, err := tf.WriteFullBackup(w, time.Now())
		return err
	})
	path := filepath.Join(t.TempDir(), "restored.db")
	h, err := RestoreBackup(context.Background(), path, full)
	if err != nil {
		t.Fatal(err)
	}
	r := openTestFSMAt(t, path)
	if ms := r.mirrorState(); ms.Mode != MirrorNone || ms.Filtered || r.ReadOnly() {
		t.Fatalf("restored from a filtered standby: mirror state %+v, read-only %v", ms, r.ReadOnly())
	}
	if got := r.listAll("", 0); !reflect.DeepEqual(got, want) {
		t.Fatalf("restored keys %v, want the standby's %v", got, want)
	}
	res := r.mustCommit(Txn{Ops: []Op{put("app/new", "written after the restore")}, IdempotencyKey: "after-restore"})
	if res.Revision != h.Revision+1 {
		t.Fatalf("write after the restore at %d, want %d", res.Revision, h.Revision+1)
	}
}

// Every mirror mode against every control operation.
func TestMirrorTransitions(t *testing.T) {
	start := MirrorControl{Start: &MirrorStart{Sources: []string{"http://s"}, SourceClusterID: "source"}}
	opsByName := map[string]MirrorControl{
		"start":         start,
		"stop":          {Stop: &MirrorStop{}},
		"set diverged":  {SetState: &MirrorSetState{State: MirrorDiverged, Message: "m"}},
		"set compacted": {SetState: &MirrorSetState{State: MirrorCompacted, Message: "m"}},
		"promote":       {Promote: &MirrorPromote{}},
	}
	reach := map[MirrorMode][]MirrorControl{
		MirrorNone:      nil,
		MirrorFollowing: {start},
		MirrorStopped:   {start, opsByName["stop"]},
		MirrorDiverged:  {start, opsByName["set diverged"]},
		MirrorCompacted: {start, opsByName["set compacted"]},
	}
	const refused = MirrorMode("refused")
	want := map[MirrorMode]map[string]MirrorMode{
		MirrorNone: {"start": MirrorFollowing, "stop": refused, "set diverged": refused,
			"set compacted": refused, "promote": refused},
		MirrorFollowing: {"start": refused, "stop": MirrorStopped, "set diverged": MirrorDiverged,
			"set compacted": MirrorCompacted, "promote": MirrorNone},
		MirrorStopped: {"start": MirrorFollowing, "stop": refused, "set diverged": refused,
			"set compacted": refused, "promote": MirrorNone},
		MirrorDiverged: {"start": MirrorFollowing, "stop": MirrorStopped, "set diverged": refused,
			"set compacted": refused, "promote": MirrorNone},
		MirrorCompacted: {"start": MirrorFollowing, "stop": MirrorStopped, "set diverged": refused,
			"set compacted": refused, "promote": MirrorNone},
	}
	for from, steps := range reach {
		for name, op := range opsByName {
			t.Run(fmt.Sprintf("%s/%s", modeWord(from), name), func(t *testing.T) {
				tf := openTestFSM(t)
				for _, s := range steps {
					tf.mustControl(s)
				}
				before := tf.mirrorState()
				if before.Mode != from {
					t.Fatalf("set up %q, got %q", from, before.Mode)
				}
				res := tf.control(op)
				w := want[from][name]
				if w == refused {
					if !errors.Is(res.Err, ErrMirrorState) {
						t.Fatalf("%v, want ErrMirrorState", res.Err)
					}
					if ms := tf.mirrorState(); !reflect.DeepEqual(ms, before) {
						t.Fatalf("refused, yet the state changed: %+v", ms)
					}
					return
				}
				if res.Err != nil {
					t.Fatalf("refused: %v", res.Err)
				}
				ms := tf.mirrorState()
				if ms.Mode != w || !ms.Since.Equal(tf.clock) || tf.ReadOnly() != (w != MirrorNone) {
					t.Fatalf("mode %q since %v read-only %v, want %q since %v", ms.Mode, ms.Since, tf.ReadOnly(), w, tf.clock)
				}
				if op.SetState != nil && ms.Message != "m" {
					t.Fatalf("message %q", ms.Message)
				}
			})
		}
	}
}

func TestMirrorStartRefusals(t *testing.T) {
	tf := openTestFSM(t)
	if res := tf.commandResult(Command{SetClusterID: &SetClusterID{ID: "me"}}); res.Err != nil {
		t.Fatal(res.Err)
	}
	src := []string{"http://s"}
	for name, c := range map[string]struct {
		s    MirrorStart
		want error
	}{
		"no sources":            {MirrorStart{SourceClusterID: "x"}, ErrInvalidMirror},
		"empty source":          {MirrorStart{Sources: []string{""}, SourceClusterID: "x"}, ErrInvalidMirror},
		"no source cluster":     {MirrorStart{Sources: src}, ErrInvalidMirror},
		"empty prefix":          {MirrorStart{Sources: src, SourceClusterID: "x", Include: []string{""}}, ErrInvalidMirror},
		"NUL prefix":            {MirrorStart{Sources: src, SourceClusterID: "x", Exclude: []string{"a\x00"}}, ErrInvalidMirror},
		"unfiltered resume":     {MirrorStart{Sources: src, SourceClusterID: "x", SourceRevision: 4}, ErrInvalidMirror},
		"itself":                {MirrorStart{Sources: src, SourceClusterID: "me"}, ErrMirrorLoop},
		"itself upstream":       {MirrorStart{Sources: src, SourceClusterID: "x", Upstream: []string{"y", "me"}}, ErrMirrorLoop},
		"loop through a filter": {MirrorStart{Sources: src, SourceClusterID: "me", Include: []string{"a/"}}, ErrMirrorLoop},
	} {
		s := c.s
		if res := tf.control(MirrorControl{Start: &s}); !errors.Is(res.Err, c.want) {
			t.Errorf("%s: %v, want %v", name, res.Err, c.want)
		}
	}
	if ms := tf.mirrorState(); !reflect.DeepEqual(ms, MirrorState{}) {
		t.Fatalf("refused starts changed the state: %+v", ms)
	}
	if res := tf.control(MirrorControl{SetState: &MirrorSetState{State: MirrorStopped}}); !errors.Is(res.Err, ErrInvalidMirror) {
		t.Fatalf("set state stopped: %v", res.Err)
	}
}

// A store that mirrored unfiltered cannot become a filtered mirror (or
// the other way) unless it is empty; a filtered mirror does not resume
// behind its resume point.
func TestMirrorStartFilterChange(t *testing.T) {
	src := openTestFSM(t)
	fillSource(src, 6)
	recs := src.rawAll()

	empty := openTestFSM(t)
	empty.startMirror(nil, nil)
	empty.mustControl(MirrorControl{Stop: &MirrorStop{}})
	empty.startMirror([]string{"app/"}, nil) // revision 0: allowed
	if ms := empty.mirrorState(); !ms.Filtered || ms.Mode != MirrorFollowing {
		t.Fatalf("state %+v", ms)
	}

	tf := openTestFSM(t)
	tf.startMirror(nil, nil)
	feed(t, tf, recs[:3], []int{3})
	tf.mustControl(MirrorControl{Stop: &MirrorStop{}})
	res := tf.control(MirrorControl{Start: &MirrorStart{Sources: []string{"http://s"}, SourceClusterID: "source",
		Include: []string{"app/"}}})
	if !errors.Is(res.Err, ErrMirrorState) {
		t.Fatalf("unfiltered -> filtered with data: %v", res.Err)
	}
	tf.startMirror(nil, nil) // the same kind resumes
	if ms := tf.mirrorState(); ms.SourceRevision != 3 || ms.Mode != MirrorFollowing {
		t.Fatalf("resumed state %+v", ms)
	}

	ft := openTestFSM(t)
	ft.startMirror([]string{"app/"}, nil)
	feed(t, ft, recs, []int{2})
	ft.mustControl(MirrorControl{Stop: &MirrorStop{}})
	back := MirrorStart{Sources: []string{"http://s"}, SourceClusterID: "source", Include: []string{"app/"},
		SourceRevision: 2, SourceHash: recs[1].Hash}
	if res := ft.control(MirrorControl{Start: &back}); !errors.Is(res.Err, ErrMirrorState) {
		t.Fatalf("filtered resume behind: %v", res.Err)
	}
	if res := ft.control(MirrorControl{Start: &MirrorStart{Sources: []string{"http://s"}, SourceClusterID: "source"}}); !errors.Is(res.Err, ErrMirrorState) {
		t.Fatalf("filtered -> unfiltered with data: %v", res.Err)
	}
	ms := ft.mirrorState()
	resume := MirrorStart{Sources: []string{"http://s"}, SourceClusterID: "source", Include: []string{"app/", "zzz"},
		SourceRevision: ms.SourceRevision, SourceHash: ms.SourceHash}
	if res := ft.control(MirrorControl{Start: &resume}); !errors.Is(res.Err, ErrMirrorState) {
		t.Fatalf("filtered resume with another filter: %v", res.Err)
	}
	resume.Include = []string{"app/"}
	if res := ft.control(MirrorControl{Start: &resume}); res.Err != nil {
		t.Fatalf("filtered resume: %v", res.Err)
	}
	if got := ft.mirrorState(); got.SourceRevision != ms.SourceRevision || got.Mode != MirrorFollowing {
		t.Fatalf("resumed at %d, want %d", got.SourceRevision, ms.SourceRevision)
	}
}

func TestFilterOps(t *testing.T) {
	inc := []string{"app/", "logs/a"}
	exc := []string{"app/secret/"}
	cases := []struct {
		name     string
		in, want []Op
		include  []string
	}{
		{"put included", []Op{put("app/1", "v")}, []Op{put("app/1", "v")}, inc},
		{"put outside", []Op{put("other/1", "v")}, nil, inc},
		{"put excluded", []Op{put("app/secret/1", "v")}, nil, inc},
		{"delete included", []Op{del("logs/ab")}, []Op{del("logs/ab")}, inc},
		{"delete outside", []Op{del("logs/b")}, nil, inc},
		{"prefix above includes", []Op{delPrefix("a")}, []Op{delPrefix("app/")}, inc},
		{"prefix above both", []Op{delPrefix("")}, []Op{delPrefix("app/"), delPrefix("logs/a")}, inc},
		{"prefix under include", []Op{delPrefix("app/x/")}, []Op{delPrefix("app/x/")}, inc},
		{"prefix under exclude", []Op{delPrefix("app/secret/z")}, nil, inc},
		{"prefix elsewhere", []Op{delPrefix("oth")}, nil, inc},
		{"prefix, nested includes", []Op{delPrefix("app/x")}, []Op{delPrefix("app/x")}, []string{"app/", "app/x/y"}},
		{"prefix above nested includes", []Op{delPrefix("ap")}, []Op{delPrefix("app/")}, []string{"app/", "app/x/y"}},
		{"no includes", []Op{put("other/1", "v"), delPrefix("o"), put("app/secret/2", "s")},
			[]Op{put("other/1", "v"), delPrefix("o")}, nil},
		{"mixed", []Op{put("app/1", "v"), put("x", "y"), delPrefix("logs/")},
			[]Op{put("app/1", "v"), delPrefix("logs/a")}, inc},
	}
	for _, c := range cases {
		if got := FilterOps(c.in, c.include, exc); !reflect.DeepEqual(got, c.want) {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
}

// A filtered standby: its own revisions and chain, only the included keys,
// each record naming its source record, the resume point the source
// revision, and the source's chain still checked.
func TestMirrorFiltered(t *testing.T) {
	src := openTestFSM(t)
	fillSource(src, 40)
	// A source record with nothing included.
	src.mustCommit(Txn{Ops: []Op{put("other/only", "x")}, IdempotencyKey: "only-other"})
	fillSource(src, 5)
	recs := src.rawAll()
	include, exclude := []string{"app/"}, []string{"app/secret/"}

	tf := openTestFSM(t)
	tf.startMirror(include, exclude)
	feed(t, tf, recs, []int{1, 4, 7})

	// The standby's state is the source's, filtered.
	var want []KeyValue
	for _, kv := range src.listAll("app/", 0) {
		if !hasAnyPrefix(kv.Key, exclude) {
			want = append(want, kv)
		}
	}
	got := tf.listAll("", 0)
	if len(got) != len(want) {
		t.Fatalf("standby holds %d keys, want %d", len(got), len(want))
	}
	for i := range got {
		if got[i].Key != want[i].Key || string(got[i].Value) != string(want[i].Value) {
			t.Fatalf("key %d: %q=%q, want %q=%q", i, got[i].Key, got[i].Value, want[i].Key, want[i].Value)
		}
	}
	ms := tf.mirrorState()
	last := recs[len(recs)-1]
	if ms.SourceRevision != last.Revision || ms.SourceHash != last.Hash || !ms.Filtered {
		t.Fatalf("mirror state %+v", ms)
	}

	// Every local record checks against its source record.
	srcRecs := src.logAll()
	local := tf.logAll()
	if len(local) == 0 || len(local) >= len(srcRecs) {
		t.Fatalf("%d local records for %d source records", len(local), len(srcRecs))
	}
	seen := map[uint64]bool{}
	for i, l := range local {
		rev, hash, ok := SourceOf(l)
		if !ok || l.Revision != uint64(i+1) {
			t.Fatalf("local record %d: source %d %v (meta %v)", l.Revision, rev, ok, l.Meta)
		}
		s := srcRecs[rev-1]
		if err := CheckSourceRecord(l, s, include, exclude); err != nil {
			t.Fatalf("check against source: %v", err)
		}
		if s.Hash != hash {
			t.Fatalf("local %d names source %d hash %s, source has %s", l.Revision, rev, hash, s.Hash)
		}
		if ops := FilterOps(s.Ops, include, exclude); !reflect.DeepEqual(ops, l.Ops) {
			t.Fatalf("local %d ops %v, source's filtered %v", l.Revision, l.Ops, ops)
		}
		if !l.Time.Equal(s.Time) || l.User != s.User || l.AuthUser != s.AuthUser || l.Description != s.Description ||
			l.IdempotencyKey != s.IdempotencyKey {
			t.Fatalf("local %d does not carry its source's fields: %+v vs %+v", l.Revision, l, s)
		}
		for k, v := range s.Meta {
			if l.Meta[k] != v {
				t.Fatalf("local %d meta %v, source %v", l.Revision, l.Meta, s.Meta)
			}
		}
		seen[rev] = true
	}
	for _, s := range srcRecs {
		if !seen[s.Revision] && len(FilterOps(s.Ops, include, exclude)) != 0 {
			t.Fatalf("source record %d has included operations and no local record", s.Revision)
		}
	}
	// CheckSourceRecord finds a local record that does not match its
	// source record.
	l, s := local[0], srcRecs[0]
	if rev, _, _ := SourceOf(l); rev != s.Revision {
		s = srcRecs[rev-1]
	}
	for name, mod := range map[string]func(l, s *Record){
		"value":    func(l, s *Record) { l.Ops = []Op{put(l.Ops[0].Key, "changed")} },
		"extra op": func(l, s *Record) { l.Ops = append(l.Ops, put("app/extra", "x")) },
		"time":     func(l, s *Record) { l.Time = l.Time.Add(time.Nanosecond) },
		"user":     func(l, s *Record) { l.User += "x" },
		"meta": func(l, s *Record) {
			l.Meta = map[string]string{MetaSourceRevision: l.Meta[MetaSourceRevision], MetaSourceHash: l.Meta[MetaSourceHash], "x": "y"}
		},
		"source hash": func(l, s *Record) { s.Hash[0] ^= 1 },
		"source rev":  func(l, s *Record) { s.Revision++ },
		"filter":      func(l, s *Record) { s.Ops = []Op{put("other/1", "v")} },
	} {
		lc, sc := l, s
		lc.Ops, sc.Ops = slices.Clone(l.Ops), slices.Clone(s.Ops)
		lc.Meta = maps.Clone(l.Meta)
		mod(&lc, &sc)
		if err := CheckSourceRecord(lc, sc, include, exclude); !errors.Is(err, ErrChainMismatch) {
			t.Errorf("%s: %v, want ErrChainMismatch", name, err)
		}
	}
	if _, _, ok := SourceOf(Record{Meta: map[string]string{MetaSourceRevision: "x", MetaSourceHash: last.Hash.String()}}); ok {
		t.Fatal("SourceOf accepted a malformed revision")
	}

	// Re-proposed records are skipped; one at the resume point must carry
	// its hash; a gap or a record that does not chain writes nothing.
	head := tf.status()
	if res := tf.mirrorRecords(recs[len(recs)-5:], last.Revision); res.Err != nil || res.MirrorRevision != head.Revision {
		t.Fatalf("re-proposal: %+v", res)
	}
	if st := tf.status(); st.Head != head.Head {
		t.Fatal("a re-proposal wrote records")
	}
	ms = tf.mirrorState()
	more := openTestFSM(t)
	fillSource(more, 50)
	next := more.rawAll()[len(recs)] // the next revision, of another chain
	for name, rs := range map[string][]RawRecord{
		"another chain": {next},
		"gap":           more.rawAll()[len(recs)+1 : len(recs)+2],
		"resume point":  {more.rawAll()[len(recs)-1]},
	} {
		if res := tf.mirrorRecords(rs, 99); !errors.Is(res.Err, ErrChainMismatch) {
			t.Errorf("%s: %v, want ErrChainMismatch", name, res.Err)
		}
	}
	if st, ms2 := tf.status(), tf.mirrorState(); st.Head != head.Head || !reflect.DeepEqual(ms2, ms) {
		t.Fatalf("refused entries changed the standby")
	}

	// A source record with nothing included advances the resume point
	// without a local record.
	src.mustCommit(ops(put("other/z", "1")))
	r := src.rawAll()[len(recs)]
	res := tf.mirrorRecords([]RawRecord{r}, r.Revision)
	if res.Err != nil || res.MirrorRevision != head.Revision || res.SourceRevision != r.Revision {
		t.Fatalf("filtered-out record: %+v", res)
	}
	if ms := tf.mirrorState(); ms.SourceRevision != r.Revision || ms.SourceHash != r.Hash {
		t.Fatalf("resume point %d, want %d", ms.SourceRevision, r.Revision)
	}
	if _, err := tf.Verify(context.Background()); err != nil {
		t.Fatalf("verify: %v", err)
	}
}

// checkpoint applies a MirrorCheckpoint entry and fails unless it applies.
func (tf *testFSM) checkpoint(c MirrorCheckpoint) {
	tf.t.Helper()
	if res := tf.commandResult(Command{MirrorCheckpoint: &c}); res.Err != nil {
		tf.t.Fatalf("checkpoint %+v: %v", c, res.Err)
	}
}

// compactAt applies a Compact entry with the given time.
func (tf *testFSM) compactAt(rev uint64, at time.Time) *CommandResult {
	tf.t.Helper()
	return tf.commandResult(Command{Compact: &Compact{Revision: rev, Time: at}})
}

func (tf *testFSM) checkpoints(now time.Time) []Checkpoint {
	tf.t.Helper()
	cps, err := tf.Checkpoints(now)
	if err != nil {
		tf.t.Fatalf("checkpoints: %v", err)
	}
	return cps
}

func TestMirrorCheckpoints(t *testing.T) {
	tf := openTestFSM(t)
	fillSource(tf, 30)
	t0 := tf.clock
	tf.checkpoint(MirrorCheckpoint{ID: "s1", Revision: 5, Time: t0, Window: time.Hour})
	tf.checkpoint(MirrorCheckpoint{ID: "s2", Revision: 9, Time: t0, Window: 10 * time.Minute})

	if f := tf.CompactionFloor(t0.Add(time.Minute)); f != 6 {
		t.Fatalf("floor %d, want 6", f)
	}
	cps := tf.checkpoints(t0.Add(30 * time.Minute))
	want := []Checkpoint{
		{ID: "s1", Revision: 5, LastProgress: t0, Window: time.Hour},
		{ID: "s2", Revision: 9, LastProgress: t0, Window: 10 * time.Minute, Released: true},
	}
	if !reflect.DeepEqual(cps, want) {
		t.Fatalf("checkpoints %+v, want %+v", cps, want)
	}

	// Clamped by the live checkpoint, whoever asked.
	if res := tf.compactAt(20, t0.Add(time.Minute)); res.Err != nil || res.CompactRevision != 6 {
		t.Fatalf("compact: %+v", res)
	}
	if c := tf.status().CompactRevision; c != 6 {
		t.Fatalf("compacted to %d, want 6", c)
	}
	// Held back entirely: nothing to do, no error.
	if res := tf.compactAt(20, t0.Add(2*time.Minute)); res.Err != nil || res.CompactRevision != 6 {
		t.Fatalf("compact held back: %+v", res)
	}

	// The revision never goes back, and no progress keeps LastProgress.
	tf.checkpoint(MirrorCheckpoint{ID: "s1", Revision: 3, Time: t0.Add(5 * time.Minute), Window: 2 * time.Hour})
	if cp := tf.checkpoints(t0)[0]; cp.Revision != 5 || !cp.LastProgress.Equal(t0) || cp.Window != 2*time.Hour {
		t.Fatalf("after a lower revision: %+v", cp)
	}
	tf.checkpoint(MirrorCheckpoint{ID: "s1", Revision: 5, Time: t0.Add(6 * time.Minute), Window: 2 * time.Hour})
	if cp := tf.checkpoints(t0)[0]; !cp.LastProgress.Equal(t0) {
		t.Fatalf("the same revision counted as progress: %+v", cp)
	}
	t1 := t0.Add(11 * time.Minute) // s2 (10 minutes) released
	tf.checkpoint(MirrorCheckpoint{ID: "s1", Revision: 12, Time: t1, Window: 2 * time.Hour})
	if cp := tf.checkpoints(t0)[0]; cp.Revision != 12 || !cp.LastProgress.Equal(t1) {
		t.Fatalf("after progress: %+v", cp)
	}
	if res := tf.compactAt(20, t1); res.Err != nil || res.CompactRevision != 13 {
		t.Fatalf("compact after progress: %+v", res)
	}

	// Released by the Compact entry's own time: no longer holds it back.
	late := t1.Add(3 * time.Hour)
	if f := tf.CompactionFloor(late); f != 0 {
		t.Fatalf("floor %d with every checkpoint released", f)
	}
	if res := tf.compactAt(20, late); res.Err != nil || res.CompactRevision != 20 {
		t.Fatalf("compact past a released checkpoint: %+v", res)
	}
	if cps := tf.checkpoints(late); len(cps) != 2 || !cps[0].Released || !cps[1].Released {
		t.Fatalf("released checkpoints are listed: %+v", cps)
	}

	tf.checkpoint(MirrorCheckpoint{ID: "s2", Remove: true})
	if cps := tf.checkpoints(late); len(cps) != 1 || cps[0].ID != "s1" {
		t.Fatalf("after removal: %+v", cps)
	}
	for name, c := range map[string]MirrorCheckpoint{
		"no id":     {Revision: 1, Window: time.Hour},
		"no window": {ID: "s3", Revision: 1},
	} {
		if res := tf.commandResult(Command{MirrorCheckpoint: &c}); !errors.Is(res.Err, ErrInvalidMirror) {
			t.Errorf("%s: %v, want ErrInvalidMirror", name, res.Err)
		}
	}
	// A standby can be a source (cascading): checkpoints apply in any mode.
	tf.startMirror(nil, nil)
	tf.checkpoint(MirrorCheckpoint{ID: "s4", Revision: 21, Time: late, Window: time.Hour})
	if f := tf.CompactionFloor(late); f != 22 {
		t.Fatalf("floor on a standby %d", f)
	}
}

// Two replicas fed the same entries (records, controls, checkpoints,
// compactions, refused batches) end identical.
func TestMirrorDeterministic(t *testing.T) {
	src := openTestFSM(t)
	fillSource(src, 30)
	recs := src.rawAll()
	a, b := openTestFSM(t), openTestFSM(t)
	for _, tf := range []*testFSM{a, b} {
		tf.startMirror(nil, nil)
		feed(t, tf, recs[:20], []int{3, 7})
		tf.commit(ops(put("refused", "x")))
		tf.checkpoint(MirrorCheckpoint{ID: "down", Revision: 8, Time: tf.clock, Window: time.Minute})
		tf.compactAt(15, tf.clock)
		tf.mustControl(MirrorControl{SetState: &MirrorSetState{State: MirrorDiverged, Message: "x"}})
		tf.startMirror(nil, nil)
		feed(t, tf, recs[20:], []int{4})
		tf.mustControl(MirrorControl{Promote: &MirrorPromote{}})
		tf.mustCommit(ops(put("after", "y")))
	}
	if da, db := a.dump(), b.dump(); !reflect.DeepEqual(da, db) {
		t.Fatal("the replicas' data differ")
	}
	if ma, mb := a.mirrorState(), b.mirrorState(); !reflect.DeepEqual(ma, mb) {
		t.Fatalf("mirror states differ:\n%+v\n%+v", ma, mb)
	}
	if ca, cb := a.checkpoints(a.clock), b.checkpoints(b.clock); !reflect.DeepEqual(ca, cb) {
		t.Fatalf("checkpoints differ")
	}
	if a.status().CompactRevision != 9 {
		t.Fatalf("compaction %d, want 9 (held by the checkpoint)", a.status().CompactRevision)
	}
}

func TestMirrorStateEncoding(t *testing.T) {
	ms := MirrorState{Mode: MirrorDiverged, Sources: []string{"a", "b"}, Include: []string{"i"}, Exclude: []string{"e"},
		Filtered: true, SourceClusterID: "src", Upstream: []string{"u"}, SourceRevision: 7, SourceHash: Hash{9},
		SourceHead: 11, SourceHeadTime: timeNs(1), LastApplied: timeNs(2), LastEntryTime: timeNs(3), Message: "m",
		Since: timeNs(4), PromotedAt: 5, PromotedFrom: "old", PromotedTime: timeNs(6)}
	v2 := ms
	v2.DivergedFile, v2.DivergedMember, v2.MaxRate = "/d/diverged.inc", "s1", 1<<20
	onlyRate := MirrorState{Mode: MirrorFollowing, MaxRate: 512}
	for _, in := range []MirrorState{ms, {}, v2, onlyRate} {
		got, err := decodeMirror(encodeMirror(&in))
		if err != nil || !reflect.DeepEqual(got, in) {
			t.Fatalf("round trip: %+v, %v; want %+v", got, err, in)
		}
	}
	// Without the version-2 fields the value is version 1, as before
	// them; with any of them, version 2.
	enc := encodeMirror(&ms)
	if enc[0] != mirrorStateV1 || encodeMirror(&v2)[0] != mirrorStateV2 || encodeMirror(&onlyRate)[0] != mirrorStateV2 {
		t.Fatalf("versions %d %d %d", enc[0], encodeMirror(&v2)[0], encodeMirror(&onlyRate)[0])
	}
	// A version-1 value as a build before version 2 wrote it.
	old := []byte{1, 9, 'f', 'o', 'l', 'l', 'o', 'w', 'i', 'n', 'g', 1, 1, 'a', 0, 0, 0, 3, 's', 'r', 'c', 0}
	old = append(old, make([]byte, 8+32+8+8+8+8)...) // source revision .. last entry time
	old = append(old, 0)                             // message
	old = append(old, make([]byte, 8+8)...)          // since, promoted at
	old = append(old, 0)                             // promoted from
	old = append(old, make([]byte, 8)...)            // promoted time
	got, err := decodeMirror(old)
	if want := (MirrorState{Mode: MirrorFollowing, Sources: []string{"a"}, SourceClusterID: "src"}); err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("version 1: %+v, %v; want %+v", got, err, want)
	}
	if !bytes.Equal(encodeMirror(&got), old) {
		t.Fatal("a version-1 state is not written back as it was")
	}
	if _, err := decodeMirror(append([]byte{3}, enc[1:]...)); !errors.Is(err, ErrUnknownVersion) {
		t.Fatalf("version 3: %v", err)
	}
	// Version 1 with version 2's fields, version 2 without them: corrupt.
	enc2 := encodeMirror(&v2)
	if _, err := decodeMirror(append([]byte{1}, enc2[1:]...)); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("version 1 with trailing fields: %v", err)
	}
	if _, err := decodeMirror(append([]byte{2}, enc[1:]...)); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("version 2 without its fields: %v", err)
	}
	for _, e := range [][]byte{enc, enc2} {
		if _, err := decodeMirror(e[:len(e)-1]); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("truncated: %v", err)
		}
	}
}

// A start carries the mirror's max rate into the state; a divergence
// records the file and member it names, kept by a stop, cleared (with
// the message) by a start and a promotion; a malformed one is refused.
func TestMirrorMaxRateAndDivergedFile(t *testing.T) {
	tf := openTestFSM(t)
	start := func(rate uint64) {
		tf.mustControl(MirrorControl{Start: &MirrorStart{Sources: []string{"http://s"}, SourceClusterID: "source", MaxRate: rate}})
	}
	start(1 << 20)
	if ms := tf.mirrorState(); ms.MaxRate != 1<<20 {
		t.Fatalf("max rate %d", ms.MaxRate)
	}
	before := tf.mirrorState()
	for name, bad := range map[string]MirrorSetState{
		"file without member": {State: MirrorDiverged, Message: "m", DivergedFile: "/f"},
		"member without file": {State: MirrorDiverged, Message: "m", DivergedMember: "s1"},
		"file when compacted": {State: MirrorCompacted, Message: "m", DivergedFile: "/f", DivergedMember: "s1"},
	} {
		if res := tf.control(MirrorControl{SetState: &bad}); !errors.Is(res.Err, ErrInvalidMirror) {
			t.Fatalf("%s: %v", name, res.Err)
		}
	}
	if ms := tf.mirrorState(); !reflect.DeepEqual(ms, before) {
		t.Fatalf("refused set states changed the state: %+v", ms)
	}
	diverge := func() {
		tf.mustControl(MirrorControl{SetState: &MirrorSetState{State: MirrorDiverged, Message: "m",
			DivergedFile: "/data/diverged.inc", DivergedMember: "s1"}})
	}
	diverge()
	ms := tf.mirrorState()
	if ms.DivergedFile != "/data/diverged.inc" || ms.DivergedMember != "s1" || ms.MaxRate != 1<<20 {
		t.Fatalf("after divergence %+v", ms)
	}
	tf = tf.reopen()
	tf.mustControl(MirrorControl{Stop: &MirrorStop{}})
	if got := tf.mirrorState(); got.DivergedFile != ms.DivergedFile || got.DivergedMember != ms.DivergedMember || got.Message != "m" {
		t.Fatalf("after reopen and stop %+v", got)
	}
	start(0) // no rate this time
	if got := tf.mirrorState(); got.DivergedFile != "" || got.DivergedMember != "" || got.Message != "" || got.MaxRate != 0 {
		t.Fatalf("after start %+v", got)
	}
	diverge()
	tf.mustControl(MirrorControl{Promote: &MirrorPromote{}})
	if got := tf.mirrorState(); got.DivergedFile != "" || got.DivergedMember != "" || got.Message != "" {
		t.Fatalf("after promotion %+v", got)
	}
}

// The mirror state and checkpoints survive a restart and travel in a
// snapshot; a restore from a backup clears both.
func TestMirrorStatePersistence(t *testing.T) {
	src := openTestFSM(t)
	fillSource(src, 10)
	tf := openTestFSM(t)
	tf.startMirror([]string{"app/"}, nil)
	feed(t, tf, src.rawAll(), []int{4})
	tf.checkpoint(MirrorCheckpoint{ID: "down", Revision: 2, Time: tf.clock, Window: time.Hour})
	ms, cps := tf.mirrorState(), tf.checkpoints(tf.clock)

	tf = tf.reopen()
	if got := tf.mirrorState(); !reflect.DeepEqual(got, ms) || !tf.ReadOnly() {
		t.Fatalf("after reopen: %+v read-only %v", got, tf.ReadOnly())
	}
	if got := tf.checkpoints(tf.clock); !reflect.DeepEqual(got, cps) {
		t.Fatalf("checkpoints after reopen: %+v", got)
	}

	snap := tf.snapshotBytes()
	other := openTestFSM(t)
	other.mustCommit(ops(put("x", "1")))
	if other.ReadOnly() {
		t.Fatal("primary read-only")
	}
	if err := other.restoreBytes(snap); err != nil {
		t.Fatal(err)
	}
	if got := other.mirrorState(); !reflect.DeepEqual(got, ms) || !other.ReadOnly() {
		t.Fatalf("after restore: %+v read-only %v", got, other.ReadOnly())
	}
	if got := other.checkpoints(tf.clock); !reflect.DeepEqual(got, cps) {
		t.Fatalf("checkpoints after restore: %+v", got)
	}
	// A primary's snapshot makes a standby writable again.
	if err := other.restoreBytes(src.snapshotBytes()); err != nil {
		t.Fatal(err)
	}
	if other.ReadOnly() {
		t.Fatal("read-only after restoring a primary's snapshot")
	}

	// A backup of the standby restores as a primary, without checkpoints.
	full := writeFile(t, "full.bak", func(w *bytes.Buffer) error {
		_, err := tf.WriteFullBackup(w, tf.clock)
		return err
	})
	r, _ := restoredFSM(t, full)
	if got := r.mirrorState(); !reflect.DeepEqual(got, MirrorState{}) || r.ReadOnly() {
		t.Fatalf("restored mirror state %+v read-only %v", got, r.ReadOnly())
	}
	if got := r.checkpoints(tf.clock); len(got) != 0 {
		t.Fatalf("restored checkpoints %+v", got)
	}
	if r.status().Head != tf.status().Head {
		t.Fatal("restored a different chain")
	}
	r.mustCommit(ops(put("app/new", "writable")))
}

// Records that chain but hold what apply cannot write (an unknown
// operation kind, an invalid key) are refused before anything is
// written, by a MirrorRecords entry and by ApplyRecords alike.
func TestMirrorRecordsInvalidOperations(t *testing.T) {
	chained := func(prev Hash, rec Record) RawRecord {
		canon := Canonical(&rec)
		return RawRecord{Revision: rec.Revision, Hash: chainHash(prev, canon), Canonical: canon}
	}
	at := timeNs(1_700_000_000_000_000_000)
	good := chained(Hash{}, Record{Revision: 1, Time: at, Ops: []Op{put("a", "1")}})
	for name, op := range map[string]Op{
		"unknown kind": {Kind: 9, Key: "b"},
		"NUL in key":   {Kind: OpPut, Key: "b\x00c"},
		"empty key":    {Kind: OpDelete},
	} {
		bad := chained(good.Hash, Record{Revision: 2, Time: at, Ops: []Op{op}})
		tf := openTestFSM(t)
		tf.startMirror(nil, nil)
		if res := tf.mirrorRecords([]RawRecord{good, bad}, 2); !errors.Is(res.Err, ErrCorruptCommand) {
			t.Errorf("%s: mirror records: %v, want ErrCorruptCommand", name, res.Err)
		}
		if err := tf.ApplyRecords([]RawRecord{good, bad}); !errors.Is(err, ErrCorruptCommand) {
			t.Errorf("%s: apply records: %v, want ErrCorruptCommand", name, err)
		}
		if rev := tf.status().Revision; rev != 0 {
			t.Fatalf("%s: revision %d after refusals", name, rev)
		}
		if tf.Corrupt() != nil {
			t.Fatalf("%s: marked corrupt", name)
		}
	}
}

// A mode change takes effect for the entries after it in the same chunk
// (one bbolt transaction); ReadOnly follows once the chunk commits.
func TestMirrorModeWithinOneChunk(t *testing.T) {
	tf := openTestFSM(t)
	batch := func(key string) *Batch {
		tf.clock = tf.clock.Add(time.Second)
		return &Batch{Time: tf.clock, Txns: []Txn{ops(put(key, "v"))}}
	}
	start := &MirrorControl{Time: tf.clock, Start: &MirrorStart{Sources: []string{"http://s"}, SourceClusterID: "source"}}
	res := tf.apply(tf.entry(Command{Batch: batch("before")}), tf.entry(Command{MirrorControl: start}),
		tf.entry(Command{Batch: batch("after")}))
	if r := res[0].(*BatchResult).Txns[0]; r.Err != nil || r.Revision != 1 {
		t.Fatalf("batch before the start: %+v", r)
	}
	if r := res[2].(*BatchResult).Txns[0]; !errors.Is(r.Err, ErrReadOnly) {
		t.Fatalf("batch after the start: %+v", r)
	}
	if !tf.ReadOnly() {
		t.Fatal("not read-only after the chunk")
	}
	res = tf.apply(tf.entry(Command{MirrorControl: &MirrorControl{Time: tf.clock, Promote: &MirrorPromote{}}}),
		tf.entry(Command{Batch: batch("promoted")}))
	if r := res[1].(*BatchResult).Txns[0]; r.Err != nil || r.Revision != 3 {
		t.Fatalf("batch after the promotion: %+v", r)
	}
	if tf.ReadOnly() {
		t.Fatal("read-only after promotion")
	}
}

func TestMirrorLag(t *testing.T) {
	src := openTestFSM(t)
	fillSource(src, 10)
	recs := src.rawAll()
	srcLog := src.logAll()
	tf := openTestFSM(t)
	tf.startMirror(nil, nil)
	if res := tf.commandResult(Command{MirrorRecords: &MirrorRecords{SourceHead: 10,
		SourceHeadTime: srcLog[9].Time, Time: tf.clock}}); res.Err != nil {
		t.Fatal(res.Err)
	}
	ms := tf.mirrorState()
	if n := ms.LagRevisions(); n != 10 {
		t.Fatalf("lag %d revisions, want 10", n)
	}
	if _, ok := ms.LagTime(); ok {
		t.Fatal("a lag in time with nothing applied")
	}
	if res := tf.commandResult(Command{MirrorRecords: &MirrorRecords{Records: recs[:4], SourceHead: 10,
		SourceHeadTime: srcLog[9].Time, Time: tf.clock}}); res.Err != nil {
		t.Fatal(res.Err)
	}
	ms = tf.mirrorState()
	if lag, ok := ms.LagTime(); ms.LagRevisions() != 6 || !ok || lag != srcLog[9].Time.Sub(srcLog[3].Time) {
		t.Fatalf("lag %d revisions, %v %v", ms.LagRevisions(), lag, ok)
	}
	feed(t, tf, recs[4:], []int{6})
	ms = tf.mirrorState()
	if lag, ok := ms.LagTime(); ms.LagRevisions() != 0 || !ok || lag != 0 {
		t.Fatalf("caught up, yet lag %d revisions, %v %v", ms.LagRevisions(), lag, ok)
	}
}

// A record repeated within one entry is skipped when it is the same
// record and refused when it is not, filtered or not.
func TestMirrorRecordsRepeatedInEntry(t *testing.T) {
	src := openTestFSM(t)
	fillSource(src, 6)
	recs := src.rawAll()
	other := openTestFSM(t)
	other.mustCommit(ops(put("x", "1")))
	for _, include := range [][]string{nil, {"app/"}} {
		tf := openTestFSM(t)
		tf.startMirror(include, nil)
		if res := tf.mirrorRecords([]RawRecord{recs[0], recs[1], recs[1], recs[0], recs[2]}, 6); res.Err != nil || res.SourceRevision != 3 {
			t.Fatalf("include %v: repeated records: %+v", include, res)
		}
		before := tf.status()
		forged := recs[3]
		forged.Hash = other.rawAll()[0].Hash
		if res := tf.mirrorRecords([]RawRecord{recs[3], forged, recs[4]}, 6); !errors.Is(res.Err, ErrChainMismatch) {
			t.Fatalf("include %v: a repeated revision with another hash: %v", include, res.Err)
		}
		if st := tf.status(); st.Head != before.Head {
			t.Fatalf("include %v: the refused entry wrote", include)
		}
	}
}
