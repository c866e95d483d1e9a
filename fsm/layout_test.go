package fsm

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/hashicorp/raft"
	bolt "go.etcd.io/bbolt"
)

// bucketFill returns how full a bucket's leaf pages are (in use over
// allocated).
func (tf *testFSM) bucketFill(name []byte) float64 {
	tf.t.Helper()
	var fill float64
	err := tf.view(func(tx *bolt.Tx) error {
		s := tx.Bucket(name).Stats()
		if s.LeafAlloc == 0 {
			return fmt.Errorf("bucket %s has no leaf pages", name)
		}
		fill = float64(s.LeafInuse) / float64(s.LeafAlloc)
		return nil
	})
	if err != nil {
		tf.t.Fatal(err)
	}
	return fill
}

// The buckets whose keys only grow (txns by revision, idemexp by expiry
// time) fill their pages instead of leaving them half empty: at a million
// objects the txns bucket was half of the database
// (docs/performance.md, "Scale: 1,000,000 objects").
func TestAppendOnlyBucketsFillPages(t *testing.T) {
	tf := openTestFSM(t)
	value := bytes.Repeat([]byte("v"), 256)
	for b := 0; b < 40; b++ {
		txns := make([]Txn, 50)
		for i := range txns {
			txns[i] = Txn{Ops: []Op{{Kind: OpPut, Key: fmt.Sprintf("k/%d/%d", b, i), Value: value}},
				IdempotencyKey: fmt.Sprintf("idem-%d-%d", b, i)}
		}
		tf.commit(txns...)
	}
	for _, name := range [][]byte{bucketTxns, bucketIdemExp} {
		if fill := tf.bucketFill(name); fill < 0.85 {
			t.Errorf("bucket %s: leaf pages %.0f%% full, want at least 85%%", name, 100*fill)
		}
	}
}

// The idempotency table packs its pages when keys arrive in nearly
// ascending order, as the Go client's time-first keys do from many
// clients at once: at a million objects a half-empty idem bucket was a
// seventh of the database.
func TestIdempotencyTableFillsPagesForAscendingKeys(t *testing.T) {
	tf := openTestFSM(t)
	value := bytes.Repeat([]byte("v"), 64)
	ms := int64(1_700_000_000_000)
	for b := 0; b < 40; b++ {
		txns := make([]Txn, 50)
		for i := range txns {
			// Eight clients, each with its own id and counter, in
			// the same millisecond: keys ascend per millisecond, not
			// strictly within it.
			client := (i * 5) % 8
			txns[i] = Txn{Ops: []Op{{Kind: OpPut, Key: fmt.Sprintf("k/%d/%d", b, i), Value: value}},
				IdempotencyKey: fmt.Sprintf("%012x%012x%08x", ms, client, b*50+i)}
		}
		ms++
		tf.commit(txns...)
	}
	if fill := tf.bucketFill(bucketIdem); fill < 0.8 {
		t.Errorf("bucket %s: leaf pages %.0f%% full, want at least 80%%", bucketIdem, 100*fill)
	}
	// A replayed key still answers from the table.
	res := tf.commit(Txn{Ops: []Op{{Kind: OpPut, Key: "k/0/0", Value: value}},
		IdempotencyKey: fmt.Sprintf("%012x%012x%08x", int64(1_700_000_000_000), 0, 0)})
	if !res[0].Replayed || res[0].Revision != 1 {
		t.Fatalf("replayed key: %+v, want revision 1 replayed", res[0])
	}
}

