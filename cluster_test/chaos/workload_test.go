package chaos

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cairn-db/cairn/api"
	"github.com/cairn-db/cairn/client"
)

// record is one operation of the recorded history: its call and return
// times (nanoseconds since the workload started, monotonic), request and
// answer.
type record struct {
	client    int
	call, ret int64
	in        opInput
	out       opOutput
}

// workload runs concurrent clients against a cluster and records every
// operation.
type workload struct {
	start   time.Time
	mu      sync.Mutex
	ops     []record
	stop    chan struct{}
	wg      sync.WaitGroup
	clients []*client.Client
	spread  []*spreadWrites // transports of the workers that spread writes
}

// Workload tuning.
const (
	workers     = 8
	opTimeout   = 4 * time.Second // an op unresolved by then is ambiguous
	reqTimeout  = time.Second     // one attempt (a paused node answers nothing)
	thinkTimeMs = 2               // pause between a worker's ops, at most
)

// startWorkload starts the workers. base (its endpoints and TLS
// settings) seeds each client; the clients discover members added later
// themselves.
func startWorkload(base client.Config, seed uint64) (*workload, error) {
	w := &workload{start: time.Now(), stop: make(chan struct{})}
	endpoints := base.Endpoints
	for i := range workers {
		cfg := base
		cfg.RequestTimeout = reqTimeout
		cfg.MaxBackoff = 100 * time.Millisecond
		if i%2 == 1 {
			// Half the workers send their writes to any member, so that
			// followers forward them (in shared requests) through every
			// fault, as with requests spread by a load balancer.
			tr, err := client.NewTransport(cfg)
			if err != nil {
				return nil, err
			}
			tr.MaxIdleConnsPerHost = 4
			sw, err := newSpreadWrites(endpoints, tr, mrand.New(mrand.NewPCG(seed, uint64(1000+i))))
			if err != nil {
				return nil, err
			}
			// The TLS settings are the transport's now.
			cfg.CAFile, cfg.CertFile, cfg.KeyFile = "", "", ""
			cfg.HTTPClient = &http.Client{Transport: sw}
			w.spread = append(w.spread, sw)
		}
		cl, err := client.New(cfg)
		if err != nil {
			return nil, err
		}
		w.clients = append(w.clients, cl)
		rng := mrand.New(mrand.NewPCG(seed, uint64(i)))
		w.wg.Add(1)
		go func() {
			defer w.wg.Done()
			w.run(i, cl, rng)
		}()
	}
	return w, nil
}

// finish stops the workers and waits for their last operations.
func (w *workload) finish() []record {
	close(w.stop)
	w.wg.Wait()
	for _, c := range w.clients {
		_ = c.Close()
	}
	for _, sw := range w.spread {
		sw.base.(*http.Transport).CloseIdleConnections()
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.ops
}

func (w *workload) now() int64 { return int64(time.Since(w.start)) }

func (w *workload) add(r record) {
	w.mu.Lock()
	w.ops = append(w.ops, r)
	w.mu.Unlock()
}

// spreadWrites is a RoundTripper that sends each write (PUT, DELETE, POST)
// to a member picked at random from the seed endpoints instead of the one
// the client chose (normally the leader). Reads go where the client sends
// them.
type spreadWrites struct {
	hosts []string
	base  http.RoundTripper
	mu    sync.Mutex
	rng   *mrand.Rand
	// viaFollower counts writes a follower answered with success: it
	// forwarded them to the leader.
	viaFollower atomic.Int64
}

func newSpreadWrites(endpoints []string, base *http.Transport, rng *mrand.Rand) (*spreadWrites, error) {
	sw := &spreadWrites{rng: rng, base: base}
	for _, e := range endpoints {
		u, err := url.Parse(e)
		if err != nil {
			return nil, err
		}
		sw.hosts = append(sw.hosts, u.Host)
	}
	return sw, nil
}

func (sw *spreadWrites) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Method == http.MethodGet || len(sw.hosts) == 0 {
		return sw.base.RoundTrip(req)
	}
	sw.mu.Lock()
	h := sw.hosts[sw.rng.IntN(len(sw.hosts))]
	sw.mu.Unlock()
	r := req.Clone(req.Context())
	r.URL.Host, r.Host = h, h
	resp, err := sw.base.RoundTrip(r)
	if err == nil && resp.StatusCode == http.StatusOK && resp.Header.Get(api.HeaderLeader) != "" &&
		resp.Header.Get(api.HeaderNode) != resp.Header.Get(api.HeaderLeader) {
		sw.viaFollower.Add(1)
	}
	return resp, err
}

// viaFollowers returns how many writes followers forwarded with success.
func (w *workload) viaFollowers() int64 {
	var n int64
	for _, sw := range w.spread {
		n += sw.viaFollower.Load()
	}
	return n
}

