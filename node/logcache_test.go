package node

import (
	"bytes"
	"errors"
	"runtime"
	"testing"
	"weak"

	"github.com/hashicorp/raft"
)

func cacheEntry(i uint64, size int) *raft.Log {
	return &raft.Log{Index: i, Term: 1, Type: raft.LogCommand, Data: bytes.Repeat([]byte{byte(i)}, size)}
}

// cached returns the indexes the cache itself holds.
func cached(c *logCache) []uint64 {
	c.mu.RLock()
	defer c.mu.RUnlock()
	var out []uint64
	for _, l := range c.logs {
		out = append(out, l.Index)
	}
	return out
}

func equalIndexes(a, b []uint64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestLogCacheBounds(t *testing.T) {
	store := raft.NewInmemStore()
	// Each entry costs 1000 + 96 bytes: four fit in 4400, five do not.
	c, err := newLogCache(8, 4400, store)
	if err != nil {
		t.Fatal(err)
	}
	for i := uint64(1); i <= 6; i++ {
		if err := c.StoreLogs([]*raft.Log{cacheEntry(i, 1000)}); err != nil {
			t.Fatal(err)
		}
	}
	if got, want := cached(c), []uint64{3, 4, 5, 6}; !equalIndexes(got, want) {
		t.Fatalf("cached %v, want %v (byte bound)", got, want)
	}
	// Small entries: the entry bound applies.
	if err := c.StoreLogs([]*raft.Log{cacheEntry(7, 1), cacheEntry(8, 1), cacheEntry(9, 1), cacheEntry(10, 1),
		cacheEntry(11, 1), cacheEntry(12, 1), cacheEntry(13, 1), cacheEntry(14, 1)}); err != nil {
		t.Fatal(err)
	}
	if got, want := cached(c), []uint64{7, 8, 9, 10, 11, 12, 13, 14}; !equalIndexes(got, want) {
		t.Fatalf("cached %v, want %v (entry bound)", got, want)
	}
	// An entry larger than the whole budget is stored but not cached.
	if err := c.StoreLogs([]*raft.Log{cacheEntry(15, 5000)}); err != nil {
		t.Fatal(err)
	}
	if got := cached(c); len(got) != 0 {
		t.Fatalf("cached %v after an entry over the budget, want none", got)
	}
	// Every entry is still readable, from the cache or the store.
	for i := uint64(1); i <= 15; i++ {
		var l raft.Log
		if err := c.GetLog(i, &l); err != nil || l.Index != i || len(l.Data) == 0 || l.Data[0] != byte(i) {
			t.Fatalf("GetLog(%d): %+v, %v", i, l, err)
		}
	}
	var l raft.Log
	if err := c.GetLog(16, &l); !errors.Is(err, raft.ErrLogNotFound) {
		t.Fatalf("GetLog(16): %v, want ErrLogNotFound", err)
	}
}

func TestLogCacheGapsAndDeletes(t *testing.T) {
	store := raft.NewInmemStore()
	c, err := newLogCache(16, 1<<20, store)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.StoreLogs([]*raft.Log{cacheEntry(1, 10), cacheEntry(2, 10), cacheEntry(3, 10)}); err != nil {
		t.Fatal(err)
	}
	// A follower's conflicting suffix: raft deletes it and writes again.
	if err := c.DeleteRange(3, 3); err != nil {
		t.Fatal(err)
	}
	if got := cached(c); len(got) != 0 {
		t.Fatalf("cached %v after DeleteRange, want none", got)
	}
	rewritten := cacheEntry(3, 10)
	rewritten.Term = 2
	if err := c.StoreLogs([]*raft.Log{rewritten}); err != nil {
		t.Fatal(err)
	}
	var l raft.Log
	if err := c.GetLog(3, &l); err != nil || l.Term != 2 {
		t.Fatalf("GetLog(3) after rewrite: term %d, %v", l.Term, err)
	}
	// A gap (after a snapshot install) starts the cache afresh.
	if err := c.StoreLogs([]*raft.Log{cacheEntry(10, 10), cacheEntry(11, 10)}); err != nil {
		t.Fatal(err)
	}
	if got, want := cached(c), []uint64{10, 11}; !equalIndexes(got, want) {
		t.Fatalf("cached %v after a gap, want %v", got, want)
	}
	if err := c.GetLog(2, &l); err != nil || l.Index != 2 {
		t.Fatalf("GetLog(2) from the store: %+v, %v", l, err)
	}
}

// logHolder stands for raft's apply future: the leader hands the log
// store a pointer to the raft.Log inside it.
type logHolder struct {
	log      raft.Log
	response []byte
}

// copyingStore stores copies, as raft-boltdb does (it encodes them);
// raft.InmemStore would keep the caller's pointers itself.
type copyingStore struct{ *raft.InmemStore }

func (s copyingStore) StoreLogs(logs []*raft.Log) error {
	cp := make([]*raft.Log, len(logs))
	for i, l := range logs {
		c := *l
		cp[i] = &c
	}
	return s.InmemStore.StoreLogs(cp)
}

func (s copyingStore) StoreLog(l *raft.Log) error { return s.StoreLogs([]*raft.Log{l}) }

// TestLogCacheDoesNotRetainFutures checks that caching an entry does not
// keep the structure around its raft.Log reachable, as raft.LogCache does.
func TestLogCacheDoesNotRetainFutures(t *testing.T) {
	c, err := newLogCache(16, 1<<20, copyingStore{raft.NewInmemStore()})
	if err != nil {
		t.Fatal(err)
	}
	rc, err := raft.NewLogCache(16, copyingStore{raft.NewInmemStore()})
	if err != nil {
		t.Fatal(err)
	}
	h1 := &logHolder{log: *cacheEntry(1, 10), response: make([]byte, 1<<20)}
	h2 := &logHolder{log: *cacheEntry(1, 10), response: make([]byte, 1<<20)}
	if err := c.StoreLogs([]*raft.Log{&h1.log}); err != nil {
		t.Fatal(err)
	}
	if err := rc.StoreLogs([]*raft.Log{&h2.log}); err != nil {
		t.Fatal(err)
	}
	w1, w2 := weak.Make(h1), weak.Make(h2)
	h1, h2 = nil, nil
	runtime.GC()
	if w1.Value() != nil {
		t.Error("logCache keeps the structure around a cached entry reachable")
	}
	if w2.Value() == nil {
		t.Log("raft.LogCache no longer keeps it reachable either; the note in logcache.go is out of date")
	}
	var l raft.Log
	if err := c.GetLog(1, &l); err != nil || len(l.Data) != 10 {
		t.Fatalf("GetLog(1): %+v, %v", l, err)
	}
	runtime.KeepAlive(rc)
}
