package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/cairn-db/cairn/api"
	"github.com/cairn-db/cairn/client"
	"github.com/cairn-db/cairn/node"
)

// Exit statuses, documented in docs/cli.md.
const (
	exitOK          = 0
	exitError       = 1
	exitUsage       = 2
	exitConflict    = 3
	exitNotFound    = 4
	exitUnavailable = 5
	exitAuth        = 6
)

// errUsage marks a usage error (exit status 2).
var errUsage = errors.New("usage")

// usageError returns a usage error with a message.
func usageError(format string, args ...any) error {
	return fmt.Errorf("%w: %s", errUsage, fmt.Sprintf(format, args...))
}

// Run builds the CLI and runs it with args (args[0] is the program name).
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var unknown string
	app := &cli.App{
		Name:  "cairn",
		Usage: "a Raft-replicated transactional object store",
		Description: `Example:
   cairn dev                          # a local three-node cluster
   cairn put greeting hello           # in another terminal
   cairn get greeting
   cairn --cluster http://10.0.0.1:8001 node list
   cairn --cluster https://n1.example.com:8001 --cacert certs/ca.pem --cert certs/client-admin.pem --key certs/client-admin-key.pem get greeting`,
		Writer:    stdout,
		ErrWriter: stderr,
		Flags: []cli.Flag{
			&cli.StringFlag{
				Name:    "cluster",
				Usage:   "comma-separated http:// or https:// URLs of cluster members (host:port: https:// with --cacert or --cert, else http://)",
				EnvVars: []string{"CAIRN_CLUSTER"},
				Value:   defaultCluster,
			},
			&cli.BoolFlag{Name: "json", Usage: "print JSON for scripts, in the HTTP API's names and shapes; errors as the API's error body on stderr"},
			quietFlag(), // progress.go
			&cli.DurationFlag{
				Name: "timeout",
				Usage: "overall time limit of the command (0: none); without it, a command gives up after " +
					defaultUnreachable.String() + " when no member answers, and waits as long as needed once one does",
				EnvVars: []string{"CAIRN_TIMEOUT"},
			},
			&cli.StringFlag{
				Name:    "cacert",
				Usage:   "PEM bundle of the CAs that sign the members' certificates, for https:// endpoints (default: the system's roots)",
				EnvVars: []string{"CAIRN_CACERT"},
			},
			&cli.StringFlag{
				Name:    "cert",
				Usage:   "client certificate (PEM) presented to members that require one; with --key",
				EnvVars: []string{"CAIRN_CERT"},
			},
			&cli.StringFlag{
				Name:    "key",
				Usage:   "the key of --cert (PEM)",
				EnvVars: []string{"CAIRN_KEY"},
			},
			&cli.StringFlag{
				Name: "user",
				Usage: "the user to act as when access control is enabled; its password from " + envPassword +
					", else asked for without echo on a terminal",
				EnvVars: []string{"CAIRN_USER"},
			},
		},
		Commands:             commands(),
		Before:               applyQuiet, // --quiet: progress.go
		EnableBashCompletion: true,       // completion.go
		// Usage errors in flag parsing exit 2.
		OnUsageError: func(_ *cli.Context, err error, _ bool) error {
			return usageError("%v", err)
		},
		ExitErrHandler:  func(*cli.Context, error) {}, // main decides the status
		CommandNotFound: func(_ *cli.Context, name string) { unknown = name },
	}
	for _, c := range app.Commands {
		setUsageErrors(c, &unknown)
	}
	args, completing := completionArgs(args) // completion.go
	line := reorderArgs(app, args)           // flags anywhere: args.go
	if completing {
		if slices.Contains(line, "--") {
			return nil // only arguments after --: nothing to offer
		}
		last := ""
		if len(args) > 1 {
			last = args[len(args)-1]
		}
		app.BashComplete = func(c *cli.Context) { complete(c, last) }
		for _, c := range app.Commands {
			setCompletion(c, last)
		}
		line = append(line, completeFlag)
	}
	err := app.RunContext(ctx, line)
	if err == nil && unknown != "" {
		err = usageError("unknown command %q (see cairn --help)", unknown)
	}
	if err != nil && jsonRequested(app, line) {
		err = &jsonModeError{err} // printed as JSON: jsonout.go
	}
	return err
}

// commands returns every command of the app, one file a group, named
// for it; the order here is the help's.
func commands() []*cli.Command {
	return slices.Concat(
		[]*cli.Command{devCommand()},        // dev.go
		kvCommands(),                        // kv.go: put, get, del, ls
		[]*cli.Command{txnCommand()},        // txn.go
		historyCommands(),                   // history.go: history, log
		[]*cli.Command{compactCommand()},    // compact.go
		watchCommands(),                     // watch.go
		clusterCommands(),                   // status.go: status
		nodeCommands(),                      // node.go, member.go, status.go
		backupCommands(),                    // backup.go: backup, restore
		mirrorCommands(),                    // mirror.go
		[]*cli.Command{verifyCommand()},     // verify.go
		integrityCommands(),                 // integrity.go: alarm, scrub
		[]*cli.Command{defragCommand()},     // defrag.go
		[]*cli.Command{benchCommand()},      // bench.go
		[]*cli.Command{certCommand()},       // cert.go
		authCommands(),                      // auth.go: auth, user, role
		[]*cli.Command{versionCommand()},    // version.go
		[]*cli.Command{completionCommand()}, // completion.go
	)
}

func setUsageErrors(c *cli.Command, unknown *string) {
	c.OnUsageError = func(_ *cli.Context, err error, _ bool) error { return usageError("%v", err) }
	for _, s := range c.Subcommands {
		setUsageErrors(s, unknown)
	}
}

