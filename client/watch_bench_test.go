//go:build unix

package client_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cairn-db/cairn/api"
)

// BenchmarkWritesWithWatchers measures put throughput on one in-process
// node with 0 and 100 concurrent watchers of the written prefix. Writers
// run in parallel (8 x GOMAXPROCS goroutines, 128-byte values). The
// watchers are:
//
//   - proc: 100 GET /v1/watch streams read by another OS process (this
//     test binary re-run as TestWatchBenchProcess), which splits the
//     NDJSON lines and checks their revisions. The node's process pays
//     only the server's side of the fan-out; the readers still share the
//     machine's CPUs.
//   - nice: the same process at nice 19, so that the readers take mostly
//     CPU the node leaves idle, as readers on other machines would
//     (catchup-ms shows whether they kept up).
//   - http: the same readers in the node's process.
//   - client: 100 client.Watch calls in the node's process, each
//     decoding every event.
//
// Every watcher must receive every put exactly once, in revision order.
// Metrics: puts/s over the writes; cpu-us/put, the benchmark process's
// CPU time (user+system) per put; watcher-cpu-us/put, the reader
// process's (proc); catchup-ms, how long after the last put the watchers
// had all of them.
//
// The machine is noisy: compare conditions run alternately, e.g.
//
//	for i in 1 2 3; do go test -run XXX -bench 'WritesWithWatchers/watchers=(0|100,proc)$' ./client; done
func BenchmarkWritesWithWatchers(b *testing.B) {
	for _, bc := range []struct {
		watchers int
		mode     string
	}{{0, ""}, {100, "proc"}, {100, "nice"}, {100, "http"}, {100, "client"}} {
		name := fmt.Sprintf("watchers=%d", bc.watchers)
		if bc.mode != "" {
			name += "," + bc.mode
		}
		b.Run(name, func(b *testing.B) { benchWritesWithWatchers(b, bc.watchers, bc.mode) })
	}
}

func benchWritesWithWatchers(b *testing.B, watchers int, mode string) {
	nodes := startCluster(b, 1)
	url := nodes[0].HTTPURL()
	c := newClient(b, nil, url)
	ctx, cancel := context.WithCancel(context.Background())
	b.Cleanup(cancel)
	// caughtUp waits until every watcher has every revision up to rev
	// and returns the txn events they received (and the readers' CPU
	// time when they run in another process).
	var caughtUp func(rev uint64) (res watchResult, err error)
	switch mode {
	case "":
		caughtUp = func(uint64) (watchResult, error) { return watchResult{}, nil }
	case "proc", "nice":
		p := startWatchProcess(b, url, watchers, mode == "nice")
		caughtUp = p.caughtUp
	case "http":
		ws, err := openRawWatchers(ctx, url, watchers)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(ws.close)
		caughtUp = func(rev uint64) (watchResult, error) {
			n, err := ws.caughtUp(rev, 60*time.Second)
			p50, p99 := ws.delay()
			return watchResult{events: n, delay50: p50, delay99: p99}, err
		}
	case "client":
		wc := newClient(b, nil, url)
		var delivered atomic.Int64
		last := make([]atomic.Uint64, watchers)
		var wg sync.WaitGroup
		for i := 0; i < watchers; i++ {
			ch, err := wc.Watch(ctx, "bench/", 0)
			if err != nil {
				b.Fatal(err)
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				for ev := range ch {
					if ev.Type == api.WatchTxn {
						delivered.Add(1)
						last[i].Store(ev.Revision)
					}
				}
			}()
		}
		b.Cleanup(func() {
			cancel()
			wg.Wait()
		})
		caughtUp = func(rev uint64) (watchResult, error) {
			err := pollUntil(60*time.Second, func() bool {
				for i := range last {
					if last[i].Load() < rev {
						return false
					}
				}
				return true
			})
			return watchResult{events: delivered.Load()}, err
		}
	default:
		b.Fatalf("mode %q", mode)
	}

	value := make([]byte, 128)
	var seq atomic.Int64
	b.SetParallelism(8)
	cpu0 := processCPU()
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := c.Put(ctx, fmt.Sprintf("bench/%d", seq.Add(1)%1000), value); err != nil {
				b.Error(err)
				return
			}
		}
	})
	elapsed := time.Since(start)
	b.StopTimer()
	cpu := processCPU() - cpu0
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "puts/s")
	b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-us/put")
	if watchers == 0 {
		return
	}
	res, err := caughtUp(c.Revision())
	if err != nil {
		b.Fatal(err)
	}
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	b.ReportMetric(ms(time.Since(start)-elapsed), "catchup-ms")
	if mode == "proc" || mode == "nice" {
		b.ReportMetric(float64(res.cpu.Microseconds())/float64(b.N), "watcher-cpu-us/put")
	}
	if res.delay99 > 0 {
		b.ReportMetric(ms(res.delay50), "delay-p50-ms")
		b.ReportMetric(ms(res.delay99), "delay-p99-ms")
	}
	// Every watcher gets every put, once.
	if want := int64(b.N) * int64(watchers); res.events != want {
		b.Errorf("watchers got %d events, want %d", res.events, want)
	}
}

