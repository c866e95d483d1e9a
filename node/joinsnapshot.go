package node

import (
	"fmt"
)

// snapshotForJoin makes sure that a member about to be added receives
// this leader's state as a snapshot rather than by replaying the log
// from its first entry.
//
// A log that still starts at index 1 may not hold all of the state: a
// store laid down by `cairn restore` (RestoreDataDir) starts a new
// cluster whose log begins after the restored data, so a member that
// joined would replay the new log onto an empty store and have none of
// it (revision 0 while the leader is at the backup's head). So a leader
// whose store holds data while its log starts at 1 first takes a
// snapshot with its whole log up to it compacted away (raft's trailing
// logs set to 0 for that one snapshot); from then on a member that joins
// installs the snapshot. A young cluster that wrote before its members
// joined pays one snapshot for it; an empty store needs nothing.
func (n *Node) snapshotForJoin() error {
	n.joinSnapMu.Lock()
	defer n.joinSnapMu.Unlock()
	if n.fsm.Revision() == 0 {
		return nil
	}
	first, err := n.logStore.FirstIndex()
	if err != nil {
		return fmt.Errorf("node: raft log: %w", err)
	}
	if first != 1 {
		// Compacted (or empty): a new member needs a snapshot anyway.
		return nil
	}
	rc := n.raft.ReloadableConfig()
	all := rc
	all.TrailingLogs = 0
	if err := n.raft.ReloadConfig(all); err != nil {
		return fmt.Errorf("node: snapshot before adding a member: %w", err)
	}
	err = n.wait(n.raft.Snapshot())
	if rerr := n.raft.ReloadConfig(rc); err == nil && rerr != nil {
		err = rerr
	}
	if err != nil {
		return fmt.Errorf("node: snapshot before adding a member: %w", mapRaftErr(err))
	}
	first, err = n.logStore.FirstIndex()
	if err != nil {
		return fmt.Errorf("node: raft log: %w", err)
	}
	n.log.Info("snapshot taken before adding a member: the log now starts after it", "first_index", first)
	return nil
}
