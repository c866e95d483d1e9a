package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cairn-db/cairn/api"
	"github.com/cairn-db/cairn/fsm"
)

// startPair starts a two-member cluster and returns its leader and
// follower.
func startPair(t *testing.T) (leader, follower *Node) {
	t.Helper()
	c1 := testConfig(t, "n1")
	c1.Bootstrap = true
	n1 := startNode(t, c1)
	waitFor(t, "n1 ready", 10*time.Second, n1.Ready)
	c2 := testConfig(t, "n2")
	c2.Join = []string{n1.HTTPURL()}
	n2 := startNode(t, c2)
	waitFor(t, "n2 ready", 15*time.Second, n2.Ready)
	waitFor(t, "a leader known to both", 10*time.Second, func() error {
		id1, _ := n1.LeaderInfo()
		id2, u2 := n2.LeaderInfo()
		if id1 == "" || id1 != id2 || u2 == "" {
			return fmt.Errorf("leaders %q and %q", id1, id2)
		}
		return nil
	})
	if n2.IsLeader() {
		return n2, n1
	}
	return n1, n2
}

type httpAnswer struct {
	name   string
	status int
	rev    string // the revision header
	body   string
}

// TestForwardedWritesShareRequest queues client writes at a follower while
// its forwarding slot is taken, and checks that they reach the leader in
// one request yet each client gets the answer it would have had from the
// leader: its own revision, a conflict, an idempotent
// replay.
func TestForwardedWritesShareRequest(t *testing.T) {
	leader, f := startPair(t)
	st0 := f.fwd.Stats()
	release := f.fwd.Hold()
	defer release()

	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		outs = map[string]httpAnswer{}
	)
	send := func(name, method, path, body, idem string) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, err := http.NewRequest(method, f.HTTPURL()+path, strings.NewReader(body))
			if err != nil {
				t.Error(err)
				return
			}
			if idem != "" {
				req.Header.Set(api.HeaderIdempotencyKey, idem)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Errorf("%s: %v", name, err)
				return
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			mu.Lock()
			outs[name] = httpAnswer{name, resp.StatusCode, resp.Header.Get(api.HeaderRevision), string(b)}
			mu.Unlock()
		}()
	}
	const puts = 6
	for i := range puts {
		send(fmt.Sprintf("put%d", i), "PUT", fmt.Sprintf("/v1/kv/k%d", i), "v", fmt.Sprintf("key-%d", i))
	}
	send("conflict", "PUT", "/v1/kv/k0?if_revision=999999", "never", "")
	send("idem-a", "PUT", "/v1/kv/idem", "once", "same-key")
	send("idem-b", "PUT", "/v1/kv/idem", "once", "same-key")
	const total = puts + 3
	waitFor(t, "writes queued at the follower", 10*time.Second, func() error {
		// The forwarder holds the first while it waits for the slot.
		if q := f.fwd.Queued(); q != total-1 {
			return fmt.Errorf("%d queued", q)
		}
		return nil
	})
	release()
	wg.Wait()

	if b, n := f.fwd.Stats().Batches-st0.Batches, f.fwd.Stats().Items-st0.Items; b != 1 || n != total {
		t.Fatalf("%d writes in %d requests to the leader, want %d in 1", n, b, total)
	}
	revs := map[uint64]string{}
	for i := range puts {
		a := outs[fmt.Sprintf("put%d", i)]
		var wr api.WriteResponse
		if a.status != 200 || json.Unmarshal([]byte(a.body), &wr) != nil || wr.Revision == 0 {
			t.Fatalf("%s: %d %s", a.name, a.status, a.body)
		}
		if a.rev != strconv.FormatUint(wr.Revision, 10) {
			t.Fatalf("%s: revision header %q, body revision %d", a.name, a.rev, wr.Revision)
		}
		if other, dup := revs[wr.Revision]; dup {
			t.Fatalf("%s and %s both at revision %d", a.name, other, wr.Revision)
		}
		revs[wr.Revision] = a.name
	}
	if a := outs["conflict"]; a.status != 409 || !strings.Contains(a.body, `"code":"conflict"`) || !strings.Contains(a.body, `"key":"k0"`) {
		t.Fatalf("conflict: %d %s", a.status, a.body)
	}
	var ia, ib api.WriteResponse
	a, b := outs["idem-a"], outs["idem-b"]
	if a.status != 200 || b.status != 200 || json.Unmarshal([]byte(a.body), &ia) != nil || json.Unmarshal([]byte(b.body), &ib) != nil ||
		ia.Revision != ib.Revision || ia.Replayed == ib.Replayed {
		t.Fatalf("same idempotency key twice: %d %s / %d %s: want one revision, one replayed", a.status, a.body, b.status, b.body)
	}
	// The writes are on the leader, each once.
	vs, _, err := leader.FSM().History("idem", fsm.HistoryOptions{})
	if err != nil || len(vs) != 1 {
		t.Fatalf("history of idem on the leader: %+v %v", vs, err)
	}
	for i := range puts {
		kv, _, err := leader.FSM().Get(fmt.Sprintf("k%d", i), 0)
		if err != nil || string(kv.Value) != "v" {
			t.Fatalf("k%d on the leader: %+v %v", i, kv, err)
		}
	}
}

// TestForwardWriteEndsOnClose checks that a write waiting at a follower to
// be forwarded ends when the node closes, instead of waiting for its
// client's deadline.
func TestForwardWriteEndsOnClose(t *testing.T) {
	_, f := startPair(t)
	f.fwd.Hold() // nothing is sent: writes stay queued
	done := make(chan error, 2)
	for i := range 2 {
		go func() {
			_, err := f.Write(context.Background(), fsm.Txn{Ops: []fsm.Op{putOp(fmt.Sprintf("k%d", i), "v")}})
			done <- err
		}()
	}
	waitFor(t, "writes queued", 10*time.Second, func() error {
		if q := f.fwd.Queued(); q != 1 { // the forwarder holds the other
			return fmt.Errorf("%d queued", q)
		}
		return nil
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := f.Close(ctx); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		select {
		case err := <-done:
			if !errors.Is(err, ErrShuttingDown) {
				t.Fatalf("queued write after close: %v, want ErrShuttingDown", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("a queued write still waits 10 s after the node closed")
		}
	}
}
