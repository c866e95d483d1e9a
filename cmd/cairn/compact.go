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
				asked := c.Uint64("before")
				kept, err := cl.CompactBefore(ctx, asked)
				if err != nil {
					return err
				}
				if boolFlag(c, "json") {
					return printJSON(c.App.Writer, compactOutput{Before: kept, Requested: asked})
				}
				if kept < asked {
					_, err = fmt.Fprintf(c.App.Writer, "compacted before revision %d, not %d: a mirror's checkpoint holds the history from %d on\n", kept, asked, kept)
					return err
				}
				_, err = fmt.Fprintf(c.App.Writer, "compacted before revision %d\n", kept)
				return err
			})
		},
	}
}

// compactOutput is `cairn compact --json`: history is compacted before
// revision Before (the oldest revision kept), Requested the --before
// asked for (Before is lower when a mirror's checkpoint held compaction
// back).
type compactOutput struct {
	Before    uint64 `json:"before"`
	Requested uint64 `json:"requested"`
}
