package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	"github.com/urfave/cli/v2"

	"github.com/cairn-db/cairn/api"
	"github.com/cairn-db/cairn/client"
)

// benchResult is what `cairn bench` reports.
type benchResult struct {
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

func benchCommand() *cli.Command {
	return &cli.Command{
		Name: "bench", Usage: "measure throughput and latency with closed-loop clients", ArgsUsage: " ",
		Description: `Each client sends one request, waits for the answer, sends the next.
Keys are uniform over --keys; values are random bytes of --value-size.
Gets, txn and mixed runs first fill every key once (--fill).
With --rotate, each request goes to the next --cluster endpoint in turn;
followers forward writes and linearizable reads to the leader.
Example:
   cairn bench --op put --clients 64 --duration 10s
   cairn bench --op get --consistency stale --clients 64 --json
   cairn bench --fill only --clients 64 && cairn bench --op get --fill skip --rotate`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "op", Value: "put", Usage: "put, get, txn (compare-and-set on one key) or mixed (50% get, 50% put)"},
			&cli.IntFlag{Name: "clients", Value: 16, Usage: "concurrent closed-loop clients"},
			&cli.IntFlag{Name: "connections", Value: 4, Usage: "client instances (HTTP connection pools) the clients share"},
			&cli.DurationFlag{Name: "duration", Value: 10 * time.Second, Usage: "measured time"},
			&cli.DurationFlag{Name: "warmup", Value: time.Second, Usage: "unmeasured time before"},
			&cli.IntFlag{Name: "value-size", Value: 256, Usage: "value bytes"},
			&cli.IntFlag{Name: "keys", Value: 100000, Usage: "distinct keys"},
			&cli.StringFlag{Name: "consistency", Value: api.Linearizable, Usage: "for gets: linearizable or stale"},
			&cli.StringFlag{Name: "prefix", Value: "bench/", Usage: "key prefix"},
			&cli.StringFlag{Name: "fill", Value: "auto", Usage: "auto (write every key once before get, txn and mixed runs), skip (keys were filled before), or only (fill, report, exit)"},
			&cli.BoolFlag{Name: "rotate", Usage: "send each request to the next --cluster endpoint in turn, instead of writes and linearizable reads to the leader"},
			jsonFlag(),
		},
		Action: benchAction,
	}
}

