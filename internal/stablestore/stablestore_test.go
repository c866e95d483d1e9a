package stablestore

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	raftboltdb "github.com/hashicorp/raft-boltdb/v2"

	"github.com/cairn-db/cairn/internal/testutil"
)

func open(t *testing.T, o Options) *Store {
	t.Helper()
	s, err := Open(o)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func wantUint64(t *testing.T, s *Store, key []byte, want uint64) {
	t.Helper()
	got, err := s.GetUint64(key)
	if err != nil || got != want {
		t.Fatalf("%s = %d, %v; want %d", key, got, err, want)
	}
}

func wantBytes(t *testing.T, s *Store, key, want []byte) {
	t.Helper()
	got, err := s.Get(key)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("%s = %q, %v; want %q", key, got, err, want)
	}
}

func TestRoundTripAndReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "raft-stable.dat")
	s := open(t, Options{Path: path})
	if _, err := s.Get(KeyLastVoteCand); !errors.Is(err, ErrKeyNotFound) || err.Error() != "not found" {
		t.Fatalf("missing key: %v, want raft's \"not found\"", err)
	}
	if _, err := s.GetUint64(KeyCurrentTerm); !errors.Is(err, ErrKeyNotFound) {
		t.Fatalf("missing uint64: %v", err)
	}
	st, err := os.Stat(path)
	if err != nil || st.Size() != fileSize {
		t.Fatalf("file: %v %v, want %d bytes", st, err, fileSize)
	}
	// Many updates: both slots are overwritten in turn.
	for term := uint64(1); term <= 25; term++ {
		if err := s.SetUint64(KeyCurrentTerm, term); err != nil {
			t.Fatal(err)
		}
		if err := s.SetUint64(KeyLastVoteTerm, term); err != nil {
			t.Fatal(err)
		}
		if err := s.Set(KeyLastVoteCand, fmt.Appendf(nil, "n%d", term%3)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Set([]byte("other"), []byte("any key")); err != nil {
		t.Fatal(err)
	}
	if err := s.Set([]byte("empty"), nil); err != nil {
		t.Fatal(err)
	}
	wantUint64(t, s, KeyCurrentTerm, 25)
	if _, err := s.GetUint64(KeyLastVoteCand); err == nil {
		t.Fatal("GetUint64 of a 2-byte value: no error")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.SetUint64(KeyCurrentTerm, 26); !errors.Is(err, ErrClosed) {
		t.Fatalf("set after close: %v", err)
	}
	if st, err := os.Stat(path); err != nil || st.Size() != fileSize {
		t.Fatalf("file grew: %v %v", st, err)
	}

	s = open(t, Options{Path: path})
	wantUint64(t, s, KeyCurrentTerm, 25)
	wantUint64(t, s, KeyLastVoteTerm, 25)
	wantBytes(t, s, KeyLastVoteCand, []byte("n1"))
	wantBytes(t, s, []byte("other"), []byte("any key"))
	wantBytes(t, s, []byte("empty"), []byte{})
	if _, err := os.Stat(path + ".tmp"); !os.IsNotExist(err) {
		t.Fatalf("temporary file left: %v", err)
	}
}

// corruptSlot flips a byte inside slot's entries.
func corruptSlot(t *testing.T, path string, slot int) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, 1)
	off := int64(slot*slotSize + headerSize + 3)
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0x40
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

func TestDamagedSlotFallsBack(t *testing.T) {
	path := filepath.Join(t.TempDir(), "raft-stable.dat")
	s := open(t, Options{Path: path})
	for term := uint64(1); term <= 4; term++ {
		if err := s.SetUint64(KeyCurrentTerm, term); err != nil {
			t.Fatal(err)
		}
	}
	newest := s.cur
	s.Close()

	// A torn write of the newest slot: the one before it is taken.
	corruptSlot(t, path, newest)
	s = open(t, Options{Path: path})
	wantUint64(t, s, KeyCurrentTerm, 3)
	// The next update goes to the damaged slot and repairs it.
	if err := s.SetUint64(KeyCurrentTerm, 5); err != nil {
		t.Fatal(err)
	}
	if s.cur != newest {
		t.Fatalf("update went to slot %d, want the damaged slot %d", s.cur, newest)
	}
	s.Close()
	corruptSlot(t, path, 1-newest) // now the older one is damaged
	s = open(t, Options{Path: path})
	wantUint64(t, s, KeyCurrentTerm, 5)
	s.Close()

	// A slot cut short (a truncated file) is invalid too. On a new
	// file the second update goes to slot 1.
	path = filepath.Join(t.TempDir(), "raft-stable.dat")
	s = open(t, Options{Path: path})
	for term := uint64(1); term <= 2; term++ {
		if err := s.SetUint64(KeyCurrentTerm, term); err != nil {
			t.Fatal(err)
		}
	}
	if s.cur != 1 {
		t.Fatalf("second update in slot %d", s.cur)
	}
	s.Close()
	if err := os.Truncate(path, slotSize+100); err != nil {
		t.Fatal(err)
	}
	s = open(t, Options{Path: path})
	wantUint64(t, s, KeyCurrentTerm, 1)
}

func TestBothSlotsDamaged(t *testing.T) {
	path := filepath.Join(t.TempDir(), "raft-stable.dat")
	s := open(t, Options{Path: path})
	if err := s.SetUint64(KeyCurrentTerm, 7); err != nil {
		t.Fatal(err)
	}
	s.Close()
	corruptSlot(t, path, 0)
	corruptSlot(t, path, 1)
	_, err := Open(Options{Path: path})
	if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "checksum") {
		t.Fatalf("both slots damaged: %v, want ErrCorrupt naming %s", err, path)
	}
	// Not a slot at all (zeros pass no check either).
	if err := os.WriteFile(path, make([]byte, fileSize), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(Options{Path: path}); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("zeroed file: %v", err)
	}
}

