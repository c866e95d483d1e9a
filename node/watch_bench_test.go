package node

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"runtime"
	rtmetrics "runtime/metrics"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cairn-db/cairn/fsm"
)

// BenchmarkWatchCatchUp is issue 17's watcher flood: one member holding a
// transaction log of at least 100 MiB (1 KiB values), 20 GET /v1/watch
// streams from revision 1 over HTTP, half of them read slowly (small reads
// with pauses), while writers keep committing 1 KiB puts over HTTP. One
// iteration lasts until the fast watchers have every transaction of the
// fill; the slow ones are then dropped. The fill is made once (a minute or
// so) and shared by the iterations.
//
// Metrics: max-heap-MiB, the largest Go heap in use (runtime/metrics:
// heap objects plus unused heap span space, i.e. MemStats.HeapInuse)
// sampled every 5 ms in this process (member, watchers and writers);
// max-live-MiB, the largest live heap found by a GC (/gc/heap/live);
// base-heap-MiB, the same after the fill and a GC, before the watchers;
// writes/s, the writers' puts answered per second during the run; MB/s,
// the bytes each fast watcher received per second. watchers=0 runs the
// writers alone for 5 s, as a reference for writes/s.
//
//	go test -run XXX -bench WatchCatchUp -benchtime 3x -timeout 30m ./node/
//
// CAIRN_WATCH_BENCH_HEAP=file writes a heap profile (inuse) taken when the
// heap was largest.
func BenchmarkWatchCatchUp(b *testing.B) {
	const (
		valueSize = 1 << 10
		fillBytes = 100 << 20
	)
	// The log's transactions put 1 value each (client puts) or 64
	// (batched writes: 64 KiB records).
	for _, ops := range []int{1, 64} {
		b.Run(fmt.Sprintf("ops=%d", ops), func(b *testing.B) {
			n := benchMember(b, "n1")
			head := fillLog(b, n, "fill/", valueSize, ops, fillBytes/(valueSize*ops)+1)
			b.Run("watchers=20,slow=10", func(b *testing.B) {
				benchWatchCatchUp(b, n, head, 20, 10)
			})
			// watchers=0: the writers alone for the same member, for
			// 5 s (a reference for writes/s on this machine now). It
			// runs last: its puts replace the fill's entries in the raft
			// log cache, which would shrink the heap measured above.
			b.Run("watchers=0", func(b *testing.B) {
				benchWatchCatchUp(b, n, head, 0, 0)
			})
		})
	}
}

// fillLog commits count transactions of ops puts of size-byte values from
// parallel writers (the batcher coalesces them into shared raft entries)
// and returns the revision of the last.
func fillLog(b *testing.B, n *Node, prefix string, size, ops, count int) uint64 {
	b.Helper()
	start := time.Now()
	value := bytes.Repeat([]byte("v"), size)
	var next atomic.Int64
	var wg sync.WaitGroup
	errc := make(chan error, 1)
	for range 64 {
		wg.Go(func() {
			for {
				i := next.Add(1)
				if i > int64(count) {
					return
				}
				txn := fsm.Txn{Ops: make([]fsm.Op, ops)}
				for j := range txn.Ops {
					txn.Ops[j] = fsm.Op{Kind: fsm.OpPut, Key: fmt.Sprintf("%s%d/%d", prefix, i, j), Value: value}
				}
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				res, err := n.Write(ctx, txn)
				cancel()
				if err == nil {
					err = res.Err
				}
				if err != nil {
					select {
					case errc <- err:
					default:
					}
					return
				}
			}
		})
	}
	wg.Wait()
	select {
	case err := <-errc:
		b.Fatal(err)
	default:
	}
	head := n.FSM().Revision()
	b.Logf("filled %d transactions of %d x %d bytes in %s (head %d)", count, ops, size, time.Since(start).Round(time.Millisecond), head)
	return head
}

// heapSampler records the largest heap in use while it runs.
type heapSampler struct {
	max     atomic.Uint64
	maxLive atomic.Uint64
	stop    chan struct{}
	done    chan struct{}
	profile string
	prof    bytes.Buffer
}

func heapInUse(s []rtmetrics.Sample) uint64 {
	rtmetrics.Read(s)
	return s[0].Value.Uint64() + s[1].Value.Uint64()
}

// newHeapSamples: heap in use (objects, live or not yet swept, plus the
// unused space of in-use spans), then the live heap as of the last GC.
func newHeapSamples() []rtmetrics.Sample {
	return []rtmetrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}, {Name: "/memory/classes/heap/unused:bytes"}, {Name: "/gc/heap/live:bytes"}}
}

func startHeapSampler() *heapSampler {
	h := &heapSampler{stop: make(chan struct{}), done: make(chan struct{}), profile: os.Getenv("CAIRN_WATCH_BENCH_HEAP")}
	go func() {
		defer close(h.done)
		s := newHeapSamples()
		t := time.NewTicker(5 * time.Millisecond)
		defer t.Stop()
		var profiled uint64
		for {
			v := heapInUse(s)
			if v > h.max.Load() {
				h.max.Store(v)
			}
			if live := s[2].Value.Uint64(); live > h.maxLive.Load() {
				h.maxLive.Store(live)
			}
			if h.profile != "" && v > profiled+profiled/20 {
				// A profile of what is live at about the largest heap.
				profiled = v
				h.prof.Reset()
				_ = pprof.Lookup("heap").WriteTo(&h.prof, 0)
			}
			select {
			case <-t.C:
			case <-h.stop:
				return
			}
		}
	}()
	return h
}