// watchResult is what the watchers of a run report.
type watchResult struct {
	events           int64         // txn events received, all watchers
	cpu              time.Duration // the reader process's CPU time
	delay50, delay99 time.Duration // see rawWatchers.delays
}

// processCPU is the user and system CPU time of this process.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// pollUntil polls cond until it holds or timeout passes.
func pollUntil(timeout time.Duration, cond func() bool) error {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			return fmt.Errorf("not done within %s", timeout)
		}
		time.Sleep(2 * time.Millisecond)
	}
	return nil
}

// rawWatchers are GET /v1/watch?prefix=bench/ streams read line by line
// without decoding the JSON: each line's type and revision are taken from
// its head, the txn lines counted and their revisions checked to rise.
type rawWatchers struct {
	cancel context.CancelFunc
	hc     *http.Client
	wg     sync.WaitGroup
	events atomic.Int64
	at     []atomic.Uint64 // each stream's last revision
	mu     sync.Mutex
	err    error // the first stream error
	// delays are samples of how old a txn line is when it arrives: now
	// minus its time (when the leader took the write). The first line of
	// each read is sampled: the oldest of what the node sent at once.
	delays []time.Duration
}

func openRawWatchers(ctx context.Context, url string, n int) (*rawWatchers, error) {
	ctx, cancel := context.WithCancel(ctx)
	ws := &rawWatchers{cancel: cancel, hc: &http.Client{Transport: &http.Transport{}}, at: make([]atomic.Uint64, n)}
	for i := 0; i < n; i++ {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url+"/v1/watch?prefix=bench/", nil)
		if err != nil {
			ws.close()
			return nil, err
		}
		resp, err := ws.hc.Do(req)
		if err != nil {
			ws.close()
			return nil, err
		}
		if resp.StatusCode != http.StatusOK {
			resp.Body.Close()
			ws.close()
			return nil, fmt.Errorf("watch: HTTP %d", resp.StatusCode)
		}
		br := bufio.NewReaderSize(resp.Body, 64<<10)
		// The first line, a progress event, says the stream is open.
		if err := ws.line(i, br); err != nil {
			resp.Body.Close()
			ws.close()
			return nil, err
		}
		ws.wg.Add(1)
		go func() {
			defer ws.wg.Done()
			defer resp.Body.Close()
			for {
				if err := ws.line(i, br); err != nil {
					if ctx.Err() == nil {
						ws.mu.Lock()
						if ws.err == nil {
							ws.err = fmt.Errorf("watcher %d: %w", i, err)
						}
						ws.mu.Unlock()
					}
					return
				}
			}
		}()
	}
	return ws, nil
}

var (
	txnHead      = []byte(`{"type":"txn","revision":`)
	progressHead = []byte(`{"type":"progress","revision":`)
)

// line reads and checks stream i's next line.
func (ws *rawWatchers) line(i int, br *bufio.Reader) error {
	fresh := br.Buffered() == 0 // this line starts a read
	l, err := br.ReadSlice('\n')
	if err != nil {
		return err
	}
	txn := bytes.HasPrefix(l, txnHead)
	var rest []byte
	switch {
	case txn:
		rest = l[len(txnHead):]
	case bytes.HasPrefix(l, progressHead):
		rest = l[len(progressHead):]
	default:
		return fmt.Errorf("unexpected line %.200q", l)
	}
	end := bytes.IndexAny(rest, ",}")
	if end < 0 {
		return fmt.Errorf("no revision in %.200q", l)
	}
	rev, err := strconv.ParseUint(string(rest[:end]), 10, 64)
	if err != nil {
		return fmt.Errorf("bad revision in %.200q", l)
	}
	prev := ws.at[i].Load()
	if txn {
		if rev <= prev {
			return fmt.Errorf("txn %d after revision %d", rev, prev)
		}
		ws.events.Add(1)
		if fresh {
			if err := ws.sampleDelay(rest[end:]); err != nil {
				return fmt.Errorf("%w in %.200q", err, l)
			}
		}
	} else if rev < prev {
		return fmt.Errorf("progress %d after revision %d", rev, prev)
	}
	ws.at[i].Store(rev)
	return nil
}

var timeField = []byte(`"time":"`)

// sampleDelay records the age of a txn line whose rest, after the
// revision, is rest.
func (ws *rawWatchers) sampleDelay(rest []byte) error {
	now := time.Now()
	i := bytes.Index(rest, timeField)
	if i < 0 {
		return errors.New("no time")
	}
	rest = rest[i+len(timeField):]
	j := bytes.IndexByte(rest, '"')
	if j < 0 {
		return errors.New("no time")
	}
	t, err := time.Parse(time.RFC3339Nano, string(rest[:j]))
	if err != nil {
		return err
	}
	ws.mu.Lock()
	ws.delays = append(ws.delays, now.Sub(t))
	ws.mu.Unlock()
	return nil
}

// delay returns the median and 99th percentile of the sampled delays.
func (ws *rawWatchers) delay() (p50, p99 time.Duration) {
	ws.mu.Lock()
	d := slices.Clone(ws.delays)
	ws.mu.Unlock()
	if len(d) == 0 {
		return 0, 0
	}
	slices.Sort(d)
	return d[len(d)/2], d[len(d)*99/100]
}