func TestCapacity(t *testing.T) {
	path := filepath.Join(t.TempDir(), "raft-stable.dat")
	s := open(t, Options{Path: path})
	if err := s.SetUint64(KeyCurrentTerm, 9); err != nil {
		t.Fatal(err)
	}
	// Fill to exactly the capacity: taken.
	used := 4 + len(KeyCurrentTerm) + 8
	big := bytes.Repeat([]byte("v"), Capacity-used-4-len("big"))
	if err := s.Set([]byte("big"), big); err != nil {
		t.Fatalf("a value filling the slot exactly: %v", err)
	}
	// One byte more: refused, and the store keeps what it held.
	err := s.Set([]byte("big"), append(big, 'x'))
	if !errors.Is(err, ErrFull) || !strings.Contains(err.Error(), fmt.Sprint(Capacity)) {
		t.Fatalf("past capacity: %v, want ErrFull", err)
	}
	if err := s.Set([]byte("k"), []byte("1")); !errors.Is(err, ErrFull) {
		t.Fatalf("another key past capacity: %v", err)
	}
	wantBytes(t, s, []byte("big"), big)
	s.Close()
	s = open(t, Options{Path: path})
	wantBytes(t, s, []byte("big"), big)
	wantUint64(t, s, KeyCurrentTerm, 9)
}

