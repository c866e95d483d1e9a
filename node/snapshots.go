package node

import (
	"errors"
	"time"

	"github.com/hashicorp/raft"
)

// minTrailingLogs is the fewest entries kept behind a snapshot taken by
// log volume, so that a follower briefly behind still catches up from the
// log.
const minTrailingLogs = 64

// snapshotByLogBytes takes a raft snapshot once the log written since the
// last one it took reaches Config.SnapshotLogBytes, or a quarter of the
// object store's size if that is more. Raft's own trigger
// (SnapshotThreshold) and truncation (TrailingLogs) count entries, and a
// coalesced entry carries up to 512 writes: by count alone, a store of a
// million objects never snapshots, its whole log is re-read at every
// start, and a new member replays it instead of installing a snapshot. A
// snapshot copies the whole store, so the store's size sets the pace: a
// store that only grows snapshots each time its log doubles, which bounds
// the copying to a small multiple of what was written.
//
// Before each snapshot it lowers raft's TrailingLogs (never above the
// configured value) so that about half the limit's bytes of log stay
// behind the snapshot, at the recent mean entry size.
func (n *Node) snapshotByLogBytes() {
	t := time.NewTicker(min(n.cfg.SnapshotInterval, 10*time.Second))
	defer t.Stop()
	base, baseEntries := n.logCache.stored.Load(), n.logCache.storedEntries.Load()
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-t.C:
		}
		now, entries := n.logCache.stored.Load(), n.logCache.storedEntries.Load()
		written := now - base
		limit := n.cfg.SnapshotLogBytes
		if size, err := n.fsm.DataSize(); err == nil {
			limit = max(limit, uint64(size)/4)
		}
		if written < limit || entries == baseEntries {
			continue
		}
		mean := written / (entries - baseEntries)
		trailing := min(n.cfg.TrailingLogs, max(minTrailingLogs, limit/2/max(mean, 1)))
		rc := n.raft.ReloadableConfig()
		rc.TrailingLogs = trailing
		if err := n.raft.ReloadConfig(rc); err != nil {
			n.log.Warn("snapshot by log volume: set trailing logs", "err", err)
		}
		err := n.wait(n.raft.Snapshot())
		switch {
		case err == nil || errors.Is(err, raft.ErrNothingNewToSnapshot):
			n.log.Info("snapshot taken after log volume", "log_bytes", written, "trailing_logs", trailing)
			base, baseEntries = now, entries
		case n.ctx.Err() != nil:
			return
		default:
			// Raft's own snapshot may be running: try at the next tick.
			n.log.Warn("snapshot by log volume failed", "err", err)
		}
	}
}