func (h *heapSampler) finish(b *testing.B) uint64 {
	close(h.stop)
	<-h.done
	if h.profile != "" && h.prof.Len() > 0 {
		if err := os.WriteFile(h.profile, h.prof.Bytes(), 0o644); err != nil {
			b.Error(err)
		}
	}
	return h.max.Load()
}

func benchWatchCatchUp(b *testing.B, n *Node, head uint64, watchers, slow int) {
	runtime.GC()
	base := heapInUse(newHeapSamples())
	url := n.HTTPURL()
	tr := &http.Transport{DisableCompression: true, MaxIdleConnsPerHost: 8}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr}
	var (
		puts     atomic.Int64
		received atomic.Int64
		elapsed  time.Duration
	)
	hs := startHeapSampler()
	b.ResetTimer()
	for range b.N {
		ctx, cancel := context.WithCancel(context.Background())
		// Writers: 1 KiB puts over HTTP for the whole iteration.
		var writers sync.WaitGroup
		value := strings.Repeat("w", 1<<10)
		werr := make(chan error, 4)
		for w := range 4 {
			writers.Go(func() {
				for i := 0; ctx.Err() == nil; i++ {
					req, _ := http.NewRequestWithContext(ctx, http.MethodPut, fmt.Sprintf("%s/v1/kv/live/%d/%d", url, w, i%1000), strings.NewReader(value))
					resp, err := hc.Do(req)
					if err != nil {
						if ctx.Err() == nil {
							werr <- err
						}
						return
					}
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != http.StatusOK {
						werr <- fmt.Errorf("put: HTTP %d", resp.StatusCode)
						return
					}
					puts.Add(1)
				}
			})
		}
		start := time.Now()
		var fast, slowWG sync.WaitGroup
		errc := make(chan error, watchers)
		for i := range watchers {
			isSlow := i < slow
			wg := &fast
			if isSlow {
				wg = &slowWG
			}
			wg.Go(func() {
				got, err := readWatch(ctx, hc, url+"/v1/watch?prefix=fill/&from_revision=1", head, isSlow)
				if !isSlow {
					received.Add(got)
				}
				if err != nil && ctx.Err() == nil {
					errc <- err
				}
			})
		}
		if watchers == 0 {
			<-time.After(5 * time.Second)
		}
		fast.Wait()
		elapsed += time.Since(start)
		cancel()
		slowWG.Wait()
		writers.Wait()
		close(errc)
		for err := range errc {
			b.Error(err)
		}
		select {
		case err := <-werr:
			b.Error(err)
		default:
		}
	}
	b.StopTimer()
	maxHeap := hs.finish(b)
	const mib = 1 << 20
	b.ReportMetric(float64(maxHeap)/mib, "max-heap-MiB")
	b.ReportMetric(float64(hs.maxLive.Load())/mib, "max-live-MiB")
	b.ReportMetric(float64(base)/mib, "base-heap-MiB")
	b.ReportMetric(float64(puts.Load())/elapsed.Seconds(), "writes/s")
	if watchers > slow {
		b.ReportMetric(float64(received.Load())/1e6/elapsed.Seconds()/float64(watchers-slow), "MB/s")
	}
}

// readWatch reads a watch stream until a line at revision head or past
// it (fast), or until ctx ends (slow: 1 KiB reads with 1 ms pauses). It
// returns the bytes read. Revisions must rise.
func readWatch(ctx context.Context, hc *http.Client, url string, head uint64, slow bool) (int64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("watch: HTTP %d", resp.StatusCode)
	}
	var body io.Reader = resp.Body
	if slow {
		body = &throttled{r: resp.Body, chunk: 1 << 10, pause: time.Millisecond}
	}
	br := bufio.NewReaderSize(body, 64<<10)
	var read int64
	var last uint64
	for {
		line, err := br.ReadSlice('\n')
		read += int64(len(line))
		if errors.Is(err, bufio.ErrBufferFull) {
			// A line longer than the buffer: skip to its end.
			for errors.Is(err, bufio.ErrBufferFull) {
				line, err = br.ReadSlice('\n')
				read += int64(len(line))
			}
			continue
		}
		if err != nil {
			return read, err
		}
		i := bytes.Index(line, []byte(`"revision":`))
		if i < 0 {
			return read, fmt.Errorf("line without revision: %.200q", line)
		}
		digits := line[i+len(`"revision":`):]
		j := bytes.IndexFunc(digits, func(r rune) bool { return r < '0' || r > '9' })
		rev, perr := strconv.ParseUint(string(digits[:j]), 10, 64)
		if perr != nil {
			return read, fmt.Errorf("line %.200q: %v", line, perr)
		}
		isTxn := bytes.HasPrefix(line, []byte(`{"type":"txn"`))
		if bytes.HasPrefix(line, []byte(`{"type":"error"`)) {
			return read, fmt.Errorf("watch error: %s", line)
		}
		if isTxn && rev <= last {
			return read, fmt.Errorf("txn %d after %d", rev, last)
		}
		if isTxn {
			last = rev
		}
		if !slow && rev >= head {
			return read, nil
		}
	}
}

// throttled reads at most chunk bytes per Read and pauses before each.
type throttled struct {
	r     io.Reader
	chunk int
	pause time.Duration
}

func (t *throttled) Read(p []byte) (int, error) {
	time.Sleep(t.pause)
	if len(p) > t.chunk {
		p = p[:t.chunk]
	}
	return t.r.Read(p)
}
