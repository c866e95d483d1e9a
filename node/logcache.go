package node

import (
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/hashicorp/raft"
)

// logCache keeps the newest raft log entries in memory in front of the
// log store, like raft.LogCache, with two differences that matter once
// client writes are coalesced (batcher.go) and one entry carries up to
// 512 transactions or 1 MiB:
//
//   - It is bounded in bytes as well as in entries. raft.LogCache holds a
//     fixed number of entries whatever their size: 512 coalesced entries
//     are 35–115 MiB of heap with 256-byte values and up to 512 MiB with
//     large ones (docs/performance.md, "Scale: 1,000,000 objects").
//   - It stores a copy of each raft.Log, not raft's pointer. On the leader
//     that pointer points into the entry's apply future, so raft.LogCache
//     keeps every cached entry's future reachable, and with it the
//     future's response (the batch's per-transaction results).
//
// Entries are kept in index order with contiguous indexes; a write that
// does not follow the newest cached entry (a follower's log truncated and
// rewritten, a snapshot installed) starts the cache afresh.
type logCache struct {
	store    raft.LogStore
	maxLogs  int
	maxBytes int

	// stored counts the bytes (logEntrySize) of every entry ever stored,
	// for the snapshot trigger by log volume (snapshots.go).
	stored        atomic.Uint64
	storedEntries atomic.Uint64

	mu    sync.RWMutex
	logs  []*raft.Log // oldest first, contiguous indexes
	bytes int         // logEntrySize summed over logs
}

var (
	_ raft.LogStore          = (*logCache)(nil)
	_ raft.MonotonicLogStore = (*logCache)(nil)
)

// newLogCache caches up to maxLogs entries and maxBytes of entry data in
// front of store.
func newLogCache(maxLogs, maxBytes int, store raft.LogStore) (*logCache, error) {
	if maxLogs <= 0 || maxBytes <= 0 {
		return nil, fmt.Errorf("node: log cache limits must be positive (%d entries, %d bytes)", maxLogs, maxBytes)
	}
	return &logCache{store: store, maxLogs: maxLogs, maxBytes: maxBytes}, nil
}

// logEntrySize is what a cached entry costs: its data and extensions
// plus the struct.
func logEntrySize(l *raft.Log) int { return len(l.Data) + len(l.Extensions) + 96 }

// IsMonotonic implements raft.MonotonicLogStore for the underlying store.
func (c *logCache) IsMonotonic() bool {
	if s, ok := c.store.(raft.MonotonicLogStore); ok {
		return s.IsMonotonic()
	}
	return false
}

// GetLog implements raft.LogStore.
func (c *logCache) GetLog(idx uint64, log *raft.Log) error {
	c.mu.RLock()
	if len(c.logs) > 0 {
		if first := c.logs[0].Index; idx >= first && idx-first < uint64(len(c.logs)) {
			*log = *c.logs[idx-first]
			c.mu.RUnlock()
			return nil
		}
	}
	c.mu.RUnlock()
	return c.store.GetLog(idx, log)
}

// StoreLog implements raft.LogStore.
func (c *logCache) StoreLog(log *raft.Log) error {
	return c.StoreLogs([]*raft.Log{log})
}

// StoreLogs implements raft.LogStore: the store first, then the cache.
func (c *logCache) StoreLogs(logs []*raft.Log) error {
	if err := c.store.StoreLogs(logs); err != nil {
		return fmt.Errorf("unable to store logs within log store: %w", err) // %w: the node tells ENOSPC apart (space.go)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	added := 0
	for _, l := range logs {
		if n := len(c.logs); n > 0 && c.logs[n-1].Index+1 != l.Index {
			c.resetLocked()
		}
		cp := *l
		c.logs = append(c.logs, &cp)
		added += logEntrySize(&cp)
		c.bytes += logEntrySize(&cp)
	}
	c.stored.Add(uint64(added))
	c.storedEntries.Add(uint64(len(logs)))
	drop := 0
	for drop < len(c.logs) && (len(c.logs)-drop > c.maxLogs || c.bytes > c.maxBytes) {
		c.bytes -= logEntrySize(c.logs[drop])
		drop++
	}
	if drop > 0 {
		clear(c.logs[:drop]) // the backing array must not keep them reachable
		c.logs = c.logs[drop:]
	}
	return nil
}

// FirstIndex implements raft.LogStore.
func (c *logCache) FirstIndex() (uint64, error) { return c.store.FirstIndex() }

// LastIndex implements raft.LogStore.
func (c *logCache) LastIndex() (uint64, error) { return c.store.LastIndex() }

// DeleteRange implements raft.LogStore; it empties the cache.
func (c *logCache) DeleteRange(min, max uint64) error {
	c.mu.Lock()
	c.resetLocked()
	c.mu.Unlock()
	return c.store.DeleteRange(min, max)
}

func (c *logCache) resetLocked() {
	clear(c.logs)
	c.logs = c.logs[:0]
	c.bytes = 0
}
