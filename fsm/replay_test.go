package fsm

import (
	"errors"
	"fmt"
	"reflect"
	"testing"

	"github.com/hashicorp/raft"
)

// buildLog returns n raft entries starting at index 1: batches of puts and
// deletes, a compaction, member records, and configuration, no-op and
// barrier entries in between (which leave gaps in the command indexes).
func buildLog(t testing.TB, n int) []*raft.Log {
	t.Helper()
	var logs []*raft.Log
	clock := int64(1_700_000_000) * 1e9
	term := uint64(1)
	add := func(typ raft.LogType, c *Command) {
		l := &raft.Log{Index: uint64(len(logs) + 1), Term: term, Type: typ}
		if c != nil {
			data, err := EncodeCommand(*c)
			if err != nil {
				t.Fatal(err)
			}
			l.Data = data
		} else if typ == raft.LogConfiguration {
			l.Data = []byte("a configuration")
		}
		logs = append(logs, l)
	}
	add(raft.LogConfiguration, nil)
	for i := 0; len(logs) < n; i++ {
		clock += 1e9
		switch {
		case i%7 == 3:
			add(raft.LogNoop, nil)
			term++
		case i%11 == 5:
			add(raft.LogConfiguration, nil)
		case i%13 == 8:
			add(raft.LogBarrier, nil)
		case i == 20:
			add(raft.LogCommand, &Command{Compact: &Compact{Revision: 6}})
		case i%17 == 9:
			add(raft.LogCommand, &Command{SetMember: &Member{ID: fmt.Sprintf("n%d", i%3), HTTPAddr: fmt.Sprintf("h%d", i), RaftAddr: "r"}})
		default:
			b := &Batch{Time: timeNs(clock), Limits: DefaultLimits()}
			for j := range 1 + i%3 {
				k := fmt.Sprintf("key%d", (i+j)%5)
				if (i+j)%4 == 3 {
					b.Txns = append(b.Txns, ops(del(k)))
				} else {
					b.Txns = append(b.Txns, ops(put(k, fmt.Sprintf("v%d.%d", i, j))))
				}
			}
			add(raft.LogCommand, &Command{Batch: b})
		}
	}
	return logs
}

// applyGrouped applies logs in ApplyBatch calls of the given sizes
// (cycling) and returns the responses in order.
func applyGrouped(f *testFSM, logs []*raft.Log, sizes ...int) []interface{} {
	var out []interface{}
	for i, s := 0, 0; i < len(logs); s++ {
		n := min(sizes[s%len(sizes)], len(logs)-i)
		out = append(out, f.ApplyBatch(logs[i:i+n])...)
		i += n
	}
	return out
}