// One ApplyBatch call with more entry data than applyChunkBytes commits in
// several bbolt transactions, each recording the applied index, with the
// same results as one transaction.
func TestApplyBatchChunks(t *testing.T) {
	tf := openTestFSM(t)
	value := bytes.Repeat([]byte("v"), 1024)
	const entries, perEntry = 12, 200 // about 200 KiB of entry data each
	var logs []*raft.Log
	for e := 0; e < entries; e++ {
		txns := make([]Txn, perEntry)
		for i := range txns {
			txns[i] = Txn{Ops: []Op{{Kind: OpPut, Key: fmt.Sprintf("k/%d/%d", e, i), Value: value}}}
		}
		tf.clock = tf.clock.Add(1)
		logs = append(logs, tf.entry(Command{Batch: &Batch{Time: tf.clock, Limits: DefaultLimits(), Txns: txns}}))
	}
	// A non-command entry in the middle is only recorded.
	tf.index++
	cfg := &raft.Log{Index: tf.index, Term: 1, Type: raft.LogConfiguration}
	logs = append(logs[:6], append([]*raft.Log{cfg}, logs[6:]...)...)
	for i, l := range logs {
		l.Index = uint64(i + 1)
	}
	total := 0
	for _, l := range logs {
		total += len(l.Data)
	}
	if total < 2*applyChunkBytes {
		t.Fatalf("setup: %d bytes of entries, want more than two chunks", total)
	}
	chunks := 0
	for start := 0; start < len(logs); chunks++ {
		end := chunkEnd(logs, start)
		size := 0
		for _, l := range logs[start:end] {
			size += len(l.Data)
		}
		if end-start > 1 && size > applyChunkBytes {
			t.Fatalf("chunk %d..%d holds %d bytes", start, end, size)
		}
		start = end
	}
	if chunks < 3 {
		t.Fatalf("%d chunks, want at least 3", chunks)
	}
	res := tf.apply(logs...)
	rev := uint64(0)
	for i, r := range res {
		if logs[i].Type != raft.LogCommand {
			if r != nil {
				t.Fatalf("entry %d (configuration): response %v", i+1, r)
			}
			continue
		}
		br := r.(*BatchResult)
		if br.Err != nil || len(br.Txns) != perEntry {
			t.Fatalf("entry %d: %v, %d results", i+1, br.Err, len(br.Txns))
		}
		for _, tr := range br.Txns {
			rev++
			if tr.Err != nil || tr.Revision != rev {
				t.Fatalf("entry %d: result %+v, want revision %d", i+1, tr, rev)
			}
		}
	}
	if got := tf.Revision(); got != rev {
		t.Fatalf("revision %d, want %d", got, rev)
	}
	if idx, _, err := tf.AppliedIndex(); err != nil || idx != uint64(len(logs)) {
		t.Fatalf("applied index %d (%v), want %d", idx, err, len(logs))
	}
	// Replaying the same batch (raft after a restart) changes nothing.
	head, err := tf.Head()
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range tf.apply(logs...) {
		if r != nil {
			t.Fatalf("replayed entry answered %v, want nil (skipped)", r)
		}
	}
	if h, err := tf.Head(); err != nil || h != head {
		t.Fatalf("head after replay %+v (%v), want %+v", h, err, head)
	}
}

// A crash between two chunks leaves the first committed with its applied
// index; raft replays the batch and the FSM applies only the rest.
func TestApplyBatchChunksResume(t *testing.T) {
	tf := openTestFSM(t)
	value := bytes.Repeat([]byte("v"), 1024)
	var logs []*raft.Log
	for e := 0; e < 12; e++ {
		txns := make([]Txn, 200)
		for i := range txns {
			txns[i] = Txn{Ops: []Op{{Kind: OpPut, Key: fmt.Sprintf("k/%d/%d", e, i), Value: value}}}
		}
		tf.clock = tf.clock.Add(1)
		logs = append(logs, tf.entry(Command{Batch: &Batch{Time: tf.clock, Limits: DefaultLimits(), Txns: txns}}))
	}
	// Apply the first entries as a crash after the first chunk would
	// have left them, then the whole batch again.
	tf.apply(logs[:3]...)
	res := tf.apply(logs...)
	for i, r := range res {
		if (i < 3) != (r == nil) {
			t.Fatalf("entry %d: response %v", i+1, r)
		}
	}
	if got, want := tf.Revision(), uint64(12*200); got != want {
		t.Fatalf("revision %d, want %d", got, want)
	}
}
