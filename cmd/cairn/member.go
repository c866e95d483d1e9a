package main

import (
	"context"
	"fmt"
	"text/tabwriter"

	"github.com/urfave/cli/v2"

	"github.com/cairn-db/cairn/api"
	"github.com/cairn-db/cairn/client"
)

func memberCommands() []*cli.Command {
	return []*cli.Command{
		{
			Name: "list", Usage: "list members with their roles, addresses and progress",
			Description: "Example:\n   cairn node list\n   cairn --cluster http://10.0.0.1:8001 node list --json",
			Flags:       []cli.Flag{jsonFlag()},
			Action: func(c *cli.Context) error {
				return withClient(c, func(ctx context.Context, cl *client.Client) error {
					m, err := cl.Members(ctx)
					if err != nil {
						return err
					}
					return printMembers(c, m)
				})
			},
		},
		{
			Name: "join", Usage: "add a member (usually done by `node run --join`)",
			Description: "Example:\n   cairn node join --id n4 --raft-addr 10.0.0.4:7001 --http-url http://10.0.0.4:8001 --non-voter",
			Flags: []cli.Flag{
				&cli.StringFlag{Name: "id", Usage: "member id (required)"},
				&cli.StringFlag{Name: "raft-addr", Usage: "member's raft address (required)"},
				&cli.StringFlag{Name: "http-url", Usage: "member's HTTP URL (required)"},
				&cli.BoolFlag{Name: "non-voter", Usage: "add as a non-voting read replica"},
				jsonFlag(),
			},
			Action: func(c *cli.Context) error {
				req := api.JoinRequest{ID: c.String("id"), RaftAddr: c.String("raft-addr"),
					HTTPURL: c.String("http-url"), NonVoter: c.Bool("non-voter")}
				if req.ID == "" || req.RaftAddr == "" || req.HTTPURL == "" {
					return usageError("node join needs --id, --raft-addr and --http-url")
				}
				return withClient(c, func(ctx context.Context, cl *client.Client) error {
					m, err := cl.AddMember(ctx, req)
					if err != nil {
						return err
					}
					if !req.NonVoter {
						warnEvenVoters(c, m)
					}
					return printMembers(c, m)
				})
			},
		},
		memberCommand("remove", "remove a member (the leader hands over leadership first)",
			"cairn node remove n3", func(ctx context.Context, cl *client.Client, id string) (*api.MembersResponse, error) {
				return cl.RemoveMember(ctx, id)
			}),
		memberCommand("promote", "make a non-voter a voter",
			"cairn node promote n4", func(ctx context.Context, cl *client.Client, id string) (*api.MembersResponse, error) {
				return cl.Promote(ctx, id)
			}, warnEvenVoters),
		{
			Name: "transfer-leadership", Usage: "hand leadership to a member (or to any voter)", ArgsUsage: "[ID]",
			Description: "Example:\n   cairn node transfer-leadership n2\n   cairn node transfer-leadership",
			Flags:       []cli.Flag{jsonFlag()},
			Action: func(c *cli.Context) error {
				if c.NArg() > 1 {
					return usageError("transfer-leadership takes at most one ID")
				}
				return withClient(c, func(ctx context.Context, cl *client.Client) error {
					m, err := cl.TransferLeadership(ctx, c.Args().Get(0))
					if err != nil {
						return err
					}
					return printMembers(c, m)
				})
			},
		},
	}
}

// memberCommand is a command that changes member ID and prints the
// members; after, if given, looks at the result first (a warning).
func memberCommand(name, usage, example string, fn func(context.Context, *client.Client, string) (*api.MembersResponse, error),
	after ...func(*cli.Context, *api.MembersResponse)) *cli.Command {
	return &cli.Command{
		Name: name, Usage: usage, ArgsUsage: "ID",
		Description: "Example:\n   " + example,
		Flags:       []cli.Flag{jsonFlag()},
		Action: func(c *cli.Context) error {
			if err := args(c, 1, "ID"); err != nil {
				return err
			}
			return withClient(c, func(ctx context.Context, cl *client.Client) error {
				m, err := fn(ctx, cl, c.Args().Get(0))
				if err != nil {
					return err
				}
				for _, f := range after {
					f(c, m)
				}
				return printMembers(c, m)
			})
		},
	}
}

