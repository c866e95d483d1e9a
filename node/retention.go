package node

import (
	"errors"
	"time"

	"github.com/cairn-db/cairn/fsm"
)

// retentionTarget returns the revision history should be compacted to
// under the configured retention, or 0 when nothing is due. With both a
// revision count and an age, the point that keeps more history wins.
func (n *Node) retentionTarget(now time.Time) (uint64, error) {
	st, err := n.fsm.Status()
	if err != nil {
		return 0, err
	}
	target := uint64(0)
	if k := n.cfg.RetainRevisions; k > 0 && st.Revision > k {
		target = st.Revision - k + 1
	}
	if d := n.cfg.RetainAge; d > 0 {
		since, err := n.fsm.FirstRevisionSince(now.Add(-d))
		if err != nil {
			return 0, err
		}
		// Keep the newest revision readable even when it is older than d.
		since = min(since, st.Revision)
		if target == 0 || since < target {
			target = since
		}
	}
	// A live mirror checkpoint holds compaction back (apply would clamp
	// the entry anyway; retention proposes no more than it may do).
	if floor := n.fsm.CompactionFloor(now); floor != 0 && target > floor {
		target = floor
	}
	if target <= st.CompactRevision {
		return 0, nil
	}
	return target, nil
}

// retentionLoop compacts history on the leader as the retention settings
// allow, every RetentionInterval. Compaction goes through the log, so every
// replica compacts at the same point.
func (n *Node) retentionLoop() {
	tick := time.NewTicker(n.cfg.RetentionInterval)
	defer tick.Stop()
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-tick.C:
		}
		if !n.IsLeader() {
			continue
		}
		target, err := n.retentionTarget(time.Now())
		if err != nil || target == 0 {
			continue
		}
		if _, err := n.compact(n.ctx, target); err != nil && !errors.Is(err, fsm.ErrCompacted) {
			n.log.Warn("history retention: compaction failed", "revision", target, "err", err)
			continue
		}
		n.log.Info("history retention: compacted", "before", target)
	}
}
