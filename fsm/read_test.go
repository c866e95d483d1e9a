package fsm

import (
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"
)

// pageAll lists prefix at rev in pages of limit, following StartAfter, and
// checks each page's shape.
func (tf *testFSM) pageAll(prefix string, rev uint64, limit int) []KeyValue {
	tf.t.Helper()
	var all []KeyValue
	after := ""
	for pages := 0; ; pages++ {
		if pages > 10000 {
			tf.t.Fatalf("paging %q at %d does not end", prefix, rev)
		}
		res, err := tf.List(prefix, ListOptions{StartAfter: after, Limit: limit, Revision: rev})
		if err != nil {
			tf.t.Fatalf("list %q after %q at %d: %v", prefix, after, rev, err)
		}
		if rev != 0 && res.Revision != rev {
			tf.t.Fatalf("list at %d answered revision %d", rev, res.Revision)
		}
		if len(res.KVs) > limit {
			tf.t.Fatalf("page of %d with limit %d", len(res.KVs), limit)
		}
		if res.More && len(res.KVs) != limit {
			tf.t.Fatalf("short page (%d of %d) says More", len(res.KVs), limit)
		}
		for _, kv := range res.KVs {
			if kv.Key <= after && after != "" {
				tf.t.Fatalf("page after %q holds %q", after, kv.Key)
			}
		}
		all = append(all, res.KVs...)
		if !res.More {
			return all
		}
		after = res.KVs[len(res.KVs)-1].Key
	}
}

func keysOf(kvs []KeyValue) []string {
	out := make([]string, len(kvs))
	for i, kv := range kvs {
		out[i] = kv.Key
	}
	return out
}

func TestReadsAtRevisions(t *testing.T) {
	f := openTestFSM(t)
	f.mustCommit(ops(put("a", "1"), put("b", "1"))) // 1
	f.mustCommit(ops(put("a", "2")))                // 2
	f.mustCommit(ops(del("b"), put("c", "3")))      // 3
	f.mustCommit(ops(put("b", "4")))                // 4

	type kv struct {
		value        string
		create, mod  uint64
		shouldExists bool
	}
	want := map[uint64]map[string]kv{
		1: {"a": {"1", 1, 1, true}, "b": {"1", 1, 1, true}, "c": {}},
		2: {"a": {"2", 1, 2, true}, "b": {"1", 1, 1, true}, "c": {}},
		3: {"a": {"2", 1, 2, true}, "b": {}, "c": {"3", 3, 3, true}},
		4: {"a": {"2", 1, 2, true}, "b": {"4", 4, 4, true}, "c": {"3", 3, 3, true}},
	}
	want[0] = want[4]
	for rev, keys := range want {
		for key, w := range keys {
			got, at, err := f.Get(key, rev)
			wantAt := rev
			if rev == 0 {
				wantAt = 4
			}
			if at != wantAt {
				t.Errorf("get %q at %d answered revision %d", key, rev, at)
			}
			if !w.shouldExists {
				if !errors.Is(err, ErrNotFound) {
					t.Errorf("get %q at %d: %+v %v, want ErrNotFound", key, rev, got, err)
				}
				continue
			}
			if err != nil || string(got.Value) != w.value || got.CreateRevision != w.create || got.ModRevision != w.mod {
				t.Errorf("get %q at %d: %+v %v, want %+v", key, rev, got, err, w)
			}
		}
	}
	if got := keysOf(f.listAll("", 3)); !reflect.DeepEqual(got, []string{"a", "c"}) {
		t.Errorf("list at 3: %v", got)
	}
	if got := keysOf(f.listAll("", 1)); !reflect.DeepEqual(got, []string{"a", "b"}) {
		t.Errorf("list at 1: %v", got)
	}
	// Reading at the current revision through history equals reading the
	// current state.
	if a, b := f.listAll("", 0), f.listAll("", 4); !reflect.DeepEqual(a, b) {
		t.Errorf("list current %+v != list at 4 %+v", a, b)
	}
	if _, _, err := f.Get("a", 5); !errors.Is(err, ErrFutureRevision) {
		t.Errorf("get in the future: %v", err)
	}
	if _, err := f.List("", ListOptions{Revision: 5}); !errors.Is(err, ErrFutureRevision) {
		t.Errorf("list in the future: %v", err)
	}
	if _, _, err := f.Log(6, 0); !errors.Is(err, ErrFutureRevision) {
		t.Errorf("log in the future: %v", err)
	}
	if recs, _, err := f.Log(5, 0); err != nil || len(recs) != 0 {
		t.Errorf("log one past the head: %+v %v", recs, err)
	}
	if _, err := f.HashAt(5); !errors.Is(err, ErrFutureRevision) {
		t.Errorf("hash in the future: %v", err)
	}
	if recs, cur, err := f.Log(2, 2); err != nil || cur != 4 || len(recs) != 2 || recs[0].Revision != 2 || recs[1].Revision != 3 {
		t.Errorf("log from 2 limit 2: %+v %d %v", recs, cur, err)
	}
}

