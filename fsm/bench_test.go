package fsm

import (
	"bytes"
	"fmt"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// BenchmarkApplyBatch measures the apply path with 256-byte puts, one
// transaction of one put per transaction.
//
//   - entries=N: one ApplyBatch call of N raft log entries, one transaction
//     each, as raft's batching delivers independent proposals.
//   - txnsPerEntry=N: one ApplyBatch call of one entry holding N
//     transactions, as a proposer that coalesces writes would send them.
//
// Each ApplyBatch call is one bbolt write transaction and so one fsync;
// ns/op is per call, txns/s is the transaction throughput.
func BenchmarkApplyBatch(b *testing.B) {
	for _, n := range []int{1, 16, 64, 256} {
		b.Run(fmt.Sprintf("entries=%d", n), func(b *testing.B) { benchApply(b, n, 1) })
	}
	for _, n := range []int{16, 64, 256} {
		b.Run(fmt.Sprintf("txnsPerEntry=%d", n), func(b *testing.B) { benchApply(b, 1, n) })
	}
}

func benchApply(b *testing.B, entries, txnsPerEntry int) {
	tf := openTestFSMConfig(b, func(c *Config) { c.InitialMmapSize = DefaultConfig("").InitialMmapSize })
	value := bytes.Repeat([]byte("v"), 256)
	// A pool of encoded entries over 10,000 distinct keys, reused in turn:
	// encoding is the proposer's work, not the FSM's.
	const keys = 10000
	pool := make([][]byte, 0, 64)
	t0 := time.Unix(1_700_000_000, 0).UTC()
	for p, k := 0, 0; p < cap(pool); p++ {
		batch := &Batch{Time: t0, Limits: DefaultLimits()}
		for range txnsPerEntry {
			batch.Txns = append(batch.Txns, ops(Op{Kind: OpPut, Key: fmt.Sprintf("bench/%05d", k%keys), Value: value}))
			k++
		}
		data, err := EncodeCommand(Command{Batch: batch})
		if err != nil {
			b.Fatal(err)
		}
		pool = append(pool, data)
	}
	logs := make([]*raft.Log, entries)
	for i := range logs {
		logs[i] = &raft.Log{Term: 1, Type: raft.LogCommand}
	}
	index := uint64(0)
	next := 0
	b.SetBytes(int64(entries * txnsPerEntry * len(value)))
	b.ResetTimer()
	for b.Loop() {
		for _, l := range logs {
			index++
			l.Index = index
			l.Data = pool[next%len(pool)]
			next++
		}
		res := tf.ApplyBatch(logs)
		if r := res[0].(*BatchResult); r.Err != nil || r.Txns[0].Err != nil {
			b.Fatalf("apply: %v %v", r.Err, r.Txns[0].Err)
		}
	}
	txns := float64(b.N * entries * txnsPerEntry)
	b.ReportMetric(txns/b.Elapsed().Seconds(), "txns/s")
}
