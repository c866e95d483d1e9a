package client_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cairn-db/cairn/client"
	"github.com/cairn-db/cairn/internal/cluster"
	"github.com/cairn-db/cairn/node"
)

// startFailoverCluster starts n in-process members (n1 bootstraps, the
// rest join) on the shared harness with the client tests' raft timings.
func startFailoverCluster(t *testing.T, n int) *cluster.Cluster {
	t.Helper()
	c := cluster.New(t, cluster.Options{Kind: cluster.InProc, Configure: func(cfg *node.Config) {
		cfg.HeartbeatTimeout = 200 * time.Millisecond
		cfg.ElectionTimeout = 200 * time.Millisecond
		cfg.LeaderLeaseTimeout = 100 * time.Millisecond
		cfg.CommitTimeout = 5 * time.Millisecond
		cfg.ShutdownTimeout = 2 * time.Second
	}})
	c.Start(t, n)
	return c
}

// futureWaiters returns the stacks of the goroutines blocked on a raft
// future, to show what a hung Close waits for.
func futureWaiters() string {
	buf := make([]byte, 8<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var out []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "raft.(*deferError).Error") {
			out = append(out, g)
		}
	}
	return strings.Join(out, "\n\n")
}

// foWorker is what one writer goroutine acknowledged.
type foWorker struct {
	puts       map[string]uint64          // unique key -> revision
	unknownPut []string                   // unique keys whose put had no definite answer
	incs       [foCounters]map[uint64]int // counter -> revision -> value written
	unknownInc [foCounters]int
	conflicts  int
	errs       []error
}

const foCounters = 4

func foCounterKey(k int) string { return fmt.Sprintf("fc/counter/%d", k) }

