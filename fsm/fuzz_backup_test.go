package fsm

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// backupSeeds returns small real backups: a full one, an incremental one
// and an incremental one with no records.
func backupSeeds(t testing.TB) [][]byte {
	src := openTestFSM(t)
	src.apply(src.entry(Command{SetClusterID: &SetClusterID{ID: "c"}}))
	src.mustCommit(ops(put("a", "1"), put("b", "2")))
	var full, inc, empty bytes.Buffer
	if _, err := src.WriteFullBackup(&full, time.Unix(1, 0)); err != nil {
		t.Fatal(err)
	}
	r := src.Revision()
	src.mustCommit(Txn{Ops: []Op{put("a", "3"), del("b")}, User: "u", IdempotencyKey: "k"})
	src.mustCommit(ops(delPrefix("a")))
	if _, err := src.WriteIncrementalBackup(&inc, r, time.Unix(2, 0)); err != nil {
		t.Fatal(err)
	}
	if _, err := src.WriteIncrementalBackup(&empty, src.Revision(), time.Unix(3, 0)); err != nil {
		t.Fatal(err)
	}
	return [][]byte{full.Bytes(), inc.Bytes(), empty.Bytes()}
}

// FuzzReadBackup: the backup file reader (header, incremental records,
// the full backup's embedded store, offline verification) never panics,
// and refuses with one of the package's errors.
func FuzzReadBackup(f *testing.F) {
	for _, s := range backupSeeds(f) {
		f.Add(s)
	}
	f.Add([]byte("CAIRNBAK"))
	f.Add(append([]byte("CAIRNBAK\x01"), 0, 0, 0, 2, '{', '}'))
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		h, err := ReadBackupHeader(bytes.NewReader(data))
		if err != nil {
			if !errors.Is(err, ErrBadBackup) {
				t.Fatalf("header: unexpected error class: %v", err)
			}
			return
		}
		if h.Kind == BackupIncremental {
			r := bytes.NewReader(data)
			_, _ = ReadBackupHeader(r)
			_, _ = ReadPartialIncremental(r, h, func(RawRecord) error { return nil })
		}
		name := filepath.Join(dir, "fuzz.bak")
		if err := os.WriteFile(name, data, 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := VerifyBackupFile(context.Background(), name); err != nil {
			for _, want := range []error{ErrBadBackup, ErrCorruptSnapshot, ErrUnknownVersion, ErrStateMismatch, ErrChainMismatch, ErrCorrupt, ErrDamaged} {
				if errors.Is(err, want) {
					return
				}
			}
			t.Fatalf("verify: unexpected error class: %v", err)
		}
	})
}
