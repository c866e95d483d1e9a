package cluster_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/cairn-db/cairn/api"
	"github.com/cairn-db/cairn/node"
)

// TestErrorCodes drives every error code through the HTTP API of a
// three-member cluster and checks each answer's status and JSON shape.
func TestErrorCodes(t *testing.T) {
	const maxValue = 1024
	c := StartCluster(t, 3, func(cfg *node.Config) {
		cfg.MaxValueSize = maxValue
		cfg.ReadTimeout = 500 * time.Millisecond
		cfg.ApplyTimeout = 2 * time.Second
	})
	leader := c.Leader(t)
	fol := c.Followers(t)
	w := c.Put(t, fol[0], "k", "v1", "")
	if w.Code != http.StatusOK {
		t.Fatalf("put: %s", w)
	}
	rev1 := w.Revision()

	t.Run("bad_request", func(t *testing.T) {
		txns := map[string]string{
			"malformed JSON": `{"operations":[{"op":"put","key":"a"`,
			"unknown field":  `{"operations":[{"op":"put","key":"a","value":"eA=="}],"bogus":1}`,
			"trailing data":  `{"operations":[{"op":"put","key":"a"}]} {}`,
			"empty txn":      `{"operations":[]}`,
			"unknown op":     `{"operations":[{"op":"upsert","key":"a"}]}`,
		}
		for name, body := range txns {
			for _, i := range []int{leader, fol[0]} {
				r := c.Txn(t, i, []byte(body))
				e := expectError(t, r, http.StatusBadRequest, api.CodeBadRequest)
				t.Logf("%s on %s: %s", name, c.Config(i).ID, e.Message)
			}
		}
		for _, path := range []string{
			"/v1/kv/k?bogus=1",              // unknown query parameter
			"/v1/kv/k?consistency=eventual", // unknown consistency
			"/v1/kv/k?revision=abc",
			"/v1/kv/k?min_revision=-1",
			"/v1/kv/k?consistency=stale&max_staleness=soon",
		} {
			for _, i := range []int{leader, fol[1]} {
				expectError(t, c.Do(t, i, http.MethodGet, path, nil, nil), http.StatusBadRequest, api.CodeBadRequest)
			}
		}
		expectError(t, c.Put(t, fol[0], "k", "x", "if_absent=maybe"), http.StatusBadRequest, api.CodeBadRequest)
		expectError(t, c.PostJSON(t, fol[0], "/v1/compact", map[string]any{}), http.StatusBadRequest, api.CodeBadRequest)
		// Nothing above was written.
		if got := c.Chain(t, leader, "").Revision; got != rev1 {
			t.Errorf("revision %d after bad requests, want %d", got, rev1)
		}
	})

	t.Run("not_found", func(t *testing.T) {
		for i := 0; i < c.N(); i++ {
			r := c.Get(t, i, "missing/key", "")
			expectError(t, r, http.StatusNotFound, api.CodeNotFound)
			if r.Revision() < rev1 {
				t.Errorf("not_found from %s reflects revision %d < %d", c.Config(i).ID, r.Revision(), rev1)
			}
		}
		expectError(t, c.Do(t, fol[0], http.MethodGet, "/v1/nope", nil, nil), http.StatusNotFound, api.CodeNotFound)
		expectError(t, c.Do(t, fol[0], http.MethodPatch, "/v1/kv/k", nil, nil), http.StatusMethodNotAllowed, api.CodeMethod)
	})

	t.Run("conflict", func(t *testing.T) {
		cur := c.Chain(t, leader, "").Revision
		r := c.Put(t, fol[1], "k", "v2", fmt.Sprintf("if_revision=%d", rev1+1000))
		e := expectError(t, r, http.StatusConflict, api.CodeConflict)
		if len(e.Conflicts) != 1 || e.Conflicts[0].Key != "k" || e.Conflicts[0].CurrentRevision != rev1 {
			t.Errorf("conflicts %+v, want k at %d", e.Conflicts, rev1)
		}
		r = c.Txn(t, fol[0], api.TxnRequest{
			Preconditions: []api.Precondition{
				{Key: "k", Type: api.CondAbsent},
				{Key: "nothing-here", Type: api.CondExists},
				{Key: "k", Type: api.CondValue, Value: []byte("v1")},
			},
			Operations: []api.Operation{{Op: api.OpPut, Key: "k", Value: []byte("v3")}},
		})
		e = expectError(t, r, http.StatusConflict, api.CodeConflict)
		got := map[string]uint64{}
		for _, cf := range e.Conflicts {
			got[cf.Key+"/"+cf.Type] = cf.CurrentRevision
		}
		if len(got) != 2 || got["k/"+api.CondAbsent] != rev1 {
			t.Errorf("conflicts %+v, want k absent (at %d) and nothing-here exists (at 0)", e.Conflicts, rev1)
		}
		if v, ok := got["nothing-here/"+api.CondExists]; !ok || v != 0 {
			t.Errorf("conflicts %+v, want nothing-here exists at 0", e.Conflicts)
		}
		if now := c.Chain(t, leader, "").Revision; now != cur {
			t.Errorf("a rejected transaction moved the revision from %d to %d", cur, now)
		}
	})

	t.Run("too_large", func(t *testing.T) {
		big := strings.Repeat("x", maxValue+1)
		expectError(t, c.Put(t, fol[0], "big", big, ""), http.StatusRequestEntityTooLarge, api.CodeTooLarge)
		expectError(t, c.Put(t, leader, "big", big, ""), http.StatusRequestEntityTooLarge, api.CodeTooLarge)
		r := c.Txn(t, fol[1], api.TxnRequest{Operations: []api.Operation{{Op: api.OpPut, Key: "big", Value: []byte(big)}}})
		expectError(t, r, http.StatusRequestEntityTooLarge, api.CodeTooLarge)
		expectError(t, c.Put(t, fol[0], strings.Repeat("k", 1025), "v", ""), http.StatusRequestEntityTooLarge, api.CodeTooLarge)
		if r := c.Put(t, fol[0], "fits", strings.Repeat("x", maxValue), ""); r.Code != http.StatusOK {
			t.Errorf("value at the limit: %s", r)
		}
	})

	t.Run("future_revision", func(t *testing.T) {
		cur := c.Chain(t, leader, "").Revision
		for _, i := range []int{leader, fol[0]} {
			r := c.Get(t, i, "k", fmt.Sprintf("revision=%d", cur+100))
			expectError(t, r, http.StatusBadRequest, api.CodeFutureRevision)
			r = c.Do(t, i, http.MethodGet, fmt.Sprintf("/v1/chain?revision=%d", cur+100), nil, nil)
			expectError(t, r, http.StatusBadRequest, api.CodeFutureRevision)
		}
	})

	t.Run("timeout", func(t *testing.T) {
		for _, i := range []int{leader, fol[0]} {
			start := time.Now()
			r := c.Get(t, i, "k", "min_revision=1000000000")
			expectError(t, r, http.StatusGatewayTimeout, api.CodeTimeout)
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("min_revision timeout on %s took %s (read timeout 500ms)", c.Config(i).ID, d)
			}
		}
	})

	t.Run("compacted", func(t *testing.T) {
		var last uint64
		for _, v := range []string{"c1", "c2", "c3"} {
			r := c.Put(t, fol[0], "k", v, "")
			if r.Code != http.StatusOK {
				t.Fatalf("put: %s", r)
			}
			last = r.Revision()
		}
		r := c.PostJSON(t, fol[1], "/v1/compact", api.CompactRequest{Revision: last})
		if r.Code != http.StatusOK {
			t.Fatalf("compact: %s", r)
		}
		// Compaction takes no revision, so min_revision cannot wait for it:
		// linearizable reads (forwarded) see it at once, stale reads on
		// each member eventually.
		for i := 0; i < c.N(); i++ {
			r := c.Get(t, i, "k", fmt.Sprintf("revision=%d", last-1))
			e := expectError(t, r, http.StatusGone, api.CodeCompacted)
			if e.OldestRevision != last {
				t.Errorf("compacted on %s: oldest_revision %d, want %d", c.Config(i).ID, e.OldestRevision, last)
			}
			waitFor(t, "compaction on "+c.Config(i).ID, waitConverge, func() error {
				r := c.Get(t, i, "k", fmt.Sprintf("revision=%d&consistency=stale", last-1))
				if r.Code != http.StatusGone {
					return fmt.Errorf("stale read before the compaction point: %s", r)
				}
				return nil
			})
			e = expectError(t, c.Get(t, i, "k", fmt.Sprintf("revision=%d&consistency=stale", last-1)), http.StatusGone, api.CodeCompacted)
			if e.OldestRevision != last {
				t.Errorf("stale compacted on %s: oldest_revision %d, want %d", c.Config(i).ID, e.OldestRevision, last)
			}
			if r := c.Get(t, i, "k", fmt.Sprintf("revision=%d&consistency=stale", last)); r.Code != http.StatusOK || string(r.Body) != "c3" {
				t.Errorf("read at the compaction point on %s: %s", c.Config(i).ID, r)
			}
		}
	})

	t.Run("not_leader", func(t *testing.T) {
		// A follower never forwards a request that was already forwarded.
		hdr := http.Header{api.HeaderForwarded: {"x"}}
		r := c.Do(t, fol[0], http.MethodPut, "/v1/kv/k", []byte("z"), hdr)
		e := expectError(t, r, http.StatusServiceUnavailable, api.CodeNotLeader)
		if e.Leader != c.Config(leader).ID || e.LeaderURL != c.URL(leader) {
			t.Errorf("not_leader names leader %q at %q, want %s at %s", e.Leader, e.LeaderURL, c.Config(leader).ID, c.URL(leader))
		}
		// A linearizable read is not forwarded any more (a follower asks
		// the leader for a read index and serves it), so one proxied by a
		// member of an older version is served wherever it lands.
		if r := c.Do(t, fol[1], http.MethodGet, "/v1/kv/k", nil, hdr); r.Code != http.StatusOK || string(r.Body) != "c3" {
			t.Errorf("forwarded read on a follower: %s", r)
		}
		// The leader serves such a request itself.
		if r := c.Do(t, leader, http.MethodGet, "/v1/kv/k", nil, hdr); r.Code != http.StatusOK {
			t.Errorf("forwarded read on the leader: %s", r)
		}
	})

	// Last: cut a member off from quorum by stopping the other two.
	t.Run("unavailable", func(t *testing.T) {
		alone := fol[0]
		c.Stop(t, leader)
		c.Stop(t, fol[1])
		// Until its heartbeat timeout fires, the member still names the
		// old leader (and forwarding to it fails); then it knows none.
		waitFor(t, "an isolated member to drop its leader", waitConverge, func() error {
			r := c.Do(t, alone, http.MethodGet, "/readyz", nil, nil)
			if r.Code != http.StatusServiceUnavailable || r.Header.Get(api.HeaderLeader) != "" {
				return fmt.Errorf("readyz on an isolated member: %s (leader %q)", r, r.Header.Get(api.HeaderLeader))
			}
			return nil
		})
		for _, req := range []struct{ method, path string }{
			{http.MethodGet, "/v1/kv/k"},
			{http.MethodPut, "/v1/kv/k"},
			{http.MethodGet, "/readyz"},
		} {
			r := c.Do(t, alone, req.method, req.path, []byte("v"), nil)
			expectError(t, r, http.StatusServiceUnavailable, api.CodeUnavailable)
		}
		// Stale reads still answer from local state; bounded ones refuse.
		if r := c.Get(t, alone, "k", "consistency=stale"); r.Code != http.StatusOK || string(r.Body) != "c3" {
			t.Errorf("stale read on an isolated member: %s", r)
		}
		r := c.Get(t, alone, "k", "consistency=stale&max_staleness=100ms")
		expectError(t, r, http.StatusServiceUnavailable, api.CodeUnavailable)
	})
}