// warnEvenVoters warns on stderr when the cluster now has an even number
// of voters: a majority of 2k is k+1, so 2k voters survive k-1 failures,
// no more than 2k-1 do, while every write waits for one more of them.
func warnEvenVoters(c *cli.Context, m *api.MembersResponse) {
	if w := evenVotersWarning(m); w != "" {
		fmt.Fprintln(c.App.ErrWriter, w)
	}
}

func evenVotersWarning(m *api.MembersResponse) string {
	n := 0
	for _, x := range m.Members {
		if x.Role == api.RoleVoter {
			n++
		}
	}
	if n == 0 || n%2 != 0 {
		return ""
	}
	return fmt.Sprintf("warning: the cluster now has %d voters, an even number: a majority of %d is %d, so it survives %d voter failure(s), "+
		"no more than with %d voters, and each write waits for one more voter; add or promote another voter to survive %d",
		n, n, n/2+1, n/2-1, n-1, n/2)
}

func printMembers(c *cli.Context, m *api.MembersResponse) error {
	if boolFlag(c, "json") {
		return printJSON(c.App.Writer, m)
	}
	tw := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tROLE\tLEADER\tRAFT\tHTTP\tREVISION\tAPPLIED\tLAST CONTACT")
	for _, x := range m.Members {
		leader := ""
		if x.Leader {
			leader = "*"
		}
		rev, applied := "-", "-"
		if x.Reachable {
			rev, applied = fmt.Sprint(x.Revision), fmt.Sprint(x.AppliedIndex)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", x.ID, x.Role, leader, x.RaftAddr, x.HTTPURL, rev, applied, x.LastContact)
	}
	return tw.Flush()
}

// The member selection of the commands that act on each member in turn
// (defrag, node space): --member ID for one, --all (the default) for
// every member.

func memberFlag(usage string) cli.Flag { return &cli.StringFlag{Name: "member", Usage: usage} }
func allFlag(usage string) cli.Flag    { return &cli.BoolFlag{Name: "all", Usage: usage} }

// checkMemberFlags refuses arguments and a bad --member or --all (usage
// errors) for the command named name.
func checkMemberFlags(c *cli.Context, name string) error {
	if c.NArg() > 0 {
		return usageError("%s takes no arguments (use --member ID)", name)
	}
	if c.IsSet("member") && c.Bool("all") {
		return usageError("%s: --member and --all are exclusive", name)
	}
	if c.IsSet("member") && c.String("member") == "" {
		return usageError("%s: --member needs a member id", name)
	}
	return nil
}

// selectMembers returns the members to act on in order: only member id
// when given (client.ErrNotFound when there is none), else every member
// as the cluster lists them, with the leader last when leaderLast.
func selectMembers(ctx context.Context, cl *client.Client, id string, leaderLast bool) ([]api.Member, error) {
	mr, err := cl.Members(ctx)
	if err != nil {
		return nil, err
	}
	return memberOrder(mr.Members, id, leaderLast)
}

func memberOrder(members []api.Member, id string, leaderLast bool) ([]api.Member, error) {
	if id != "" {
		for _, m := range members {
			if m.ID == id {
				return []api.Member{m}, nil
			}
		}
		return nil, fmt.Errorf("%w: no member %q", client.ErrNotFound, id)
	}
	if !leaderLast {
		return members, nil
	}
	var out []api.Member
	var leader *api.Member
	for i, m := range members {
		if m.Leader {
			leader = &members[i]
			continue
		}
		out = append(out, m)
	}
	if leader != nil {
		out = append(out, *leader)
	}
	return out, nil
}

// failedOn returns err with how many of a per-member command's rows
// failed (ok false), or nil when none did.
func failedOn[T any](err error, rows []T, ok func(T) bool) error {
	failed := 0
	for _, r := range rows {
		if !ok(r) {
			failed++
		}
	}
	if failed > 0 {
		return fmt.Errorf("%w on %d of %d member(s)", err, failed, len(rows))
	}
	return nil
}
