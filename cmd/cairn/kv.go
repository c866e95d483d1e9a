package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"text/tabwriter"

	"github.com/urfave/cli/v2"
	"golang.org/x/term"

	"github.com/cairn-db/cairn/api"
	"github.com/cairn-db/cairn/client"
)

func writeOpts(c *cli.Context) ([]client.WriteOption, error) {
	var opts []client.WriteOption
	n := 0
	if c.IsSet("if-revision") {
		opts = append(opts, client.IfRevision(c.Uint64("if-revision")))
		n++
	}
	if c.Bool("if-absent") {
		opts = append(opts, client.IfAbsent())
		n++
	}
	if c.Bool("if-exists") {
		opts = append(opts, client.IfExists())
		n++
	}
	if n > 1 {
		return nil, usageError("use one of --if-revision, --if-absent, --if-exists")
	}
	if k := c.String("idempotency-key"); k != "" {
		opts = append(opts, client.WithIdempotencyKey(k))
	}
	return opts, nil
}

func readOpts(c *cli.Context) ([]client.ReadOption, error) {
	var opts []client.ReadOption
	if c.IsSet("revision") {
		opts = append(opts, client.AtRevision(c.Uint64("revision")))
	}
	if s := c.String("consistency"); s != "" {
		if s != api.Linearizable && s != api.Stale {
			return nil, usageError("--consistency %q (use linearizable or stale)", s)
		}
		opts = append(opts, client.Consistency(s))
	}
	if c.IsSet("min-revision") {
		opts = append(opts, client.MinRevision(c.Uint64("min-revision")))
	}
	return opts, nil
}

func readFlags(withRevision bool) []cli.Flag {
	f := []cli.Flag{
		&cli.StringFlag{Name: "consistency", Usage: "linearizable (default) or stale"},
		&cli.Uint64Flag{Name: "min-revision", Usage: "wait until the answering node has applied this revision"},
		jsonFlag(),
	}
	if withRevision {
		f = append(f, &cli.Uint64Flag{Name: "revision", Usage: "read as of this revision"})
	}
	return f
}

func kvCommands() []*cli.Command {
	writeFlags := []cli.Flag{
		&cli.Uint64Flag{Name: "if-revision", Usage: "only if the key was last written at this revision (0: only if absent)"},
		&cli.BoolFlag{Name: "if-absent", Usage: "only if the key does not exist"},
		&cli.BoolFlag{Name: "if-exists", Usage: "only if the key exists"},
		&cli.StringFlag{Name: "idempotency-key", Usage: "idempotency key (default: a random one)"},
		jsonFlag(),
	}
	return []*cli.Command{
		{
			Name: "put", Usage: "write a value", ArgsUsage: "KEY VALUE|-",
			Description: "Example:\n   cairn put greeting hello\n   echo hello | cairn put greeting -\n   cairn put --if-revision 7 greeting hi",
			Flags:       writeFlags,
			Action: func(c *cli.Context) error {
				if err := args(c, 2, "KEY and VALUE (- reads stdin)"); err != nil {
					return err
				}
				value := []byte(c.Args().Get(1))
				if c.Args().Get(1) == "-" {
					var err error
					if value, err = io.ReadAll(stdinReader); err != nil {
						return err
					}
				}
				opts, err := writeOpts(c)
				if err != nil {
					return err
				}
				return withClient(c, func(ctx context.Context, cl *client.Client) error {
					res, err := cl.Put(ctx, c.Args().Get(0), value, opts...)
					if err != nil {
						return err
					}
					return printWrite(c, res)
				})
			},
		},
		{
			Name: "get", Usage: "read a value (to stdout)", ArgsUsage: "KEY",
			Description: "Example:\n   cairn get greeting\n   cairn get --revision 3 --json greeting\n   cairn get --consistency stale greeting",
			Flags:       readFlags(true),
			Action: func(c *cli.Context) error {
				if err := args(c, 1, "KEY"); err != nil {
					return err
				}
				opts, err := readOpts(c)
				if err != nil {
					return err
				}
				return withClient(c, func(ctx context.Context, cl *client.Client) error {
					kv, err := cl.Get(ctx, c.Args().Get(0), opts...)
					if err != nil {
						return err
					}
					if boolFlag(c, "json") {
						return printJSON(c.App.Writer, keyValueResponse(kv))
					}
					_, err = c.App.Writer.Write(kv.Value)
					if err == nil && len(kv.Value) > 0 && kv.Value[len(kv.Value)-1] != '\n' {
						if isTerminal(c.App.Writer) {
							_, err = fmt.Fprintln(c.App.Writer)
						}
					}
					return err
				})
			},
		},
		{
			Name: "del", Usage: "delete a key (or, with --prefix, every key under a prefix)", ArgsUsage: "KEY",
			Description: "Example:\n   cairn del greeting\n   cairn del --prefix users/",
			Flags: append([]cli.Flag{&cli.BoolFlag{Name: "prefix", Usage: "delete every key starting with KEY"}},
				writeFlags...),
			Action: func(c *cli.Context) error {
				if err := args(c, 1, "KEY"); err != nil {
					return err
				}
				opts, err := writeOpts(c)
				if err != nil {
					return err
				}
				return withClient(c, func(ctx context.Context, cl *client.Client) error {
					var res *client.WriteResult
					key := c.Args().Get(0)
					if c.Bool("prefix") {
						res, err = cl.DeletePrefix(ctx, key, opts...)
					} else {
						res, err = cl.Delete(ctx, key, opts...)
					}
					if err != nil {
						return err
					}
					if boolFlag(c, "json") || res.Replayed {
						return printWrite(c, res)
					}
					_, err = fmt.Fprintf(c.App.Writer, "revision %d%s\n", res.Revision, deletedNote(ctx, cl, key, c.Bool("prefix"), res.Revision))
					return err
				})
			},
		},
		{
			Name: "ls", Usage: "list keys under a prefix", ArgsUsage: "[PREFIX]",
			Description: "Example:\n   cairn ls users/\n   cairn ls --keys-only --limit 10 users/",
			Flags: append(readFlags(true),
				&cli.IntFlag{Name: "limit", Usage: "most keys to print (0: all)"},
				&cli.BoolFlag{Name: "keys-only", Usage: "print keys only"}),
			Action: func(c *cli.Context) error {
				if c.NArg() > 1 {
					return usageError("ls takes at most one PREFIX")
				}
				opts, err := readOpts(c)
				if err != nil {
					return err
				}
				return withClient(c, func(ctx context.Context, cl *client.Client) error {
					it := cl.List(ctx, c.Args().Get(0), opts...)
					var kvs []client.KeyValue
					more := false
					for it.Next() {
						if l := c.Int("limit"); l > 0 && len(kvs) == l {
							more = true // one more key than --limit
							break
						}
						kvs = append(kvs, it.KV())
					}
					if err := it.Err(); err != nil {
						return err
					}
					if boolFlag(c, "json") {
						return printJSON(c.App.Writer, listResponse(it.Revision(), kvs, more, c.Bool("keys-only")))
					}
					tw := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', 0)
					if c.Bool("keys-only") {
						for _, kv := range kvs {
							fmt.Fprintln(tw, kv.Key)
						}
						return tw.Flush()
					}
					fmt.Fprintln(tw, "KEY\tMOD REV\tCREATE REV\tVALUE")
					for _, kv := range kvs {
						fmt.Fprintf(tw, "%s\t%d\t%d\t%s\n", kv.Key, kv.ModRevision, kv.CreateRevision, printable(kv.Value))
					}
					return tw.Flush()
				})
			},
		},
	}
}