// caughtUp waits until every stream is at rev or beyond and returns the
// txn lines counted.
func (ws *rawWatchers) caughtUp(rev uint64, timeout time.Duration) (int64, error) {
	var serr error
	err := pollUntil(timeout, func() bool {
		ws.mu.Lock()
		serr = ws.err
		ws.mu.Unlock()
		if serr != nil {
			return true
		}
		for i := range ws.at {
			if ws.at[i].Load() < rev {
				return false
			}
		}
		return true
	})
	if serr != nil {
		return 0, serr
	}
	if err != nil {
		return 0, fmt.Errorf("watchers not at revision %d: %w", rev, err)
	}
	return ws.events.Load(), nil
}

func (ws *rawWatchers) close() {
	ws.cancel()
	ws.wg.Wait()
	ws.hc.CloseIdleConnections()
}

// watchBenchEnv, when set to "URL N", makes TestWatchBenchProcess the
// reader process of BenchmarkWritesWithWatchers/watchers=N,proc.
const watchBenchEnv = "CAIRN_WATCH_BENCH_PROCESS"

// watchProcess is a running reader process.
type watchProcess struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	out   *bufio.Scanner
}

func startWatchProcess(b *testing.B, url string, n int, nice bool) *watchProcess {
	b.Helper()
	args := []string{os.Args[0], "-test.run=^TestWatchBenchProcess$", "-test.count=1"}
	if nice {
		// nice(1) lowers every thread of the process; renicing it after
		// the start would miss the threads it already has.
		path, err := exec.LookPath("nice")
		if err != nil {
			b.Skipf("no nice(1): %v", err)
		}
		args = append([]string{path, "-n", "19"}, args...)
	}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%s %d", watchBenchEnv, url, n))
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	p := &watchProcess{cmd: cmd, stdin: stdin, out: bufio.NewScanner(stdout)}
	b.Cleanup(func() {
		// Closing stdin ends the process; kill it if it does not.
		_ = stdin.Close()
		done := make(chan struct{})
		go func() {
			_ = cmd.Wait()
			close(done)
		}()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	})
	if l, err := p.reply(30 * time.Second); err != nil || l != "ready" {
		b.Fatalf("watch process: %q, %v", l, err)
	}
	return p
}

// reply returns the process's next protocol line.
func (p *watchProcess) reply(timeout time.Duration) (string, error) {
	ch := make(chan string, 1)
	go func() {
		for p.out.Scan() {
			if l := p.out.Text(); strings.HasPrefix(l, "watchbench: ") {
				ch <- strings.TrimPrefix(l, "watchbench: ")
				return
			}
		}
		close(ch)
	}()
	select {
	case l, ok := <-ch:
		if !ok {
			return "", fmt.Errorf("watch process ended: %v", p.out.Err())
		}
		return l, nil
	case <-time.After(timeout):
		_ = p.cmd.Process.Kill() // ends the scanning goroutine
		return "", errors.New("watch process did not answer")
	}
}

func (p *watchProcess) caughtUp(rev uint64) (watchResult, error) {
	var r watchResult
	if _, err := fmt.Fprintf(p.stdin, "%d\n", rev); err != nil {
		return r, err
	}
	l, err := p.reply(90 * time.Second)
	if err != nil {
		return r, err
	}
	if _, err := fmt.Sscanf(l, "done %d %d %d %d", &r.events, &r.cpu, &r.delay50, &r.delay99); err != nil {
		return r, fmt.Errorf("watch process: %s", l)
	}
	return r, nil
}

// TestWatchBenchProcess is the reader process of
// BenchmarkWritesWithWatchers (skipped unless watchBenchEnv is set). It
// opens N raw watch streams, says "ready", then for each revision read
// on stdin waits until every stream is there and answers "done EVENTS
// CPU-NS DELAY-P50-NS DELAY-P99-NS" (CPU time since ready), until stdin
// closes.
func TestWatchBenchProcess(t *testing.T) {
	spec := os.Getenv(watchBenchEnv)
	if spec == "" {
		t.Skip("the reader process of BenchmarkWritesWithWatchers")
	}
	var url string
	var n int
	if _, err := fmt.Sscanf(spec, "%s %d", &url, &n); err != nil {
		t.Fatalf("%s=%q: %v", watchBenchEnv, spec, err)
	}
	ws, err := openRawWatchers(context.Background(), url, n)
	if err != nil {
		fmt.Printf("watchbench: error %v\n", err)
		t.Fatal(err)
	}
	defer ws.close()
	cpu0 := processCPU()
	fmt.Println("watchbench: ready")
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		rev, err := strconv.ParseUint(in.Text(), 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		events, err := ws.caughtUp(rev, 60*time.Second)
		if err != nil {
			fmt.Printf("watchbench: error %v\n", err)
			t.Fatal(err)
		}
		p50, p99 := ws.delay()
		fmt.Printf("watchbench: done %d %d %d %d\n", events, processCPU()-cpu0, p50, p99)
	}
}
