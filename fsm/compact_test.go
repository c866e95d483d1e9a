package fsm

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"testing"

	bolt "go.etcd.io/bbolt"
)

// wantCompacted checks that err is a *CompactedError naming oldest.
func wantCompacted(t *testing.T, what string, err error, requested, oldest uint64) {
	t.Helper()
	var ce *CompactedError
	if !errors.As(err, &ce) || !errors.Is(err, ErrCompacted) {
		t.Fatalf("%s: %v, want a *CompactedError", what, err)
	}
	if ce.Oldest != oldest || ce.Requested != requested {
		t.Fatalf("%s: %+v, want requested %d oldest %d", what, ce, requested, oldest)
	}
}

// versionsOf returns the revisions of key's physical history entries.
func (tf *testFSM) versionsOf(key string) []uint64 {
	tf.t.Helper()
	var revs []uint64
	err := tf.view(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketVersions).Cursor()
		for k, _ := c.Seek(versionKey(key, 0)); k != nil; k, _ = c.Next() {
			vk, r, err := splitVersionKey(k)
			if err != nil {
				return err
			}
			if vk != key {
				break
			}
			revs = append(revs, r)
		}
		return nil
	})
	if err != nil {
		tf.t.Fatal(err)
	}
	return revs
}

// buildHistory writes a history with updates, deletes and recreations
// over ten keys, and returns the current revision.
func buildHistory(f *testFSM, rounds int) uint64 {
	var last uint64
	for round := range rounds {
		for k := range 10 {
			key := fmt.Sprintf("k%d", k)
			var r TxnResult
			switch {
			case k == 9 && round == 1:
				r = f.mustCommit(ops(del(key))) // deleted early, never recreated
			case k == 9 && round > 1:
				continue
			case k == 8 && round%3 == 2:
				r = f.mustCommit(ops(del(key))) // deleted and recreated
			default:
				r = f.mustCommit(ops(put(key, fmt.Sprintf("v%d.%d", k, round))))
			}
			last = r.Revision
		}
	}
	return last
}