func newIdem() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func (w *workload) run(id int, cl *client.Client, rng *mrand.Rand) {
	seq := 0
	for {
		select {
		case <-w.stop:
			return
		default:
		}
		seq++
		val := fmt.Sprintf("c%d-%d", id, seq)
		k := rng.IntN(4)
		switch r := rng.IntN(100); {
		case r < 25:
			w.write(id, cl, rng, opInput{Name: "put", Keys: []int{k}, Vals: []string{val}})
		case r < 45:
			w.get(id, cl, k, false)
		case r < 55:
			w.get(id, cl, k, true)
		case r < 70: // compare-and-set on the revision just read
			if c, ok := w.condFromRead(id, cl, k); ok {
				w.write(id, cl, rng, opInput{Name: "cas", Keys: []int{k}, Vals: []string{val}, Conds: []cond{c.cond}})
			}
		case r < 85: // multi-key transaction over two keys
			k2 := (k + 1 + rng.IntN(3)) % 4
			c1, ok1 := w.condFromRead(id, cl, k)
			c2, ok2 := w.condFromRead(id, cl, k2)
			in := opInput{Name: "txn", Keys: []int{k, k2}, Vals: []string{val, val + "'"}}
			if ok1 && ok2 && rng.IntN(4) > 0 {
				in.Conds = []cond{c1.cond, c2.cond}
			}
			w.write(id, cl, rng, in)
		default: // increment the counter (read, then compare-and-set)
			c, ok := w.condFromRead(id, cl, ctrKeyIdx)
			if !ok {
				continue
			}
			n := uint64(0)
			if c.Rev != 0 {
				n = c.val
			}
			w.write(id, cl, rng, opInput{Name: "incr", Keys: []int{ctrKeyIdx}, Vals: []string{strconv.FormatUint(n+1, 10)},
				Conds: []cond{c.cond}})
		}
		if thinkTimeMs > 0 {
			time.Sleep(time.Duration(rng.IntN(thinkTimeMs*1000)) * time.Microsecond)
		}
	}
}

// readCond is a precondition built from a linearizable read, with the
// counter's value when the key is the counter.
type readCond struct {
	cond
	val uint64
}

// condFromRead reads key k linearizably (recording the read) and returns
// the "key at this revision" (or absent) precondition it observed.
func (w *workload) condFromRead(id int, cl *client.Client, k int) (readCond, bool) {
	out, ok := w.get(id, cl, k, false)
	if !ok {
		return readCond{}, false
	}
	rc := readCond{cond: cond{Key: k}}
	if out.Found {
		rc.Rev = out.Mod
		rc.val, _ = strconv.ParseUint(out.Val, 10, 64)
	}
	return rc, true
}

// get reads key k and records it; a failed read (no effect, no answer) is
// not recorded.
func (w *workload) get(id int, cl *client.Client, k int, stale bool) (opOutput, bool) {
	in := opInput{Kind: opGet, Name: "get", Keys: []int{k}}
	var opts []client.ReadOption
	if stale {
		in.Kind, in.Name = opStaleGet, "stale-get"
		opts = append(opts, client.Consistency("stale"))
	}
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	call := w.now()
	kv, err := cl.Get(ctx, modelKeys[k], opts...)
	ret := w.now()
	var out opOutput
	switch {
	case err == nil:
		out = opOutput{Found: true, Val: string(kv.Value), Mod: kv.ModRevision, Rev: kv.Revision}
	case errors.Is(err, client.ErrNotFound):
		out = opOutput{}
	default:
		return out, false
	}
	w.add(record{client: id, call: call, ret: ret, in: in, out: out})
	return out, true
}

// opContext bounds one operation: usually opTimeout, but one write in
// five gets a short deadline, so faults leave some writes ambiguous and
// the history checks resolve them from the log.
func opContext(rng *mrand.Rand) (context.Context, context.CancelFunc) {
	d := opTimeout
	if rng.IntN(5) == 0 {
		d = time.Duration(200+rng.IntN(800)) * time.Millisecond
	}
	return context.WithTimeout(context.Background(), d)
}

// write sends a put (one key, no conditions) or a transaction with an
// idempotency key of its own and records the outcome: committed, conflict,
// or unknown for every other failure (resolved later from the log).
func (w *workload) write(id int, cl *client.Client, rng *mrand.Rand, in opInput) {
	in.Kind = opWrite
	in.Idem = newIdem()
	ctx, cancel := opContext(rng)
	defer cancel()
	call := w.now()
	var res *client.WriteResult
	var err error
	if in.Name == "put" {
		res, err = cl.Put(ctx, modelKeys[in.Keys[0]], []byte(in.Vals[0]), client.WithIdempotencyKey(in.Idem))
	} else {
		txn := cl.Txn()
		for _, c := range in.Conds {
			if c.Rev == 0 {
				txn.If(client.Absent(modelKeys[c.Key]))
			} else {
				txn.If(client.KeyAtRevision(modelKeys[c.Key], c.Rev))
			}
		}
		for i, k := range in.Keys {
			txn.Put(modelKeys[k], []byte(in.Vals[i]))
		}
		res, err = txn.Commit(ctx, client.WithIdempotencyKey(in.Idem))
	}
	ret := w.now()
	var out opOutput
	switch {
	case err == nil:
		out = opOutput{OK: true, Rev: res.Revision}
	case errors.Is(err, client.ErrConflict):
		out = opOutput{Conflict: true}
	default:
		out = opOutput{Unknown: true}
	}
	w.add(record{client: id, call: call, ret: ret, in: in, out: out})
}
