package cluster_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/cairn-db/cairn/api"
)

// TestWriteThroughFollowerReadEverywhere writes through a follower and
// reads the write back from every member at every consistency level.
func TestWriteThroughFollowerReadEverywhere(t *testing.T) {
	c := StartCluster(t, 3, nil)
	leader := c.Leader(t)
	leaderID := c.Config(leader).ID
	fol := c.Followers(t)

	// A leader change under load makes the first write ambiguous (503);
	// retry it with the same idempotency key, as clients do.
	w := c.Do(t, fol[0], http.MethodPut, "/v1/kv/greeting/hello", []byte("world"), http.Header{"Idempotency-Key": {"reads-1"}})
	for tries := 0; w.Code == http.StatusServiceUnavailable && tries < 50; tries++ {
		c.Leader(t)
		w = c.Do(t, fol[0], http.MethodPut, "/v1/kv/greeting/hello", []byte("world"), http.Header{"Idempotency-Key": {"reads-1"}})
	}
	if w.Code != http.StatusOK {
		t.Fatalf("put through follower %s: %s", c.Config(fol[0]).ID, w)
	}
	rev := w.Revision()
	if rev == 0 {
		t.Fatalf("write answer has no %s header: %v", api.HeaderRevision, w.Header)
	}
	var wr api.WriteResponse
	decode(t, w, &wr)
	if wr.Revision != rev || wr.Hash == "" {
		t.Fatalf("write answer %+v, header revision %d", wr, rev)
	}
	if got := w.Header.Get(api.HeaderLeader); got != leaderID {
		t.Errorf("write answer %s=%q, want %s", api.HeaderLeader, got, leaderID)
	}

	for i := 0; i < c.N(); i++ {
		id := c.Config(i).ID
		// Linearizable (the default): followers forward to the leader.
		r := c.Get(t, i, "greeting/hello", "")
		if r.Code != http.StatusOK || string(r.Body) != "world" {
			t.Fatalf("linearizable get from %s: %s", id, r)
		}
		if r.Revision() < rev {
			t.Errorf("linearizable get from %s reflects revision %d < %d", id, r.Revision(), rev)
		}
		if r.Header.Get(api.HeaderNode) == "" || r.Header.Get(api.HeaderLeader) != leaderID {
			t.Errorf("linearizable get from %s: headers %s=%q %s=%q", id, api.HeaderNode,
				r.Header.Get(api.HeaderNode), api.HeaderLeader, r.Header.Get(api.HeaderLeader))
		}

		// min_revision: read-your-writes on any member, answered locally
		// and at once.
		start := time.Now()
		r = c.Get(t, i, "greeting/hello", fmt.Sprintf("min_revision=%d", rev))
		if r.Code != http.StatusOK || string(r.Body) != "world" {
			t.Fatalf("min_revision get from %s: %s", id, r)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("min_revision get from %s took %s", id, d)
		}
		if got := r.Header.Get(api.HeaderNode); got != id {
			t.Errorf("min_revision get from %s answered by %q", id, got)
		}
		if r.Revision() < rev {
			t.Errorf("min_revision get from %s reflects revision %d < %d", id, r.Revision(), rev)
		}

		// Stale: local state, eventually current.
		waitFor(t, "stale read on "+id, waitConverge, func() error {
			r := c.Get(t, i, "greeting/hello", "consistency=stale")
			if r.Code != http.StatusOK || string(r.Body) != "world" {
				return fmt.Errorf("stale get: %s", r)
			}
			if got := r.Header.Get(api.HeaderNode); got != id {
				return fmt.Errorf("stale get answered by %q", got)
			}
			if got := r.Header.Get(api.HeaderLeader); got != leaderID {
				return fmt.Errorf("stale get: %s=%q, want %s", api.HeaderLeader, got, leaderID)
			}
			if r.Header.Get(api.HeaderLeaderURL) != c.URL(leader) {
				return fmt.Errorf("stale get: %s=%q, want %s", api.HeaderLeaderURL, r.Header.Get(api.HeaderLeaderURL), c.URL(leader))
			}
			return nil
		})

		// JSON form carries the key's revisions.
		r = c.Get(t, i, "greeting/hello", fmt.Sprintf("min_revision=%d&format=json", rev))
		var kv api.KeyValueResponse
		decode(t, r, &kv)
		if kv.KV.Key != "greeting/hello" || string(kv.KV.Value) != "world" || kv.KV.ModRevision != rev {
			t.Errorf("json get from %s: %+v", id, kv)
		}
	}

	// A delete through the other follower, a transaction through the
	// leader, and every member agrees.
	if r := c.Delete(t, fol[1], "greeting/hello", ""); r.Code != http.StatusOK {
		t.Fatalf("delete through follower: %s", r)
	}
	tr := c.Txn(t, leader, api.TxnRequest{
		Preconditions: []api.Precondition{{Key: "greeting/hello", Type: api.CondAbsent}},
		Operations: []api.Operation{
			{Op: api.OpPut, Key: "greeting/a", Value: []byte("1")},
			{Op: api.OpPut, Key: "greeting/b", Value: []byte("2")},
		},
		User: "test", Description: "two keys",
	})
	if tr.Code != http.StatusOK {
		t.Fatalf("txn: %s", tr)
	}
	last := tr.Revision()
	for i := 0; i < c.N(); i++ {
		if r := c.Get(t, i, "greeting/hello", fmt.Sprintf("min_revision=%d", last)); r.Code != http.StatusNotFound {
			t.Errorf("deleted key on %s: %s", c.Config(i).ID, r)
		}
		r := c.Do(t, i, http.MethodGet, fmt.Sprintf("/v1/kv?prefix=greeting/&min_revision=%d", last), nil, nil)
		var l api.ListResponse
		decode(t, r, &l)
		var keys []string
		for _, kv := range l.KVs {
			keys = append(keys, kv.Key+"="+string(kv.Value))
		}
		if got := strings.Join(keys, ","); got != "greeting/a=1,greeting/b=2" {
			t.Errorf("list on %s: %s", c.Config(i).ID, got)
		}
	}
	head := c.WaitConverged(t)
	if head.Revision != last {
		t.Errorf("converged head at revision %d, want %d", head.Revision, last)
	}
}
