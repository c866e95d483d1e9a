package cluster_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cairn-db/cairn/api"
	"github.com/cairn-db/cairn/client"
	"github.com/cairn-db/cairn/httpapi"
	"github.com/cairn-db/cairn/internal/cluster"
	"github.com/cairn-db/cairn/internal/testutil"
	"github.com/cairn-db/cairn/node"
)

// victimOf returns a follower to damage and makes its later starts join
// through the other members (the harness's member 0 bootstraps).
func victimOf(t *testing.T, c *Cluster) int {
	t.Helper()
	v := c.Followers(t)[0]
	var others []string
	for i := 0; i < c.N(); i++ {
		if i != v {
			others = append(others, c.URL(i))
		}
	}
	c.Member(v).Update(func(s *cluster.Spec) { s.Config.Bootstrap, s.Config.Join = false, others })
	return v
}

// newClusterClient is a client of every member.
func newClusterClient(t *testing.T, c *Cluster) *client.Client {
	t.Helper()
	cfg := client.DefaultConfig()
	for i := 0; i < c.N(); i++ {
		cfg.Endpoints = append(cfg.Endpoints, c.URL(i))
	}
	cl, err := client.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cl.Close() })
	return cl
}

// memberHashes is what `cairn verify` asks each member: its chain hash
// and state hash at rev, or the error it answered.
func memberHashes(t *testing.T, c *Cluster, cl *client.Client, rev uint64) ([]*api.ChainResponse, []error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out := make([]*api.ChainResponse, c.N())
	errs := make([]error, c.N())
	for i := 0; i < c.N(); i++ {
		out[i], errs[i] = cl.StateHash(ctx, rev, client.Endpoint(c.URL(i)), client.Consistency(api.Stale), client.MinRevision(rev))
	}
	return out, errs
}

// flipAll flips one byte of every copy of value in the file at path and
// returns how many it flipped.
func flipAll(t *testing.T, path string, value []byte) int {
	t.Helper()
	return testutil.FlipBytes(t, path, value, 0x01)
}

