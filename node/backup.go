package node

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/hashicorp/raft"

	"github.com/cairn-db/cairn/fsm"
)

// RestoreDataDir lays down a data directory from a full backup and any
// incremental backups (in order), checking the chain across all files and,
// after each file whose header carries one, the state hash
// (fsm.ErrStateMismatch when the restored state differs).
// `cairn node run --bootstrap` then starts it as a new single-node cluster
// with the backup's data, revisions and chain head; other nodes join it.
// The directory must not hold a node's state already. o.Progress, when
// set, is given the bytes of the files as they are read.
func RestoreDataDir(ctx context.Context, dir string, o fsm.RestoreOptions, full string, incrementals ...string) (fsm.BackupHeader, error) {
	for _, name := range []string{fsmFile, raftFile, stableFile, snapDir} {
		if _, err := os.Stat(filepath.Join(dir, name)); err == nil {
			return fsm.BackupHeader{}, fmt.Errorf("%w: %s already holds %s; restore into an empty directory", ErrBadRequest, dir, name)
		}
	}
	h, err := fsm.RestoreBackupWith(ctx, filepath.Join(dir, fsmFile), o, full, incrementals...)
	if err != nil {
		return h, err
	}
	// The first start snapshots the store for the members that join
	// (seedRestored).
	if err := writeSynced(filepath.Join(dir, seedFile), []byte("restored from "+full+"; not yet in a raft snapshot\n")); err != nil {
		return h, fmt.Errorf("node: restore: %w", err)
	}
	return h, nil
}

// VerifyBackupFile checks a backup file offline (see fsm.VerifyBackupFile):
// a full backup's embedded store is restored into a temporary directory,
// so its chain, every versions entry's checksum and its state hash
// (against the header's, when present) are recomputed; an incremental
// backup's chain is checked (its state hash needs the state it applies
// to, which restore checks).
func VerifyBackupFile(ctx context.Context, name string) (fsm.BackupHeader, error) {
	return fsm.VerifyBackupFile(ctx, name)
}

// seedRestoredTimeout bounds seedRestored's wait for the leadership of
// the restored member's new cluster (its only voter).
const seedRestoredTimeout = 30 * time.Second

// seedRestored puts a restored store (RestoreDataDir) into a raft
// snapshot, with the log before it removed, on the restored member's
// first start, before it serves HTTP: the state the store was restored
// with was never in the new cluster's log, and raft sends a member that
// joins the log from its first entry unless that entry is gone, in which
// case the member installs the snapshot (the whole store) first. Without
// it, members that joined a restored cluster held only the writes made
// after the restore, under revisions of their own. The marker file goes
// once the snapshot is taken; a start that stopped before that takes it
// again.
func (n *Node) seedRestored() error {
	wait := max(seedRestoredTimeout, 20*n.cfg.ElectionTimeout)
	deadline := time.Now().Add(wait)
	for n.raft.State() != raft.Leader {
		if time.Now().After(deadline) {
			return fmt.Errorf("%w: the restored member %s did not become the leader of its new cluster within %s", ErrTimeout, n.cfg.ID, wait)
		}
		select {
		case <-n.ctx.Done():
			return ErrShuttingDown
		case <-time.After(10 * time.Millisecond):
		}
	}
	// Something new for the snapshot to cover, also on a start after one
	// that stopped between its snapshot and the log's truncation (raft
	// then has handed the state machine nothing in this run): the
	// configuration committed again, this member as the voter it is, and
	// applied.
	if err := n.wait(n.raft.AddVoter(raft.ServerID(n.cfg.ID), raft.ServerAddress(n.raftAddr), 0, 0)); err != nil {
		return fmt.Errorf("node: restored store: %w", err)
	}
	if err := n.wait(n.raft.Barrier(0)); err != nil {
		return fmt.Errorf("node: restored store: %w", err)
	}
	rc := n.raft.ReloadableConfig()
	trailing := rc.TrailingLogs
	rc.TrailingLogs = 0
	if err := n.raft.ReloadConfig(rc); err != nil {
		return fmt.Errorf("node: restored store: %w", err)
	}
	err := n.wait(n.raft.Snapshot())
	rc.TrailingLogs = trailing
	if rerr := n.raft.ReloadConfig(rc); rerr != nil && err == nil {
		err = rerr
	}
	if err != nil {
		return fmt.Errorf("node: snapshot of the restored store: %w", err)
	}
	if err := os.Remove(filepath.Join(n.cfg.DataDir, seedFile)); err != nil {
		return fmt.Errorf("node: restored store: %w", err)
	}
	n.log.Info("restored store snapshotted: members that join install it")
	return nil
}

// writeSynced writes a new file and syncs it and its directory.
func writeSynced(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	d, err := os.Open(filepath.Dir(path))
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