func openBolt(t *testing.T, path string) *raftboltdb.BoltStore {
	t.Helper()
	b, err := raftboltdb.NewBoltStore(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

func TestMigrationAndWriteThrough(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "raft-stable.dat")
	old := openBolt(t, filepath.Join(dir, "raft.db"))
	// What an earlier build left in raft.db.
	if err := old.SetUint64(KeyCurrentTerm, 41); err != nil {
		t.Fatal(err)
	}
	if err := old.SetUint64(KeyLastVoteTerm, 40); err != nil {
		t.Fatal(err)
	}
	if err := old.Set(KeyLastVoteCand, []byte("n2")); err != nil {
		t.Fatal(err)
	}
	s := open(t, Options{Path: path, Fallback: old})
	wantUint64(t, s, KeyCurrentTerm, 41)
	wantUint64(t, s, KeyLastVoteTerm, 40)
	wantBytes(t, s, KeyLastVoteCand, []byte("n2"))

	// Updates go to raft.db too.
	if err := s.SetUint64(KeyCurrentTerm, 42); err != nil {
		t.Fatal(err)
	}
	if err := s.Set(KeyLastVoteCand, []byte("n3")); err != nil {
		t.Fatal(err)
	}
	if v, err := old.GetUint64(KeyCurrentTerm); err != nil || v != 42 {
		t.Fatalf("raft.db's term after an update: %d %v", v, err)
	}
	if v, err := old.Get(KeyLastVoteCand); err != nil || string(v) != "n3" {
		t.Fatalf("raft.db's vote after an update: %q %v", v, err)
	}
	s.Close()

	// The file is authoritative: raft.db behind it (a write-through that
	// failed) changes nothing.
	if err := old.SetUint64(KeyCurrentTerm, 30); err != nil {
		t.Fatal(err)
	}
	s = open(t, Options{Path: path, Fallback: old})
	wantUint64(t, s, KeyCurrentTerm, 42)
	s.Close()

	// A build without the file ran in between and advanced the term and
	// the vote in raft.db: reopening takes them.
	if err := old.SetUint64(KeyCurrentTerm, 50); err != nil {
		t.Fatal(err)
	}
	if err := old.SetUint64(KeyLastVoteTerm, 50); err != nil {
		t.Fatal(err)
	}
	if err := old.Set(KeyLastVoteCand, []byte("n1")); err != nil {
		t.Fatal(err)
	}
	s = open(t, Options{Path: path, Fallback: old})
	wantUint64(t, s, KeyCurrentTerm, 50)
	wantUint64(t, s, KeyLastVoteTerm, 50)
	wantBytes(t, s, KeyLastVoteCand, []byte("n1"))
	s.Close()
	// ... durably, in the file itself.
	s = open(t, Options{Path: path})
	wantUint64(t, s, KeyCurrentTerm, 50)
	wantBytes(t, s, KeyLastVoteCand, []byte("n1"))
}

func TestNewDataDirectory(t *testing.T) {
	dir := t.TempDir()
	old := openBolt(t, filepath.Join(dir, "raft.db"))
	s := open(t, Options{Path: filepath.Join(dir, "raft-stable.dat"), Fallback: old})
	if _, err := s.GetUint64(KeyCurrentTerm); !errors.Is(err, ErrKeyNotFound) {
		t.Fatalf("new store: %v", err)
	}
	// A temporary file left by a crash while creating is replaced.
	s.Close()
	dir2 := t.TempDir()
	path := filepath.Join(dir2, "raft-stable.dat")
	if err := os.WriteFile(path+".tmp", []byte("half"), 0o600); err != nil {
		t.Fatal(err)
	}
	s = open(t, Options{Path: path})
	if err := s.SetUint64(KeyCurrentTerm, 1); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path + ".tmp"); !os.IsNotExist(err) {
		t.Fatalf("temporary file left: %v", err)
	}
}

// failingStore is a fallback whose writes fail, as raft.db's may on a
// full disk.
type failingStore struct{ *raftboltdb.BoltStore }

var errNoRoom = errors.New("no space left on device")

func (failingStore) Set([]byte, []byte) error       { return errNoRoom }
func (failingStore) SetUint64([]byte, uint64) error { return errNoRoom }

func TestWriteThroughFailureIsOnlyLogged(t *testing.T) {
	dir := t.TempDir()
	old := openBolt(t, filepath.Join(dir, "raft.db"))
	if err := old.SetUint64(KeyCurrentTerm, 3); err != nil {
		t.Fatal(err)
	}
	var logs testutil.SyncBuffer
	path := filepath.Join(dir, "raft-stable.dat")
	s := open(t, Options{Path: path, Fallback: failingStore{old}, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	wantUint64(t, s, KeyCurrentTerm, 3) // migrated: reads work
	if err := s.SetUint64(KeyCurrentTerm, 4); err != nil {
		t.Fatalf("update with raft.db refusing: %v", err)
	}
	if err := s.Set(KeyLastVoteCand, []byte("n2")); err != nil {
		t.Fatalf("update with raft.db refusing: %v", err)
	}
	if !testutil.HasLine(logs.String(), "level=WARN", "could not copy an update to raft.db", "key=CurrentTerm", errNoRoom.Error()) {
		t.Fatalf("no warning logged:\n%s", logs.String())
	}
	s.Close()
	// raft.db is behind (3); the file, authoritative, keeps 4.
	s = open(t, Options{Path: path, Fallback: old})
	wantUint64(t, s, KeyCurrentTerm, 4)
	wantBytes(t, s, KeyLastVoteCand, []byte("n2"))
}