// TestFailoverCounters: 16 goroutines commit unique keys and increments
// (read-modify-write with a revision precondition, retried on conflict)
// while the leader is killed several times; afterwards every acknowledged
// write is present exactly once and every counter equals the number of
// acknowledged increments.
func TestFailoverCounters(t *testing.T) {
	if testing.Short() {
		t.Skip("failover test is slow")
	}
	const (
		writers = 16
		kills   = 3
		opTime  = 15 * time.Second // per operation, retries included
		warmup  = 100              // acknowledged ops before the first kill
		between = 60               // acknowledged ops after each restart
	)
	rc := startFailoverCluster(t, 3)
	retries := &countHandler{}
	c := newClient(t, func(cfg *client.Config) {
		cfg.RequestTimeout = time.Second
		cfg.Logger = slog.New(retries)
	}, rc.URLs()...)

	var (
		acked   atomic.Int64 // acknowledged ops, for progress
		stop    atomic.Bool
		wg      sync.WaitGroup
		results [writers]*foWorker
	)
	root, cancelRoot := context.WithCancel(context.Background())
	t.Cleanup(func() { // on early failure: stop the writers before the nodes
		stop.Store(true)
		cancelRoot()
		wg.Wait()
	})
	for g := range writers {
		w := &foWorker{puts: map[string]uint64{}}
		for k := range w.incs {
			w.incs[k] = map[uint64]int{}
		}
		results[g] = w
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; !stop.Load(); i++ {
				// A unique key.
				key := fmt.Sprintf("fc/u/%02d/%06d", g, i)
				ctx, cancel := context.WithTimeout(root, opTime)
				res, err := c.Put(ctx, key, []byte(key))
				cancel()
				if err != nil {
					w.unknownPut = append(w.unknownPut, key)
					w.errs = append(w.errs, fmt.Errorf("put %s: %w", key, err))
				} else {
					w.puts[key] = res.Revision
					acked.Add(1)
				}
				// An increment.
				k := (g + i) % foCounters
				if foIncrement(root, c, w, k, opTime, &stop) {
					acked.Add(1)
				}
			}
		}()
	}

	progress := func(what string, n int64) {
		t.Helper()
		target := acked.Load() + n
		waitFor(t, what, 20*time.Second, func() error {
			if got := acked.Load(); got < target {
				return fmt.Errorf("%d acknowledged ops, want %d", got, target)
			}
			return nil
		})
	}

	progress("writes before the first kill", warmup)
	start := time.Now()
	var killed []string
	for range kills {
		li := rc.Leader(t)
		id := rc.Member(li).ID()
		killed = append(killed, id)
		// Kill: Close with an expired context (no grace for requests in
		// flight, whose connections are cut).
		rc.Kill(t, li)
		if t.Failed() {
			t.Fatalf("killing leader %s failed; goroutines waiting on raft futures:\n%s", id, futureWaiters())
		}
		rc.Leader(t) // among the others
		rc.Restart(t, li)
		rc.WaitReady(t, li)
		progress("writes after restarting "+id, between)
	}
	failoverTime := time.Since(start)
	stop.Store(true)
	wg.Wait()

	// Merge what the writers saw.
	var (
		puts       = map[string]uint64{}
		unknownPut []string
		incAcked   [foCounters]int
		incUnknown [foCounters]int
		conflicts  int
		revOwner   = map[uint64]string{}
		maxRev     uint64
	)
	claim := func(rev uint64, what string) {
		if other, dup := revOwner[rev]; dup {
			t.Errorf("revision %d acknowledged twice: %s and %s", rev, other, what)
		}
		revOwner[rev] = what
		maxRev = max(maxRev, rev)
	}
	for _, w := range results {
		for _, err := range w.errs {
			t.Errorf("writer: %v", err)
		}
		for k, rev := range w.puts {
			puts[k] = rev
			claim(rev, k)
		}
		unknownPut = append(unknownPut, w.unknownPut...)
		for k := range foCounters {
			incAcked[k] += len(w.incs[k])
			incUnknown[k] += w.unknownInc[k]
			for rev, v := range w.incs[k] {
				claim(rev, fmt.Sprintf("%s=%d", foCounterKey(k), v))
			}
		}
		conflicts += w.conflicts
	}

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	// Every member converges on one chain that holds every acknowledged
	// revision.
	head := rc.WaitConvergedAt(t, maxRev)

	// Every acknowledged unique key is present, written once, at its
	// acknowledged revision; an unacknowledged one at most once.
	keys := make([]string, 0, len(puts)+len(unknownPut))
	for k := range puts {
		keys = append(keys, k)
	}
	keys = append(keys, unknownPut...)
	var (
		checkMu sync.Mutex
		checkWG sync.WaitGroup
		next    atomic.Int64
	)
	for range 8 {
		checkWG.Add(1)
		go func() {
			defer checkWG.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= len(keys) {
					return
				}
				key := keys[i]
				rev, ok := puts[key]
				vs, err := c.History(ctx, key)
				var msg string
				switch {
				case err != nil && (ok || !errors.Is(err, client.ErrNotFound)):
					msg = fmt.Sprintf("history of %s: %v", key, err)
				case err != nil: // unacknowledged and absent: fine
				case len(vs) != 1:
					msg = fmt.Sprintf("%s has %d versions, want 1: %+v", key, len(vs), vs)
				case vs[0].Deleted || string(vs[0].Value) != key:
					msg = fmt.Sprintf("%s: version %+v", key, vs[0])
				case ok && vs[0].Revision != rev:
					msg = fmt.Sprintf("%s written at %d, acknowledged at %d", key, vs[0].Revision, rev)
				}
				if msg != "" {
					checkMu.Lock()
					t.Error(msg)
					checkMu.Unlock()
				}
			}
		}()
	}
	checkWG.Wait()

	// Every counter equals its acknowledged increments (plus at most the
	// unknown ones), went up by one at each version, and holds every
	// acknowledged increment at its revision.
	for k := range foCounters {
		key := foCounterKey(k)
		kv, err := c.Get(ctx, key)
		if err != nil {
			t.Errorf("get %s: %v", key, err)
			continue
		}
		n, err := strconv.Atoi(string(kv.Value))
		if err != nil {
			t.Errorf("%s = %q: %v", key, kv.Value, err)
			continue
		}
		if n < incAcked[k] || n > incAcked[k]+incUnknown[k] {
			t.Errorf("%s = %d, want %d acknowledged increments (+ up to %d unknown)", key, n, incAcked[k], incUnknown[k])
		}
		vs, err := c.History(ctx, key)
		if err != nil {
			t.Errorf("history of %s: %v", key, err)
			continue
		}
		if len(vs) != n {
			t.Errorf("%s = %d with %d versions", key, n, len(vs))
		}
		at := map[uint64]int{}
		for j, v := range vs { // newest first: n, n-1, ..., 1
			want := strconv.Itoa(n - j)
			if v.Deleted || string(v.Value) != want || (j > 0 && v.Revision >= vs[j-1].Revision) {
				t.Errorf("%s version %d: %+v, want value %s", key, j, v, want)
				break
			}
			at[v.Revision] = n - j
		}
		for _, w := range results {
			for rev, v := range w.incs[k] {
				if at[rev] != v {
					t.Errorf("%s: increment to %d acknowledged at %d, history has %d there", key, v, rev, at[rev])
				}
			}
		}
	}

	// No transaction was applied twice: every idempotency key appears once
	// in the log, and every unique key is written by one record.
	idem := map[string]uint64{}
	written := map[string]int{}
	for from := uint64(1); from <= head.Revision; {
		lr, err := c.Log(ctx, from, 0)
		if err != nil {
			t.Fatalf("log from %d: %v", from, err)
		}
		if len(lr.Records) == 0 {
			t.Fatalf("log from %d is empty, head %d", from, head.Revision)
		}
		for _, r := range lr.Records {
			if r.IdempotencyKey != "" {
				if prev, dup := idem[r.IdempotencyKey]; dup {
					t.Errorf("idempotency key %s applied at %d and %d", r.IdempotencyKey, prev, r.Revision)
				}
				idem[r.IdempotencyKey] = r.Revision
			}
			for _, op := range r.Operations {
				written[op.Key]++
			}
			from = r.Revision + 1
		}
	}
	for k := range puts {
		if written[k] != 1 {
			t.Errorf("%s written by %d records", k, written[k])
		}
	}

	nUnknownInc := 0
	for k := range foCounters {
		nUnknownInc += incUnknown[k]
	}
	counters := make([]string, 0, foCounters)
	for k := range foCounters {
		counters = append(counters, strconv.Itoa(incAcked[k]))
	}
	t.Logf("killed leaders %v in %s; %d puts and %d increments (per counter %v) acknowledged, "+
		"%d puts and %d increments unknown; %d conflicts, %d client retries; head revision %d",
		killed, failoverTime.Round(time.Millisecond), len(puts), incAcked[0]+incAcked[1]+incAcked[2]+incAcked[3],
		counters, len(unknownPut), nUnknownInc, conflicts, retries.n.Load(), head.Revision)
}

