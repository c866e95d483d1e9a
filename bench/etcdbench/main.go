// Command etcdbench measures an etcd cluster the way `cairn bench`
// measures cairn, so that scripts/bench-cluster.sh can put the two side by
// side: closed-loop clients, keys uniform over --keys, random values of
// --value-size bytes, a warm-up that is not measured, HDR histograms, and
// the same JSON output as `cairn bench --json`.
//
// It talks to etcd with the official Go client (go.etcd.io/etcd/client/v3,
// v3.5, which speaks to 3.4 and 3.5 servers) over gRPC. The client balances
// requests round robin over every endpoint it is given, so followers
// receive requests too: they forward proposals to the leader and serve
// linearizable reads after a read-index round trip.
//
// It lives in its own Go module so that cairn does not depend on etcd.
//
//	etcdbench --endpoints http://127.0.0.1:2379,... --op put --clients 64 --json
//	etcdbench --endpoints ... --fill only --clients 64
//	etcdbench --endpoints ... --op get --consistency stale --fill skip --clients 64
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/signal"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// result has the fields and JSON names of cairn's benchResult
// (cmd/cairn/bench.go). Conflicts stays 0: there is no txn workload here.
type result struct {
	Op          string  `json:"op"`
	Clients     int     `json:"clients"`
	Connections int     `json:"connections"`
	Seconds     float64 `json:"seconds"`
	Ops         int64   `json:"ops"`
	Errors      int64   `json:"errors"`
	Conflicts   int64   `json:"conflicts"`
	OpsPerSec   float64 `json:"ops_per_sec"`
	P50ms       float64 `json:"p50_ms"`
	P90ms       float64 `json:"p90_ms"`
	P99ms       float64 `json:"p99_ms"`
	P999ms      float64 `json:"p999_ms"`
	MaxMs       float64 `json:"max_ms"`
	FirstError  string  `json:"first_error,omitempty"`
}

type options struct {
	endpoints    []string
	op           string
	clients      int
	conns        int
	duration     time.Duration
	warmup       time.Duration
	valueSize    int
	keys         int
	serializable bool
	prefix       string
	fill         string
	json         bool
	wait         time.Duration
}

// errNotFound is a get of a key that does not exist: cairn's client
// answers ErrNotFound there, so it counts as an error here too (the keys
// were not filled).
var errNotFound = errors.New("key not found")

func main() {
	var o options
	var endpoints, consistency string
	fs := flag.NewFlagSet("etcdbench", flag.ContinueOnError)
	fs.StringVar(&endpoints, "endpoints", "http://127.0.0.1:2379", "comma-separated etcd client URLs; requests rotate over all of them")
	fs.StringVar(&o.op, "op", "put", "put or get")
	fs.IntVar(&o.clients, "clients", 16, "concurrent closed-loop clients")
	fs.IntVar(&o.conns, "connections", 4, "etcd client instances (gRPC connections to each endpoint) the clients share")
	fs.DurationVar(&o.duration, "duration", 10*time.Second, "measured time")
	fs.DurationVar(&o.warmup, "warmup", time.Second, "unmeasured time before")
	fs.IntVar(&o.valueSize, "value-size", 256, "value bytes")
	fs.IntVar(&o.keys, "keys", 100000, "distinct keys")
	fs.StringVar(&consistency, "consistency", "linearizable", "for gets: linearizable or stale (etcd's serializable)")
	fs.StringVar(&o.prefix, "prefix", "bench/", "key prefix")
	fs.StringVar(&o.fill, "fill", "auto", "auto (write every key once before get runs), skip (keys were filled before), or only (fill, report, exit)")
	fs.BoolVar(&o.json, "json", false, "print JSON")
	fs.DurationVar(&o.wait, "wait", 0, "first wait up to this long for every endpoint to answer and report a leader")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: etcdbench [flags]  (the workload and output of `cairn bench`, against etcd)")
		fs.PrintDefaults()
	}
	if err := fs.Parse(os.Args[1:]); err != nil {
		os.Exit(2)
	}
	usage := func(format string, args ...any) {
		fmt.Fprintf(os.Stderr, "etcdbench: "+format+"\n", args...)
		os.Exit(2)
	}
	for _, e := range strings.Split(endpoints, ",") {
		if e = strings.TrimSpace(e); e != "" {
			o.endpoints = append(o.endpoints, e)
		}
	}
	switch {
	case fs.NArg() > 0:
		usage("unexpected arguments %q", fs.Args())
	case len(o.endpoints) == 0:
		usage("--endpoints is empty")
	case o.op != "put" && o.op != "get":
		usage("--op %q (use put or get)", o.op)
	case consistency != "linearizable" && consistency != "stale":
		usage("--consistency %q (use linearizable or stale)", consistency)
	case o.fill != "auto" && o.fill != "skip" && o.fill != "only":
		usage("--fill %q (use auto, skip or only)", o.fill)
	case o.clients < 1 || o.conns < 1 || o.keys < 1 || o.valueSize < 0:
		usage("--clients, --connections and --keys must be positive, --value-size not negative")
	case o.duration <= 0 || o.warmup < 0:
		usage("--duration must be positive and --warmup not negative")
	}
	o.serializable = consistency == "stale"

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o); err != nil {
		fmt.Fprintln(os.Stderr, "etcdbench:", err)
		stop()
		os.Exit(1)
	}
}

