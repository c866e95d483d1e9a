package main

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"
)

// argsTestApp is an app with the real commands and the global flags'
// shapes (a boolean --json, valued --cluster, --timeout, --key, --user).
func argsTestApp() *cli.App {
	return &cli.App{
		Name: "cairn",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "cluster"},
			&cli.BoolFlag{Name: "json"},
			&cli.DurationFlag{Name: "timeout"},
			&cli.StringFlag{Name: "key"},
			&cli.StringFlag{Name: "user"},
		},
		Commands: slices.Concat(kvCommands(), []*cli.Command{txnCommand()}, watchCommands(),
			nodeCommands(), authCommands(), []*cli.Command{certCommand()}),
	}
}

func TestReorderArgs(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		// Flags before the arguments stay where they are.
		{"get --consistency stale k", "get --consistency stale k"},
		{"--json get k", "--json get k"},
		// Flags after the arguments move before them, with their values.
		{"get k --consistency stale", "get --consistency stale k"},
		{"get k --consistency=stale", "get --consistency=stale k"},
		{"put k v --if-absent", "put --if-absent k v"},
		{"put k --if-absent v", "put --if-absent k v"},
		{"put k v --if-revision 3 --idempotency-key x", "put --if-revision 3 --idempotency-key x k v"},
		{"watch p --from 1 --progress", "watch --from 1 --progress p"},
		{"ls --keys-only p --limit 2", "ls --keys-only --limit 2 p"},
		// A global flag after the command moves to the app, unless the
		// command has a flag of that name.
		{"get k --cluster http://a:1 --timeout 2s", "--cluster http://a:1 --timeout 2s get k"},
		{"get k --json", "get --json k"},
		{"node list --json", "node list --json"},
		{"role grant w --key config --access read", "role grant --key config --access read w"},
		{"role grant w --key config --user root", "--user root role grant --key config w"},
		// Nested subcommands, flags at each level.
		{"node status --endpoint http://a:1", "node status --endpoint http://a:1"},
		{"user add ann --password-stdin", "user add --password-stdin ann"},
		{"cert member create --id n1 --dir certs", "cert member create --id n1 --dir certs"},
		// -- ends the flags; words after it are arguments.
		{"get -- -k", "get -- -k"},
		{"put -- -k --if-absent", "put -- -k --if-absent"},
		{"put --if-absent -- -k v", "put --if-absent -- -k v"},
		{"get k -- --json", "get -- k --json"},
		// - is an argument (stdin); so is a negative number.
		{"put k -", "put k -"},
		{"txn -", "txn -"},
		{"txn -f -", "txn -f -"},
		{"put k -1", "put -- k -1"},
		{"put k -1 --if-absent", "put --if-absent -- k -1"},
		{"put --if-revision -1 k v", "put --if-revision -1 k v"},
		// Unknown flags stay with the command, where urfave reports them.
		{"get k --bogus", "get --bogus k"},
		{"--bogus get k", "--bogus get k"},
		// Help, and no command at all.
		{"get k --help", "get --help"},
		{"user add ann -h --password-stdin", "user add -h --password-stdin"},
		{"--help get k", "--help get"},
		{"put -- k --help", "put -- k --help"}, // after --, --help is a value
		// A flag without its value ends the line at its level.
		{"get k --consistency", "get --consistency"},
		{"get k --cluster", "--cluster"},
		{"--json get k --timeout", "--json --timeout"},
		{"node -h", "node -h"},
		{"help get", "help get"},
		{"", ""},
		{"nosuch a --json", "--json nosuch a"},
	} {
		in := append([]string{"cairn"}, strings.Fields(tc.in)...)
		got := strings.Join(reorderArgs(argsTestApp(), in)[1:], " ")
		if got != tc.want {
			t.Errorf("%q: got %q, want %q", tc.in, got, tc.want)
		}
	}
}

// TestRunFlagsAnywhere runs the CLI in-process where no cluster is needed:
// help after the arguments, an unknown flag after them (exit 2), and --
// that makes a flag-like word an argument.
func TestRunFlagsAnywhere(t *testing.T) {
	for _, tc := range []struct {
		args []string
		code int
		out  string
	}{
		{[]string{"get", "k", "--help"}, 0, "cairn get"},
		{[]string{"user", "add", "ann", "--help"}, 0, "password-stdin"},
		{[]string{"get", "k", "--bogus"}, 2, "bogus"},
		{[]string{"get", "k", "--consistency"}, 2, "flag needs an argument: -consistency"},
		{[]string{"get", "k", "--cluster"}, 2, "flag needs an argument: -cluster"},
		{[]string{"put", "--", "k", "--if-absent", "x"}, 2, "put takes"},
		{[]string{"get", "k", "--cluster", ""}, 2, "--cluster is empty"},
	} {
		var out bytes.Buffer
		err := Run(context.Background(), append([]string{"cairn"}, tc.args...), &out, &out)
		if err != nil {
			fmt.Fprint(&out, err)
		}
		if code := exitCode(err); code != tc.code || !strings.Contains(out.String(), tc.out) {
			t.Errorf("%q: exit %d, want %d; output %q should contain %q", tc.args, code, tc.code, out.String(), tc.out)
		}
	}
}
