package fsm

import (
	"context"
	"errors"
	"path/filepath"
	"reflect"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	bolt "go.etcd.io/bbolt"
)

func TestConfigValidate(t *testing.T) {
	good := DefaultConfig(filepath.Join(t.TempDir(), "x.db"))
	if err := good.Validate(); err != nil {
		t.Fatal(err)
	}
	for name, mod := range map[string]func(*Config){
		"no path":       func(c *Config) { c.Path = "" },
		"negative mmap": func(c *Config) { c.InitialMmapSize = -1 },
		"zero chunk":    func(c *Config) { c.CompactChunk = 0 },
		"negative wait": func(c *Config) { c.OpenTimeout = -time.Second },
	} {
		c := good
		mod(&c)
		if err := c.Validate(); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("%s: %v", name, err)
		}
		if _, err := Open(c); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("%s: Open: %v", name, err)
		}
	}
}

func TestOpenRefusesUnknownSchema(t *testing.T) {
	path := filepath.Join(t.TempDir(), "fsm.db")
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucket(bucketMeta)
		if err != nil {
			return err
		}
		return b.Put(metaSchema, u64(schemaVersion+1))
	})
	if err != nil {
		t.Fatal(err)
	}
	db.Close()
	if f, err := Open(DefaultConfig(path)); !errors.Is(err, ErrUnknownVersion) {
		if f != nil {
			f.Close(context.Background())
		}
		t.Fatalf("open of a newer schema: %v", err)
	}
}

func TestClosed(t *testing.T) {
	f := openTestFSM(t)
	f.mustCommit(ops(put("a", "1")))
	f.close()
	f.close() // twice is fine
	if _, _, err := f.Get("a", 0); !errors.Is(err, ErrClosed) {
		t.Fatalf("get after close: %v", err)
	}
	if _, err := f.List("", ListOptions{}); !errors.Is(err, ErrClosed) {
		t.Fatalf("list after close: %v", err)
	}
	if _, err := f.Snapshot(); !errors.Is(err, ErrClosed) {
		t.Fatalf("snapshot after close: %v", err)
	}
	if _, err := f.Head(); !errors.Is(err, ErrClosed) {
		t.Fatalf("head after close: %v", err)
	}
	func() {
		defer func() {
			if recover() == nil {
				t.Fatalf("ApplyBatch on a closed FSM did not panic")
			}
		}()
		f.ApplyBatch([]*raft.Log{f.entry(Command{Batch: &Batch{Txns: []Txn{ops(put("a", "2"))}}})})
	}()
}

func TestWaitRevision(t *testing.T) {
	f := openTestFSM(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	if err := f.WaitRevision(ctx, 1); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("wait for an uncommitted revision: %v", err)
	}
	changed := f.Changed()
	done := make(chan error, 1)
	go func() { done <- f.WaitRevision(context.Background(), 2) }()
	f.mustCommit(ops(put("a", "1")))
	select {
	case <-changed:
	default:
		t.Fatalf("Changed not closed by a commit")
	}
	select {
	case err := <-done:
		t.Fatalf("returned at revision 1: %v", err)
	default:
	}
	f.mustCommit(ops(put("a", "2")))
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("WaitRevision(2) did not return after revision 2")
	}
	if err := f.WaitRevision(context.Background(), 1); err != nil {
		t.Fatalf("wait for a past revision: %v", err)
	}
}

func TestMembers(t *testing.T) {
	f := openTestFSM(t)
	apply := func(c Command) error {
		t.Helper()
		return f.apply(f.entry(c))[0].(*CommandResult).Err
	}
	for _, m := range []Member{{ID: "n2", HTTPAddr: "h2", RaftAddr: "r2"}, {ID: "n1", HTTPAddr: "h1", RaftAddr: "r1"}} {
		if err := apply(Command{SetMember: &m}); err != nil {
			t.Fatal(err)
		}
	}
	if err := apply(Command{SetMember: &Member{ID: "n1", HTTPAddr: "h1b", RaftAddr: "r1"}}); err != nil {
		t.Fatal(err)
	}
	if err := apply(Command{SetMember: &Member{HTTPAddr: "x"}}); !errors.Is(err, ErrInvalidTxn) {
		t.Fatalf("member without id: %v", err)
	}
	got, err := f.Members()
	want := []Member{{ID: "n1", HTTPAddr: "h1b", RaftAddr: "r1"}, {ID: "n2", HTTPAddr: "h2", RaftAddr: "r2"}}
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("members %+v %v", got, err)
	}
	if err := apply(Command{RemoveMember: &RemoveMember{ID: "n2"}}); err != nil {
		t.Fatal(err)
	}
	if got, _ := f.Members(); !reflect.DeepEqual(got, want[:1]) {
		t.Fatalf("after removal: %+v", got)
	}
	if f.Revision() != 0 {
		t.Fatalf("membership commands committed revisions")
	}
}

// Reads running while entries are applied each see one committed state.
// Run with -race.
func TestReadsDuringApply(t *testing.T) {
	f := openTestFSMConfig(t, func(c *Config) { c.CompactChunk = 1 })
	stop := make(chan struct{})
	errs := make(chan error, 4)
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				// Every revision writes "rev" = its own number and "odd"
				// on odd revisions only.
				kv, at, err := f.Get("rev", 0)
				if errors.Is(err, ErrNotFound) && at == 0 {
					continue
				}
				if err != nil || kv.ModRevision != at || string(kv.Value) != strconv.FormatUint(at, 10) {
					errs <- errors.New("inconsistent get: " + string(kv.Value) + " at " + strconv.FormatUint(at, 10))
					return
				}
				res, err := f.List("", ListOptions{})
				if err != nil {
					errs <- err
					return
				}
				for _, kv := range res.KVs {
					if kv.ModRevision > res.Revision {
						errs <- errors.New("list holds a key newer than its revision")
						return
					}
				}
			}
		})
	}
	for i := 1; i <= 60; i++ {
		o := []Op{put("rev", strconv.Itoa(i))}
		if i%2 == 1 {
			o = append(o, put("odd", strconv.Itoa(i)))
		}
		f.mustCommit(ops(o...))
		if i%20 == 0 {
			f.mustCompact(uint64(i - 5))
		}
	}
	close(stop)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}
