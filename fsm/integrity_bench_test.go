package fsm

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"
)

// BenchmarkStateHash measures the state hash over 100,000 keys of 256
// bytes, each with two versions, at the head and at the older revision;
// MB/s is over the values hashed. The cache is cleared before each run.
func BenchmarkStateHash(b *testing.B) {
	tf := openTestFSMConfig(b, func(c *Config) { c.InitialMmapSize = DefaultConfig("").InitialMmapSize })
	value := bytes.Repeat([]byte("v"), 256)
	const keys = 100000
	for round := 0; round < 2; round++ {
		for k := 0; k < keys; {
			batch := Batch{Time: time.Unix(1_700_000_000, 0).UTC(), Limits: DefaultLimits()}
			for ; k < keys && len(batch.Txns) < 512; k++ {
				batch.Txns = append(batch.Txns, ops(Op{Kind: OpPut, Key: fmt.Sprintf("bench/%06d", k), Value: value}))
			}
			if r := tf.applyBatch(batch); r.Err != nil {
				b.Fatal(r.Err)
			}
		}
	}
	for _, c := range []struct {
		name string
		rev  uint64
	}{{"head", 0}, {"older", keys + 1}} {
		b.Run(c.name, func(b *testing.B) {
			b.SetBytes(keys * int64(len(value)))
			for b.Loop() {
				tf.clearStateCache()
				if _, err := tf.StateHash(context.Background(), c.rev); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
