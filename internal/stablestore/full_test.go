//go:build linux

package stablestore

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	raftboltdb "github.com/hashicorp/raft-boltdb/v2"

	"github.com/cairn-db/cairn/internal/testutil"
)

// TestUpdatesOnFullFilesystem: once the store exists, updates succeed on
// a filesystem with no byte free, and survive a reopen; raft.db's
// write-through may fail there and is only logged.
func TestUpdatesOnFullFilesystem(t *testing.T) {
	disk := testutil.MountTmpfs(t, 1<<20)
	bolt, err := raftboltdb.NewBoltStore(filepath.Join(disk, "raft.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer bolt.Close()
	path := filepath.Join(disk, "raft-stable.dat")
	var logs testutil.SyncBuffer
	s, err := Open(Options{Path: path, Fallback: bolt, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	testutil.FillDisk(t, filepath.Join(disk, "filler"))
	for term := uint64(1); term <= 500; term++ {
		if err := s.SetUint64(KeyCurrentTerm, term); err != nil {
			t.Fatalf("term %d on a full filesystem: %v", term, err)
		}
		if err := s.SetUint64(KeyLastVoteTerm, term); err != nil {
			t.Fatalf("vote term %d on a full filesystem: %v", term, err)
		}
		if err := s.Set(KeyLastVoteCand, fmt.Appendf(nil, "member-%d", term)); err != nil {
			t.Fatalf("vote %d on a full filesystem: %v", term, err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// raft.db, the old store, may have had free pages for some of them.
	t.Logf("write-through to raft.db failed %d times of 1500", strings.Count(logs.String(), "could not copy an update to raft.db"))
	// Still full: nothing was freed.
	if err := os.WriteFile(filepath.Join(disk, "probe"), []byte("x"), 0o600); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("the filesystem is no longer full: %v", err)
	}
	s, err = Open(Options{Path: path, Fallback: bolt})
	if err != nil {
		t.Fatalf("reopen on a full filesystem: %v", err)
	}
	defer s.Close()
	wantUint64(t, s, KeyCurrentTerm, 500)
	wantUint64(t, s, KeyLastVoteTerm, 500)
	wantBytes(t, s, KeyLastVoteCand, []byte("member-500"))
}
