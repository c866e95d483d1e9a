package cluster_test

import (
	"fmt"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/cairn-db/cairn/api"
	"github.com/cairn-db/cairn/httpapi"
	"github.com/cairn-db/cairn/internal/cluster"
	"github.com/cairn-db/cairn/internal/testutil"
)

// TestScrubAsksMinority: a member holding a wrong value with a valid
// checksum (no check of its own sees it) and the default scrub interval
// (an hour: it does not scrub by itself during the test). A scrub on a
// healthy member finds a majority for its own value and the victim
// disagreeing, and asks the victim to scrub: the victim's own scrub marks
// it corrupt, which the alarms list shows. Without TLS and with it (the
// members ask each other with their member certificates; a client is
// refused on the route).
func TestScrubAsksMinority(t *testing.T) {
	for _, tls := range []bool{false, true} {
		t.Run(fmt.Sprintf("tls=%v", tls), func(t *testing.T) {
			var c *Cluster
			if tls {
				c = StartTLSCluster(t, 3, cluster.Options{})
			} else {
				c = StartCluster(t, 3, nil)
			}
			if r := c.Put(t, c.Leader(t), "k", "the-right-value", ""); r.Code != http.StatusOK {
				t.Fatalf("put: %s", r)
			}
			c.WriteKeys(t, "other/", 10)
			c.WaitConverged(t)
			v := victimOf(t, c)
			id := c.Config(v).ID
			c.Stop(t, v)
			testutil.RewriteValue(t, filepath.Join(c.Config(v).DataDir, "fsm.db"), "k", "a-wrong-value")
			c.Restart(t, v) // a clean stop: no scrub at start
			c.WaitReady(t, v)
			st, err := c.Status(v)
			if err != nil || st.Corrupt != "" || st.LastScrub != nil {
				t.Fatalf("the victim before the scrub: %+v %v", st, err)
			}

			good := (v + 1) % c.N()
			var sr api.ScrubResponse
			r := c.Do(t, good, http.MethodPost, "/v1/maintenance/scrub", nil, nil)
			decode(t, r, &sr)
			if r.Code != http.StatusOK || !sr.OK || len(sr.Agree) != 1 || !slices.Equal(sr.Disagree, []string{id}) || !slices.Equal(sr.Asked, []string{id}) {
				t.Fatalf("scrub on %s: %s", c.Config(good).ID, r)
			}
			waitCorruptByMajority(t, c, v)
			waitFor(t, id+"'s scrub recorded", waitConverge, func() error {
				st, err := c.Status(v)
				if err != nil {
					return err
				}
				// Its scrub is recorded once it has returned.
				if st.LastScrub == nil {
					return fmt.Errorf("%s's scrub not recorded yet", id)
				}
				if st.LastScrub.OK || !strings.Contains(st.LastScrub.Error, "majority") {
					t.Fatalf("the victim's last scrub: %+v", st.LastScrub)
				}
				return nil
			})
			var ar api.AlarmsResponse
			decode(t, c.Do(t, good, http.MethodGet, "/v1/alarms", nil, nil), &ar)
			if len(ar.Alarms) != 1 || ar.Alarms[0].Member != id || ar.Alarms[0].Type != api.AlarmCorrupt {
				t.Fatalf("alarms: %+v", ar)
			}
			// The corrupt member answers no state hash: the next scrub
			// counts it as not answering and asks nobody.
			sr = api.ScrubResponse{}
			r = c.Do(t, good, http.MethodPost, "/v1/maintenance/scrub", nil, nil)
			decode(t, r, &sr)
			if r.Code != http.StatusOK || !sr.OK || !slices.Equal(sr.Unreachable, []string{id}) || len(sr.Disagree) != 0 || len(sr.Asked) != 0 {
				t.Fatalf("second scrub on %s: %s", c.Config(good).ID, r)
			}
			if tls {
				// Members only: the client's certificate is refused.
				hdr := http.Header{api.HeaderForwarded: {c.Config(good).ID}}
				r := c.Do(t, good, http.MethodPost, fmt.Sprintf("%s?revision=%d", httpapi.ScrubAskPath, sr.Revision), nil, hdr)
				expectError(t, r, http.StatusForbidden, api.CodePermissionDenied)
				r = c.Do(t, good, http.MethodPost, fmt.Sprintf("%s?revision=%d", httpapi.ScrubAskPath, sr.Revision), nil, nil)
				expectError(t, r, http.StatusForbidden, api.CodePermissionDenied)
			}
		})
	}
}
