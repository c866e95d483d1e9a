package main

import (
	"context"
	"fmt"
	"text/tabwriter"

	"github.com/urfave/cli/v2"

	"github.com/cairn-db/cairn/api"
	"github.com/cairn-db/cairn/client"
	"github.com/cairn-db/cairn/node"
)

func adminCommands() []*cli.Command {
	return []*cli.Command{{
		Name:  "node",
		Usage: "run and administer cluster members",
		Subcommands: []*cli.Command{
			nodeRunCommand(),
			{
				Name: "recover", Usage: "rewrite a stopped member's membership after the majority is lost for good",
				Description: `Run on every surviving member while it is stopped, with the same peers
file (hashicorp/raft's peers.json format), then start them without
--bootstrap or --join. See docs/deploy.md before using it.
Example:
   echo '[{"id":"n1","address":"10.0.0.1:7001"}]' > peers.json
   cairn node recover --data-dir /var/lib/cairn --id n1 --peers peers.json`,
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "data-dir", Usage: "the stopped member's data directory (required)"},
					&cli.StringFlag{Name: "id", Usage: "the member's id (required)"},
					&cli.StringFlag{Name: "peers", Usage: "JSON list of the servers that form the cluster now (required)"},
				},
				Action: func(c *cli.Context) error {
					if c.String("data-dir") == "" || c.String("id") == "" || c.String("peers") == "" {
						return usageError("node recover needs --data-dir, --id and --peers")
					}
					servers, err := node.ReadPeersFile(c.String("peers"))
					if err != nil {
						return usageError("--peers: %v", err)
					}
					if err := node.Recover(c.Context, c.String("data-dir"), c.String("id"), servers, nil); err != nil {
						return err
					}
					_, err = fmt.Fprintf(c.App.Writer, "recovered %s with %d server(s); start it without --bootstrap or --join\n", c.String("id"), len(servers))
					return err
				},
			},
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
				}),
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
		},
	}}
}

func memberCommand(name, usage, example string, fn func(context.Context, *client.Client, string) (*api.MembersResponse, error)) *cli.Command {
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
				return printMembers(c, m)
			})
		},
	}
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