// foIncrement adds one to counter k by read-modify-write with a revision
// precondition, re-reading after each conflict. It reports whether an
// increment was acknowledged; a commit without a definite answer is
// counted as unknown.
func foIncrement(root context.Context, c *client.Client, w *foWorker, k int, opTime time.Duration, stop *atomic.Bool) bool {
	key := foCounterKey(k)
	ctx, cancel := context.WithTimeout(root, opTime)
	defer cancel()
	for {
		cur, cond := 0, client.Absent(key)
		kv, err := c.Get(ctx, key)
		switch {
		case errors.Is(err, client.ErrNotFound):
		case err != nil:
			w.errs = append(w.errs, fmt.Errorf("read %s: %w", key, err))
			return false
		default:
			if cur, err = strconv.Atoi(string(kv.Value)); err != nil {
				w.errs = append(w.errs, fmt.Errorf("%s = %q: %w", key, kv.Value, err))
				return false
			}
			cond = client.KeyAtRevision(key, kv.ModRevision)
		}
		res, err := c.Txn().If(cond).Put(key, []byte(strconv.Itoa(cur+1))).Commit(ctx)
		var ce *client.ConflictError
		switch {
		case err == nil:
			w.incs[k][res.Revision] = cur + 1
			return true
		case errors.As(err, &ce):
			w.conflicts++
			if stop.Load() {
				return false // nothing outstanding: give up cleanly
			}
		default:
			w.unknownInc[k]++
			w.errs = append(w.errs, fmt.Errorf("increment %s to %d: %w", key, cur+1, err))
			return false
		}
	}
}
