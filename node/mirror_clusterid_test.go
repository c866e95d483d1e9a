package node

import (
	"context"
	"errors"
	"testing"
	"time"
)

// TestOwnClusterIDWaits: a mirror needs its own cluster's id (the loop
// check, and the id the source keys this standby's checkpoint by). A
// member of a cluster that has no id yet waits for it and then refuses
// with ErrNoLeader (unavailable: try again), never answers an empty id;
// once the first leader has named the cluster, the id is answered.
func TestOwnClusterIDWaits(t *testing.T) {
	// Neither bootstrapped nor joined: no leader, so nobody names it.
	lone := startNode(t, testConfig(t, "lone"))
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	id, err := lone.ownClusterID(ctx)
	if !errors.Is(err, ErrNoLeader) || id != "" {
		t.Fatalf("ownClusterID without a leader: %q, %v; want ErrNoLeader", id, err)
	}

	cfg := testConfig(t, "n1")
	cfg.Bootstrap = true
	n1 := startNode(t, cfg)
	// Asked at once, before or while the first leader names the cluster:
	// it waits instead of answering "".
	id, err = n1.ownClusterID(context.Background())
	if err != nil || id == "" {
		t.Fatalf("ownClusterID of a new cluster: %q, %v", id, err)
	}
	if got, err := n1.fsm.ClusterID(); err != nil || got != id {
		t.Fatalf("fsm's cluster id %q (%v), ownClusterID's %q", got, err, id)
	}
}