func run(ctx context.Context, o options) error {
	var cls []*clientv3.Client
	defer func() {
		for _, cl := range cls {
			cl.Close()
		}
	}()
	for i := 0; i < min(o.conns, o.clients); i++ {
		cl, err := clientv3.New(clientv3.Config{
			Endpoints:   o.endpoints,
			DialTimeout: 5 * time.Second,
			Logger:      zap.NewNop(),
		})
		if err != nil {
			return fmt.Errorf("connecting to %v: %w", o.endpoints, err)
		}
		cls = append(cls, cl)
	}
	if o.wait > 0 {
		if err := waitReady(ctx, cls[0], o.endpoints, o.wait); err != nil {
			return err
		}
	}
	key := func(i int) string { return fmt.Sprintf("%s%08d", o.prefix, i) }
	value := make([]byte, o.valueSize)
	for i := range value {
		value[i] = byte('a' + rand.IntN(26))
	}
	val := string(value)

	if o.fill == "only" || (o.fill == "auto" && o.op == "get") {
		began := time.Now()
		if err := fill(ctx, cls, o.clients, o.keys, key, val); err != nil {
			return fmt.Errorf("filling %d keys: %w", o.keys, err)
		}
		if o.fill == "only" {
			// No latencies: the fill is not a closed-loop measurement.
			elapsed := time.Since(began).Seconds()
			res := result{Op: "fill", Clients: o.clients, Connections: len(cls), Seconds: elapsed,
				Ops: int64(o.keys), OpsPerSec: float64(o.keys) / elapsed}
			if o.json {
				return printJSON(res)
			}
			fmt.Printf("filled %d keys in %.1fs (%.0f puts/s, %d clients)\n", o.keys, elapsed, res.OpsPerSec, o.clients)
			return nil
		}
	}

	var (
		measuring atomic.Bool
		ops, errs atomic.Int64
		firstErr  atomic.Value
		mu        sync.Mutex
		hist      = hdrhistogram.New(1, int64(time.Minute/time.Microsecond), 3)
	)
	// The run ends by cancellation, not a deadline: gRPC would send a
	// deadline to the server, which then fails requests in flight at the
	// end with "request timed out", possibly before this process's own
	// timer has fired and marked them as cut off. Cancelling sets
	// runCtx.Err() before any call returns, and sends no deadline, like
	// cairn bench's HTTP requests.
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	stopTimer := time.AfterFunc(o.warmup+o.duration, cancel)
	defer stopTimer.Stop()
	var wg sync.WaitGroup
	for w := 0; w < o.clients; w++ {
		wg.Add(1)
		go func(cl *clientv3.Client, rng *rand.Rand) {
			defer wg.Done()
			local := hdrhistogram.New(1, int64(time.Minute/time.Microsecond), 3)
			defer func() { mu.Lock(); hist.Merge(local); mu.Unlock() }()
			for runCtx.Err() == nil {
				k := key(rng.IntN(o.keys))
				start := time.Now()
				err := once(runCtx, cl, o, k, val)
				if runCtx.Err() != nil {
					return // cut off by the end of the run: not counted
				}
				if !measuring.Load() {
					continue
				}
				if err != nil {
					errs.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
					continue
				}
				ops.Add(1)
				_ = local.RecordValue(max(1, time.Since(start).Microseconds()))
			}
		}(cls[w%len(cls)], rand.New(rand.NewPCG(uint64(w), uint64(time.Now().UnixNano()))))
	}
	select {
	case <-time.After(o.warmup):
	case <-runCtx.Done():
	}
	measuring.Store(true)
	began := time.Now()
	wg.Wait()
	elapsed := time.Since(began).Seconds()
	if err := ctx.Err(); err != nil {
		return err
	}
	ms := func(q float64) float64 { return float64(hist.ValueAtQuantile(q)) / 1000 }
	op := o.op
	res := result{Op: op, Clients: o.clients, Connections: len(cls), Seconds: elapsed, Ops: ops.Load(),
		Errors: errs.Load(), OpsPerSec: float64(ops.Load()) / elapsed,
		P50ms: ms(50), P90ms: ms(90), P99ms: ms(99), P999ms: ms(99.9), MaxMs: float64(hist.Max()) / 1000}
	if v, ok := firstErr.Load().(string); ok {
		res.FirstError = v
	}
	if o.json {
		if err := printJSON(res); err != nil {
			return err
		}
	} else {
		tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintf(tw, "op\t%s (%d clients, %d connections, %.1fs)\nops/s\t%.0f\nops\t%d\nerrors\t%d\n", res.Op, res.Clients, res.Connections, res.Seconds, res.OpsPerSec, res.Ops, res.Errors)
		fmt.Fprintf(tw, "p50\t%.2f ms\np90\t%.2f ms\np99\t%.2f ms\np99.9\t%.2f ms\nmax\t%.2f ms\n", res.P50ms, res.P90ms, res.P99ms, res.P999ms, res.MaxMs)
		if res.FirstError != "" {
			fmt.Fprintf(tw, "first error\t%s\n", res.FirstError)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	if res.Ops == 0 {
		return fmt.Errorf("no operation succeeded: %s", res.FirstError)
	}
	return nil
}

// once performs one operation.
func once(ctx context.Context, cl *clientv3.Client, o options, k, value string) error {
	if o.op == "put" {
		_, err := cl.Put(ctx, k, value)
		return err
	}
	var opts []clientv3.OpOption
	if o.serializable {
		opts = append(opts, clientv3.WithSerializable())
	}
	resp, err := cl.Get(ctx, k, opts...)
	if err == nil && len(resp.Kvs) == 0 {
		err = fmt.Errorf("%w: %s", errNotFound, k)
	}
	return err
}

// fill writes every key once, with the benchmark's concurrency.
func fill(ctx context.Context, cls []*clientv3.Client, workers, keys int, key func(int) string, value string) error {
	var next atomic.Int64
	var wg sync.WaitGroup
	var first atomic.Value
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(cl *clientv3.Client) {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= keys || ctx.Err() != nil {
					return
				}
				if _, err := cl.Put(ctx, key(i), value); err != nil {
					first.CompareAndSwap(nil, err)
					return
				}
			}
		}(cls[w%len(cls)])
	}
	wg.Wait()
	if err, ok := first.Load().(error); ok {
		return err
	}
	return ctx.Err()
}

// waitReady waits until every endpoint answers a status request naming a
// leader, and a put through the client succeeds.
func waitReady(ctx context.Context, cl *clientv3.Client, endpoints []string, limit time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	var last error
	for {
		last = nil
		for _, ep := range endpoints {
			sctx, scancel := context.WithTimeout(ctx, 2*time.Second)
			st, err := cl.Status(sctx, ep)
			scancel()
			switch {
			case err != nil:
				last = fmt.Errorf("%s: %w", ep, err)
			case st.Leader == 0:
				last = fmt.Errorf("%s: no leader", ep)
			}
			if last != nil {
				break
			}
		}
		if last == nil {
			pctx, pcancel := context.WithTimeout(ctx, 2*time.Second)
			_, last = cl.Put(pctx, "etcdbench/ready", "1")
			pcancel()
			if last == nil {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("etcd not ready after %v: %w", limit, last)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func printJSON(v any) error {
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
