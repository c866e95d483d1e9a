package cluster_test

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/cairn-db/cairn/api"
	"github.com/cairn-db/cairn/internal/buildinfo"
	"github.com/cairn-db/cairn/internal/cluster"
	"github.com/cairn-db/cairn/internal/testnet"
	"github.com/cairn-db/cairn/node"
)

// clusterStatus is member idx's GET /v1/cluster/status.
func clusterStatus(t *testing.T, c *Cluster, idx int) (api.ClusterStatusResponse, error) {
	t.Helper()
	var cs api.ClusterStatusResponse
	r := c.Do(t, idx, http.MethodGet, "/v1/cluster/status", nil, nil)
	if r.Code != http.StatusOK {
		return cs, fmt.Errorf("GET /v1/cluster/status: %s", r)
	}
	decode(t, r, &cs)
	return cs, nil
}

// memberOf returns the entry of id in cs.
func memberOf(cs api.ClusterStatusResponse, id string) (api.MemberStatus, error) {
	for _, m := range cs.Members {
		if m.ID == id {
			return m, nil
		}
	}
	return api.MemberStatus{}, fmt.Errorf("%s is not in %+v", id, cs.Members)
}

// TestClusterStatus: GET /v1/cluster/status on three in-process members
// lists all three with their own status, one leader, the highest term,
// each member's watch streams and last scrub, the lag of a follower cut
// off from the others (and its health once it knows no leader), and a
// stopped member as unreachable with the error.
func TestClusterStatus(t *testing.T) {
	c := cluster.New(t, cluster.Options{Kind: cluster.InProc, Slots: 3, Links: true, Configure: func(cfg *node.Config) {
		cfg.CommitTimeout = 5 * time.Millisecond
		cfg.ApplyTimeout = 5 * time.Second
		cfg.ShutdownTimeout = 5 * time.Second
	}})
	c.Start(t, 3)
	leader := c.Leader(t)
	lid := c.Member(leader).ID()
	followers := c.Followers(t)
	c.WriteKeys(t, "s/", 5)
	head := c.WaitConverged(t)

	// All three, each ready with its own status, asked of a follower.
	asked := followers[0]
	waitFor(t, "every member ready and caught up in the cluster status", waitConverge, func() error {
		cs, err := clusterStatus(t, c, asked)
		if err != nil {
			return err
		}
		if cs.Node != c.Member(asked).ID() || cs.Leader != lid || len(cs.Members) != 3 {
			return fmt.Errorf("node %q leader %q, %d members", cs.Node, cs.Leader, len(cs.Members))
		}
		leaders := 0
		var term uint64
		for i, m := range cs.Members {
			if want := c.Member(i).ID(); m.ID != want {
				return fmt.Errorf("member %d is %q, want %q (sorted by id)", i, m.ID, want)
			}
			if m.Leader {
				leaders++
			}
			if !m.Reachable || m.Status == nil || m.Error != "" {
				return fmt.Errorf("%s: reachable %v, error %q", m.ID, m.Reachable, m.Error)
			}
			st := m.Status
			if st.ID != m.ID || st.Version != buildinfo.Get().Version || m.Role != api.RoleVoter || m.HTTPURL != c.URL(i) {
				return fmt.Errorf("%s: %+v with status %+v", m.ID, m, st)
			}
			if m.Health != api.HealthReady || st.Revision < head.Revision || m.Lag != 0 {
				return fmt.Errorf("%s: health %q, revision %d (want %d), lag %d", m.ID, m.Health, st.Revision, head.Revision, m.Lag)
			}
			term = max(term, st.Term)
		}
		if leaders != 1 || !cs.Members[leader].Leader {
			return fmt.Errorf("%d leaders, want %s", leaders, lid)
		}
		if cs.Term != term || term == 0 {
			return fmt.Errorf("term %d, members' highest %d", cs.Term, term)
		}
		return nil
	})

	// Watchers: a watch stream on one member is counted there only.
	wctx, wcancel := context.WithCancel(context.Background())
	defer wcancel()
	req, err := http.NewRequestWithContext(wctx, http.MethodGet, c.URL(asked)+"/v1/watch?prefix=s/", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.HTTP.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	watchers := func(want int) func() error {
		return func() error {
			cs, err := clusterStatus(t, c, leader)
			if err != nil {
				return err
			}
			for i, m := range cs.Members {
				w := 0
				if i == asked {
					w = want
				}
				if m.Status == nil || m.Status.Watchers != w {
					return fmt.Errorf("%s: status %+v, want %d watchers", m.ID, m.Status, w)
				}
			}
			return nil
		}
	}
	waitFor(t, "the watch stream counted", waitConverge, watchers(1))
	wcancel()
	waitFor(t, "the watch stream gone", waitConverge, watchers(0))

	// Last scrub: none since the start, then the one asked for.
	if cs, err := clusterStatus(t, c, leader); err != nil || cs.Members[asked].Status.LastScrub != nil {
		t.Fatalf("last scrub before any: %+v (%v)", cs.Members[asked].Status, err)
	}
	r := c.Do(t, asked, http.MethodPost, "/v1/maintenance/scrub", nil, nil)
	var scrub api.ScrubResponse
	decode(t, r, &scrub)
	cs, err := clusterStatus(t, c, leader)
	if err != nil {
		t.Fatal(err)
	}
	ls := cs.Members[asked].Status.LastScrub
	if !scrub.OK || ls == nil || !ls.OK || ls.Revision != scrub.Revision || ls.Error != "" || ls.Time.IsZero() {
		t.Fatalf("scrub %+v, last scrub %+v", scrub, ls)
	}

	// Lag: a follower cut off from the others falls behind the leader.
	cut := followers[1]
	var others []int
	for i := range 3 {
		if i != cut {
			others = append(others, i)
		}
	}
	c.Partition([]int{cut}, others, testnet.Blackhole)
	c.WriteKeys(t, "lag/", 10)
	waitFor(t, "the cut-off follower's lag and health", waitConverge, func() error {
		cs, err := clusterStatus(t, c, leader)
		if err != nil {
			return err
		}
		l, err := memberOf(cs, lid)
		if err != nil {
			return err
		}
		m, err := memberOf(cs, c.Member(cut).ID())
		if err != nil {
			return err
		}
		if l.Status == nil || m.Status == nil {
			return fmt.Errorf("leader %+v, follower %+v", l, m)
		}
		if m.Lag == 0 || m.Lag != l.Status.Revision-m.Status.Revision || l.Lag != 0 {
			return fmt.Errorf("lag %d, leader at %d, follower at %d", m.Lag, l.Status.Revision, m.Status.Revision)
		}
		if m.Health == api.HealthReady || m.Health == "" {
			return fmt.Errorf("health %q of a follower that hears from no leader", m.Health)
		}
		return nil
	})
	c.Heal()
	c.WaitConverged(t)

	// A stopped member is listed, unreachable, with the error.
	leader = c.Leader(t)
	var stopped int
	for i := range 3 {
		if i != leader {
			stopped = i
			break
		}
	}
	c.Stop(t, stopped)
	waitFor(t, "the stopped member unreachable", waitConverge, func() error {
		cs, err := clusterStatus(t, c, leader)
		if err != nil {
			return err
		}
		if len(cs.Members) != 3 {
			return fmt.Errorf("%d members", len(cs.Members))
		}
		m, err := memberOf(cs, c.Member(stopped).ID())
		if err != nil {
			return err
		}
		if m.Reachable || m.Status != nil || m.Error == "" || m.Health != api.HealthUnreachable || m.Lag != 0 {
			return fmt.Errorf("stopped member %+v", m)
		}
		for _, o := range cs.Members {
			if o.ID != m.ID && (!o.Reachable || o.Status == nil) {
				return fmt.Errorf("running member %+v", o)
			}
		}
		return nil
	})
}