// TestCorruptMemberRepaired: one byte of a key's current value flipped in
// a stopped member's store. Restarted, the member answers corrupt for that
// key and never the bad value, fails readiness, shows corrupt in status
// and alarms; the others serve. Scrubbing a healthy member is OK; asking
// each member for its hashes flags the damaged one. cairn node repair
// (node.Repair) and a start with --join bring it back identical.
func TestCorruptMemberRepaired(t *testing.T) {
	c := StartCluster(t, 3, nil)
	cl := newClusterClient(t, c)
	leader := c.Leader(t)
	const value = "cairn-integrity-test-value-5f1d0c"
	if r := c.Put(t, leader, "victim", value, ""); r.Code != http.StatusOK {
		t.Fatalf("put: %s", r)
	}
	c.WriteKeys(t, "other/", 20)
	c.WaitConverged(t)
	v := victimOf(t, c)
	id := c.Config(v).ID
	c.Stop(t, v)
	if n := flipAll(t, filepath.Join(c.Config(v).DataDir, "fsm.db"), []byte(value)); n == 0 {
		t.Fatal("the value is not in the store file")
	}
	c.Restart(t, v)
	c.WaitReady(t, v)

	for _, q := range []string{"", "consistency=stale"} {
		r := c.Get(t, v, "victim", q)
		if strings.Contains(string(r.Body), "cairn-integrity") {
			t.Fatalf("the damaged member served the value: %s", r)
		}
		expectError(t, r, http.StatusServiceUnavailable, api.CodeCorrupt)
	}
	if r := c.Do(t, v, http.MethodGet, "/readyz", nil, nil); r.Code != http.StatusServiceUnavailable || !strings.Contains(string(r.Body), "corrupt") {
		t.Fatalf("readyz of the damaged member: %s", r)
	}
	st, err := c.Status(v)
	if err != nil || st.Corrupt == "" || len(st.Alarms) == 0 || st.Alarms[0].Type != api.AlarmCorrupt {
		t.Fatalf("status of the damaged member: %+v %v", st, err)
	}
	var good []int
	for i := 0; i < c.N(); i++ {
		if i != v {
			good = append(good, i)
		}
	}
	for _, i := range good {
		if r := c.Get(t, i, "victim", ""); r.Code != http.StatusOK || string(r.Body) != value {
			t.Fatalf("healthy member %d: %s", i, r)
		}
	}
	var ar api.AlarmsResponse
	decode(t, c.Do(t, good[0], http.MethodGet, "/v1/alarms", nil, nil), &ar)
	if len(ar.Alarms) != 1 || ar.Alarms[0].Member != id || ar.Alarms[0].Type != api.AlarmCorrupt {
		t.Fatalf("alarms: %+v", ar)
	}
	var sr api.ScrubResponse
	r := c.Do(t, good[0], http.MethodPost, "/v1/maintenance/scrub", nil, nil)
	decode(t, r, &sr)
	if r.Code != http.StatusOK || !sr.OK || len(sr.Agree) != 1 || len(sr.Unreachable) != 1 || sr.Unreachable[0] != id {
		t.Fatalf("scrub on a healthy member: %s", r)
	}
	// What cairn verify asks: the damaged member cannot answer.
	head := c.Chain(t, good[0], "consistency=stale").Revision
	hashes, errs := memberHashes(t, c, cl, head)
	for i := range hashes {
		switch {
		case i == v && !errors.Is(errs[i], client.ErrCorrupt):
			t.Fatalf("hashes of the damaged member: %+v %v", hashes[i], errs[i])
		case i != v && (errs[i] != nil || hashes[i].StateHash != hashes[good[0]].StateHash || hashes[i].Hash != hashes[good[0]].Hash):
			t.Fatalf("hashes of member %d: %+v %v", i, hashes[i], errs[i])
		}
	}
	// A client read goes to the healthy members.
	for range 5 {
		kv, err := cl.Get(context.Background(), "victim", client.Consistency(api.Stale))
		if err != nil || string(kv.Value) != value {
			t.Fatalf("client read: %+v %v", kv, err)
		}
	}

	// Repair: stop, cairn node repair, start with --join.
	c.Stop(t, v)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := node.Repair(ctx, node.RepairOptions{DataDir: c.Config(v).DataDir, ID: id, Remove: func(ctx context.Context, id string) error {
		_, err := cl.RemoveMember(ctx, id)
		return err
	}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(res.MovedTo, "fsm.db")); err != nil {
		t.Fatalf("damaged store not kept: %v", err)
	}
	if m := c.Members(t, good[0]); len(m.Members) != 2 {
		t.Fatalf("members after repair: %+v", m)
	}
	c.Restart(t, v)
	c.WaitReady(t, v)
	if r := c.Put(t, c.Leader(t), "after", "repair", ""); r.Code != http.StatusOK {
		t.Fatalf("put after repair: %s", r)
	}
	conv := c.WaitConverged(t)
	hashes, errs = memberHashes(t, c, cl, conv.Revision)
	for i := range hashes {
		if errs[i] != nil || hashes[i].Hash != conv.Hash || hashes[i].StateHash != hashes[0].StateHash || hashes[i].StateHash == "" {
			t.Fatalf("member %d after repair: %+v %v (converged %+v)", i, hashes[i], errs[i], conv)
		}
	}
	if r := c.Get(t, v, "victim", ""); r.Code != http.StatusOK || string(r.Body) != value {
		t.Fatalf("repaired member: %s", r)
	}
	st, err = c.Status(v)
	if err != nil || st.Corrupt != "" || len(st.Alarms) != 0 {
		t.Fatalf("status after repair: %+v %v", st, err)
	}
	if m := c.Members(t, v); len(m.Members) != 3 {
		t.Fatalf("members after re-join: %+v", m)
	}
}

// TestScrubMajorityMarksCorrupt: a member whose state differs without any
// checksum seeing it (a wrong value with a valid checksum) scrubs itself
// after an unclean start, finds a majority of voters holding another
// state hash at its revision, and marks itself corrupt: out of service,
// alarm raised.
func TestScrubMajorityMarksCorrupt(t *testing.T) {
	c := StartCluster(t, 3, nil)
	leader := c.Leader(t)
	if r := c.Put(t, leader, "k", "the-right-value", ""); r.Code != http.StatusOK {
		t.Fatalf("put: %s", r)
	}
	c.WriteKeys(t, "other/", 10)
	c.WaitConverged(t)
	v := victimOf(t, c)
	id := c.Config(v).ID
	c.Stop(t, v)
	path := filepath.Join(c.Config(v).DataDir, "fsm.db")
	testutil.RewriteValue(t, path, "k", "a-wrong-value")
	// What a crash leaves beside the store: the member scrubs once ready.
	if err := os.WriteFile(path+".open", []byte("1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c.Restart(t, v)
	waitCorruptByMajority(t, c, v)
	var sr api.ScrubResponse
	decode(t, c.Do(t, v, http.MethodPost, "/v1/maintenance/scrub", nil, nil), &sr)
	if sr.OK || !strings.Contains(sr.Error, "corrupt") {
		t.Fatalf("scrub of the corrupt member: %+v", sr)
	}
	other := (v + 1) % c.N()
	var ar api.AlarmsResponse
	decode(t, c.Do(t, other, http.MethodGet, "/v1/alarms", nil, nil), &ar)
	if len(ar.Alarms) != 1 || ar.Alarms[0].Member != id || ar.Alarms[0].Type != api.AlarmCorrupt {
		t.Fatalf("alarms: %+v", ar)
	}
	if r := c.Get(t, other, "k", ""); r.Code != http.StatusOK || string(r.Body) != "the-right-value" {
		t.Fatalf("healthy member: %s", r)
	}
}

// TestTLSScrubAndAlarms: under TLS, members ask each other for their
// state hashes with their member certificates; a client certificate is
// refused on that route. The scrub and the alarms list work.
func TestTLSScrubAndAlarms(t *testing.T) {
	c := StartTLSCluster(t, 3, cluster.Options{})
	leader := c.Leader(t)
	if r := c.Put(t, leader, "k", "v", ""); r.Code != http.StatusOK {
		t.Fatalf("put: %s", r)
	}
	conv := c.WaitConverged(t)
	for i := 0; i < c.N(); i++ {
		var sr api.ScrubResponse
		r := c.Do(t, i, http.MethodPost, "/v1/maintenance/scrub", nil, nil)
		decode(t, r, &sr)
		if r.Code != http.StatusOK || !sr.OK || len(sr.Agree) != 2 || sr.Revision < conv.Revision {
			t.Fatalf("scrub on %s: %s", c.Config(i).ID, r)
		}
	}
	var ar api.AlarmsResponse
	decode(t, c.Do(t, leader, http.MethodGet, "/v1/alarms", nil, nil), &ar)
	if len(ar.Alarms) != 0 || len(ar.Unreachable) != 0 {
		t.Fatalf("alarms: %+v", ar)
	}
	hdr := http.Header{api.HeaderForwarded: {c.Config((leader + 1) % 3).ID}}
	r := c.Do(t, leader, http.MethodGet, fmt.Sprintf("%s?revision=%d", httpapi.StateHashPath, conv.Revision), nil, hdr)
	expectError(t, r, http.StatusForbidden, api.CodePermissionDenied)
}

// TestScrubNoMajority: two voters that disagree (one holds a wrong value
// with a valid checksum): neither is a majority, so neither is marked
// corrupt; each scrub raises state_mismatch naming the other, and the
// alarms list shows both.
func TestScrubNoMajority(t *testing.T) {
	c := StartCluster(t, 2, nil)
	if r := c.Put(t, c.Leader(t), "k", "the-right-value", ""); r.Code != http.StatusOK {
		t.Fatalf("put: %s", r)
	}
	c.WaitConverged(t)
	v := victimOf(t, c)
	c.Stop(t, v)
	testutil.RewriteValue(t, filepath.Join(c.Config(v).DataDir, "fsm.db"), "k", "a-wrong-value")
	c.Restart(t, v)
	c.WaitReady(t, v)
	for i := 0; i < c.N(); i++ {
		var sr api.ScrubResponse
		r := c.Do(t, i, http.MethodPost, "/v1/maintenance/scrub", nil, nil)
		decode(t, r, &sr)
		other := c.Config(1 - i).ID
		if r.Code != http.StatusOK || sr.OK || len(sr.Disagree) != 1 || sr.Disagree[0] != other || !strings.Contains(sr.Error, "no majority") {
			t.Fatalf("scrub on %s: %s", c.Config(i).ID, r)
		}
		st, err := c.Status(i)
		if err != nil || st.Corrupt != "" || len(st.Alarms) != 1 || st.Alarms[0].Type != api.AlarmStateMismatch || !strings.Contains(st.Alarms[0].Message, other) {
			t.Fatalf("status of %s: %+v %v", c.Config(i).ID, st, err)
		}
	}
	var ar api.AlarmsResponse
	decode(t, c.Do(t, 0, http.MethodGet, "/v1/alarms", nil, nil), &ar)
	if len(ar.Alarms) != 2 || ar.Alarms[0].Type != api.AlarmStateMismatch || ar.Alarms[1].Type != api.AlarmStateMismatch {
		t.Fatalf("alarms: %+v", ar)
	}
}

// waitCorruptByMajority waits until member v marks itself corrupt because
// a majority of voters holds other hashes, then checks it is out of
// service: a stale read of "k" answers corrupt and /readyz 503.
func waitCorruptByMajority(t *testing.T, c *Cluster, v int) {
	t.Helper()
	id := c.Config(v).ID
	waitFor(t, id+" marks itself corrupt", waitConverge, func() error {
		st, err := c.Status(v)
		if err != nil {
			return err
		}
		if st.Corrupt == "" {
			return fmt.Errorf("%s not corrupt yet", id)
		}
		if !strings.Contains(st.Corrupt, "majority") {
			t.Fatalf("corrupt for another reason: %s", st.Corrupt)
		}
		return nil
	})
	expectError(t, c.Get(t, v, "k", "consistency=stale"), http.StatusServiceUnavailable, api.CodeCorrupt)
	if r := c.Do(t, v, http.MethodGet, "/readyz", nil, nil); r.Code != http.StatusServiceUnavailable {
		t.Fatalf("readyz: %s", r)
	}
}
