package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/cairn-db/cairn/api"
	"github.com/cairn-db/cairn/client"
	"github.com/cairn-db/cairn/internal/bytesize"
)

func statusCommands() []*cli.Command {
	return []*cli.Command{
		{
			Name: "status", Usage: "show one node's raft and store status",
			Description: "Example:\n   cairn node status --endpoint http://127.0.0.1:8002",
			Flags: []cli.Flag{
				&cli.StringFlag{Name: "endpoint", Usage: "node to ask (default: any member)"},
				jsonFlag(),
			},
			Action: func(c *cli.Context) error {
				return withClient(c, func(ctx context.Context, cl *client.Client) error {
					st, err := cl.Status(ctx, c.String("endpoint"))
					if err != nil {
						return err
					}
					if boolFlag(c, "json") {
						return printJSON(c.App.Writer, st)
					}
					tw := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', 0)
					fmt.Fprintf(tw, "id\t%s\nstate\t%s\nleader\t%s\nterm\t%d\ncommit index\t%d\napplied index\t%d\nrevision\t%d\nchain hash\t%s\ncompact revision\t%d\nlast contact\t%s\n",
						st.ID, st.State, st.Leader, st.Term, st.CommitIndex, st.AppliedIndex, st.Revision, st.Hash, st.CompactRevision, st.LastContact)
					if st.Corrupt != "" {
						fmt.Fprintf(tw, "corrupt\t%s\n", st.Corrupt)
					}
					for _, a := range st.Alarms {
						fmt.Fprintf(tw, "alarm\t%s since %s: %s\n", a.Type, a.Since.Format(time.RFC3339), a.Message)
					}
					quota := limitText(st.QuotaBytes)
					fmt.Fprintf(tw, "store\t%s (%s in use, quota %s)\nfree disk\t%s (reserve %s)\n",
						bytesize.Format(st.StoreBytes), bytesize.Format(st.StoreInUseBytes), quota, bytesize.Format(st.FreeBytes), limitText(st.MinFreeBytes))
					return tw.Flush()
				})
			},
		},
		{
			Name: "health", Usage: "exit 0 when every node asked is ready (member, leader known, caught up)",
			Description: `Asks each endpoint's readiness check (GET /readyz): the --endpoint URLs
(repeatable or comma separated), else every --cluster URL. Prints one
line per endpoint, "URL ready" or "URL not ready: REASON", and exits 5
when any is not ready or cannot be reached.
Example (a container health check):
   cairn node health --endpoint http://127.0.0.1:8001`,
			Flags: []cli.Flag{
				&cli.StringSliceFlag{Name: "endpoint", Usage: "node to check (repeatable or comma separated; default: every --cluster URL)"},
				jsonFlag(),
			},
			Action: healthAction,
		},
	}
}

// healthAction is `cairn node health`: every endpoint asked at once, one
// line each in the order given; exit 5 when any is not ready.
func healthAction(c *cli.Context) error {
	var endpoints []string
	for _, e := range c.StringSlice("endpoint") {
		endpoints = append(endpoints, splitList(e)...)
	}
	if len(endpoints) == 0 {
		cfg, err := clientConfig(c)
		if err != nil {
			return err
		}
		endpoints = cfg.Endpoints
	}
	return withClient(c, func(ctx context.Context, cl *client.Client) error {
		errs := make([]error, len(endpoints))
		var wg sync.WaitGroup
		for i, ep := range endpoints {
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs[i] = cl.Health(ctx, ep)
			}()
		}
		wg.Wait()
		var notReady []string
		rows := make([]healthRow, len(endpoints))
		for i, ep := range endpoints {
			rows[i] = healthRow{Endpoint: ep, Ready: errs[i] == nil}
			if errs[i] == nil {
				continue
			}
			if errors.Is(errs[i], client.ErrBadRequest) {
				return fmt.Errorf("%w: --endpoint %q: %w", errUsage, ep, errs[i])
			}
			notReady = append(notReady, ep)
			rows[i].Reason, rows[i].Code = notReadyReason(errs[i]), client.ErrorCode(errs[i])
		}
		if boolFlag(c, "json") {
			if err := printJSON(c.App.Writer, rows); err != nil {
				return err
			}
		} else {
			for _, r := range rows {
				if r.Ready {
					fmt.Fprintf(c.App.Writer, "%s ready\n", r.Endpoint)
				} else {
					fmt.Fprintf(c.App.Writer, "%s not ready: %s\n", r.Endpoint, r.Reason)
				}
			}
		}
		if len(notReady) > 0 {
			return fmt.Errorf("%w: %d of %d endpoints not ready (%s)", client.ErrUnavailable, len(notReady), len(endpoints), strings.Join(notReady, ", "))
		}
		return nil
	})
}

// healthRow is one endpoint in `cairn node health --json`: whether it is
// ready and, when not, why and the API's error code.
type healthRow struct {
	Endpoint string `json:"endpoint"`
	Ready    bool   `json:"ready"`
	Reason   string `json:"reason,omitempty"`
	Code     string `json:"code,omitempty"`
}

