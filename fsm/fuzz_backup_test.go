package fsm

import (
	"bytes"
	"context"
	"crypto/sha256"
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

// FuzzBackupContents goes past the checksums FuzzReadBackup's mutations
// rarely get through: it wraps fuzzed header JSON and a fuzzed body in a
// valid envelope (header checksum; for a full backup, the snapshot
// stream's length and SHA-256 around a fuzzed bbolt file), so the JSON
// decoding, the incremental records and bbolt's page parsing behind
// VerifyBackupFile are what get fuzzed. It never panics (nor crashes in
// bbolt's own goroutines) and refuses with one of the package's errors.
func FuzzBackupContents(f *testing.F) {
	for _, s := range backupSeeds(f) {
		r := bytes.NewReader(s)
		h, err := ReadBackupHeader(r)
		if err != nil {
			f.Fatal(err)
		}
		body := s[len(s)-r.Len():]
		js := s[len(backupMagic)+5 : len(s)-r.Len()-32]
		if h.Kind == BackupFull {
			// The bbolt file inside the snapshot stream.
			size := getU64(body[len(snapshotMagic)+1 : len(snapshotMagic)+9])
			body = body[len(snapshotMagic)+9 : len(snapshotMagic)+9+int(size)]
		}
		f.Add(js, body)
	}
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, js, body []byte) {
		var file bytes.Buffer
		file.Write(backupMagic)
		file.WriteByte(backupVersion)
		file.Write([]byte{byte(len(js) >> 24), byte(len(js) >> 16), byte(len(js) >> 8), byte(len(js))})
		file.Write(js)
		sum := sha256.Sum256(js)
		file.Write(sum[:])
		if bytes.Contains(js, []byte(`"full"`)) {
			file.Write(snapshotMagic)
			file.WriteByte(snapshotVersion)
			file.Write(u64(uint64(len(body))))
			file.Write(body)
			bs := sha256.Sum256(body)
			file.Write(bs[:])
		} else {
			file.Write(body)
		}
		name := filepath.Join(dir, "fuzz.bak")
		if err := os.WriteFile(name, file.Bytes(), 0o600); err != nil {
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
