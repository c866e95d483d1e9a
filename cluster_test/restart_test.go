package cluster_test

import (
	"fmt"
	"net/http"
	"testing"
)

// TestRestart stops every member and starts them again on the same data:
// data, revisions and chain heads survive. Then one member misses 200
// writes while stopped and catches up after a restart.
func TestRestart(t *testing.T) {
	c := StartCluster(t, 3, nil)
	last := c.WriteKeys(t, "r/", 60)
	if r := c.Delete(t, 0, "r/0007", ""); r.Code != http.StatusOK {
		t.Fatalf("delete: %s", r)
	}
	before := c.WaitConverged(t)
	if before.Revision != last+1 {
		t.Fatalf("head at %d, want %d", before.Revision, last+1)
	}
	hist := c.Do(t, 0, http.MethodGet, "/v1/chain?consistency=stale&revision=30", nil, nil)
	if hist.Code != http.StatusOK {
		t.Fatalf("chain at 30: %s", hist)
	}

	for i := 0; i < c.N(); i++ {
		c.Stop(t, i)
	}
	for i := 0; i < c.N(); i++ {
		c.Restart(t, i)
	}
	c.Leader(t)
	for i := 0; i < c.N(); i++ {
		c.WaitReady(t, i)
		// Each member's own state, before any new write.
		if got := c.Chain(t, i, "consistency=stale"); got != before {
			t.Errorf("%s head after restart %+v, want %+v", c.Config(i).ID, got, before)
		}
		if r := c.Do(t, i, http.MethodGet, "/v1/chain?consistency=stale&revision=30", nil, nil); string(r.Body) != string(hist.Body) {
			t.Errorf("%s chain at 30 after restart: %s, want %s", c.Config(i).ID, r, hist)
		}
		for _, k := range []int{0, 31, 59} {
			r := c.Get(t, i, fmt.Sprintf("r/%04d", k), "consistency=stale")
			if r.Code != http.StatusOK || string(r.Body) != fmt.Sprintf("v%d", k) {
				t.Errorf("%s r/%04d after restart: %s", c.Config(i).ID, k, r)
			}
		}
		if r := c.Get(t, i, "r/0007", "consistency=stale"); r.Code != http.StatusNotFound {
			t.Errorf("%s deleted key after restart: %s", c.Config(i).ID, r)
		}
	}
	// Linearizable reads and new writes work, continuing the revisions.
	if r := c.Get(t, 1, "r/0042", ""); r.Code != http.StatusOK || string(r.Body) != "v42" {
		t.Fatalf("linearizable read after restart: %s", r)
	}
	r := c.Put(t, 2, "r/new", "x", "")
	if r.Code != http.StatusOK || r.Revision() != before.Revision+1 {
		t.Fatalf("write after restart: %s (revision %d, want %d)", r, r.Revision(), before.Revision+1)
	}

	// A follower misses 200 writes, then catches up.
	down := c.Followers(t)[0]
	c.Stop(t, down)
	last = c.WriteKeys(t, "missed/", 200)
	c.Restart(t, down)
	c.WaitReady(t, down)
	head := c.WaitConverged(t)
	if head.Revision != last {
		t.Errorf("head after catch-up at %d, want %d", head.Revision, last)
	}
	if got := c.Chain(t, down, "consistency=stale"); got != head {
		t.Errorf("restarted %s head %+v, want %+v", c.Config(down).ID, got, head)
	}
	for _, k := range []int{0, 199} {
		r := c.Get(t, down, fmt.Sprintf("missed/%04d", k), "consistency=stale")
		if r.Code != http.StatusOK || string(r.Body) != fmt.Sprintf("v%d", k) {
			t.Errorf("restarted %s missed/%04d: %s", c.Config(down).ID, k, r)
		}
	}
}
