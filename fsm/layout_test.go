package fsm

import (
	"bytes"
	"fmt"
	"testing"

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
