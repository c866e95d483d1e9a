package fsm

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"
)

func writeFile(t *testing.T, name string, fn func(w *bytes.Buffer) error) string {
	t.Helper()
	var buf bytes.Buffer
	if err := fn(&buf); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func commitN(f *testFSM, from, n int) {
	for i := from; i < from+n; i++ {
		txn := ops(put(fmt.Sprintf("k/%03d", i%40), fmt.Sprint(i)))
		if i%7 == 0 {
			txn = ops(del(fmt.Sprintf("k/%03d", (i+1)%40)))
		}
		txn.User, txn.IdempotencyKey = "u", fmt.Sprintf("req-%d", i)
		f.mustCommit(txn)
	}
}

func restoredFSM(t *testing.T, full string, incs ...string) (*testFSM, BackupHeader) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "restored.db")
	h, err := RestoreBackup(context.Background(), path, full, incs...)
	if err != nil {
		t.Fatalf("restore: %v", err)
	}
	return openTestFSMAt(t, path), h
}

func TestBackupFullAndIncrementalsRestoreToSameHead(t *testing.T) {
	src := openTestFSM(t)
	src.mustCommit(ops(put("seed", "x")))
	l := src.entry(Command{SetClusterID: &SetClusterID{ID: "cluster-1"}})
	src.apply(l)
	commitN(src, 0, 30)
	full := writeFile(t, "full.bak", func(w *bytes.Buffer) error {
		_, err := src.WriteFullBackup(w, time.Now())
		return err
	})
	r1 := src.Revision()
	commitN(src, 30, 25)
	inc1 := writeFile(t, "inc1.bak", func(w *bytes.Buffer) error {
		_, err := src.WriteIncrementalBackup(w, r1, time.Now())
		return err
	})
	r2 := src.Revision()
	commitN(src, 55, 25)
	inc2 := writeFile(t, "inc2.bak", func(w *bytes.Buffer) error {
		_, err := src.WriteIncrementalBackup(w, r2, time.Now())
		return err
	})

	got, h := restoredFSM(t, full, inc1, inc2)
	want, _ := src.Head()
	if head, _ := got.Head(); head != want || h.Revision != want.Revision || h.Hash != want.Hash.String() {
		t.Fatalf("restored head %+v (header %d %s), source %+v", head, h.Revision, h.Hash, want)
	}
	if !reflect.DeepEqual(got.dump(), src.dump()) {
		t.Fatal("restored reads differ from the source")
	}
	// A restore is a new cluster: its first leader names it; the header
	// keeps the id the backup was taken under.
	if id, _ := got.ClusterID(); id != "" || h.ClusterID != "cluster-1" {
		t.Fatalf("cluster id %q / header %q", id, h.ClusterID)
	}
	// A new cluster's raft log starts at 1: the restored state must apply it.
	if idx, _, _ := got.AppliedIndex(); idx != 0 {
		t.Fatalf("restored applied index %d, want 0", idx)
	}
	// An idempotency key restored from an incremental is still honoured.
	got.index = 0
	if r := got.commit(Txn{Ops: []Op{put("again", "1")}, IdempotencyKey: "req-70"})[0]; !r.Replayed {
		t.Fatalf("idempotency key from an incremental not replayed: %+v", r)
	}

	// Verify passes on every file; a gap is refused.
	for _, p := range []string{full, inc1, inc2} {
		if _, err := VerifyBackupFile(context.Background(), p); err != nil {
			t.Fatalf("verify %s: %v", p, err)
		}
	}
	if _, err := RestoreBackup(context.Background(), filepath.Join(t.TempDir(), "x.db"), full, inc2); !errors.Is(err, ErrBadBackup) {
		t.Fatalf("restore with a gap: %v", err)
	}
	// Overlapping incrementals that agree are fine.
	over := writeFile(t, "over.bak", func(w *bytes.Buffer) error {
		_, err := src.WriteIncrementalBackup(w, r1, time.Now())
		return err
	})
	if o, _ := restoredFSM(t, full, inc1, over); o.Revision() != want.Revision {
		t.Fatalf("overlapping restore at %d", o.Revision())
	}
}