func TestReplayAfterCrash(t *testing.T) {
	logs := buildLog(t, 60)
	f := openTestFSM(t)
	first := applyGrouped(f, logs[:45], 1, 4, 2, 7)
	for i, r := range first {
		if (logs[i].Type == raft.LogCommand) != (r != nil) {
			t.Fatalf("entry %d (%s): response %v", logs[i].Index, logs[i].Type, r)
		}
	}
	// Physical compaction runs in the background; let it finish so the
	// entry counts below measure only what re-delivery might write.
	f.waitPhysicalCompaction()
	before := f.status()
	view := f.dump()
	counts := f.counts()
	members, _ := f.Members()
	if before.AppliedIndex != 45 || before.Revision == 0 {
		t.Fatalf("status after 45 entries: %+v", before)
	}

	f = f.reopen()
	if st := f.status(); st != before {
		t.Fatalf("after reopen: %+v, want %+v", st, before)
	}
	if idx, term, err := f.AppliedIndex(); err != nil || idx != before.AppliedIndex || term != before.AppliedTerm {
		t.Fatalf("applied index after reopen: %d %d %v", idx, term, err)
	}

	// Raft re-delivers from its last snapshot: everything at or below the
	// stored index is skipped, whatever the grouping.
	for _, sizes := range [][]int{{1}, {3, 5}, {45}} {
		for i, r := range applyGrouped(f, logs[9:45], sizes...) {
			if r != nil {
				t.Fatalf("re-delivered entry %d answered %v", logs[9+i].Index, r)
			}
		}
		if st := f.status(); st != before {
			t.Fatalf("re-delivery changed the state: %+v, want %+v", st, before)
		}
	}
	if got := f.dump(); !reflect.DeepEqual(got, view) {
		t.Fatalf("re-delivery changed the reads")
	}
	if got := f.counts(); got != counts {
		t.Fatalf("re-delivery wrote: %+v -> %+v", counts, got)
	}
	if got, _ := f.Members(); !reflect.DeepEqual(got, members) {
		t.Fatalf("members %+v -> %+v", members, got)
	}

	// One call that overlaps: old entries are skipped, new ones applied once.
	res := f.ApplyBatch(logs[40:])
	for i, r := range res {
		l := logs[40+i]
		if l.Index <= 45 && r != nil {
			t.Fatalf("old entry %d answered %v", l.Index, r)
		}
		if l.Index > 45 && (l.Type == raft.LogCommand) != (r != nil) {
			t.Fatalf("new entry %d (%s) answered %v", l.Index, l.Type, r)
		}
	}
	after := f.status()
	if after.AppliedIndex != uint64(len(logs)) || after.Revision <= before.Revision {
		t.Fatalf("after the new entries: %+v", after)
	}

	// A reference FSM fed every entry exactly once agrees.
	ref := openTestFSM(t)
	applyGrouped(ref, logs, 60)
	if got, want := f.dump(), ref.dump(); !reflect.DeepEqual(got, want) {
		t.Fatalf("replayed FSM differs from the reference: head %+v vs %+v", got.Head, want.Head)
	}
	if a, b := f.status(), ref.status(); a != b {
		t.Fatalf("status %+v vs reference %+v", a, b)
	}

	// Another crash, and everything again.
	f = f.reopen()
	applyGrouped(f, logs, 2)
	if st := f.status(); st != after {
		t.Fatalf("second re-delivery: %+v, want %+v", st, after)
	}
}

// A raft index of 0 is never skipped on a fresh FSM, and the applied index
// follows non-command entries too.
func TestAppliedIndexFollowsEveryEntry(t *testing.T) {
	f := openTestFSM(t)
	f.mustCommit(ops(put("a", "1")))
	l := &raft.Log{Index: f.index + 1, Term: 3, Type: raft.LogConfiguration, Data: []byte("cfg")}
	if r := f.ApplyBatch([]*raft.Log{l}); r[0] != nil {
		t.Fatalf("configuration entry answered %v", r[0])
	}
	if idx, term, _ := f.AppliedIndex(); idx != l.Index || term != 3 {
		t.Fatalf("applied index %d term %d, want %d 3", idx, term, l.Index)
	}
	if f.Revision() != 1 {
		t.Fatalf("a configuration entry committed a revision")
	}
}

func TestUndecodableEntries(t *testing.T) {
	f := openTestFSM(t)
	f.mustCommit(ops(put("a", "1")))
	before := f.status()
	cases := []struct {
		data []byte
		want error
	}{
		{nil, ErrCorruptCommand},
		{[]byte{CommandVersion, 0xff, 0xff, 0xff}, ErrCorruptCommand},
		{[]byte{CommandVersion + 1, 0x0a, 0x00}, ErrUnknownVersion},
		{[]byte{0}, ErrUnknownVersion},
	}
	for _, c := range cases {
		f.index++
		r := f.ApplyBatch([]*raft.Log{{Index: f.index, Term: 1, Type: raft.LogCommand, Data: c.data}})[0]
		br, ok := r.(*BatchResult)
		if !ok || !errors.Is(br.Err, c.want) || br.Txns != nil {
			t.Fatalf("entry %x: %#v, want a BatchResult with %v", c.data, r, c.want)
		}
	}
	st := f.status()
	if st.Revision != before.Revision || st.Head != before.Head || st.AppliedIndex != f.index {
		t.Fatalf("undecodable entries: %+v -> %+v", before, st)
	}
	if r := f.mustCommit(ops(put("a", "2"))); r.Revision != before.Revision+1 {
		t.Fatalf("next commit at %d", r.Revision)
	}
}
