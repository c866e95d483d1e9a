package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/cairn-db/cairn/api"
	"github.com/cairn-db/cairn/client"
)

// watchCommands holds `cairn watch [PREFIX]`: it prints committed changes under
// a prefix until Ctrl-C (exit 0) or --timeout (exit 0), or until the watch
// falls behind compaction (exit 1).
func watchCommands() []*cli.Command {
	return []*cli.Command{{
		Name: "watch", Usage: "stream committed changes under a prefix until Ctrl-C", ArgsUsage: "[PREFIX]",
		Description: `Prints one line per operation: REVISION OP KEY. With --json, prints each
event as one JSON object a line (the GET /v1/watch format). The watch
survives member failures: it resumes on another member after the last
revision printed, without gaps or repeats.
Example:
   cairn watch users/
   cairn watch --from 1 --json ''
Exit status: 0 after Ctrl-C or --timeout; 1 when the start (or resume)
revision has been compacted: restart with --from the oldest revision named.`,
		Flags: []cli.Flag{
			&cli.Uint64Flag{Name: "from", Usage: "first revision to print (default: only changes committed from now on)"},
			&cli.BoolFlag{Name: "progress", Usage: "also print progress events (the revision the watch is complete up to)"},
			jsonFlag(),
		},
		Action: func(c *cli.Context) error {
			if c.NArg() > 1 {
				return usageError("watch takes at most one PREFIX")
			}
			if c.IsSet("from") && c.Uint64("from") == 0 {
				return usageError("--from must be at least 1")
			}
			prefix := c.Args().Get(0)
			asJSON := boolFlag(c, "json")
			progress := c.Bool("progress")
			return withClient(c, func(ctx context.Context, cl *client.Client) error {
				events, err := cl.Watch(ctx, prefix, c.Uint64("from"))
				if err != nil {
					if ctx.Err() != nil && c.Context.Err() != nil {
						return nil // Ctrl-C while connecting
					}
					return watchErr(err)
				}
				for ev := range events {
					if ev.Err != nil {
						return watchErr(ev.Err)
					}
					if ev.Type == api.WatchProgress && !progress {
						continue
					}
					if err := printWatchEvent(c, ev, asJSON); err != nil {
						return err
					}
				}
				// The channel closes when ctx ends: Ctrl-C or --timeout.
				return nil
			})
		},
	}}
}

// watchErr explains a watch that fell behind compaction.
func watchErr(err error) error {
	var ce *client.CompactedError
	if errors.As(err, &ce) {
		return fmt.Errorf("watch: %w; restart with --from %d", err, ce.Oldest)
	}
	return fmt.Errorf("watch: %w", err)
}

func printWatchEvent(c *cli.Context, ev client.WatchEvent, asJSON bool) error {
	w := c.App.Writer
	if asJSON {
		b, err := json.Marshal(api.WatchEvent{Type: ev.Type, Revision: ev.Revision, Time: ev.Time, AuthUser: ev.AuthUser, User: ev.User,
			Description: ev.Description, Meta: ev.Meta, Operations: ev.Operations, Hash: ev.Hash})
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(w, "%s\n", b)
		return err
	}
	if ev.Type == api.WatchProgress {
		_, err := fmt.Fprintf(w, "%d progress\n", ev.Revision)
		return err
	}
	for _, o := range ev.Operations {
		if _, err := fmt.Fprintf(w, "%d %s %s\n", ev.Revision, o.Op, o.Key); err != nil {
			return err
		}
	}
	return nil
}
