package node

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/cairn-db/cairn/fsm"
)

// TestBatcherCoalesces queues writes while the batcher's slots are taken
// and checks that they share one raft entry yet each gets its own
// revision, result and idempotency record.
func TestBatcherCoalesces(t *testing.T) {
	n := startSingle(t, func(c *Config) { c.MaxInflightWrites = 1 })
	base := mustWrite(t, n, putOp("cas", "v0"))

	st0 := n.batch.Stats()
	release := n.batch.Hold()

	type outcome struct {
		name string
		res  fsm.TxnResult
		err  error
	}
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		outs []outcome
	)
	submit := func(name string, t fsm.Txn) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			res, err := n.Write(ctx, t)
			mu.Lock()
			outs = append(outs, outcome{name, res, err})
			mu.Unlock()
		}()
	}
	const puts = 8
	for i := range puts {
		submit(fmt.Sprintf("put%d", i), fsm.Txn{Ops: []fsm.Op{putOp(fmt.Sprintf("k%d", i), "v")}})
	}
	// A compare-and-set that fails must not affect its neighbours.
	submit("conflict", fsm.Txn{
		Preconditions: []fsm.Precondition{{Kind: fsm.CondRevision, Key: "cas", Revision: base + 1000}},
		Ops:           []fsm.Op{putOp("cas", "never")}})
	// The same idempotency key twice in one entry: applied once.
	idem := fsm.Txn{Ops: []fsm.Op{putOp("idem", "once")}, IdempotencyKey: "same-key"}
	submit("idem-a", idem)
	submit("idem-b", idem)
	const total = puts + 3
	waitFor(t, "writes queued", 10*time.Second, func() error {
		// The batcher holds the first while it waits for a slot.
		if q := n.batch.Queued(); q != total-1 {
			return fmt.Errorf("%d queued", q)
		}
		return nil
	})
	release()
	wg.Wait()

	if e, tx := n.batch.Stats().Batches-st0.Batches, n.batch.Stats().Items-st0.Items; e != 1 || tx != total {
		t.Fatalf("proposed %d entries with %d transactions, want 1 entry with %d", e, tx, total)
	}
	var revs []uint64
	var idemRevs []uint64
	for _, o := range outs {
		if o.err != nil {
			t.Fatalf("%s: %v", o.name, o.err)
		}
		switch o.name {
		case "conflict":
			var ce *fsm.ConflictError
			if !errors.As(o.res.Err, &ce) || o.res.Revision != 0 {
				t.Fatalf("conflict: result %+v, want a ConflictError and no revision", o.res)
			}
		case "idem-a", "idem-b":
			if o.res.Err != nil {
				t.Fatalf("%s: %v", o.name, o.res.Err)
			}
			idemRevs = append(idemRevs, o.res.Revision)
		default:
			if o.res.Err != nil {
				t.Fatalf("%s: %v", o.name, o.res.Err)
			}
			revs = append(revs, o.res.Revision)
		}
	}
	if len(idemRevs) != 2 || idemRevs[0] != idemRevs[1] {
		t.Fatalf("same idempotency key twice: revisions %v, want one revision for both", idemRevs)
	}
	revs = append(revs, idemRevs[0])
	slices.Sort(revs)
	for i, r := range revs {
		if want := base + 1 + uint64(i); r != want {
			t.Fatalf("revisions %v: want %d..%d, gapless and distinct", revs, base+1, base+puts+1)
		}
	}
	if got := n.FSM().Revision(); got != base+puts+1 {
		t.Fatalf("store at revision %d, want %d", got, base+puts+1)
	}
}

// TestBatcherAbandoned checks that a write whose context ends while it is
// still queued is refused as a timeout and never applied.
func TestBatcherAbandoned(t *testing.T) {
	n := startSingle(t, func(c *Config) { c.MaxInflightWrites = 1 })
	before := mustWrite(t, n, putOp("a", "1"))
	release := n.batch.Hold()
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	_, err := n.Write(ctx, fsm.Txn{Ops: []fsm.Op{putOp("abandoned", "x")}})
	cancel()
	if !errors.Is(err, ErrTimeout) {
		release()
		t.Fatalf("queued write past its deadline: %v, want ErrTimeout", err)
	}
	release()
	after := mustWrite(t, n, putOp("b", "2"))
	if after != before+1 {
		t.Fatalf("next write at revision %d, want %d: the abandoned write was applied", after, before+1)
	}
	if _, _, err := n.FSM().Get("abandoned", 0); !errors.Is(err, fsm.ErrNotFound) {
		t.Fatalf("abandoned key: %v, want not found", err)
	}
}