func TestCompaction(t *testing.T) {
	f := openTestFSMConfig(t, func(c *Config) { c.CompactChunk = 3 }) // many compaction steps
	cur := buildHistory(f, 6)
	const point = 30
	before := f.dump()
	versionsBefore := f.count(bucketVersions)
	historyBefore := map[string][]Version{}
	for k := range 10 {
		key := fmt.Sprintf("k%d", k)
		h, _, err := f.History(key, HistoryOptions{})
		if err != nil {
			t.Fatal(err)
		}
		historyBefore[key] = h
	}

	f.mustCompact(point)
	if st := f.status(); st.CompactRevision != point || st.Revision != cur || st.Head != before.Head.Hash {
		t.Fatalf("status after compaction: %+v", st)
	}

	checkReads := func(stage string) {
		t.Helper()
		// Reads before the point answer compacted, naming the oldest revision.
		_, _, err := f.Get("k1", point-1)
		wantCompacted(t, stage+": get", err, point-1, point)
		_, err = f.List("", ListOptions{Revision: 1})
		wantCompacted(t, stage+": list", err, 1, point)
		_, _, err = f.Log(point-1, 0)
		wantCompacted(t, stage+": log", err, point-1, point)
		_, _, err = f.RawLog(1, 0)
		wantCompacted(t, stage+": raw log", err, 1, point)
		_, err = f.HashAt(point - 2)
		wantCompacted(t, stage+": hash", err, point-2, point)
		// The hash just before the point and H(0) stay available.
		if p, err := f.HashAt(point - 1); err != nil || p != before.Hashes[point-1] {
			t.Fatalf("%s: hash at %d: %+v %v, want %+v", stage, point-1, p, err, before.Hashes[point-1])
		}
		if p, err := f.HashAt(0); err != nil || p != (ChainPoint{}) {
			t.Fatalf("%s: hash at 0: %+v %v", stage, p, err)
		}
		// Reads at and after the point are unchanged.
		after := f.dump()
		for r := uint64(point); r <= cur; r++ {
			if !reflect.DeepEqual(after.At[r], before.At[r]) {
				t.Fatalf("%s: reads at %d changed:\n got %+v\nwant %+v", stage, r, after.At[r], before.At[r])
			}
		}
		if !reflect.DeepEqual(after.At[0], before.At[0]) {
			t.Fatalf("%s: current reads changed", stage)
		}
		if !reflect.DeepEqual(after.Log, before.Log[point-1:]) {
			t.Fatalf("%s: log from the point changed", stage)
		}
		if !reflect.DeepEqual(after.Hashes, before.Hashes[point-1:]) {
			t.Fatalf("%s: hashes changed", stage)
		}
		for r := uint64(point); r <= cur; r++ {
			for k := range 10 {
				key := fmt.Sprintf("k%d", k)
				kv1, _, err1 := f.Get(key, r)
				var want *KeyValue
				for i := range before.At[r] {
					if before.At[r][i].Key == key {
						want = &before.At[r][i]
					}
				}
				if want == nil {
					if !errors.Is(err1, ErrNotFound) {
						t.Fatalf("%s: get %s at %d: %+v %v, want not found", stage, key, r, kv1, err1)
					}
				} else if err1 != nil || !reflect.DeepEqual(kv1, *want) {
					t.Fatalf("%s: get %s at %d: %+v %v, want %+v", stage, key, r, kv1, err1, *want)
				}
			}
		}
		// History keeps the versions after the point and the one in force
		// at it.
		for key, full := range historyBefore {
			var want []Version
			for _, v := range full {
				if v.Revision > point {
					want = append(want, v)
					continue
				}
				if !v.Deleted {
					want = append(want, v)
				}
				break
			}
			got, _, err := f.History(key, HistoryOptions{})
			if len(want) == 0 {
				if !errors.Is(err, ErrNotFound) {
					t.Fatalf("%s: history of %s: %+v %v, want not found", stage, key, got, err)
				}
				continue
			}
			if err != nil || !reflect.DeepEqual(got, want) {
				t.Fatalf("%s: history of %s:\n got %+v\nwant %+v (%v)", stage, key, got, want, err)
			}
		}
		if _, err := f.Verify(context.Background()); err != nil {
			t.Fatalf("%s: verify: %v", stage, err)
		}
	}
	checkReads("logical")
	f.waitPhysicalCompaction()
	checkReads("physical")

	if n := f.count(bucketVersions); n >= versionsBefore {
		t.Fatalf("physical compaction left %d history entries of %d", n, versionsBefore)
	}
	if n := f.count(bucketTxns); n != int(cur-point+1) {
		t.Fatalf("%d transaction records left, want %d", n, cur-point+1)
	}
	// k9 was deleted before the point and never recreated: nothing of it
	// is left. Every other key keeps at most one entry at or before the
	// point.
	if v := f.versionsOf("k9"); len(v) != 0 {
		t.Fatalf("k9 entries left: %v", v)
	}
	for k := range 9 {
		n := 0
		for _, r := range f.versionsOf(fmt.Sprintf("k%d", k)) {
			if r <= point {
				n++
			}
		}
		if n > 1 {
			t.Fatalf("k%d keeps %d entries at or before the point", k, n)
		}
	}

	// Refused compactions: in the future, at or before the point.
	if err := f.compact(cur + 1); !errors.Is(err, ErrFutureRevision) {
		t.Fatalf("compact in the future: %v", err)
	}
	if err := f.compact(0); err == nil {
		t.Fatalf("compact at 0 accepted")
	}
	wantCompacted(t, "compact again", f.compact(point), point, point)
	wantCompacted(t, "compact earlier", f.compact(point-5), point-5, point)
	if st := f.status(); st.CompactRevision != point || st.Revision != cur {
		t.Fatalf("refused compactions moved the state: %+v", st)
	}
	if !f.physicalCompactionDone() {
		t.Fatalf("a refused compaction restarted physical compaction")
	}

	// Compacting at the head keeps the current state readable.
	f.mustCompact(cur)
	f.waitPhysicalCompaction()
	if got := f.listAll("", cur); !reflect.DeepEqual(got, before.At[cur]) {
		t.Fatalf("reads at the head after compacting at it: %+v", got)
	}
	if recs := f.logAll(); len(recs) != 1 || recs[0].Revision != cur {
		t.Fatalf("log after compacting at the head: %+v", recs)
	}
	if _, err := f.Verify(context.Background()); err != nil {
		t.Fatal(err)
	}
	// Writes go on.
	if r := f.mustCommit(ops(put("k1", "after"))); r.Revision != cur+1 {
		t.Fatalf("commit after compaction at %d", r.Revision)
	}
	if _, err := f.Verify(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// A compaction interrupted by a restart resumes from its stored cursor.
func TestCompactionResumesAfterRestart(t *testing.T) {
	f := openTestFSMConfig(t, func(c *Config) { c.CompactChunk = 1 })
	cur := buildHistory(f, 8)
	before := f.dump()
	versions := f.count(bucketVersions)
	point := cur - 5
	f.mustCompact(point)
	f = f.reopen() // the cursor may or may not be done; either way it must finish
	f.waitPhysicalCompaction()
	after := f.dump()
	for r := point; r <= cur; r++ {
		if !reflect.DeepEqual(after.At[r], before.At[r]) {
			t.Fatalf("reads at %d changed", r)
		}
	}
	if f.count(bucketVersions) >= versions {
		t.Fatalf("nothing was deleted")
	}
	if _, err := f.Verify(context.Background()); err != nil {
		t.Fatal(err)
	}
}
