package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/cairn-db/cairn/api"
	"github.com/cairn-db/cairn/client"
	"github.com/cairn-db/cairn/node"
)

// errAlarms means alarm list found raised alarms or unreachable members;
// errScrub that a scrub did not end OK.
var (
	errAlarms = errors.New("alarms raised")
	errScrub  = errors.New("scrub found problems")
)

// integrityCommands are `cairn alarm` and `cairn scrub`; `cairn node
// repair` is repairCommand, under node.
func integrityCommands() []*cli.Command {
	return []*cli.Command{
		{
			Name:  "alarm",
			Usage: "show the members' alarms (corrupt, no_space, state_mismatch)",
			Subcommands: []*cli.Command{{
				Name: "list", Usage: "list every member's raised alarms; exit 1 when any is raised or a member is unreachable", ArgsUsage: " ",
				Description: "Example:\n   cairn alarm list\n   cairn alarm list --json",
				Flags:       []cli.Flag{jsonFlag()},
				Action:      alarmListAction,
			}},
		},
		{
			Name: "scrub", Usage: "have members check their stored data and compare their state with the others' now", ArgsUsage: " ",
			Description: `Each member scrubbed runs its deep checks (hash chain, version checksums,
state hash) and compares its chain and state hashes at its revision with
every other member's: a member that a majority of voters contradicts marks
itself corrupt (see cairn alarm list; repair it with cairn node repair).
Without --member every member scrubs, one after another. Exit 0 if and only
if every scrub ends OK.
Example:
   cairn scrub
   cairn scrub --member n2`,
			Flags: []cli.Flag{
				&cli.StringFlag{Name: "member", Usage: "scrub only this member (its id)"},
				jsonFlag(),
			},
			Action: scrubAction,
		},
	}
}

func alarmListAction(c *cli.Context) error {
	if c.NArg() > 0 {
		return usageError("alarm list takes no arguments")
	}
	return withClient(c, func(ctx context.Context, cl *client.Client) error {
		ar, err := cl.Alarms(ctx)
		if err != nil {
			return err
		}
		if boolFlag(c, "json") {
			if err := printJSON(c.App.Writer, ar); err != nil {
				return err
			}
		} else {
			tw := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "MEMBER\tALARM\tSINCE\tMESSAGE")
			for _, a := range ar.Alarms {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", a.Member, a.Type, a.Since.Format(time.RFC3339), a.Message)
			}
			for _, id := range ar.Unreachable {
				fmt.Fprintf(tw, "%s\t%s\t\t%s\n", id, "-", "unreachable: its alarms are unknown")
			}
			if err := tw.Flush(); err != nil {
				return err
			}
		}
		if len(ar.Alarms) > 0 || len(ar.Unreachable) > 0 {
			return errAlarms
		}
		return nil
	})
}

func scrubAction(c *cli.Context) error {
	if c.NArg() > 0 {
		return usageError("scrub takes no arguments")
	}
	return withClient(c, func(ctx context.Context, cl *client.Client) error {
		mr, err := cl.Members(ctx)
		if err != nil {
			return err
		}
		var targets []api.Member
		for _, m := range mr.Members {
			if id := c.String("member"); id == "" || id == m.ID {
				targets = append(targets, m)
			}
		}
		if len(targets) == 0 {
			return usageError("--member %q is not a member", c.String("member"))
		}
		var out []api.ScrubResponse
		bad := false
		for _, m := range targets {
			sr, err := cl.Scrub(ctx, m.HTTPURL)
			if err != nil {
				sr = &api.ScrubResponse{Node: m.ID, Error: err.Error()}
			}
			bad = bad || !sr.OK
			out = append(out, *sr)
		}
		if boolFlag(c, "json") {
			if err := printJSON(c.App.Writer, out); err != nil {
				return err
			}
		} else {
			tw := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "MEMBER\tOK\tREVISION\tHASH\tSTATE HASH\tKEYS\tAGREE\tDISAGREE\tUNREACHABLE\tERROR")
			for _, s := range out {
				fmt.Fprintf(tw, "%s\t%v\t%d\t%.16s\t%.16s\t%d\t%s\t%s\t%s\t%s\n", s.Node, s.OK, s.Revision, s.Hash, s.StateHash, s.Keys,
					strings.Join(s.Agree, ","), strings.Join(s.Disagree, ","), strings.Join(s.Unreachable, ","), s.Error)
			}
			if err := tw.Flush(); err != nil {
				return err
			}
		}
		if bad {
			return errScrub
		}
		return nil
	})
}

// repairCommand is `cairn node repair`.
func repairCommand() *cli.Command {
	return &cli.Command{
		Name: "repair", Usage: "prepare a stopped member with damaged data to re-join: remove it from the cluster and move its stores aside", ArgsUsage: " ",
		Description: `Run on the damaged member's host while it is stopped, with --cluster naming
the other members (and the TLS and --user flags of other admin commands).
It removes the member from the cluster through the leader, then moves its
fsm.db, raft.db, raft-stable.dat, snapshots and markers into
<data-dir>/damaged-<time>/ (nothing is deleted). Then start the member with
--join and without --bootstrap: it joins again and receives the cluster's
state.
Example:
   cairn --cluster http://10.0.0.1:8001,http://10.0.0.2:8001 node repair --id n3 --data-dir /var/lib/cairn
   cairn node run --id n3 --data-dir /var/lib/cairn --raft-addr 10.0.0.3:7001 --http-addr 10.0.0.3:8001 --join http://10.0.0.1:8001,http://10.0.0.2:8001`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "id", Usage: "the stopped member's id (required)"},
			&cli.StringFlag{Name: "data-dir", Usage: "the stopped member's data directory (required)"},
			jsonFlag(),
		},
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return usageError("node repair takes no arguments")
			}
			if c.String("id") == "" || c.String("data-dir") == "" {
				return usageError("node repair needs --id and --data-dir")
			}
			return withClient(c, func(ctx context.Context, cl *client.Client) error {
				res, err := node.Repair(ctx, node.RepairOptions{DataDir: c.String("data-dir"), ID: c.String("id"),
					Remove: func(ctx context.Context, id string) error {
						_, err := cl.RemoveMember(ctx, id)
						if errors.Is(err, client.ErrNotFound) {
							return nil // removed already (a repeated repair)
						}
						return err
					}})
				if err != nil {
					return err
				}
				if boolFlag(c, "json") {
					return printJSON(c.App.Writer, repairOutput{ID: c.String("id"), MovedTo: res.MovedTo, Moved: nonNil(res.Moved)})
				}
				moved := "nothing to move"
				if res.MovedTo != "" {
					moved = fmt.Sprintf("moved %s to %s", strings.Join(res.Moved, ", "), res.MovedTo)
				}
				_, err = fmt.Fprintf(c.App.Writer, "removed %s from the cluster; %s\nstart it with --join <the other members' URLs> (not --bootstrap) to re-join and receive the state\n",
					c.String("id"), moved)
				return err
			})
		},
	}
}

// repairOutput is `cairn node repair --json`: the member removed, the
// directory its damaged stores were moved to ("" when there was nothing
// to move) and what was moved, relative to its data directory.
type repairOutput struct {
	ID      string   `json:"id"`
	MovedTo string   `json:"moved_to"`
	Moved   []string `json:"moved"`
}

// nonNil returns s, or an empty slice for nil (JSON [] rather than null).
func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}