// newLogger returns a text logger on stderr at the given level.
func newLogger(level string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, usageError("log level %q (use debug, info, warn, error)", level)
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lv})), nil
}

// splitList splits a comma-separated flag value, dropping empty items.
func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// exitCode maps an error to the CLI's exit status (docs/cli.md). It is the
// one place where errors become statuses.
func exitCode(err error) int {
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, errUsage), errors.Is(err, node.ErrInvalidConfig), errors.Is(err, client.ErrInvalidConfig):
		// client.ErrInvalidConfig: also a --cacert, --cert or --key file
		// that does not load.
		return exitUsage
	case errors.Is(err, client.ErrUnauthenticated), errors.Is(err, client.ErrPermissionDenied):
		return exitAuth
	case errors.Is(err, client.ErrConflict), errors.Is(err, client.ErrReadOnly), errors.Is(err, client.ErrMirrorState):
		return exitConflict
	case errors.Is(err, client.ErrNotFound):
		return exitNotFound
	case errors.Is(err, client.ErrUnavailable), errors.Is(err, client.ErrTimeout), errors.Is(err, client.ErrCorrupt),
		errors.Is(err, client.ErrNotLeader), errors.Is(err, context.DeadlineExceeded),
		errors.Is(err, client.ErrTLS): // the client gives up on TLS failures at once
		return exitUnavailable
	}
	var ec cli.ExitCoder
	if errors.As(err, &ec) {
		return ec.ExitCode()
	}
	return exitError
}

// errorCode maps an error to the API's error code that --json prints
// (docs/cli.md, "JSON output"). It is the one place where the CLI's own
// errors get codes; an error the server answered keeps the server's code,
// and the client's sentinel errors have theirs (client.ErrorCode).
func errorCode(err error) string {
	switch {
	case errors.Is(err, errUsage), errors.Is(err, node.ErrInvalidConfig), errors.Is(err, client.ErrInvalidConfig):
		return api.CodeBadRequest
	}
	if code := client.ErrorCode(err); code != "" {
		return code
	}
	switch {
	case errors.Is(err, client.ErrTLS):
		// No member could be reached over TLS (exit 5 as well).
		return api.CodeUnavailable
	case errors.Is(err, context.DeadlineExceeded):
		return api.CodeTimeout
	}
	return api.CodeInternal
}

// boolFlag reports a boolean flag set on the command or any parent.
func boolFlag(c *cli.Context, name string) bool {
	for _, cc := range c.Lineage() {
		if cc.IsSet(name) {
			return cc.Bool(name)
		}
	}
	return false
}

func jsonFlag() cli.Flag { return &cli.BoolFlag{Name: "json", Usage: "print JSON"} }

// defaultUnreachable is how long a command waits for any member to answer
// when --timeout is not given (client.Config.UnreachableTimeout).
const defaultUnreachable = 10 * time.Second

// clientConfig returns the client configuration of the global flags:
// --cluster, --cacert, --cert, --key, --user and --timeout (which, when
// given, also bounds the wait for a member to answer, else
// defaultUnreachable does). On a terminal, a call that has been retrying
// for a while says so on stderr (client.Config.SlowCallNote).
//
// They are read from the app's own flags: a command may have a flag of the
// same name (`role grant --key K`).
func clientConfig(c *cli.Context) (client.Config, error) {
	global := c
	for _, cc := range c.Lineage() {
		if cc.App != nil { // the outermost is a bare context
			global = cc
		}
	}
	cfg := client.DefaultConfig()
	cfg.Endpoints = splitList(global.String("cluster"))
	if len(cfg.Endpoints) == 0 {
		return cfg, usageError("--cluster is empty")
	}
	cfg.CAFile, cfg.CertFile, cfg.KeyFile = global.String("cacert"), global.String("cert"), global.String("key")
	cfg.UnreachableTimeout = defaultUnreachable
	if global.IsSet("timeout") {
		cfg.UnreachableTimeout = max(global.Duration("timeout"), 0) // 0: wait as long as it takes
	}
	if f, ok := global.App.ErrWriter.(*os.File); ok && isTerminal(f) {
		cfg.SlowCallNote = func(note string) { fmt.Fprintf(f, "cairn: %s\n", note) }
	}
	if (cfg.CertFile == "") != (cfg.KeyFile == "") {
		return cfg, usageError("--cert and --key go together (CAIRN_CERT, CAIRN_KEY): give both or neither")
	}
	return cfg, userCredentials(global, &cfg)
}

// withClient runs fn with a client for the global flags (clientConfig)
// and a context bounded by --timeout.
func withClient(c *cli.Context, fn func(ctx context.Context, cl *client.Client) error) error {
	cfg, err := clientConfig(c)
	if err != nil {
		return err
	}
	cl, err := client.New(cfg) // a bad --cacert, --cert or --key: client.ErrInvalidConfig
	if err != nil {
		return err
	}
	defer cl.Close()
	ctx := c.Context
	if d := c.Duration("timeout"); d > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, d)
		defer cancel()
	}
	err = fn(ctx, cl)
	if errors.Is(err, client.ErrUnauthenticated) && cfg.Username == "" && cfg.Credentials == nil {
		err = fmt.Errorf("%w (access control is on: give --user NAME or set CAIRN_USER)", err)
	}
	return err
}

func args(c *cli.Context, n int, names string) error {
	if c.NArg() != n {
		return usageError("%s takes %s (got %d arguments)", c.Command.Name, names, c.NArg())
	}
	return nil
}
