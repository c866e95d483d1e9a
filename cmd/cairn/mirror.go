package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/cairn-db/cairn/api"
	"github.com/cairn-db/cairn/client"
	"github.com/cairn-db/cairn/internal/bytesize"
)

// mirrorCommands are `cairn mirror start|stop|promote|status`
// (docs/mirror.md): making this cluster a standby of another, and what
// its mirrors look like from either side.
func mirrorCommands() []*cli.Command {
	return []*cli.Command{{
		Name:  "mirror",
		Usage: "make this cluster a standby of another (a mirror), watch it, promote it",
		Subcommands: []*cli.Command{
			{
				Name: "start", Usage: "make this cluster a standby following a source cluster", ArgsUsage: " ",
				Description: `The cluster (--cluster) becomes read-only and its leader follows the
source's committed transactions as they commit, applying them verbatim:
same revisions, times and chain hashes. With --include or --exclude it is a
filtered mirror instead, with its own revisions (docs/mirror.md).
--max-rate bounds the bytes per second the standby's leader reads from the
source's stream (compressed, as they travel); it is kept with the mirror,
so whichever member leads applies it, and a member's own --mirror-max-rate
still applies when it is lower. To change it, stop the mirror and start it
again.
Example:
   cairn --cluster http://dr1:8001 mirror start --source http://primary1:8001,http://primary2:8001 --max-rate 10MiB`,
				Flags: []cli.Flag{
					&cli.StringSliceFlag{Name: "source", Usage: "the source cluster's member URLs (repeatable or comma separated)"},
					&cli.StringSliceFlag{Name: "include", Usage: "filtered mirror: follow only keys with this prefix (repeatable)"},
					&cli.StringSliceFlag{Name: "exclude", Usage: "filtered mirror: never follow keys with this prefix (repeatable)"},
					&cli.StringFlag{Name: "max-rate", Usage: "the most bytes per second read from the source's stream (bytes, or 10MiB, ...; 0: no bound of the mirror's own)"},
					jsonFlag(),
				},
				Action: mirrorStartAction,
			},
			{
				Name: "stop", Usage: "stop following the source; the cluster stays read-only until promoted", ArgsUsage: " ",
				Flags:  []cli.Flag{jsonFlag()},
				Action: mirrorAction("stop", (*client.Client).MirrorStop),
			},
			{
				Name: "promote", Usage: "stop following and make the standby writable from its head", ArgsUsage: " ",
				Description: `The promotion is a transaction in the standby's chain (description
"mirror promoted", the source cluster and revision in its meta). Fence the
old primary first (docs/mirror.md, "Promotion"): nothing stops it taking
writes that the promoted cluster will never see.`,
				Flags:  []cli.Flag{jsonFlag()},
				Action: mirrorAction("promote", (*client.Client).MirrorPromote),
			},
			{
				Name: "status", Usage: "show the mirror state: as a standby (source, lag) and as a source (checkpoints)", ArgsUsage: " ",
				Description: `With --caught-up it first waits until the standby has applied everything
the source cluster has committed: it asks the source for its committed head
(a linearizable read there, through the standby) each time it looks, and
returns once the standby has applied up to that head (lag 0). A source that
cannot be reached is asked again until --timeout; it exits 1 at once if the
mirror is not following (stopped, diverged, compacted, or a primary).
Example (a planned switch-over: stop the writes on the primary, then):
   cairn --cluster http://dr1:8001 mirror status --caught-up
   cairn --cluster http://dr1:8001 mirror promote`,
				Flags: []cli.Flag{
					&cli.BoolFlag{Name: "caught-up", Usage: "wait until the standby has applied the source cluster's committed head (asked of the source)"},
					jsonFlag(),
				},
				Action: mirrorStatusAction,
			},
		},
	}}
}

func mirrorStartAction(c *cli.Context) error {
	if c.NArg() > 0 {
		return usageError("mirror start takes no arguments (the source is --source URL[,URL...])")
	}
	req := api.MirrorStartRequest{}
	for _, s := range c.StringSlice("source") {
		req.Sources = append(req.Sources, splitList(s)...)
	}
	if len(req.Sources) == 0 {
		return usageError("mirror start needs --source URL[,URL...]")
	}
	req.Include, req.Exclude = c.StringSlice("include"), c.StringSlice("exclude")
	if c.IsSet("max-rate") {
		rate, err := parseSize(c, "max-rate")
		if err != nil {
			return err
		}
		req.MaxRate = rate
	}
	return withClient(c, func(ctx context.Context, cl *client.Client) error {
		st, err := cl.MirrorStart(ctx, req)
		if err != nil {
			return err
		}
		return printMirror(c, st)
	})
}

