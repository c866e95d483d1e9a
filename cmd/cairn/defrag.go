package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/cairn-db/cairn/client"
	"github.com/cairn-db/cairn/internal/bytesize"
)

// errDefragFailed means defrag failed on at least one member.
var errDefragFailed = errors.New("defrag failed")

func defragCommand() *cli.Command {
	return &cli.Command{
		Name: "defrag", Usage: "give back the free pages of members' stores, one member at a time", ArgsUsage: " ",
		Description: `Each member copies the pages in use of its object store into a new file
and swaps it in, so the file shrinks to what it holds (deletes and
compaction free pages inside the file but do not shrink it). The member's
reads and writes wait while it copies (longer the more of the store is in
use); the other members go on, so the members are taken one after another,
the leader last. Defragmenting needs free disk space for the copy.
Without --member every member is defragmented; the exit status is non-zero
if any failed.
Example:
   cairn defrag
   cairn defrag --member n2`,
		Flags: []cli.Flag{
			memberFlag("defragment only this member (its id)"),
			allFlag("defragment every member, one after another (the default)"),
			jsonFlag(),
		},
		Action: defragAction,
	}
}

// defragRow is one member's outcome.
type defragRow struct {
	Member      string `json:"member"`
	OK          bool   `json:"ok"`
	BeforeBytes int64  `json:"before_bytes,omitempty"`
	AfterBytes  int64  `json:"after_bytes,omitempty"`
	Took        string `json:"took,omitempty"`
	Error       string `json:"error,omitempty"`
}

func defragAction(c *cli.Context) error {
	if err := checkMemberFlags(c, "defrag"); err != nil {
		return err
	}
	asJSON := boolFlag(c, "json")
	var rows []defragRow
	err := withClient(c, func(ctx context.Context, cl *client.Client) error {
		// The leader last: defragmenting it pauses every write.
		targets, err := selectMembers(ctx, cl, c.String("member"), true)
		if err != nil {
			return err
		}
		for _, m := range targets {
			row := defragRow{Member: m.ID}
			if m.HTTPURL == "" {
				row.Error = "no known HTTP address"
			} else if !asJSON {
				fmt.Fprintf(c.App.Writer, "%s: defragmenting...\n", m.ID)
			}
			if m.HTTPURL != "" {
				dr, err := cl.Defrag(ctx, m.HTTPURL)
				if err != nil {
					row.Error = err.Error()
				} else {
					row.OK, row.BeforeBytes, row.AfterBytes, row.Took = true, dr.BeforeBytes, dr.AfterBytes, dr.Took
				}
			}
			rows = append(rows, row)
			if asJSON {
				continue
			}
			if row.OK {
				fmt.Fprintf(c.App.Writer, "%s: %s -> %s (took %s)\n", row.Member,
					bytesize.Format(row.BeforeBytes), bytesize.Format(row.AfterBytes), row.Took)
			} else {
				fmt.Fprintf(c.App.Writer, "%s: FAILED: %s\n", row.Member, row.Error)
			}
			if ctx.Err() != nil {
				break
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	if asJSON {
		if err := printJSON(c.App.Writer, rows); err != nil {
			return err
		}
	}
	return failedOn(errDefragFailed, rows, func(r defragRow) bool { return r.OK })
}