// isTerminal reports whether w is a terminal: an *os.File whose
// descriptor term.IsTerminal accepts. A variable so tests can pretend.
var isTerminal = func(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// deletedNote says what a delete committed at rev deleted. The write's
// answer does not tell (a delete of a missing key commits a revision that
// changes nothing), so it reads the state just before, at rev-1, which is
// the state the delete applied to. When that read fails (history compacted
// past it, no read access) the note is left out.
func deletedNote(ctx context.Context, cl *client.Client, key string, prefix bool, rev uint64) string {
	if !prefix {
		switch _, err := cl.Get(ctx, key, client.AtRevision(rev-1)); {
		case rev <= 1 || errors.Is(err, client.ErrNotFound):
			return fmt.Sprintf(" (nothing deleted: %s did not exist)", key)
		case err != nil:
			return ""
		}
		return fmt.Sprintf(" (deleted %s)", key)
	}
	n := 0
	if rev > 1 {
		it := cl.List(ctx, key, client.AtRevision(rev-1))
		for it.Next() {
			n++
		}
		if it.Err() != nil {
			return ""
		}
	}
	switch n {
	case 0:
		return fmt.Sprintf(" (nothing deleted: no key under %s)", key)
	case 1:
		return fmt.Sprintf(" (deleted 1 key under %s)", key)
	}
	return fmt.Sprintf(" (deleted %d keys under %s)", n, key)
}

// listResponse is a listing in the HTTP API's shape (GET /v1/kv?prefix=P):
// More when --limit left keys out, Next the start_after for the rest;
// with --keys-only no values (as keys_only=true).
func listResponse(rev uint64, kvs []client.KeyValue, more, keysOnly bool) api.ListResponse {
	lr := api.ListResponse{Revision: rev, KVs: make([]api.KeyValue, 0, len(kvs)), More: more}
	for _, kv := range kvs {
		v := kv.Value
		if keysOnly {
			v = nil
		}
		lr.KVs = append(lr.KVs, api.KeyValue{Key: kv.Key, Value: v, CreateRevision: kv.CreateRevision, ModRevision: kv.ModRevision})
	}
	if more && len(kvs) > 0 {
		lr.Next = kvs[len(kvs)-1].Key
	}
	return lr
}
