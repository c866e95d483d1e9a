package node

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

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
	return fsm.RestoreBackupWith(ctx, filepath.Join(dir, fsmFile), o, full, incrementals...)
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
