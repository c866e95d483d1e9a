package fsm

import (
	"context"
	"errors"
	"testing"

	"github.com/hashicorp/raft"
)

func TestSmoke(t *testing.T) {
	f := openTestFSM(t)
	r := f.mustCommit(ops(put("a", "1"), put("b", "2")))
	if r.Revision != 1 {
		t.Fatalf("rev %d", r.Revision)
	}
	f.mustCommit(ops(put("a", "3")))
	f.mustCommit(ops(del("b")))
	kv, at, err := f.Get("a", 0)
	if err != nil || string(kv.Value) != "3" || at != 3 || kv.CreateRevision != 1 || kv.ModRevision != 2 {
		t.Fatalf("get a: %+v %d %v", kv, at, err)
	}
	kv, _, err = f.Get("b", 1)
	if err != nil || string(kv.Value) != "2" {
		t.Fatalf("get b@1: %+v %v", kv, err)
	}
	if _, _, err = f.Get("b", 0); !errors.Is(err, ErrNotFound) {
		t.Fatalf("get b: %v", err)
	}
	h, _, err := f.History("b", HistoryOptions{})
	if err != nil || len(h) != 2 || !h[0].Deleted {
		t.Fatalf("history %+v %v", h, err)
	}
	res := f.commit(Txn{Preconditions: []Precondition{{Kind: CondRevision, Key: "a", Revision: 1}}, Ops: []Op{put("a", "x")}})
	var ce *ConflictError
	if !errors.As(res[0].Err, &ce) || ce.Conflicts[0].CurrentRevision != 2 {
		t.Fatalf("conflict: %v", res[0].Err)
	}
	if _, err := f.Verify(context.Background()); err != nil {
		t.Fatal(err)
	}
	l := f.entry(Command{Compact: &Compact{Revision: 3}})
	if cr := f.ApplyBatch([]*raft.Log{l})[0].(*CommandResult); cr.Err != nil {
		t.Fatal(cr.Err)
	}
	if _, _, err = f.Get("b", 1); !errors.Is(err, ErrCompacted) {
		t.Fatalf("compacted: %v", err)
	}
	if _, err := f.Verify(context.Background()); err != nil {
		t.Fatal(err)
	}
}
