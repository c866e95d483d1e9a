package cluster_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/cairn-db/cairn/api"
	"github.com/cairn-db/cairn/client"
	"github.com/cairn-db/cairn/internal/cluster"
	"github.com/cairn-db/cairn/internal/testnet"
	"github.com/cairn-db/cairn/node"
)

// TestMirrorFreshSourceHead: a standby streaming from a source follower
// that is cut off from its leader's raft hears that follower's head, not
// the source's: its plain status says lag 0 while the source leader has
// committed more. The fresh status (source_head=fresh) asks the source
// cluster for its committed head with a linearizable read, which the cut
// off follower cannot serve, and so answers the leader's head and the
// true lag; the client's wait for catching up (mirror status
// --caught-up) does not return while the standby lacks the leader's
// writes, and does once the partition heals and they arrive.
func TestMirrorFreshSourceHead(t *testing.T) {
	src := cluster.New(t, cluster.Options{Kind: cluster.InProc, Slots: 3, Links: true, Configure: func(cfg *node.Config) {
		cfg.CommitTimeout = 5 * time.Millisecond
		cfg.ApplyTimeout = 5 * time.Second
		cfg.ShutdownTimeout = 5 * time.Second
	}})
	src.Start(t, 3)
	leader := src.Leader(t)
	followers := src.Followers(t)
	cut, other := followers[0], followers[1]
	for i := range 5 {
		if r := src.Put(t, leader, fmt.Sprintf("a/%d", i), "v", ""); r.Code != http.StatusOK {
			t.Fatalf("put: %s", r)
		}
	}
	head := src.WaitConverged(t).Revision
	standby := startStandby(t, 1, src)

	// The follower hears nothing of its leader from now on.
	src.Partition([]int{cut}, []int{leader, other}, testnet.Drop)
	// Its URL first: the standby streams from it.
	startMirror(t, standby, []string{src.URL(cut), src.URL(leader), src.URL(other)})
	waitFor(t, "the standby streaming from the cut off follower, at its head", waitConverge, func() error {
		st := mirrorStatus(t, standby, 0)
		if st.Source != src.URL(cut) || st.SourceRevision != head {
			return fmt.Errorf("streaming from %q at source revision %d, want %q at %d (%s)", st.Source, st.SourceRevision, src.URL(cut), head, st.LastError)
		}
		return nil
	})

	// Writes on the leader, committed with the other follower.
	var newHead uint64
	for i := range 7 {
		r := src.Put(t, leader, fmt.Sprintf("b/%d", i), "v", "")
		if r.Code != http.StatusOK {
			t.Fatalf("put on the leader: %s", r)
		}
		newHead = r.Revision()
	}
	if newHead != head+7 {
		t.Fatalf("leader head %d, want %d", newHead, head+7)
	}

	// The plain status knows only what the cut off follower streams.
	if st := mirrorStatus(t, standby, 0); st.Source != src.URL(cut) || st.SourceHead != head || st.LagRevisions != 0 || st.SourceHeadFresh {
		t.Fatalf("plain status %+v: want source head %d from %s, lag 0", st, head, src.URL(cut))
	}
	// The fresh status asks the source cluster: the leader's head.
	r := standby.Do(t, 0, http.MethodGet, "/v1/mirror/status?source_head=fresh", nil, nil)
	if r.Code != http.StatusOK {
		t.Fatalf("fresh status: %s", r)
	}
	var st api.MirrorStatus
	decode(t, r, &st)
	if !st.SourceHeadFresh || st.SourceHead != newHead || st.SourceRevision != head || st.LagRevisions != newHead-head {
		t.Fatalf("fresh status %+v: want source head %d, lag %d", st, newHead, newHead-head)
	}

	cfg := client.DefaultConfig()
	cfg.Endpoints = []string{standby.URL(0)}
	cl, err := client.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	// While the follower stays cut off, the standby cannot catch up: the
	// wait ends with its deadline, never with success.
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	got, err := cl.MirrorCaughtUp(ctx, 100*time.Millisecond)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("caught up while the source leader is ahead: %+v, %v", got, err)
	}

	src.Heal()
	ctx, cancel = context.WithTimeout(context.Background(), waitConverge)
	got, err = cl.MirrorCaughtUp(ctx, 100*time.Millisecond)
	cancel()
	if err != nil {
		t.Fatalf("caught up after healing: %v", err)
	}
	if !got.SourceHeadFresh || got.SourceRevision < newHead || got.LagRevisions != 0 {
		t.Fatalf("caught up with %+v, want at least source revision %d", got, newHead)
	}
	if h := standby.Chain(t, 0, "consistency=stale"); h.Revision < newHead {
		t.Fatalf("the standby's head %d after caught up, the leader's writes end at %d", h.Revision, newHead)
	}
}
