package fsm

import (
	"strings"
	"testing"
)

// TestLogChunk checks the byte bound: a chunk stops before the record
// that would take it past maxBytes, a record larger than maxBytes alone
// is reported as need, and consecutive chunks cover the log as Log does.
func TestLogChunk(t *testing.T) {
	f := openTestFSM(t)
	sizes := []int{100, 100, 5000, 100, 100, 100}
	for _, n := range sizes {
		f.mustCommit(ops(put("k", strings.Repeat("x", n))))
	}
	all, _, err := f.Log(1, 0)
	if err != nil || len(all) != len(sizes) {
		t.Fatalf("Log: %d records, %v", len(all), err)
	}
	recs, at, need, err := f.LogChunk(1, 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	if at != uint64(len(sizes)) || need != 0 || len(recs) != 2 || recs[0].Revision != 1 || recs[1].Revision != 2 {
		t.Fatalf("chunk from 1: %d records, at %d, need %d", len(recs), at, need)
	}
	// Revision 3 alone is larger than the bound.
	recs, _, need, err = f.LogChunk(3, 0, 1000)
	if err != nil || len(recs) != 0 || need <= 5000 {
		t.Fatalf("chunk from 3: %d records, need %d, %v", len(recs), need, err)
	}
	recs, _, need, err = f.LogChunk(3, 0, need)
	if err != nil || len(recs) != 1 || need != 0 || recs[0].Revision != 3 || len(recs[0].Ops[0].Value) != 5000 {
		t.Fatalf("chunk from 3 with room: %d records, need %d, %v", len(recs), need, err)
	}
	// The count limit applies too, and chunks read on cover the rest.
	var got []Record
	for next := uint64(4); next <= uint64(len(sizes)); {
		recs, _, _, err := f.LogChunk(next, 2, 1<<20)
		if err != nil || len(recs) == 0 || len(recs) > 2 {
			t.Fatalf("chunk from %d: %d records, %v", next, len(recs), err)
		}
		got = append(got, recs...)
		next = recs[len(recs)-1].Revision + 1
	}
	for i, r := range got {
		if w := all[3+i]; r.Revision != w.Revision || r.Hash != w.Hash {
			t.Fatalf("record %d: revision %d hash %s, want %d %s", i, r.Revision, r.Hash, w.Revision, w.Hash)
		}
	}
	// Past the head: nothing; before the oldest or far past it: Log's errors.
	if recs, _, need, err := f.LogChunk(uint64(len(sizes))+1, 0, 1000); err != nil || len(recs) != 0 || need != 0 {
		t.Fatalf("chunk past the head: %d records, need %d, %v", len(recs), need, err)
	}
	if _, _, _, err := f.LogChunk(uint64(len(sizes))+2, 0, 1000); err == nil {
		t.Fatal("chunk from a future revision: no error")
	}
}
