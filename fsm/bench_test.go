package fsm

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
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
//   - txnsPerEntry=64,keys=100000: the same with keys drawn at random from
//     100,000 that are all written once before timing starts, as in
//     `make bench-cluster`: each put then lands on a random page of a
//     large history B-tree, which is what a busy member's apply costs.
//
// Each ApplyBatch call is one bbolt write transaction and so one fsync;
// ns/op is per call, txns/s is the transaction throughput.
func BenchmarkApplyBatch(b *testing.B) {
	for _, n := range []int{1, 16, 64, 256} {
		b.Run(fmt.Sprintf("entries=%d", n), func(b *testing.B) { benchApply(b, n, 1, 0) })
	}
	for _, n := range []int{16, 64, 256} {
		b.Run(fmt.Sprintf("txnsPerEntry=%d", n), func(b *testing.B) { benchApply(b, 1, n, 0) })
	}
	b.Run("txnsPerEntry=64,keys=100000", func(b *testing.B) { benchApply(b, 1, 64, 100000) })
}

// benchApply applies entries of txnsPerEntry puts each. With randomKeys 0
// the puts cycle over 10,000 keys; otherwise they go to random keys out of
// randomKeys, all of which are written before timing starts.
func benchApply(b *testing.B, entries, txnsPerEntry, randomKeys int) {
	tf := openTestFSMConfig(b, func(c *Config) { c.InitialMmapSize = DefaultConfig("").InitialMmapSize })
	value := bytes.Repeat([]byte("v"), 256)
	t0 := time.Unix(1_700_000_000, 0).UTC()
	if randomKeys > 0 {
		for k := 0; k < randomKeys; {
			batch := Batch{Time: t0, Limits: DefaultLimits()}
			for ; k < randomKeys && len(batch.Txns) < 512; k++ {
				batch.Txns = append(batch.Txns, ops(Op{Kind: OpPut, Key: fmt.Sprintf("bench/%06d", k), Value: value}))
			}
			if r := tf.applyBatch(batch); r.Err != nil {
				b.Fatal(r.Err)
			}
		}
	}
	rng := rand.New(rand.NewPCG(1, 2))
	// A pool of encoded entries, reused in turn: encoding is the
	// proposer's work, not the FSM's.
	const keys = 10000
	pool := make([][]byte, 0, 64)
	for p, k := 0, 0; p < cap(pool); p++ {
		batch := &Batch{Time: t0, Limits: DefaultLimits()}
		for range txnsPerEntry {
			key := fmt.Sprintf("bench/%05d", k%keys)
			if randomKeys > 0 {
				key = fmt.Sprintf("bench/%06d", rng.IntN(randomKeys))
			}
			batch.Txns = append(batch.Txns, ops(Op{Kind: OpPut, Key: key, Value: value}))
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
	index := tf.index // after the prefill, if any
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

// BenchmarkApplyIdempotencyKeys measures what the shape of the
// idempotency keys costs the apply path once the idempotency table is
// large, as it is on a busy member (it keeps every key for 24 h). The
// store holds 100,000 puts made with keys of the shape under test from
// 1,024 clients; then 64 clients write, 32 puts of 256 bytes to random
// keys per entry, each with a new key:
//
//   - shape=prefix-counter: a random 64-bit prefix per client, then a
//     counter (the Go client's keys before 2026-12): the table grows at
//     one page per client.
//   - shape=time-id-counter: the time, a random id per client, then a
//     counter (the Go client's keys now): the table grows at its end.
//   - shape=random: 128 random bits, as an application's own UUIDs.
func BenchmarkApplyIdempotencyKeys(b *testing.B) {
	for _, shape := range []string{"prefix-counter", "time-id-counter", "random"} {
		b.Run("shape="+shape, func(b *testing.B) { benchIdemKeys(b, shape) })
	}
}

func benchIdemKeys(b *testing.B, shape string) {
	tf := openTestFSMConfig(b, func(c *Config) { c.InitialMmapSize = DefaultConfig("").InitialMmapSize })
	value := bytes.Repeat([]byte("v"), 256)
	rng := rand.New(rand.NewPCG(3, 4))
	type client struct {
		id  [8]byte
		seq uint32
	}
	newClients := func(n int) []*client {
		cs := make([]*client, n)
		for i := range cs {
			cs[i] = &client{}
			binary.BigEndian.PutUint64(cs[i].id[:], rng.Uint64())
		}
		return cs
	}
	var ms uint64 = 1_700_000_000_000
	key := func(c *client) string {
		c.seq++
		var k [16]byte
		switch shape {
		case "time-id-counter":
			ms++ // one key per millisecond: the order the clock gives them
			binary.BigEndian.PutUint16(k[0:], uint16(ms>>32))
			binary.BigEndian.PutUint32(k[2:], uint32(ms))
			copy(k[6:12], c.id[:])
			binary.BigEndian.PutUint32(k[12:], c.seq)
		case "prefix-counter":
			copy(k[:8], c.id[:])
			binary.BigEndian.PutUint32(k[12:], c.seq)
		default:
			binary.BigEndian.PutUint64(k[:8], rng.Uint64())
			binary.BigEndian.PutUint64(k[8:], rng.Uint64())
		}
		return hex.EncodeToString(k[:])
	}
	put := func(c *client) Txn {
		t := ops(Op{Kind: OpPut, Key: fmt.Sprintf("obj/%016x", rng.Uint64()), Value: value})
		t.IdempotencyKey = key(c)
		return t
	}
	t0 := time.Unix(1_700_000_000, 0).UTC()
	loaders := newClients(1024)
	for k := 0; k < 100_000; {
		batch := Batch{Time: t0, Limits: DefaultLimits()}
		for ; k < 100_000 && len(batch.Txns) < 512; k++ {
			batch.Txns = append(batch.Txns, put(loaders[rng.IntN(len(loaders))]))
		}
		if r := tf.applyBatch(batch); r.Err != nil {
			b.Fatal(r.Err)
		}
	}
	writers := newClients(64)
	const perEntry = 32
	index := tf.index
	next := 0
	b.SetBytes(perEntry * int64(len(value)))
	b.ResetTimer()
	for b.Loop() {
		b.StopTimer() // making and encoding the entry is the proposer's work
		batch := &Batch{Time: t0, Limits: DefaultLimits()}
		for range perEntry {
			batch.Txns = append(batch.Txns, put(writers[next%len(writers)]))
			next++
		}
		data, err := EncodeCommand(Command{Batch: batch})
		if err != nil {
			b.Fatal(err)
		}
		index++
		b.StartTimer()
		res := tf.ApplyBatch([]*raft.Log{{Index: index, Term: 1, Type: raft.LogCommand, Data: data}})
		if r := res[0].(*BatchResult); r.Err != nil || r.Txns[0].Err != nil || r.Txns[0].Replayed {
			b.Fatalf("apply: %v %v", r.Err, r.Txns[0])
		}
	}
	b.ReportMetric(float64(b.N*perEntry)/b.Elapsed().Seconds(), "txns/s")
}

// BenchmarkApplyMirrorRecords measures a standby catching up: MirrorRecords
// entries of N source records (one 256-byte put each, over 10,000 keys),
// one entry per ApplyBatch call (one bbolt write transaction), verbatim or
// filtered (half the keys included). txns/s is source records applied per
// second. The records are made before timing starts: reading them from
// the source is the follower's work, not apply's.
func BenchmarkApplyMirrorRecords(b *testing.B) {
	for _, n := range []int{64, 512} {
		b.Run(fmt.Sprintf("records=%d", n), func(b *testing.B) { benchMirror(b, n, nil) })
		b.Run(fmt.Sprintf("records=%d,filtered", n), func(b *testing.B) { benchMirror(b, n, []string{"bench/0", "bench/2", "bench/4", "bench/6", "bench/8"}) })
	}
}

func benchMirror(b *testing.B, perEntry int, include []string) {
	tf := openTestFSMConfig(b, func(c *Config) { c.InitialMmapSize = DefaultConfig("").InitialMmapSize })
	tf.startMirror(include, nil)
	value := bytes.Repeat([]byte("v"), 256)
	t0 := time.Unix(1_700_000_000, 0).UTC()
	total := b.N * perEntry
	recs := make([]RawRecord, total)
	var prev Hash
	for i := range recs {
		rev := uint64(i + 1)
		rec := Record{Revision: rev, Time: t0.Add(time.Duration(i) * time.Millisecond),
			Ops: []Op{{Kind: OpPut, Key: fmt.Sprintf("bench/%05d", i%10000), Value: value}}}
		canon := Canonical(&rec)
		prev = chainHash(prev, canon)
		recs[i] = RawRecord{Revision: rev, Hash: prev, Canonical: canon}
	}
	logs := make([]*raft.Log, b.N)
	for i := range logs {
		logs[i] = tf.entry(Command{MirrorRecords: &MirrorRecords{Records: recs[i*perEntry : (i+1)*perEntry],
			SourceHead: uint64(total), Time: t0}})
	}
	b.ResetTimer()
	for i := range logs {
		if r := tf.ApplyBatch(logs[i : i+1])[0].(*CommandResult); r.Err != nil {
			b.Fatal(r.Err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(total)/b.Elapsed().Seconds(), "txns/s")
	if ms := tf.mirrorState(); ms.SourceRevision != uint64(total) {
		b.Fatalf("resume point %d, want %d", ms.SourceRevision, total)
	}
}
