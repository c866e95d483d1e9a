package main

import (
	"context"
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/cairn-db/cairn/client"
)

func compactCommand() *cli.Command {
	return &cli.Command{
		Name: "compact", Usage: "drop history before a revision on every replica", ArgsUsage: " ",
		Description: "Example:\n   cairn compact --before 1000",
		Flags:       []cli.Flag{&cli.Uint64Flag{Name: "before", Usage: "oldest revision to keep (required)"}, jsonFlag()},
		Action: func(c *cli.Context) error {
			if !c.IsSet("before") || c.Uint64("before") == 0 {
				return usageError("compact needs --before R (R >= 1)")
			}
			return withClient(c, func(ctx context.Context, cl *client.Client) error {
				if err := cl.Compact(ctx, c.Uint64("before")); err != nil {
					return err
				}
				if boolFlag(c, "json") {
					return printJSON(c.App.Writer, compactOutput{Before: c.Uint64("before")})
				}
				_, err := fmt.Fprintf(c.App.Writer, "compacted before revision %d\n", c.Uint64("before"))
				return err
			})
		},
	}
}

// compactOutput is `cairn compact --json`: history is compacted before
// revision Before (the oldest revision kept).
type compactOutput struct {
	Before uint64 `json:"before"`
}