func TestListPaging(t *testing.T) {
	f := openTestFSM(t)
	var first []Op
	for i := range 10 {
		first = append(first, put(fmt.Sprintf("k/%02d", i), fmt.Sprint(i)))
	}
	// Neighbours of the prefix, and keys that extend other keys.
	first = append(first, put("k", "x"), put("j", "x"), put("l", "x"), put("k/05/sub", "x"), put("k0", "x"))
	r1 := f.mustCommit(ops(first...))
	f.mustCommit(ops(del("k/03"), del("k/04"), put("k/07", "new")))
	f.mustCommit(ops(delPrefix("k/05")))
	r4 := f.mustCommit(ops(put("k/10", "10"), put("k/03", "back")))

	for _, rev := range []uint64{0, r1.Revision, 2, 3, r4.Revision} {
		for _, prefix := range []string{"", "k", "k/", "k/0", "k/05", "zzz"} {
			full := f.listAll(prefix, rev)
			for _, kv := range full {
				if len(kv.Key) < len(prefix) || kv.Key[:len(prefix)] != prefix {
					t.Fatalf("list %q at %d holds %q", prefix, rev, kv.Key)
				}
			}
			for _, limit := range []int{1, 2, 3, len(full), len(full) + 1} {
				if limit == 0 {
					continue
				}
				if got := f.pageAll(prefix, rev, limit); !reflect.DeepEqual(got, full) {
					t.Fatalf("paging %q at %d by %d:\n got %v\nwant %v", prefix, rev, limit, keysOf(got), keysOf(full))
				}
			}
		}
	}

	// The first page says More exactly when keys remain.
	res, err := f.List("k/", ListOptions{Limit: 3, Revision: r1.Revision})
	if err != nil || !res.More || !reflect.DeepEqual(keysOf(res.KVs), []string{"k/00", "k/01", "k/02"}) {
		t.Fatalf("first page at 1: %+v %v", res, err)
	}
	all := f.listAll("k/", r1.Revision)
	res, err = f.List("k/", ListOptions{Limit: len(all), Revision: r1.Revision})
	if err != nil || res.More || len(res.KVs) != len(all) {
		t.Fatalf("page of exactly all keys: More=%v %d keys %v", res.More, len(res.KVs), err)
	}

	// StartAfter: a key that exists, one that does not, one before the
	// prefix, one after it.
	cases := []struct {
		after string
		rev   uint64
		want  []string
	}{
		{"k/07", 0, []string{"k/08", "k/09", "k/10"}},
		{"k/07", r1.Revision, []string{"k/08", "k/09"}},
		{"k/045", r1.Revision, []string{"k/05", "k/05/sub", "k/06", "k/07", "k/08", "k/09"}},
		{"k/05", r1.Revision, []string{"k/05/sub", "k/06", "k/07", "k/08", "k/09"}},
		{"k/05", 0, []string{"k/06", "k/07", "k/08", "k/09", "k/10"}},
		{"a", 2, []string{"k/00", "k/01", "k/02", "k/05", "k/05/sub", "k/06", "k/07", "k/08", "k/09"}},
		{"k/", 3, []string{"k/00", "k/01", "k/02", "k/06", "k/07", "k/08", "k/09"}},
		{"k/09", r1.Revision, nil},
		{"m", 0, nil},
	}
	for _, c := range cases {
		res, err := f.List("k/", ListOptions{StartAfter: c.after, Revision: c.rev})
		if err != nil || res.More || !reflect.DeepEqual(keysOf(res.KVs), append([]string{}, c.want...)) {
			t.Errorf("list k/ after %q at %d: %v (more %v) %v, want %v", c.after, c.rev, keysOf(res.KVs), res.More, err, c.want)
		}
	}
	// StartAfter on a prefix key itself.
	res, err = f.List("k", ListOptions{StartAfter: "k", Revision: r1.Revision, Limit: 1})
	if err != nil || len(res.KVs) != 1 || res.KVs[0].Key != "k/00" || !res.More {
		t.Errorf("list k after k at 1: %+v %v", res, err)
	}

	// KeysOnly leaves values out, at current and past revisions.
	for _, rev := range []uint64{0, 2} {
		res, err := f.List("k/", ListOptions{KeysOnly: true, Revision: rev})
		if err != nil || len(res.KVs) == 0 {
			t.Fatalf("keys only at %d: %v", rev, err)
		}
		for _, kv := range res.KVs {
			if kv.Value != nil || kv.ModRevision == 0 {
				t.Fatalf("keys only at %d: %+v", rev, kv)
			}
		}
	}
}

func TestFirstRevisionSince(t *testing.T) {
	f := openTestFSM(t)
	var times []time.Time
	for i := 0; i < 10; i++ {
		r := f.mustCommit(ops(put("k", fmt.Sprint(i))))
		times = append(times, r.Time)
	}
	for i, tm := range times {
		if got, err := f.FirstRevisionSince(tm); err != nil || got != uint64(i+1) {
			t.Fatalf("since revision %d's time: %d %v", i+1, got, err)
		}
		if got, _ := f.FirstRevisionSince(tm.Add(time.Millisecond)); got != uint64(i+2) {
			t.Fatalf("just after revision %d's time: %d", i+1, got)
		}
	}
	if got, _ := f.FirstRevisionSince(times[0].Add(-time.Hour)); got != 1 {
		t.Fatalf("before everything: %d", got)
	}
}
