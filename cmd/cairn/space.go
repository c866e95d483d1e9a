package main

import (
	"context"
	"errors"
	"fmt"
	"text/tabwriter"

	"github.com/urfave/cli/v2"

	"github.com/cairn-db/cairn/client"
	"github.com/cairn-db/cairn/internal/bytesize"
	"github.com/cairn-db/cairn/node"
)

// errSpaceFailed means node space failed on at least one member.
var errSpaceFailed = errors.New("node space failed")

func nodeSpaceCommand() *cli.Command {
	return &cli.Command{
		Name: "space", Usage: "show members' disk-space limits and usage, or change the limits while they run", ArgsUsage: " ",
		Description: `Without --quota-backend-bytes or --min-free-bytes it shows each member's
quota, store (its file and the part in use, which the quota counts),
reserve and free disk space. With either it changes that limit on each
member at once, without a restart: a member refusing writes with no_space
takes them again if the new limits leave room, and its alarm clears. The
change lasts until the member's next start, which takes --quota-backend-bytes
and --min-free-bytes (or the config file) again: change those too.
Sizes are bytes or 512MiB, 16GiB, ...; 0 for no quota or no reserve.
Without --member every member is taken; the exit status is non-zero if any
failed.
Example:
   cairn node space
   cairn node space --quota-backend-bytes 16GiB
   cairn node space --member n2 --min-free-bytes 256MiB`,
		Flags: []cli.Flag{
			memberFlag("only this member (its id)"),
			allFlag("every member (the default)"),
			&cli.StringFlag{Name: "quota-backend-bytes", Usage: "set the store's quota (as node run's flag; 0: no quota)"},
			&cli.StringFlag{Name: "min-free-bytes", Usage: "set the free space kept on the data directory's filesystem (as node run's flag; 0: no reserve)"},
			jsonFlag(),
		},
		Action: nodeSpaceAction,
	}
}

// spaceRow is one member's limits and usage (omitted when only setting).
type spaceRow struct {
	Member            string `json:"member"`
	OK                bool   `json:"ok"`
	QuotaBackendBytes int64  `json:"quota_backend_bytes"`
	MinFreeBytes      int64  `json:"min_free_bytes"`
	StoreBytes        int64  `json:"store_bytes,omitempty"`
	StoreInUseBytes   int64  `json:"store_in_use_bytes,omitempty"`
	FreeBytes         int64  `json:"free_bytes,omitempty"`
	Error             string `json:"error,omitempty"`
}

func nodeSpaceAction(c *cli.Context) error {
	if err := checkMemberFlags(c, "node space"); err != nil {
		return err
	}
	var quota, reserve *int64
	for _, f := range []struct {
		name string
		v    **int64
	}{{"quota-backend-bytes", &quota}, {"min-free-bytes", &reserve}} {
		if c.IsSet(f.name) {
			n, err := parseSize(c, f.name)
			if err != nil {
				return err
			}
			*f.v = &n
		}
	}
	set := quota != nil || reserve != nil
	if set {
		// The node's own bounds, before any member is changed.
		if err := node.CheckSpaceLimits(deref(quota), deref(reserve)); err != nil {
			return usageError("node space: %v", err)
		}
	}
	asJSON := boolFlag(c, "json")
	var rows []spaceRow
	err := withClient(c, func(ctx context.Context, cl *client.Client) error {
		targets, err := selectMembers(ctx, cl, c.String("member"), false)
		if err != nil {
			return err
		}
		for _, m := range targets {
			row := spaceRow{Member: m.ID}
			switch {
			case m.HTTPURL == "":
				row.Error = "no known HTTP address"
			case set:
				sl, err := cl.SetSpaceLimits(ctx, m.HTTPURL, quota, reserve)
				if err == nil && (sl.QuotaBackendBytes == nil || sl.MinFreeBytes == nil) {
					err = fmt.Errorf("member %s answered without its limits", m.ID)
				}
				if err != nil {
					row.Error = err.Error()
				} else {
					row.OK, row.QuotaBackendBytes, row.MinFreeBytes = true, *sl.QuotaBackendBytes, *sl.MinFreeBytes
				}
			default:
				st, err := cl.Status(ctx, m.HTTPURL)
				if err != nil {
					row.Error = err.Error()
				} else {
					row.OK, row.QuotaBackendBytes, row.MinFreeBytes = true, st.QuotaBytes, st.MinFreeBytes
					row.StoreBytes, row.StoreInUseBytes, row.FreeBytes = st.StoreBytes, st.StoreInUseBytes, st.FreeBytes
				}
			}
			rows = append(rows, row)
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
		err = printJSON(c.App.Writer, rows)
	} else {
		err = printSpace(c, rows, set)
	}
	if err != nil {
		return err
	}
	return failedOn(errSpaceFailed, rows, func(r spaceRow) bool { return r.OK })
}

func deref(p *int64) int64 {
	if p == nil {
		return 0
	}
	return *p
}

// limitText is a quota or reserve for people: 0 is none.
func limitText(n int64) string {
	if n == 0 {
		return "none"
	}
	return bytesize.Format(n)
}

// printSpace prints a table of the rows: the limits as set, or the
// limits and usage.
func printSpace(c *cli.Context, rows []spaceRow, set bool) error {
	tw := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', 0)
	if set {
		fmt.Fprintln(tw, "MEMBER\tQUOTA\tRESERVE")
	} else {
		fmt.Fprintln(tw, "MEMBER\tQUOTA\tIN USE\tSTORE\tRESERVE\tFREE")
	}
	for _, r := range rows {
		switch {
		case !r.OK:
			fmt.Fprintf(tw, "%s\tFAILED: %s\n", r.Member, r.Error)
		case set:
			fmt.Fprintf(tw, "%s\t%s\t%s\n", r.Member, limitText(r.QuotaBackendBytes), limitText(r.MinFreeBytes))
		default:
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", r.Member, limitText(r.QuotaBackendBytes), bytesize.Format(r.StoreInUseBytes),
				bytesize.Format(r.StoreBytes), limitText(r.MinFreeBytes), bytesize.Format(r.FreeBytes))
		}
	}
	return tw.Flush()
}
