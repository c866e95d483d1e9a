package node

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/cairn-db/cairn/api"
	"github.com/cairn-db/cairn/internal/testnet"
	"github.com/cairn-db/cairn/internal/testutil"
)

// benchMember starts a one-member cluster for a benchmark.
func benchMember(b *testing.B, id string) *Node {
	b.Helper()
	cfg := DefaultConfig()
	cfg.ID = id
	cfg.DataDir = b.TempDir()
	cfg.RaftAddr = testnet.FreeAddr(b)
	cfg.HTTPAddr = testnet.FreeAddr(b)
	cfg.Bootstrap = true
	n, err := New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		if err := n.Close(context.Background()); err != nil {
			b.Error(err)
		}
	})
	testutil.WaitFor(b, id+" ready", 15*time.Second, func() error {
		if err := n.Ready(); err != nil {
			return err
		}
		if cid, _ := n.fsm.ClusterID(); cid == "" {
			return fmt.Errorf("no cluster id yet")
		}
		return nil
	})
	return n
}

// writeAll puts n transactions (one 100-byte put each, keys k/00000000
// on) on n, from 64 concurrent writers.
func writeAll(b *testing.B, n *Node, count int) {
	b.Helper()
	ctx := context.Background()
	value := make([]byte, 100)
	var wg sync.WaitGroup
	const writers = 64
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < count; i += writers {
				res, err := n.Write(ctx, putTxn(fmt.Sprintf("k/%08d", i), value))
				if err == nil {
					err = res.Err
				}
				if err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
}

// BenchmarkMirrorCatchUp measures a standby catching up a backlog of
// b.N source transactions (one 100-byte put each) through the whole path:
// the source's stream (gzip), the follower's batching, raft and apply on
// the standby. records/s is the catch-up rate.
//
//	go test -run XXX -bench MirrorCatchUp -benchtime 20000x ./node/
func BenchmarkMirrorCatchUp(b *testing.B) {
	src := benchMember(b, "s1")
	standby := benchMember(b, "m1")
	ctx := context.Background()
	writeAll(b, src, b.N)
	head := src.fsm.Revision()
	b.ResetTimer()
	start := time.Now()
	if _, err := standby.MirrorStart(ctx, api.MirrorStartRequest{Sources: []string{src.HTTPURL()}}); err != nil {
		b.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	if err := standby.fsm.WaitRevision(wctx, head); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	b.ReportMetric(float64(head)/time.Since(start).Seconds(), "records/s")
}

// BenchmarkMirrorFollowWhileWriting measures the source's write rate
// with 64 concurrent writers, without a standby and with one following
// it, and for the mirrored run the largest lag seen (sampled every 10 ms)
// and how long the standby takes to reach the source's head after the
// last write: a standby keeps up when the lag stays bounded and the
// source loses little throughput.
//
//	go test -run XXX -bench MirrorFollowWhileWriting -benchtime 20000x ./node/
func BenchmarkMirrorFollowWhileWriting(b *testing.B) {
	for _, mirrored := range []bool{false, true} {
		b.Run(fmt.Sprint("mirrored=", mirrored), func(b *testing.B) {
			src := benchMember(b, "s1")
			ctx := context.Background()
			var standby *Node
			if mirrored {
				standby = benchMember(b, "m1")
				if _, err := standby.MirrorStart(ctx, api.MirrorStartRequest{Sources: []string{src.HTTPURL()}}); err != nil {
					b.Fatal(err)
				}
			}
			var maxLag uint64
			stopSampling := make(chan struct{})
			var sampler sync.WaitGroup
			if mirrored {
				sampler.Add(1)
				go func() {
					defer sampler.Done()
					tick := time.NewTicker(10 * time.Millisecond)
					defer tick.Stop()
					for {
						select {
						case <-stopSampling:
							return
						case <-tick.C:
						}
						if s, m := src.fsm.Revision(), standby.fsm.Revision(); s > m {
							maxLag = max(maxLag, s-m)
						}
					}
				}()
			}
			b.ResetTimer()
			start := time.Now()
			writeAll(b, src, b.N)
			b.StopTimer()
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "writes/s")
			if !mirrored {
				return
			}
			last := time.Now()
			wctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
			defer cancel()
			if err := standby.fsm.WaitRevision(wctx, src.fsm.Revision()); err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(time.Since(last).Milliseconds()), "catch-up-ms")
			close(stopSampling)
			sampler.Wait()
			b.ReportMetric(float64(maxLag), "max-lag-revisions")
		})
	}
}
