package fsm

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// rewriteHeader writes a copy of the backup file name with its header
// changed by mod (and a valid header checksum) and returns its path.
func rewriteHeader(t *testing.T, name string, mod func(*BackupHeader)) string {
	t.Helper()
	data, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	r := bytes.NewReader(data)
	h, err := ReadBackupHeader(r)
	if err != nil {
		t.Fatal(err)
	}
	body := data[len(data)-r.Len():]
	mod(&h)
	var buf bytes.Buffer
	if err := writeBackupHeader(&buf, &h); err != nil {
		t.Fatal(err)
	}
	buf.Write(body)
	p := filepath.Join(t.TempDir(), filepath.Base(name))
	if err := os.WriteFile(p, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestBackupStateHash: both kinds of backup carry the state hash at their
// revision, and a restore recomputes it.
func TestBackupStateHash(t *testing.T) {
	ctx := context.Background()
	src := openTestFSM(t)
	commitN(src, 0, 30)
	var fh BackupHeader
	full := writeFile(t, "full.bak", func(w *bytes.Buffer) (err error) {
		fh, err = src.WriteFullBackup(w, time.Now())
		return err
	})
	atFull, err := src.StateHash(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	if fh.StateHash != atFull.Hash.String() || fh.Keys != atFull.Keys || fh.Keys == 0 {
		t.Fatalf("full header %+v, state %+v", fh, atFull)
	}
	r := src.Revision()
	commitN(src, 30, 25)
	var ih BackupHeader
	inc := writeFile(t, "inc.bak", func(w *bytes.Buffer) (err error) {
		ih, err = src.WriteIncrementalBackup(w, r, time.Now())
		return err
	})
	atInc, _ := src.StateHash(ctx, 0)
	if ih.StateHash != atInc.Hash.String() || ih.Keys != atInc.Keys {
		t.Fatalf("incremental header %+v, state %+v", ih, atInc)
	}
	g, _ := restoredFSM(t, full, inc)
	if got, err := g.StateHash(ctx, 0); err != nil || got != atInc {
		t.Fatalf("restored state %+v %v, want %+v", got, err, atInc)
	}
	if h, err := VerifyBackupFile(ctx, full); err != nil || h.StateHash != fh.StateHash {
		t.Fatalf("verify: %+v %v", h, err)
	}

	// A header that disagrees with its data is refused by restore and
	// verify, naming the file.
	for _, c := range []struct {
		name      string
		full, inc string
	}{
		{"full", rewriteHeader(t, full, func(h *BackupHeader) { h.Keys++ }), inc},
		{"incremental", full, rewriteHeader(t, inc, func(h *BackupHeader) { h.StateHash = atFull.Hash.String() })},
	} {
		_, err := RestoreBackup(ctx, filepath.Join(t.TempDir(), "r.db"), c.full, c.inc)
		if !errors.Is(err, ErrStateMismatch) {
			t.Fatalf("%s: restore: %v", c.name, err)
		}
	}
	bad := rewriteHeader(t, full, func(h *BackupHeader) { h.StateHash = atInc.Hash.String() })
	if _, err := VerifyBackupFile(ctx, bad); !errors.Is(err, ErrStateMismatch) {
		t.Fatalf("verify of a mismatching full backup: %v", err)
	}

	// Files from before the state hash still restore.
	oldFull := rewriteHeader(t, full, func(h *BackupHeader) { h.StateHash, h.Keys = "", 0 })
	oldInc := rewriteHeader(t, inc, func(h *BackupHeader) { h.StateHash, h.Keys = "", 0 })
	if data, _ := os.ReadFile(oldFull); bytes.Contains(data, []byte("state_hash")) {
		t.Fatal("old-format header still names state_hash")
	}
	o, _ := restoredFSM(t, oldFull, oldInc)
	if got, _ := o.StateHash(ctx, 0); got != atInc {
		t.Fatalf("restored from old files: %+v", got)
	}
}

// TestRestoreCatchesChangedState: a full backup whose data was changed
// consistently (a valid entry checksum, the chain untouched) is caught by
// the state hash alone.
func TestRestoreCatchesChangedState(t *testing.T) {
	src := openTestFSM(t)
	commitN(src, 0, 10)
	full := writeFile(t, "full.bak", func(w *bytes.Buffer) error {
		_, err := src.WriteFullBackup(w, time.Now())
		return err
	})
	data, err := os.ReadFile(full)
	if err != nil {
		t.Fatal(err)
	}
	r := bytes.NewReader(data)
	h, err := ReadBackupHeader(r)
	if err != nil {
		t.Fatal(err)
	}
	// The embedded store, changed: one value rewritten with a valid entry.
	body := data[len(data)-r.Len():]
	size := getU64(body[len(snapshotMagic)+1 : len(snapshotMagic)+9])
	db := filepath.Join(t.TempDir(), "db")
	if err := os.WriteFile(db, body[len(snapshotMagic)+9:len(snapshotMagic)+9+int(size)], 0o600); err != nil {
		t.Fatal(err)
	}
	bdb, err := bolt.Open(db, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = bdb.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketVersions)
		k, v := b.Cursor().Last()
		tomb, cr, _, err := decodeVersion(k, v)
		if err != nil {
			return err
		}
		return b.Put(bytes.Clone(k), encodeVersion(k, tomb, cr, []byte("forged")))
	})
	bdb.Close()
	if err != nil {
		t.Fatal(err)
	}
	changed, err := os.ReadFile(db)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := writeBackupHeader(&buf, &h); err != nil {
		t.Fatal(err)
	}
	buf.Write(streamOf(t, changed))
	forged := filepath.Join(t.TempDir(), "forged.bak")
	if err := os.WriteFile(forged, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := RestoreBackup(context.Background(), filepath.Join(t.TempDir(), "r.db"), forged); !errors.Is(err, ErrStateMismatch) {
		t.Fatalf("restore of a changed state: %v", err)
	}
	if _, err := VerifyBackupFile(context.Background(), forged); !errors.Is(err, ErrStateMismatch) {
		t.Fatalf("verify of a changed state: %v", err)
	}
}
