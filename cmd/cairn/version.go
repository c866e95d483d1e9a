package main

import (
	"context"
	"errors"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/cairn-db/cairn/api"
	"github.com/cairn-db/cairn/client"
	"github.com/cairn-db/cairn/internal/buildinfo"
)

// versionWait bounds how long `cairn version` waits for the cluster (less
// when --timeout is shorter): the local version is printed either way.
const versionWait = 3 * time.Second

// versionOutput is `cairn version --json`.
type versionOutput struct {
	// Client is this command-line tool's build.
	Client api.VersionResponse `json:"client"`
	// Members are the members asked, in the cluster's order.
	Members []memberVersion `json:"members"`
	// Unreachable says why no member could be asked ("" when one was).
	Unreachable string `json:"unreachable,omitempty"`
}

// memberVersion is one member's answer to GET /version, or why it gave
// none.
type memberVersion struct {
	Endpoint string `json:"endpoint"`
	*api.VersionResponse
	Error string `json:"error,omitempty"`
}

func versionCommand() *cli.Command {
	return &cli.Command{
		Name:  "version",
		Usage: "print the version of this tool and of every reachable member",
		Description: `Prints this tool's version, git commit, build date, Go version and
platform, then each member's (GET /version). When the cluster cannot be
reached within 3 s (or --timeout), it prints the local version and a note
on stderr and still exits 0.

Example:
   cairn version
   cairn version --json`,
		Flags: []cli.Flag{jsonFlag()},
		Action: func(c *cli.Context) error {
			out := versionOutput{Client: buildinfo.Get(), Members: []memberVersion{}}
			if err := memberVersions(c, &out); err != nil {
				out.Unreachable = err.Error()
			}
			if out.Unreachable != "" && !boolFlag(c, "json") {
				defer fmt.Fprintf(c.App.ErrWriter, "cairn: no member's version: %s\n", out.Unreachable)
			}
			if boolFlag(c, "json") {
				return printJSON(c.App.Writer, out)
			}
			tw := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "WHO\tVERSION\tCOMMIT\tBUILT\tGO\tPLATFORM\tENDPOINT")
			row := func(who string, v *api.VersionResponse, ep string) {
				commit := v.Commit
				if len(commit) > 12 {
					commit = commit[:12]
				}
				if v.Modified {
					commit += "+dirty"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", who, v.Version, orDash(commit), orDash(v.BuildDate), v.GoVersion, v.Platform, orDash(ep))
			}
			row("cairn", &out.Client, "")
			for _, m := range out.Members {
				if m.VersionResponse == nil {
					fmt.Fprintf(tw, "?\t-\t-\t-\t-\t-\t%s (%s)\n", m.Endpoint, m.Error)
					continue
				}
				row(m.Node, m.VersionResponse, m.Endpoint)
			}
			return tw.Flush()
		},
	}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// memberVersions asks every member for its version: the members the
// cluster lists, or, when the list is not for this user (it needs admin
// under access control), the --cluster endpoints. It fails only when no
// member answered.
func memberVersions(c *cli.Context, out *versionOutput) error {
	cfg, err := clientConfig(c)
	if err != nil {
		return err
	}
	wait := versionWait
	if cfg.UnreachableTimeout > 0 {
		wait = min(wait, cfg.UnreachableTimeout)
	}
	cfg.UnreachableTimeout = wait
	cfg.SlowCallNote = nil
	cl, err := client.New(cfg)
	if err != nil {
		return err
	}
	defer cl.Close()
	// A little past the client's own bound, whose error names the
	// endpoints and why they failed.
	ctx, cancel := context.WithTimeout(c.Context, wait+time.Second)
	defer cancel()
	endpoints := cfg.Endpoints
	mr, err := cl.Members(ctx)
	switch {
	case err == nil:
		endpoints = endpoints[:0:0]
		for _, m := range mr.Members {
			endpoints = append(endpoints, m.HTTPURL)
		}
	case errors.Is(err, client.ErrPermissionDenied), errors.Is(err, client.ErrUnauthenticated):
		// Not for this user: ask the endpoints given.
	default:
		return err
	}
	var last error
	for _, ep := range endpoints {
		v, err := cl.Version(ctx, ep)
		m := memberVersion{Endpoint: ep, VersionResponse: v}
		if err != nil {
			m.Error, last = err.Error(), err
		}
		out.Members = append(out.Members, m)
	}
	if last != nil && len(out.Members) > 0 {
		for _, m := range out.Members {
			if m.VersionResponse != nil {
				return nil
			}
		}
		out.Members = out.Members[:0]
		return last
	}
	return nil
}
