package fsm

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
)

// Durability without an fsync per commit.
//
// The FSM's state is derived from raft's log and snapshots, which are
// fsynced. An FSM commit therefore does not need to reach the disk before
// it is acknowledged: after a process crash (kill -9, a panic, an OOM kill)
// the kernel's page cache still holds every committed bbolt transaction,
// so the database is exactly as the last commit left it. Only an operating
// system crash or power loss can lose or tear unsynced pages, and that is
// what unsyncedMarker detects: while the database is open without per-commit
// fsync, a marker file beside it records the kernel's boot id. When Open
// finds a marker from another boot, the database may be torn, so it is
// discarded and raft rebuilds the state from its latest snapshot and the
// log after it (the node's start rule restores a snapshot ahead of an
// empty FSM). A clean Close fsyncs the database and removes the marker.
//
// Where the boot id cannot be read (not Linux), the FSM falls back to an
// fsync per commit.

// unsyncedSuffix names the marker file beside the database.
const unsyncedSuffix = ".unsynced"

// bootIDPath is where Linux publishes an id that changes on every boot.
var bootIDPath = "/proc/sys/kernel/random/boot_id"

// bootID returns this boot's id, or "" when it cannot be read.
func bootID() string {
	b, err := os.ReadFile(bootIDPath)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// checkUnsynced discards the database at path when a marker says it was
// open without per-commit fsync during a boot other than the current one.
// It reports whether the database was discarded.
func (f *FSM) checkUnsynced(path, boot string) (bool, error) {
	marker := path + unsyncedSuffix
	prev, err := os.ReadFile(marker)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("fsm: read %s: %w", marker, err)
	}
	if boot != "" && string(bytes.TrimSpace(prev)) == boot {
		// Same boot: only the process stopped; the page cache kept every
		// commit.
		return false, nil
	}
	discarded := false
	switch err := os.Remove(path); {
	case err == nil:
		discarded = true
		f.log.Warn("discarded a database that was not fsynced before the machine restarted; raft rebuilds it from its snapshot and log",
			"path", path, "previous_boot", strings.TrimSpace(string(prev)), "boot", boot)
	case !errors.Is(err, fs.ErrNotExist):
		return false, fmt.Errorf("fsm: discard unsynced database: %w", err)
	}
	if err := os.Remove(marker); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return false, fmt.Errorf("fsm: remove %s: %w", marker, err)
	}
	return discarded, syncDir(path)
}

// writeUnsynced records boot in the marker beside path, durably, before the
// database takes its first unsynced commit.
func writeUnsynced(path, boot string) error {
	marker := path + unsyncedSuffix
	if prev, err := os.ReadFile(marker); err == nil && string(bytes.TrimSpace(prev)) == boot {
		return nil
	}
	fh, err := os.OpenFile(marker, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("fsm: write %s: %w", marker, err)
	}
	_, err = fh.WriteString(boot + "\n")
	if err == nil {
		err = fh.Sync()
	}
	if cerr := fh.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("fsm: write %s: %w", marker, err)
	}
	return syncDir(path)
}

// removeUnsynced removes the marker after the database has been fsynced.
func removeUnsynced(path string) error {
	if err := os.Remove(path + unsyncedSuffix); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("fsm: remove %s: %w", path+unsyncedSuffix, err)
	}
	return syncDir(path)
}
