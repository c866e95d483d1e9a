package cluster_test

import (
	"errors"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/cairn-db/cairn/api"
	"github.com/cairn-db/cairn/node"
)

// member returns the entry for id in a member list.
func findMember(ms api.MembersResponse, id string) (api.Member, bool) {
	for _, m := range ms.Members {
		if m.ID == id {
			return m, true
		}
	}
	return api.Member{}, false
}

// TestMembership: a non-voter joins a cluster whose log has been compacted
// and catches up by snapshot install; it is promoted, leadership moves to
// it, and removing it (the leader) leaves a working three-member cluster.
func TestMembership(t *testing.T) {
	c := StartCluster(t, 3, func(cfg *node.Config) {
		cfg.SnapshotThreshold = 64
		cfg.TrailingLogs = 16
		cfg.SnapshotInterval = 100 * time.Millisecond
	})
	c.WriteKeys(t, "bulk/", 300)
	leader := c.Leader(t)
	// Make sure the leader's log starts after a snapshot, so a new member
	// cannot be brought up by log replay alone.
	if err := c.Node(leader).Raft().Snapshot().Error(); err != nil && !errors.Is(err, raft.ErrNothingNewToSnapshot) {
		t.Fatalf("snapshot on leader: %v", err)
	}
	before := c.WaitConverged(t)
	if before.Revision < 300 {
		t.Fatalf("head at revision %d after 300 writes", before.Revision)
	}

	// n4 joins as a non-voter by asking the members (node.Config.Join).
	n4 := c.AddMember(t, true)
	id4 := c.Config(n4).ID
	head := c.WaitConverged(t)
	if head.Revision < before.Revision {
		t.Fatalf("head went back: %d < %d", head.Revision, before.Revision)
	}
	if s := c.Node(n4).Raft().Stats()["last_snapshot_index"]; s == "" || s == "0" {
		t.Errorf("%s caught up without installing a snapshot (last_snapshot_index %q)", id4, s)
	}
	r := c.Get(t, n4, "bulk/0123", "consistency=stale")
	if r.Code != http.StatusOK || string(r.Body) != "v123" {
		t.Fatalf("stale read on the new non-voter: %s", r)
	}
	fol := c.Followers(t)
	// The member record (its HTTP URL) is a log entry of its own after the
	// configuration change: wait for it to reach this follower.
	waitFor(t, id4+" listed with its URL", waitConverge, func() error {
		m, ok := findMember(c.Members(t, fol[0]), id4)
		if !ok || m.Role != api.RoleNonvoter || m.HTTPURL != c.URL(n4) {
			return fmt.Errorf("%s in member list: %+v (found %v)", id4, m, ok)
		}
		return nil
	})

	// Joining again through the API is a no-op for a member.
	r = c.PostJSON(t, fol[0], "/v1/cluster/members", api.JoinRequest{
		ID: id4, RaftAddr: c.Node(n4).RaftAddr(), HTTPURL: c.URL(n4), NonVoter: true})
	if r.Code != http.StatusOK {
		t.Fatalf("repeated join: %s", r)
	}

	// Promote through a follower (forwarded to the leader).
	r = c.Do(t, fol[1], http.MethodPost, "/v1/cluster/members/"+id4+"/promote", nil, nil)
	if r.Code != http.StatusOK {
		t.Fatalf("promote %s: %s", id4, r)
	}
	waitFor(t, id4+" to be a voter", waitConverge, func() error {
		for i := 0; i < c.N(); i++ {
			m, ok := findMember(c.Members(t, i), id4)
			if !ok || m.Role != api.RoleVoter {
				return fmt.Errorf("%s lists %s as %+v", c.Config(i).ID, id4, m)
			}
		}
		return nil
	})

	// Transfer leadership to n4, asking a member that is not the leader.
	r = c.PostJSON(t, c.Followers(t)[0], "/v1/cluster/leadership", api.TransferRequest{ID: id4})
	if r.Code != http.StatusOK {
		t.Fatalf("transfer leadership to %s: %s", id4, r)
	}
	if l := c.Leader(t); l != n4 {
		t.Fatalf("leader after transfer is %s, want %s", c.Config(l).ID, id4)
	}
	if r := c.Put(t, n4, "after/transfer", "x", ""); r.Code != http.StatusOK {
		t.Fatalf("write on the new leader: %s", r)
	}

	// Remove the leader (n4), asking n4 itself: it hands leadership over
	// first. (Asking through a follower is TestRemoveLeaderThroughFollower.)
	r = c.Do(t, n4, http.MethodDelete, "/v1/cluster/members/"+id4, nil, nil)
	if r.Code != http.StatusOK {
		t.Fatalf("remove leader %s: %s", id4, r)
	}
	waitFor(t, id4+" gone from the member lists", waitConverge, func() error {
		for i := 0; i < 3; i++ {
			ms := c.Members(t, i)
			if _, ok := findMember(ms, id4); ok || len(ms.Members) != 3 {
				return fmt.Errorf("%s lists %+v", c.Config(i).ID, ms.Members)
			}
			if ms.Leader == "" || ms.Leader == id4 {
				return fmt.Errorf("%s knows leader %q", c.Config(i).ID, ms.Leader)
			}
		}
		return nil
	})
	// The removed node is no member any more: not ready.
	waitFor(t, id4+" not ready after removal", waitConverge, func() error {
		if err := c.HTTP.Ready(c.URL(n4)); err == nil {
			return errors.New("still ready")
		}
		return nil
	})
	r = c.Do(t, n4, http.MethodGet, "/readyz", nil, nil)
	expectError(t, r, http.StatusServiceUnavailable, api.CodeUnavailable)
	c.Stop(t, n4)

	// The remaining three keep serving writes, through every member.
	var last uint64
	for i := 0; i < 3; i++ {
		r := c.Put(t, i, fmt.Sprintf("after/remove/%d", i), "y", "")
		if r.Code != http.StatusOK {
			t.Fatalf("write through %s after removal: %s", c.Config(i).ID, r)
		}
		last = r.Revision()
	}
	if h := c.WaitConverged(t); h.Revision != last {
		t.Errorf("head at %d, want %d", h.Revision, last)
	}
	// Asking about an unknown member is not_found.
	r = c.Do(t, 0, http.MethodPost, "/v1/cluster/members/nope/promote", nil, nil)
	expectError(t, r, http.StatusNotFound, api.CodeNotFound)
}

// TestRemoveLeaderThroughFollower removes the leader with a DELETE sent to
// a follower, the way a client that does not know the leader would.
func TestRemoveLeaderThroughFollower(t *testing.T) {
	c := StartCluster(t, 3, nil)
	leader := c.Leader(t)
	id := c.Config(leader).ID
	r := c.Do(t, c.Followers(t)[0], http.MethodDelete, "/v1/cluster/members/"+id, nil, nil)
	if r.Code != http.StatusOK {
		t.Fatalf("remove leader %s through a follower: %s", id, r)
	}
	var rest []int
	for _, i := range c.Followers(t) {
		if i != leader {
			rest = append(rest, i)
		}
	}
	waitFor(t, id+" gone from the member lists", waitConverge, func() error {
		for _, i := range rest {
			ms := c.Members(t, i)
			if _, ok := findMember(ms, id); ok || len(ms.Members) != 2 {
				return fmt.Errorf("%s lists %+v", c.Config(i).ID, ms.Members)
			}
		}
		return nil
	})
	c.Stop(t, leader)
	for _, i := range rest {
		if r := c.Put(t, i, "k", "v", ""); r.Code != http.StatusOK {
			t.Fatalf("write through %s after removal: %s", c.Config(i).ID, r)
		}
	}
}
