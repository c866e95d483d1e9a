package cluster_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/cairn-db/cairn/api"
	"github.com/cairn-db/cairn/node"
)

// TestQuotaThroughFollower: every member has a 3 MiB quota. Writes sent
// to a follower are refused with 507 no_space once the stores are full
// (by the follower itself or, forwarded, by the leader: the client cannot
// tell), the refusing member raises no_space, deletes and compaction sent
// to the follower are taken, and writes resume without a restart.
func TestQuotaThroughFollower(t *testing.T) {
	c := StartCluster(t, 3, func(cfg *node.Config) { cfg.QuotaBackendBytes, cfg.MinFreeBytes = 3<<20, 0 })
	f := c.Followers(t)[0]
	value := strings.Repeat("v", 48<<10)
	var refused Resp
	for i := 0; ; i++ {
		if i == 1000 {
			t.Fatal("1000 puts of 48 KiB taken under a 3 MiB quota")
		}
		r := putSettled(t, c, f, fmt.Sprintf("fill/%04d", i), value)
		if r.Code == 507 {
			refused = r
			break
		}
		if r.Code != 200 {
			t.Fatalf("put %d: %s", i, r)
		}
	}
	e := expectError(t, refused, 507, api.CodeNoSpace)
	if !strings.Contains(e.Message, "quota") {
		t.Fatalf("refusal does not name the quota: %s", e.Message)
	}
	// A refusal on the estimate alone, just before the quota, is lifted
	// by the next reading (the monitor finds room for a smaller write):
	// go on putting small values, which fit until the stores really
	// reach the quota, until the refusing member's alarm stays up.
	small := strings.Repeat("s", 4<<10)
	more := 0
	waitFor(t, "a member with the no_space alarm", 30*time.Second, func() error {
		more++
		if r := c.Put(t, f, fmt.Sprintf("fill/more/%04d", more), small, ""); r.Code != 507 && r.Code != 200 {
			return fmt.Errorf("put: %s", r)
		}
		for _, i := range c.Running() {
			st, err := c.Status(i)
			if err != nil {
				return err
			}
			for _, a := range st.Alarms {
				if a.Type == api.AlarmNoSpace && strings.Contains(a.Message, "quota") && st.StoreInUseBytes >= 3<<20 {
					return nil
				}
			}
		}
		return fmt.Errorf("no member at its quota with no_space raised")
	})
	// Reads on the follower go on.
	if r := c.Get(t, f, "fill/0000", ""); r.Code != 200 || len(r.Body) != len(value) {
		t.Fatalf("read while refusing: %s", r)
	}
	del := c.Delete(t, f, "fill/", "prefix=true")
	if del.Code != 200 {
		t.Fatalf("delete through the follower while refusing: %s", del)
	}
	if r := c.PostJSON(t, f, "/v1/compact", api.CompactRequest{Revision: del.Revision()}); r.Code != 200 {
		t.Fatalf("compact through the follower while refusing: %s", r)
	}
	waitFor(t, "a put through the follower taken again", 30*time.Second, func() error {
		if r := c.Put(t, f, "again", "v", ""); r.Code != 200 {
			return fmt.Errorf("%s", r)
		}
		return nil
	})
	waitFor(t, "no_space cleared on every member", 10*time.Second, func() error {
		for _, i := range c.Running() {
			st, err := c.Status(i)
			if err != nil {
				return err
			}
			for _, a := range st.Alarms {
				if a.Type == api.AlarmNoSpace {
					return fmt.Errorf("%s: %s", a.Member, a.Message)
				}
			}
		}
		return nil
	})
}

// TestQuotaOfOneMember: the member a client calls checks its own store:
// a follower whose quota is smaller than the others' refuses the writes
// sent to it once its store (filled by replication) reaches it, while
// the leader takes the same writes.
func TestQuotaOfOneMember(t *testing.T) {
	c := StartCluster(t, 3, func(cfg *node.Config) {
		cfg.MinFreeBytes = 0
		if cfg.ID == "n3" {
			cfg.QuotaBackendBytes = 2 << 20
		}
	})
	small := c.Index("n3")
	if c.Leader(t) == small {
		if r := c.PostJSON(t, small, "/v1/cluster/leadership", api.TransferRequest{ID: "n1"}); r.Code != 200 {
			t.Fatalf("transfer: %s", r)
		}
	}
	leader := c.Leader(t)
	if leader == small {
		t.Fatal("n3 is still the leader")
	}
	value := strings.Repeat("v", 64<<10)
	for i := 0; i < 40; i++ { // 2.5 MiB of values, stored twice
		if r := putSettled(t, c, leader, fmt.Sprintf("fill/%04d", i), value); r.Code != 200 {
			t.Fatalf("put %d through the leader: %s", i, r)
		}
	}
	c.WaitConverged(t)
	waitFor(t, "n3 refuses writes sent to it", 10*time.Second, func() error {
		r := c.Put(t, small, "via-n3", "v", "")
		if r.Code != 507 || !strings.Contains(string(r.Body), "member n3") {
			return fmt.Errorf("%s", r)
		}
		return nil
	})
	if r := putSettled(t, c, leader, "via-leader", "v"); r.Code != 200 {
		t.Fatalf("put through the leader: %s", r)
	}
	// n3 still applies what the others commit.
	c.WaitConverged(t)
	if r := c.Get(t, small, "via-leader", "consistency=stale"); r.Code != 200 {
		t.Fatalf("n3 read: %s", r)
	}
}

// putSettled puts key through member idx until the answer is not one a
// leader change causes on a loaded machine (not_leader, unavailable,
// timeout), and returns it.
func putSettled(t *testing.T, c *Cluster, idx int, key, value string) Resp {
	t.Helper()
	var r Resp
	waitFor(t, "put "+key+" answered", 30*time.Second, func() error {
		r = c.Put(t, idx, key, value, "")
		if r.Code == 503 || r.Code == 504 {
			return fmt.Errorf("%s", r)
		}
		return nil
	})
	return r
}
