package main

import (
	"context"
	"encoding/json"
	"io"
	"os"

	"github.com/urfave/cli/v2"

	"github.com/cairn-db/cairn/api"
	"github.com/cairn-db/cairn/client"
)

func txnCommand() *cli.Command {
	return &cli.Command{
		Name: "txn", Usage: "commit a transaction given as JSON", ArgsUsage: "[FILE|-]",
		Description: `Reads a JSON transaction from FILE (or -f FILE), or stdin with - (the
default).
Example:
   echo '{"preconditions":[{"key":"a","type":"absent"}],
          "operations":[{"op":"put","key":"a","value":"aGk="}]}' | cairn txn
Values are base64. See docs/api.md for the format.`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "file", Aliases: []string{"f"}, Value: "-", Usage: "JSON file, - for stdin"},
			&cli.StringFlag{Name: "idempotency-key", Usage: "idempotency key (default: a random one)"},
			jsonFlag(),
		},
		Action: func(c *cli.Context) error {
			f := c.String("file")
			switch {
			case c.NArg() > 1:
				return usageError("txn takes at most one FILE (- for stdin)")
			case c.NArg() == 1 && c.IsSet("file"):
				return usageError("txn: give the FILE as an argument or with -f, not both")
			case c.NArg() == 1:
				f = c.Args().First()
			}
			in := stdinReader
			if f != "-" {
				fh, err := os.Open(f)
				if err != nil {
					return usageError("%v", err)
				}
				defer fh.Close()
				in = fh
			}
			var req api.TxnRequest
			dec := json.NewDecoder(in)
			dec.DisallowUnknownFields()
			if err := dec.Decode(&req); err != nil {
				return usageError("transaction JSON: %v", err)
			}
			return withClient(c, func(ctx context.Context, cl *client.Client) error {
				t := cl.Txn().User(req.User).Description(req.Description)
				for k, v := range req.Meta {
					t = t.Meta(k, v)
				}
				for _, p := range req.Preconditions {
					switch p.Type {
					case api.CondExists:
						t = t.If(client.Exists(p.Key))
					case api.CondAbsent:
						t = t.If(client.Absent(p.Key))
					case api.CondRevision:
						t = t.If(client.KeyAtRevision(p.Key, p.Revision))
					case api.CondValue:
						t = t.If(client.ValueEquals(p.Key, p.Value))
					default:
						return usageError("precondition type %q (use exists, absent, revision, value)", p.Type)
					}
				}
				for _, o := range req.Operations {
					switch o.Op {
					case api.OpPut:
						t = t.Put(o.Key, o.Value)
					case api.OpDelete:
						t = t.Delete(o.Key)
					case api.OpDeletePrefix:
						t = t.DeletePrefix(o.Key)
					default:
						return usageError("operation %q (use put, delete, delete_prefix)", o.Op)
					}
				}
				var opts []client.WriteOption
				if k := c.String("idempotency-key"); k != "" {
					opts = append(opts, client.WithIdempotencyKey(k))
				}
				res, err := t.Commit(ctx, opts...)
				if err != nil {
					return err
				}
				return printWrite(c, res)
			})
		},
	}
}

// stdinReader is standard input (a variable for tests).
var stdinReader io.Reader = os.Stdin