// errNotFollowing means mirror status --caught-up found a mirror that is
// not following its source: it cannot catch up.
var errNotFollowing = errors.New("the mirror is not following its source")

func mirrorStatusAction(c *cli.Context) error {
	if c.NArg() > 0 {
		return usageError("mirror status takes no arguments")
	}
	if !c.Bool("caught-up") {
		return mirrorAction("status", (*client.Client).MirrorStatus)(c)
	}
	return withClient(c, func(ctx context.Context, cl *client.Client) error {
		// The source head is asked of the source cluster each time (a
		// linearizable read there): the head a lagging source member
		// streamed is not the source's committed head.
		st, err := cl.MirrorCaughtUp(ctx, 200*time.Millisecond)
		if st != nil && errors.Is(err, client.ErrMirrorState) {
			if perr := printMirror(c, st); perr != nil {
				return perr
			}
			return fmt.Errorf("%w: it is %s", errNotFollowing, st.State)
		}
		if err != nil {
			return err
		}
		return printMirror(c, st)
	})
}

// mirrorAction is a mirror subcommand that takes no arguments, calls one
// client method and prints the status it answers.
func mirrorAction(name string, call func(*client.Client, context.Context) (*api.MirrorStatus, error)) cli.ActionFunc {
	return func(c *cli.Context) error {
		if c.NArg() > 0 {
			return usageError("mirror %s takes no arguments", name)
		}
		return withClient(c, func(ctx context.Context, cl *client.Client) error {
			st, err := call(cl, ctx)
			if err != nil {
				return err
			}
			return printMirror(c, st)
		})
	}
}

// printMirror prints a mirror status: the API's answer with --json, else
// one line per field that says something.
func printMirror(c *cli.Context, st *api.MirrorStatus) error {
	if boolFlag(c, "json") {
		return printJSON(c.App.Writer, st)
	}
	return writeMirror(c.App.Writer, st)
}

func writeMirror(w io.Writer, st *api.MirrorStatus) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	line := func(k, format string, args ...any) { fmt.Fprintf(tw, "%s\t"+format+"\n", append([]any{k}, args...)...) }
	state := st.State
	if !st.Since.IsZero() {
		state += " since " + st.Since.UTC().Format(time.RFC3339)
	}
	line("state", "%s", state)
	if st.State != api.MirrorPrimary || len(st.Sources) > 0 {
		line("sources", "%s", strings.Join(st.Sources, ", "))
		if st.Source != "" {
			line("streaming from", "%s", st.Source)
		}
		if st.SourceClusterID != "" {
			line("source cluster", "%s", st.SourceClusterID)
		}
		if len(st.Upstream) > 0 {
			line("upstream", "%s", strings.Join(st.Upstream, " <- "))
		}
		if st.Filtered {
			line("filter", "include %s, exclude %s", listOrNone(st.Include), listOrNone(st.Exclude))
		}
		line("head", "%d", st.Head)
		if st.Filtered {
			line("source revision", "%d", st.SourceRevision)
		}
		line("source head", "%d", st.SourceHead)
		line("lag", "%d revisions, %s", st.LagRevisions, time.Duration(st.LagSeconds*float64(time.Second)).Round(time.Millisecond))
		if st.MaxRate > 0 {
			line("max rate", "%s/s", bytesize.Format(st.MaxRate))
		}
	}
	if st.Message != "" {
		line("message", "%s", st.Message)
	}
	if st.LastError != "" {
		line("last error", "%s", st.LastError)
	}
	if st.DivergedFile != "" {
		line("diverged file", "%s on member %s", st.DivergedFile, st.DivergedMember)
	}
	if st.PromotedAt != 0 {
		at := ""
		if st.PromotedTime != nil {
			at = " at " + st.PromotedTime.UTC().Format(time.RFC3339)
		}
		line("promoted", "revision %d%s, from %s", st.PromotedAt, at, st.PromotedFrom)
	}
	for _, cp := range st.Checkpoints {
		rel := ""
		if cp.Released {
			rel = ", released (no progress within its window)"
		}
		line("mirror "+cp.ID, "at revision %d, last progress %s, window %s%s", cp.Revision, cp.LastProgress.UTC().Format(time.RFC3339), cp.Window, rel)
	}
	return tw.Flush()
}

func listOrNone(l []string) string {
	if len(l) == 0 {
		return "-"
	}
	return strings.Join(l, ", ")
}
