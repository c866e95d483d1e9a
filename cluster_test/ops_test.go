package cluster_test

import (
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/cairn-db/cairn/api"
)

// metricValue returns the value of an unlabelled metric in Prometheus text
// format.
func metricValue(body, name string) (float64, bool) {
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + ` (\S+)$`).FindStringSubmatch(body)
	if m == nil {
		return 0, false
	}
	v, err := strconv.ParseFloat(m[1], 64)
	return v, err == nil
}

// TestHealthReadyMetrics checks /healthz, /readyz and /metrics on every
// member.
func TestHealthReadyMetrics(t *testing.T) {
	c := StartCluster(t, 3, nil)
	leader := c.Leader(t)
	r := c.Put(t, leader, "m", "v", "")
	if r.Code != http.StatusOK {
		t.Fatalf("put: %s", r)
	}
	rev := r.Revision()
	c.WaitConverged(t)
	for i := 0; i < c.N(); i++ {
		id := c.Config(i).ID
		if r := c.Do(t, i, http.MethodGet, "/healthz", nil, nil); r.Code != http.StatusOK {
			t.Errorf("healthz on %s: %s", id, r)
		}
		if r := c.Do(t, i, http.MethodGet, "/readyz", nil, nil); r.Code != http.StatusOK {
			t.Errorf("readyz on %s: %s", id, r)
		}
		r := c.Do(t, i, http.MethodGet, "/metrics", nil, nil)
		if r.Code != http.StatusOK {
			t.Fatalf("metrics on %s: %s", id, r)
		}
		body := string(r.Body)
		if v, ok := metricValue(body, "cairn_revision"); !ok || v != float64(rev) {
			t.Errorf("metrics on %s: cairn_revision %v (found %v), want %d", id, v, ok, rev)
		}
		wantLeader := 0.0
		if i == leader {
			wantLeader = 1
		}
		if v, ok := metricValue(body, "cairn_is_leader"); !ok || v != wantLeader {
			t.Errorf("metrics on %s: cairn_is_leader %v (found %v), want %v", id, v, ok, wantLeader)
		}
		for _, name := range []string{"cairn_raft_applied_index", "cairn_raft_commit_index", "cairn_raft_term"} {
			if v, ok := metricValue(body, name); !ok || v <= 0 {
				t.Errorf("metrics on %s: %s %v (found %v)", id, name, v, ok)
			}
		}
		// hashicorp/raft's own metrics, through the go-metrics Prometheus
		// sink under the "cairn" prefix (process-wide, so any node shows
		// them once a leader has committed something).
		if !regexp.MustCompile(`(?m)^cairn_raft_(commitTime|apply|leader_dispatchLog|fsm_apply|rpc_)`).MatchString(body) {
			var names []string
			for _, l := range strings.Split(body, "\n") {
				if strings.HasPrefix(l, "cairn_raft_") {
					names = append(names, strings.Fields(l)[0])
				}
			}
			t.Errorf("metrics on %s: no hashicorp/raft metric; cairn_raft_ lines: %v", id, names)
		}
		// Every response names the answering node.
		if got := r.Header.Get(api.HeaderNode); got != id {
			t.Errorf("metrics on %s: %s=%q", id, api.HeaderNode, got)
		}
	}
	// Status agrees with the chain.
	var st api.StatusResponse
	decode(t, c.Do(t, 1, http.MethodGet, "/v1/status", nil, nil), &st)
	head := c.Chain(t, 1, "consistency=stale")
	if st.ID != c.Config(1).ID || st.Revision != head.Revision || st.Hash != head.Hash || st.Leader != c.Config(leader).ID {
		t.Errorf("status %+v, head %+v", st, head)
	}
}
