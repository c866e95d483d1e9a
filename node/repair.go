package node

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// Repairing a member whose stored data is damaged (alarm corrupt, a store
// that does not open): the member is wiped and re-joins, and raft sends
// it the leader's snapshot and log. Nothing is deleted: the damaged
// stores are moved aside for inspection.
//
//  1. stop the member;
//  2. on its host, `cairn --cluster <the other members> node repair --id ID
//     --data-dir DIR` (Repair): it checks that the member is stopped,
//     removes it from the cluster through the leader (a wiped voter must
//     not vote with a log it no longer has), and moves fsm.db, raft.db,
//     raft-stable.dat, snapshots/ and the markers beside them into DIR/damaged-<UTC time>/;
//  3. start the member with --join <the other members' URLs> (not
//     --bootstrap, which New refuses for a repaired member: it would found
//     a cluster of its own). It joins as a new member and receives the
//     state.

// repairedMarker, in a data directory, says Repair wiped it: New refuses
// to start the member without --join (or with --bootstrap) until it has
// state again; joinLoop removes it once the member joined.
const repairedMarker = "REPAIRED"

// RepairOptions configure Repair.
type RepairOptions struct {
	// DataDir is the stopped member's data directory.
	DataDir string
	// ID is the member's id.
	ID string
	// Remove removes member id from the cluster through the leader (the
	// CLI's client.RemoveMember). It returns nil when id is no longer a
	// member, so that Repair can run again after a partial failure.
	Remove func(ctx context.Context, id string) error
	// Now is the time that names the directory the stores move to (nil:
	// time.Now).
	Now func() time.Time
}

// RepairResult says what Repair did.
type RepairResult struct {
	// MovedTo is the directory the damaged stores were moved to ("" when
	// there was nothing to move).
	MovedTo string
	// Moved names the files and directories moved, relative to DataDir.
	Moved []string
}

// repairLockWait bounds the wait for a store's file lock: a running
// member holds it.
const repairLockWait = time.Second

// Repair prepares a stopped member with damaged data to re-join: it
// removes the member from the cluster (RepairOptions.Remove) and moves its
// stores aside, keeping them. Start the member with --join afterwards. It
// refuses a running member (its stores are locked).
func Repair(ctx context.Context, o RepairOptions) (RepairResult, error) {
	var res RepairResult
	switch {
	case o.DataDir == "" || o.ID == "":
		return res, fmt.Errorf("%w: repair needs the member's data dir and id", ErrBadRequest)
	case o.Remove == nil:
		return res, fmt.Errorf("%w: repair needs a way to remove the member", ErrBadRequest)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if st, err := os.Stat(o.DataDir); err != nil {
		return res, fmt.Errorf("node: repair: %w", err)
	} else if !st.IsDir() {
		return res, fmt.Errorf("%w: repair: %s is not a directory", ErrBadRequest, o.DataDir)
	}
	for _, name := range []string{fsmFile, raftFile} {
		if err := checkStopped(filepath.Join(o.DataDir, name)); err != nil {
			return res, err
		}
	}
	if err := o.Remove(ctx, o.ID); err != nil {
		return res, fmt.Errorf("node: repair: remove member %s from the cluster: %w", o.ID, err)
	}
	names, err := damagedStores(o.DataDir)
	if err != nil {
		return res, err
	}
	if len(names) > 0 {
		dir := filepath.Join(o.DataDir, "damaged-"+o.Now().UTC().Format("20060102T150405Z"))
		if err := os.Mkdir(dir, 0o700); err != nil {
			return res, fmt.Errorf("node: repair: %w", err)
		}
		for _, name := range names {
			if err := os.Rename(filepath.Join(o.DataDir, name), filepath.Join(dir, name)); err != nil {
				return res, fmt.Errorf("node: repair: move %s aside: %w", name, err)
			}
			res.Moved = append(res.Moved, name)
		}
		res.MovedTo = dir
	}
	marker := fmt.Sprintf("repaired %s; damaged stores in %s\n", o.Now().UTC().Format(time.RFC3339), res.MovedTo)
	if err := os.WriteFile(filepath.Join(o.DataDir, repairedMarker), []byte(marker), 0o600); err != nil {
		return res, fmt.Errorf("node: repair: %w", err)
	}
	return res, nil
}

// damagedStores lists what Repair moves aside in dir: the object store
// and its markers, the raft log, raft's term and vote (stableFile), the
// snapshots, and unfinished snapshot restores.
func damagedStores(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("node: repair: %w", err)
	}
	var names []string
	for _, e := range entries {
		n := e.Name()
		if strings.HasPrefix(n, fsmFile) || strings.HasPrefix(n, raftFile) || strings.HasPrefix(n, stableFile) || n == snapDir || strings.HasPrefix(n, ".restore-") {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	return names, nil
}

// checkStopped returns an error when the bbolt file at path is locked by
// a running member. A missing or unreadable file is not: it is what
// repair moves aside.
func checkStopped(path string) (err error) {
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	defer func() {
		if recover() != nil {
			err = nil // a damaged file bbolt cannot read: not locked
		}
	}()
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: repairLockWait})
	if errors.Is(err, berrors.ErrTimeout) {
		return fmt.Errorf("%w: %s is in use: stop the member before repairing it", ErrBadRequest, path)
	}
	if err == nil {
		_ = db.Close()
	}
	return nil
}

// checkRepaired refuses to start a member that Repair wiped unless it
// joins: with no state, --bootstrap would found a new cluster and no
// --join would wait forever.
func checkRepaired(cfg Config, hasState bool) error {
	if hasState {
		return nil
	}
	if _, err := os.Stat(filepath.Join(cfg.DataDir, repairedMarker)); err != nil {
		return nil
	}
	if cfg.Bootstrap || len(cfg.Join) == 0 {
		return fmt.Errorf("%w: member %s was repaired (cairn node repair): start it with --join <the other members' URLs> and without --bootstrap, so that it re-joins the cluster and receives its state",
			ErrInvalidConfig, cfg.ID)
	}
	return nil
}