// A flipped byte anywhere in a backup file is detected by verify and
// refused by restore.
func TestBackupFlippedByteDetected(t *testing.T) {
	src := openTestFSM(t)
	commitN(src, 0, 20)
	full := writeFile(t, "full.bak", func(w *bytes.Buffer) error {
		_, err := src.WriteFullBackup(w, time.Now())
		return err
	})
	r := src.Revision()
	commitN(src, 20, 20)
	inc := writeFile(t, "inc.bak", func(w *bytes.Buffer) error {
		_, err := src.WriteIncrementalBackup(w, r, time.Now())
		return err
	})
	for _, name := range []string{full, inc} {
		data, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		step := max(1, len(data)/97)
		for pos := 0; pos < len(data); pos += step {
			bad := bytes.Clone(data)
			bad[pos] ^= 0x20
			p := filepath.Join(t.TempDir(), "bad.bak")
			if err := os.WriteFile(p, bad, 0o600); err != nil {
				t.Fatal(err)
			}
			if _, err := VerifyBackupFile(context.Background(), p); err == nil {
				t.Fatalf("%s: flipped byte at %d of %d not detected", filepath.Base(name), pos, len(data))
			}
			args := []string{full, p}
			if name == full {
				args = []string{p, inc}
			}
			if _, err := RestoreBackup(context.Background(), filepath.Join(t.TempDir(), "r.db"), args[0], args[1:]...); err == nil {
				t.Fatalf("%s: restore accepted a flipped byte at %d", filepath.Base(name), pos)
			}
		}
	}
}

// An incremental backup cut short keeps its good records; fetching the
// rest from the last one and joining them gives the same records as an
// uninterrupted copy.
func TestIncrementalResume(t *testing.T) {
	src := openTestFSM(t)
	commitN(src, 0, 10)
	since := src.Revision()
	commitN(src, 10, 40)
	var whole bytes.Buffer
	h, err := src.WriteIncrementalBackup(&whole, since, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	var want []RawRecord
	if err := ReadIncremental(bytes.NewReader(whole.Bytes()[headerLen(t, whole.Bytes()):]), h, func(r RawRecord) error {
		want = append(want, r)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	for _, cut := range []int{headerLen(t, whole.Bytes()), whole.Len() / 3, whole.Len() / 2, whole.Len() - 40} {
		partial := bytes.NewReader(whole.Bytes()[:cut])
		ph, err := ReadBackupHeader(partial)
		if err != nil {
			t.Fatal(err)
		}
		var got []RawRecord
		last, err := ReadPartialIncremental(partial, ph, func(r RawRecord) error { got = append(got, r); return nil })
		if err != nil {
			t.Fatalf("cut at %d: %v", cut, err)
		}
		if last.Revision != since+uint64(len(got)) {
			t.Fatalf("cut at %d: resume point %d after %d records", cut, last.Revision, len(got))
		}
		var rest bytes.Buffer
		rh, err := src.WriteIncrementalBackup(&rest, last.Revision, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		if rh.BaseHash != last.Hash.String() {
			t.Fatalf("cut at %d: the rest starts from %s, the partial ends at %s", cut, rh.BaseHash, last.Hash)
		}
		var joined bytes.Buffer
		jh := ph
		jh.Revision, jh.Hash = rh.Revision, rh.Hash
		iw, err := NewIncrementalWriter(&joined, jh)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range got {
			if err := iw.Add(r); err != nil {
				t.Fatal(err)
			}
		}
		rr := bytes.NewReader(rest.Bytes())
		if _, err := ReadBackupHeader(rr); err != nil {
			t.Fatal(err)
		}
		if err := ReadIncremental(rr, rh, iw.Add); err != nil {
			t.Fatal(err)
		}
		if err := iw.Close(); err != nil {
			t.Fatal(err)
		}
		jr := bytes.NewReader(joined.Bytes())
		jh2, err := ReadBackupHeader(jr)
		if err != nil {
			t.Fatal(err)
		}
		var all []RawRecord
		if err := ReadIncremental(jr, jh2, func(r RawRecord) error { all = append(all, r); return nil }); err != nil {
			t.Fatalf("cut at %d: joined file: %v", cut, err)
		}
		if !reflect.DeepEqual(all, want) {
			t.Fatalf("cut at %d: joined records differ from an uninterrupted copy", cut)
		}
	}
}

// headerLen is the length of a backup file's header section.
func headerLen(t *testing.T, b []byte) int {
	t.Helper()
	r := bytes.NewReader(b)
	if _, err := ReadBackupHeader(r); err != nil {
		t.Fatal(err)
	}
	return len(b) - r.Len()
}