func benchAction(c *cli.Context) error {
	op := c.String("op")
	switch op {
	case "put", "get", "txn", "mixed":
	default:
		return usageError("--op %q (use put, get, txn or mixed)", op)
	}
	clients, conns := c.Int("clients"), c.Int("connections")
	keys, vsize := c.Int("keys"), c.Int("value-size")
	switch {
	case clients < 1 || conns < 1 || keys < 1 || vsize < 0:
		return usageError("--clients, --connections and --keys must be positive, --value-size not negative")
	case c.Duration("duration") <= 0 || c.Duration("warmup") < 0:
		return usageError("--duration must be positive and --warmup not negative")
	}
	cons := c.String("consistency")
	if cons != api.Linearizable && cons != api.Stale {
		return usageError("--consistency %q (use linearizable or stale)", cons)
	}
	fill := c.String("fill")
	if fill != "auto" && fill != "skip" && fill != "only" {
		return usageError("--fill %q (use auto, skip or only)", fill)
	}
	base, err := clientConfig(c) // --cluster, --cacert, --cert, --key
	if err != nil {
		return err
	}
	endpoints := base.Endpoints
	var rotate []*url.URL
	if c.Bool("rotate") {
		scheme := "http"
		if base.CAFile != "" || base.CertFile != "" {
			scheme = "https" // as the client takes host:port
		}
		for _, e := range endpoints {
			if !strings.Contains(e, "://") {
				e = scheme + "://" + e
			}
			u, err := url.Parse(e)
			if err != nil || u.Host == "" {
				return usageError("--cluster endpoint %q is not a URL or host:port", e)
			}
			rotate = append(rotate, u)
		}
	}
	var cls []*client.Client
	for i := 0; i < min(conns, clients); i++ {
		cfg := base
		if rotate != nil {
			// The client's own transport (and TLS) settings, with the
			// rotation in front.
			tr, err := client.NewTransport(cfg)
			if err != nil {
				return err // a bad --cacert, --cert or --key: exit 2
			}
			rt := &rotateTransport{endpoints: rotate, base: tr}
			defer rt.base.CloseIdleConnections()
			cfg.HTTPClient = &http.Client{Transport: rt}
			cfg.Endpoints = nil
			for _, u := range rotate {
				cfg.Endpoints = append(cfg.Endpoints, u.String())
			}
			cfg.CAFile, cfg.CertFile, cfg.KeyFile = "", "", "" // in the transport
		}
		cl, err := client.New(cfg)
		if err != nil {
			return err // client.ErrInvalidConfig: exit 2
		}
		defer cl.Close()
		cls = append(cls, cl)
	}
	ctx := c.Context
	key := func(i int) string { return fmt.Sprintf("%s%08d", c.String("prefix"), i) }
	value := make([]byte, vsize)
	for i := range value {
		value[i] = byte('a' + rand.IntN(26))
	}
	if fill == "only" || (fill == "auto" && op != "put") {
		began := time.Now()
		bar := newProgress(c, int64(keys), progressItems, "fill") // keys written, on a terminal only
		err := benchFill(ctx, cls, clients, keys, key, value, bar)
		bar.Done()
		if err != nil {
			return fmt.Errorf("filling %d keys: %w", keys, err)
		}
		if fill == "only" {
			// No latencies: the fill is not a closed-loop measurement.
			elapsed := time.Since(began).Seconds()
			res := benchResult{Op: "fill", Clients: clients, Connections: len(cls), Seconds: elapsed,
				Ops: int64(keys), OpsPerSec: float64(keys) / elapsed}
			if boolFlag(c, "json") {
				return printJSON(c.App.Writer, res)
			}
			_, err := fmt.Fprintf(c.App.Writer, "filled %d keys in %.1fs (%.0f puts/s, %d clients)\n", keys, elapsed, res.OpsPerSec, clients)
			return err
		}
	}

	var (
		measuring atomic.Bool
		ops, errs atomic.Int64
		conflicts atomic.Int64
		firstErr  atomic.Value
		mu        sync.Mutex
		hist      = hdrhistogram.New(1, int64(time.Minute/time.Microsecond), 3)
	)
	runCtx, cancel := context.WithTimeout(ctx, c.Duration("warmup")+c.Duration("duration"))
	defer cancel()
	var wg sync.WaitGroup
	for w := 0; w < clients; w++ {
		wg.Add(1)
		go func(cl *client.Client, rng *rand.Rand) {
			defer wg.Done()
			local := hdrhistogram.New(1, int64(time.Minute/time.Microsecond), 3)
			defer func() { mu.Lock(); hist.Merge(local); mu.Unlock() }()
			for runCtx.Err() == nil {
				k := key(rng.IntN(keys))
				start := time.Now()
				err := benchOnce(runCtx, cl, op, k, value, cons, rng)
				if runCtx.Err() != nil {
					return // cut off by the end of the run: not counted
				}
				if !measuring.Load() {
					continue
				}
				switch {
				case errors.Is(err, client.ErrConflict):
					conflicts.Add(1)
				case err != nil:
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
	case <-time.After(c.Duration("warmup")):
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
	res := benchResult{Op: op, Clients: clients, Connections: len(cls), Seconds: elapsed, Ops: ops.Load(),
		Errors: errs.Load(), Conflicts: conflicts.Load(), OpsPerSec: float64(ops.Load()) / elapsed,
		P50ms: ms(50), P90ms: ms(90), P99ms: ms(99), P999ms: ms(99.9), MaxMs: float64(hist.Max()) / 1000}
	if v, ok := firstErr.Load().(string); ok {
		res.FirstError = v
	}
	if boolFlag(c, "json") {
		return printJSON(c.App.Writer, res)
	}
	tw := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "op\t%s (%d clients, %d connections, %.1fs)\nops/s\t%.0f\nops\t%d\nerrors\t%d\n", res.Op, res.Clients, res.Connections, res.Seconds, res.OpsPerSec, res.Ops, res.Errors)
	if op == "txn" {
		fmt.Fprintf(tw, "conflicts\t%d\n", res.Conflicts)
	}
	fmt.Fprintf(tw, "p50\t%.2f ms\np90\t%.2f ms\np99\t%.2f ms\np99.9\t%.2f ms\nmax\t%.2f ms\n", res.P50ms, res.P90ms, res.P99ms, res.P999ms, res.MaxMs)
	if res.FirstError != "" {
		fmt.Fprintf(tw, "first error\t%s\n", res.FirstError)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if res.Ops == 0 {
		return fmt.Errorf("no operation succeeded: %s", res.FirstError)
	}
	return nil
}

// benchOnce performs one operation. A txn reads the key and writes it
// back with a revision precondition (a compare-and-set); losing the race
// is a conflict, counted apart from errors.
func benchOnce(ctx context.Context, cl *client.Client, op, k string, value []byte, cons string, rng *rand.Rand) error {
	if op == "mixed" {
		op = "put"
		if rng.IntN(2) == 0 {
			op = "get"
		}
	}
	switch op {
	case "put":
		_, err := cl.Put(ctx, k, value)
		return err
	case "get":
		_, err := cl.Get(ctx, k, client.Consistency(cons))
		return err
	}
	kv, err := cl.Get(ctx, k, client.Consistency(api.Stale))
	if err != nil {
		return err
	}
	_, err = cl.Txn().If(client.KeyAtRevision(k, kv.ModRevision)).Put(k, value).Commit(ctx)
	return err
}

// rotateTransport sends each data request (/v1/kv..., /v1/txn) to the next
// endpoint in turn, whichever member the client chose, the way etcd's Go
// client balances requests over its endpoints. The client's discovery and
// everything else go where the client sends them.
type rotateTransport struct {
	base      *http.Transport
	endpoints []*url.URL
	next      atomic.Uint64
}

func (t *rotateTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if !strings.HasPrefix(r.URL.Path, "/v1/kv") && r.URL.Path != "/v1/txn" {
		return t.base.RoundTrip(r)
	}
	u := t.endpoints[(t.next.Add(1)-1)%uint64(len(t.endpoints))]
	r2 := r.Clone(r.Context())
	r2.URL.Scheme, r2.URL.Host, r2.Host = u.Scheme, u.Host, ""
	return t.base.RoundTrip(r2)
}

// benchFill writes every key once, with the benchmark's concurrency.
// bar counts the keys written (nil: no display).
func benchFill(ctx context.Context, cls []*client.Client, workers, keys int, key func(int) string, value []byte, bar *progress) error {
	var next atomic.Int64
	var wg sync.WaitGroup
	var first atomic.Value
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(cl *client.Client) {
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
				bar.Add(1)
			}
		}(cls[w%len(cls)])
	}
	wg.Wait()
	if err, ok := first.Load().(error); ok {
		return err
	}
	return ctx.Err()
}
