package main

import (
	"context"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/cairn-db/cairn/client"
)

func historyCommands() []*cli.Command {
	return []*cli.Command{
		{
			Name: "history", Usage: "show a key's versions, newest first", ArgsUsage: "KEY",
			Description: "Example:\n   cairn history greeting",
			Flags:       append(readFlags(false), &cli.IntFlag{Name: "limit", Usage: "most versions (0: all)"}),
			Action: func(c *cli.Context) error {
				if err := args(c, 1, "KEY"); err != nil {
					return err
				}
				opts, err := readOpts(c)
				if err != nil {
					return err
				}
				if l := c.Int("limit"); l > 0 {
					opts = append(opts, client.Limit(l))
				}
				return withClient(c, func(ctx context.Context, cl *client.Client) error {
					hr, err := cl.HistoryResponse(ctx, c.Args().Get(0), opts...)
					if err != nil {
						return err
					}
					if boolFlag(c, "json") {
						return printJSON(c.App.Writer, hr) // as GET /v1/history/KEY
					}
					vs := hr.Versions
					tw := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', 0)
					fmt.Fprintln(tw, "REVISION\tCREATE REV\tVALUE")
					for _, v := range vs {
						val := printable(v.Value)
						if v.Deleted {
							val = "(deleted)"
						}
						fmt.Fprintf(tw, "%d\t%d\t%s\n", v.Revision, v.CreateRevision, val)
					}
					return tw.Flush()
				})
			},
		},
		{
			Name: "log", Usage: "show committed transactions from a revision", ArgsUsage: " ",
			Description: "Example:\n   cairn log --from 10 --limit 5",
			Flags: append(readFlags(false),
				&cli.Uint64Flag{Name: "from", Value: 1, Usage: "first revision"},
				&cli.IntFlag{Name: "limit", Value: 100, Usage: "most transactions"}),
			Action: func(c *cli.Context) error {
				if c.NArg() > 0 {
					return usageError("log takes no arguments")
				}
				opts, err := readOpts(c)
				if err != nil {
					return err
				}
				return withClient(c, func(ctx context.Context, cl *client.Client) error {
					res, err := cl.Log(ctx, c.Uint64("from"), c.Int("limit"), opts...)
					if err != nil {
						return err
					}
					if boolFlag(c, "json") {
						return printJSON(c.App.Writer, res) // as GET /v1/log
					}
					tw := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', 0)
					// AUTH is the user the server authenticated (access
					// control on), USER what the client supplied.
					fmt.Fprintln(tw, "REVISION\tTIME\tAUTH\tUSER\tOPERATIONS\tHASH")
					for _, r := range res.Records {
						ops := ""
						for i, o := range r.Operations {
							if i > 0 {
								ops += ", "
							}
							ops += o.Op + " " + o.Key
						}
						fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%.16s\n", r.Revision, r.Time.Format(time.RFC3339), r.AuthUser, r.User, ops, r.Hash)
					}
					return tw.Flush()
				})
			},
		},
	}
}
