package main

import (
	"context"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

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
			Name: "health", Usage: "exit 0 when a node is ready (member, leader known, caught up)",
			Description: "Example (a container health check):\n   cairn node health --endpoint http://127.0.0.1:8001",
			Flags:       []cli.Flag{&cli.StringFlag{Name: "endpoint", Value: "http://127.0.0.1:8001", Usage: "node to check"}},
			Action: func(c *cli.Context) error {
				return withClient(c, func(ctx context.Context, cl *client.Client) error {
					if err := cl.Health(ctx, c.String("endpoint")); err != nil {
						return err
					}
					_, err := fmt.Fprintln(c.App.Writer, "ready")
					return err
				})
			},
		},
	}
}
