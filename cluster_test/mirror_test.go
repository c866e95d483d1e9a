package cluster_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cairn-db/cairn/api"
	"github.com/cairn-db/cairn/internal/testnet"
	"github.com/cairn-db/cairn/node"
)

// Mirrors between two in-process clusters (issue 18): a standby follows
// its source through the source's proxies (the link the test cuts), and
// after every disturbance its chain hash and state hash at the source's
// head equal the source's.

// mirrorConfig makes a standby report its checkpoint often.
func mirrorConfig(cfg *node.Config) { cfg.MirrorReportInterval = 200 * time.Millisecond }

// startStandby starts an n-member standby cluster after the clusters
// above it. The harness checks for leaked goroutines as each cluster
// shuts down, the last started first, while the others still run: the
// test's keep-alive connections to the others, made after this one
// started, are closed before it shuts down, so that only what is left of
// this one counts.
func startStandby(t *testing.T, n int, above ...*Cluster) *Cluster {
	t.Helper()
	c := StartCluster(t, n, mirrorConfig)
	t.Cleanup(func() {
		for _, a := range above {
			a.HTTP.CloseIdleConnections()
		}
	})
	return c
}

// sourceLink puts a proxy in front of each member of src's HTTP listener
// and returns the proxies and their URLs: the link between the clusters.
func sourceLink(t *testing.T, src *Cluster) ([]*testnet.Proxy, []string) {
	t.Helper()
	var proxies []*testnet.Proxy
	var urls []string
	for i := range src.N() {
		p, err := testnet.NewProxy(strings.TrimPrefix(src.URL(i), "http://"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(p.Close)
		proxies = append(proxies, p)
		urls = append(urls, "http://"+p.Addr())
	}
	return proxies, urls
}

// startMirror starts standby's mirror of the sources, through any member.
func startMirror(t *testing.T, standby *Cluster, sources []string, include ...string) {
	t.Helper()
	r := standby.PostJSON(t, standby.Leader(t), "/v1/mirror/start", api.MirrorStartRequest{Sources: sources, Include: include})
	if r.Code != http.StatusOK {
		t.Fatalf("mirror start: %s", r)
	}
}

// mirrorStatus reads member idx's GET /v1/mirror/status.
func mirrorStatus(t *testing.T, c *Cluster, idx int) api.MirrorStatus {
	t.Helper()
	r := c.Do(t, idx, http.MethodGet, "/v1/mirror/status", nil, nil)
	if r.Code != http.StatusOK {
		t.Fatalf("mirror status: %s", r)
	}
	var st api.MirrorStatus
	decode(t, r, &st)
	return st
}

// waitMirrored waits until every running member of standby has the
// source's head with the same chain hash and state hash there.
func waitMirrored(t *testing.T, src, standby *Cluster) api.ChainResponse {
	t.Helper()
	head := src.WaitConverged(t)
	want, err := src.HTTP.Chain(src.URL(src.Running()[0]), fmt.Sprintf("revision=%d&state=true&consistency=stale", head.Revision))
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "standby to mirror the source's head", waitConverge, func() error {
		for _, i := range standby.Running() {
			got, err := standby.HTTP.Chain(standby.URL(i), fmt.Sprintf("revision=%d&state=true&consistency=stale", head.Revision))
			if err != nil {
				return fmt.Errorf("standby member %d: %w", i, err)
			}
			if got.Hash != want.Hash || got.StateHash != want.StateHash {
				return fmt.Errorf("standby member %d at %d: chain %s state %s; source chain %s state %s",
					i, head.Revision, got.Hash, got.StateHash, want.Hash, want.StateHash)
			}
		}
		return nil
	})
	// No more than the source's head: no duplicate, nothing of its own.
	for _, i := range standby.Running() {
		if ch := standby.Chain(t, i, "consistency=stale"); ch.Revision != head.Revision {
			t.Fatalf("standby member %d has head %d, the source %d", i, ch.Revision, head.Revision)
		}
	}
	return want
}

// writer writes keys to src until stopped, counting acknowledged writes;
// failures (a leader being killed) are retried by the next key.
type writer struct {
	stop  chan struct{}
	done  sync.WaitGroup
	acked atomic.Int64
}

func startWriter(src *Cluster, prefix string) *writer {
	w := &writer{stop: make(chan struct{})}
	w.done.Add(1)
	go func() {
		defer w.done.Done()
		for k := 0; ; k++ {
			select {
			case <-w.stop:
				return
			default:
			}
			run := src.Running()
			if len(run) == 0 {
				continue
			}
			url := fmt.Sprintf("%s/v1/kv/%s%06d", src.URL(run[k%len(run)]), prefix, k)
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			r, err := src.HTTP.Do(ctx, http.MethodPut, url, []byte("v"), nil)
			cancel()
			if err == nil && r.Code == http.StatusOK {
				w.acked.Add(1)
			}
		}
	}()
	return w
}

func (w *writer) halt() int64 {
	close(w.stop)
	w.done.Wait()
	return w.acked.Load()
}

// TestMirrorThreeAndThree: a 3-member standby of a 3-member source,
// with writes going on: it follows the backlog and new writes; its
// leader and the source's leader are killed mid-stream, and the link is
// cut for a while; after each, the standby's chain and state hash at the
// source's head equal the source's. Every standby member refuses client
// writes with read_only, writing nothing.
func TestMirrorThreeAndThree(t *testing.T) {
	src := StartCluster(t, 3, nil)
	standby := startStandby(t, 3, src)
	proxies, urls := sourceLink(t, src)
	src.WriteKeys(t, "backlog/", 300)
	startMirror(t, standby, urls)
	waitMirrored(t, src, standby)

	w := startWriter(src, "live/")
	waitFor(t, "the standby to apply live writes", waitConverge, func() error {
		st := mirrorStatus(t, standby, standby.Leader(t))
		if st.SourceRevision < 400 {
			return fmt.Errorf("source revision %d", st.SourceRevision)
		}
		return nil
	})

	// Kill the standby's leader mid-stream; a new leader resumes.
	sl := standby.Leader(t)
	standby.Kill(t, sl)
	at := mirrorStatus(t, standby, standby.Leader(t)).SourceRevision
	waitFor(t, "the new standby leader to go on", waitConverge, func() error {
		if st := mirrorStatus(t, standby, standby.Leader(t)); st.SourceRevision <= at+50 {
			return fmt.Errorf("source revision %d (was %d at the kill); last error %q", st.SourceRevision, at, st.LastError)
		}
		return nil
	})
	standby.Restart(t, sl)

	// Kill the source's leader mid-stream.
	ol := src.Leader(t)
	src.Kill(t, ol)
	src.Leader(t)
	at = mirrorStatus(t, standby, standby.Leader(t)).SourceRevision
	waitFor(t, "the standby to go on after the source's leader died", waitConverge, func() error {
		if st := mirrorStatus(t, standby, standby.Leader(t)); st.SourceRevision <= at+50 {
			return fmt.Errorf("source revision %d (was %d); last error %q", st.SourceRevision, at, st.LastError)
		}
		return nil
	})
	src.Restart(t, ol)

	// Cut the link while the source goes on writing, then heal it.
	for _, p := range proxies {
		p.Down()
	}
	waitFor(t, "the standby to see the link down", waitConverge, func() error {
		if st := mirrorStatus(t, standby, standby.Leader(t)); st.LastError == "" {
			return fmt.Errorf("no stream error yet (source %q)", st.Source)
		}
		return nil
	})
	cutAt := src.WaitConverged(t).Revision
	waitFor(t, "the source to write while the link is down", waitConverge, func() error {
		if h := src.WaitConverged(t).Revision; h < cutAt+100 {
			return fmt.Errorf("source head %d", h)
		}
		return nil
	})
	for _, p := range proxies {
		p.Up()
	}
	acked := w.halt()
	if acked == 0 {
		t.Fatal("no write acknowledged")
	}
	waitMirrored(t, src, standby)
	st := mirrorStatus(t, standby, standby.Leader(t))
	if st.State != api.MirrorFollowing || st.LagRevisions != 0 {
		t.Fatalf("standby status after healing: %+v", st)
	}

	// read_only on every member, nothing written.
	head := standby.Chain(t, 0, "consistency=stale").Revision
	for _, i := range standby.Running() {
		r := standby.Put(t, i, "mine", "x", "")
		expectError(t, r, http.StatusConflict, api.CodeReadOnly)
	}
	for _, i := range standby.Running() {
		if h := standby.Chain(t, i, "consistency=stale").Revision; h != head {
			t.Fatalf("standby member %d moved from %d to %d after refused writes", i, head, h)
		}
	}
	var status api.StatusResponse
	decode(t, standby.Do(t, 0, http.MethodGet, "/v1/status", nil, nil), &status)
	if status.Mirror == nil || status.Mirror.State != api.MirrorFollowing {
		t.Fatalf("GET /v1/status mirror: %+v", status.Mirror)
	}
}

// TestMirrorCascadePromote: a one-member standby of a 3-member source,
// and a one-member standby of that standby (a cascade): both follow; a
// loop (the source mirroring the last one) is refused; the middle one is
// promoted (a record in its chain, then writable) and the last one
// follows it on through the promotion.
func TestMirrorCascadePromote(t *testing.T) {
	src := StartCluster(t, 3, nil)
	mid := startStandby(t, 1, src)
	last := startStandby(t, 1, src, mid)
	src.WriteKeys(t, "a/", 100)
	startMirror(t, mid, src.URLs())
	startMirror(t, last, mid.URLs())
	waitMirrored(t, src, mid)
	waitMirrored(t, src, last)
	st := mirrorStatus(t, last, 0)
	var midStatus, srcStatus api.StatusResponse
	decode(t, mid.Do(t, 0, http.MethodGet, "/v1/status", nil, nil), &midStatus)
	decode(t, src.Do(t, 0, http.MethodGet, "/v1/status", nil, nil), &srcStatus)
	if st.SourceClusterID != midStatus.ClusterID || len(st.Upstream) != 1 || st.Upstream[0] != srcStatus.ClusterID {
		t.Fatalf("cascade status %+v; mid %s, source %s", st, midStatus.ClusterID, srcStatus.ClusterID)
	}
	r := src.PostJSON(t, src.Leader(t), "/v1/mirror/start", api.MirrorStartRequest{Sources: last.URLs()})
	expectError(t, r, http.StatusConflict, api.CodeMirrorState)

	expectError(t, mid.Put(t, 0, "x", "y", ""), http.StatusConflict, api.CodeReadOnly)
	r = mid.PostJSON(t, 0, "/v1/mirror/promote", nil)
	if r.Code != http.StatusOK {
		t.Fatalf("promote: %s", r)
	}
	var pst api.MirrorStatus
	decode(t, r, &pst)
	if pst.State != api.MirrorPrimary || pst.PromotedFrom != srcStatus.ClusterID {
		t.Fatalf("promoted: %+v", pst)
	}
	if r := mid.Put(t, 0, "after", "promotion", ""); r.Code != http.StatusOK {
		t.Fatalf("write after promotion: %s", r)
	}
	waitMirrored(t, mid, last)
}

// TestMirrorFiltered: a filtered standby keeps only the included keys,
// each record naming its source record, which it matches.
func TestMirrorFiltered(t *testing.T) {
	src := StartCluster(t, 1, nil)
	standby := startStandby(t, 1, src)
	src.WriteKeys(t, "in/", 40)
	src.WriteKeys(t, "out/", 40)
	startMirror(t, standby, src.URLs(), "in/")
	srcHead := src.WaitConverged(t).Revision
	waitFor(t, "the filtered standby to reach the source's head", waitConverge, func() error {
		if st := mirrorStatus(t, standby, 0); st.SourceRevision != srcHead {
			return fmt.Errorf("source revision %d, want %d (%s)", st.SourceRevision, srcHead, st.LastError)
		}
		return nil
	})
	srcLog := src.Log(t, 0)
	local := standby.Log(t, 0)
	if len(local) != 40 {
		t.Fatalf("filtered standby has %d records, want 40", len(local))
	}
	for _, rec := range local {
		rev := rec.Meta["cairn.source_revision"]
		var n uint64
		fmt.Sscan(rev, &n)
		if n == 0 || n > uint64(len(srcLog)) {
			t.Fatalf("record %d names source revision %q", rec.Revision, rev)
		}
		s := srcLog[n-1]
		if s.Hash != rec.Meta["cairn.source_hash"] || len(rec.Operations) != 1 || rec.Operations[0].Key != s.Operations[0].Key ||
			!strings.HasPrefix(rec.Operations[0].Key, "in/") {
			t.Fatalf("record %d does not match source record %d", rec.Revision, n)
		}
	}
	r := standby.PostJSON(t, 0, "/v1/mirror/promote", nil)
	expectError(t, r, http.StatusConflict, api.CodeMirrorState)
}