// notReadyReason is why a readiness check failed: the member's own
// reason when it answered, else why it could not be asked.
func notReadyReason(err error) string {
	var e *client.APIError
	if errors.As(err, &e) && e.Message != "" {
		return e.Message
	}
	return err.Error()
}

// clusterCommands are the top-level commands on the whole cluster:
// `cairn status`.
func clusterCommands() []*cli.Command {
	return []*cli.Command{{
		Name:  "status",
		Usage: "show every member at a glance: role, term, revision, lag, health, version, store, watchers, alarms",
		Description: `Asks one member (the leader when known, or --endpoint) for the whole
cluster (GET /v1/cluster/status) and prints a row per member, the leader
first. A member that did not answer is a row saying why. The exit status
is 0 whenever the table could be gathered, whatever it shows: use
"cairn node health" as the check.
Example:
   cairn status
   cairn status --endpoint http://127.0.0.1:8002 --json`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "endpoint", Usage: "member to ask (default: the leader, else any member)"},
			jsonFlag(),
		},
		Action: func(c *cli.Context) error {
			if c.NArg() != 0 {
				return usageError("status takes no arguments (got %d)", c.NArg())
			}
			return withClient(c, func(ctx context.Context, cl *client.Client) error {
				var cs *api.ClusterStatusResponse
				var err error
				if ep := c.String("endpoint"); ep != "" {
					cs, err = cl.ClusterStatusFrom(ctx, ep)
				} else {
					cs, err = cl.ClusterStatus(ctx)
				}
				if err != nil {
					return err
				}
				if boolFlag(c, "json") {
					return printJSON(c.App.Writer, cs)
				}
				if cs.Leader == "" {
					fmt.Fprintf(c.App.ErrWriter, "cairn: %s knows no leader\n", cs.Node)
				}
				return clusterTable(c.App.Writer, cs)
			})
		},
	}}
}

// clusterTable prints `cairn status`'s table: the leader first, then the
// members by id.
func clusterTable(w io.Writer, cs *api.ClusterStatusResponse) error {
	members := slices.Clone(cs.Members)
	slices.SortStableFunc(members, func(a, b api.MemberStatus) int {
		switch {
		case a.Leader == b.Leader:
			return strings.Compare(a.ID, b.ID)
		case a.Leader:
			return -1
		default:
			return 1
		}
	})
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	// HEALTH is last: a reason, or an unreachable member's error, may be
	// long, and the last cell widens no column.
	fmt.Fprintln(tw, "ID\tROLE\tTERM\tAPPLIED\tLAG\tLAST CONTACT\tVERSION\tSTORE\tWATCHERS\tALARMS\tHEALTH")
	for _, m := range members {
		role := m.Role
		if m.Leader {
			role += " (leader)"
		}
		st := m.Status
		if st == nil {
			health := orDash(m.Health)
			if m.Error != "" {
				health += ": " + m.Error
			}
			fmt.Fprintf(tw, "%s\t%s\t-\t-\t-\t-\t-\t-\t-\t-\t%s\n", m.ID, role, health)
			continue
		}
		alarms := make([]string, 0, len(st.Alarms))
		for _, a := range st.Alarms {
			alarms = append(alarms, a.Type)
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%s\t%s\t%s\t%d\t%s\t%s\n",
			m.ID, role, st.Term, st.Revision, m.Lag, orDash(st.LastContact), orDash(st.Version),
			bytesize.Format(st.StoreBytes), st.Watchers, orDash(strings.Join(alarms, ",")), orDash(m.Health))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	return mirrorLines(w, members)
}

// mirrorLines prints, under the table, the cluster's mirror state as its
// leader (else the first member that answered) applied it: one line as a
// standby, one per mirror of it as a source; nothing on a primary without
// mirrors (docs/mirror.md).
func mirrorLines(w io.Writer, members []api.MemberStatus) error {
	var ms *api.MirrorStatus
	for _, m := range members { // the leader is first
		if m.Status != nil && m.Status.Mirror != nil {
			ms = m.Status.Mirror
			break
		}
	}
	if ms == nil {
		return nil
	}
	if ms.State != api.MirrorPrimary {
		from := ms.Source
		if from == "" {
			from = strings.Join(ms.Sources, ",")
		}
		line := fmt.Sprintf("mirror: %s %s (cluster %s), head %d, source head %d, lag %d revisions, %s",
			ms.State, from, orDash(ms.SourceClusterID), ms.Head, ms.SourceHead, ms.LagRevisions,
			time.Duration(ms.LagSeconds*float64(time.Second)).Round(time.Millisecond))
		if ms.Message != "" {
			line += ": " + ms.Message
		}
		if _, err := fmt.Fprintln(w, line); err != nil {
			return err
		}
	}
	for _, cp := range ms.Checkpoints {
		held := "holding compaction"
		if cp.Released {
			held = "released"
		}
		if _, err := fmt.Fprintf(w, "mirror of this cluster: %s at revision %d, last progress %s (%s)\n",
			cp.ID, cp.Revision, cp.LastProgress.UTC().Format(time.RFC3339), held); err != nil {
			return err
		}
	}
	return nil
}
