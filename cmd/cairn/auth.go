package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"text/tabwriter"

	"github.com/urfave/cli/v2"
	"golang.org/x/term"

	"github.com/cairn-db/cairn/api"
	"github.com/cairn-db/cairn/client"
)

// Access control commands (docs/cli.md, "Users and roles"): auth, user
// and role; and the password of the global --user.

// console is the CLI's standard input, where passwords come from.
type console interface {
	io.Reader
	// terminal reports whether it is a terminal, where a password can be
	// asked for without echo.
	terminal() bool
	// readPassword reads one line without echo (a terminal only). It
	// returns when ctx ends, leaving the terminal as it found it.
	readPassword(ctx context.Context) ([]byte, error)
}

// stdin is the console the commands read passwords from; tests replace it.
var stdin console = osConsole{}

// osConsole is os.Stdin.
type osConsole struct{}

func (osConsole) Read(p []byte) (int, error) { return os.Stdin.Read(p) }

func (osConsole) terminal() bool { return term.IsTerminal(int(os.Stdin.Fd())) }

func (osConsole) readPassword(ctx context.Context) ([]byte, error) {
	fd := int(os.Stdin.Fd())
	st, err := term.GetState(fd)
	if err != nil {
		return nil, err
	}
	type result struct {
		pw  []byte
		err error
	}
	ch := make(chan result, 1)
	go func() {
		pw, err := term.ReadPassword(fd)
		ch <- result{pw, err}
	}()
	select {
	case r := <-ch:
		return r.pw, r.err
	case <-ctx.Done():
		// Ctrl-C: echo back on before the command ends. The reader is
		// left blocked; the process is ending.
		_ = term.Restore(fd, st)
		return nil, ctx.Err()
	}
}

// envPassword is the environment variable that holds --user's password.
const envPassword = "CAIRN_PASSWORD"

// userCredentials sets cfg's credentials from --user (CAIRN_USER): the
// password from CAIRN_PASSWORD, else asked for without echo when the
// client first needs it, if stdin is a terminal; else a usage error.
func userCredentials(c *cli.Context, cfg *client.Config) error {
	user := c.String("user")
	if user == "" {
		return nil
	}
	if pw := os.Getenv(envPassword); pw != "" {
		cfg.Username, cfg.Password = user, pw
		return nil
	}
	if !stdin.terminal() {
		return usageError("--user %s needs a password: set %s, or run on a terminal to be asked for it", user, envPassword)
	}
	var (
		once sync.Once
		pw   string
		err  error
	)
	cfg.Credentials = func(ctx context.Context) (string, string, error) {
		once.Do(func() { pw, err = promptPassword(ctx, c.App.ErrWriter, "Password for "+user+": ") })
		return user, pw, err
	}
	return nil
}

// promptPassword asks for a password on the terminal without echo.
func promptPassword(ctx context.Context, w io.Writer, prompt string) (string, error) {
	fmt.Fprint(w, prompt)
	b, err := stdin.readPassword(ctx)
	fmt.Fprintln(w)
	if err != nil {
		return "", fmt.Errorf("reading the password: %w", err)
	}
	if len(b) == 0 {
		return "", usageError("empty password")
	}
	return string(b), nil
}

// newPassword reads a new password for user: one line of stdin with
// --password-stdin, else asked for twice on the terminal without echo.
func newPassword(c *cli.Context, user string) (string, error) {
	if c.Bool("password-stdin") {
		line, err := bufio.NewReader(stdin).ReadString('\n')
		if err != nil && err != io.EOF {
			return "", fmt.Errorf("reading the password from stdin: %w", err)
		}
		pw := strings.TrimRight(line, "\r\n")
		if pw == "" {
			return "", usageError("--password-stdin: stdin has no password (an empty first line)")
		}
		return pw, nil
	}
	if !stdin.terminal() {
		return "", usageError("no terminal to ask for the password of %s on: give it on stdin with --password-stdin", user)
	}
	pw, err := promptPassword(c.Context, c.App.ErrWriter, "New password for "+user+": ")
	if err != nil {
		return "", err
	}
	again, err := promptPassword(c.Context, c.App.ErrWriter, "Again: ")
	if err != nil {
		return "", err
	}
	if pw != again {
		return "", usageError("the passwords do not match")
	}
	return pw, nil
}

func passwordStdinFlag() cli.Flag {
	return &cli.BoolFlag{Name: "password-stdin", Usage: "read the new password from the first line of stdin instead of asking twice on the terminal"}
}

// positional returns the command's n arguments. The command's own flags
// may also follow them (`cairn user add ann --password-stdin`, as the
// docs write them): urfave/cli stops parsing flags at the first argument,
// so those are parsed here and set on c.
func positional(c *cli.Context, n int, names string) ([]string, error) {
	var out []string
	rest := c.Args().Slice()
	for i := 0; i < len(rest); i++ {
		a := rest[i]
		if a == "--" {
			out = append(out, rest[i+1:]...)
			break
		}
		if !strings.HasPrefix(a, "-") || a == "-" {
			out = append(out, a)
			continue
		}
		name, value, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		f := commandFlag(c.Command, name)
		if f == nil {
			return nil, usageError("%s: flag provided but not defined: %s (global flags go before the command)", c.Command.Name, a)
		}
		if _, isBool := f.(*cli.BoolFlag); isBool {
			if !hasValue {
				value = "true"
			}
		} else if !hasValue {
			if i+1 >= len(rest) {
				return nil, usageError("%s: flag needs an argument: %s", c.Command.Name, a)
			}
			i++
			value = rest[i]
		}
		if err := c.Set(name, value); err != nil {
			return nil, usageError("%s: %s: %v", c.Command.Name, a, err)
		}
	}
	if len(out) != n {
		return nil, usageError("%s takes %s (got %d arguments)", c.Command.Name, names, len(out))
	}
	return out, nil
}

// commandFlag returns cmd's flag called name, nil if none.
func commandFlag(cmd *cli.Command, name string) cli.Flag {
	for _, f := range cmd.Flags {
		for _, n := range f.Names() {
			if n == name {
				return f
			}
		}
	}
	return nil
}

// printChange reports an auth change.
func printChange(c *cli.Context, rev uint64, format string, args ...any) error {
	if boolFlag(c, "json") {
		return printJSON(c.App.Writer, api.AuthChangeResponse{Revision: rev})
	}
	_, err := fmt.Fprintf(c.App.Writer, "%s (auth revision %d)\n", fmt.Sprintf(format, args...), rev)
	return err
}

// changeCommand is a command of n arguments that makes one auth change.
func changeCommand(name, argsUsage, usage, example string, n int, flags []cli.Flag,
	fn func(c *cli.Context, ctx context.Context, cl *client.Client, args []string) (uint64, string, error)) *cli.Command {
	return &cli.Command{
		Name: name, Usage: usage, ArgsUsage: argsUsage,
		Description: "Example:\n   " + example,
		Flags:       append(flags, jsonFlag()),
		Action: func(c *cli.Context) error {
			if n == 0 {
				argsUsage = "no arguments"
			}
			args, err := positional(c, n, argsUsage)
			if err != nil {
				return err
			}
			return withClient(c, func(ctx context.Context, cl *client.Client) error {
				rev, done, err := fn(c, ctx, cl, args)
				if err != nil {
					return err
				}
				return printChange(c, rev, "%s", done)
			})
		},
	}
}

// authCommands returns auth, user and role.
func authCommands() []*cli.Command {
	return []*cli.Command{authCommand(), userCommand(), roleCommand()}
}

func authCommand() *cli.Command {
	return &cli.Command{
		Name:  "auth",
		Usage: "turn access control on or off, or show whether it is on",
		Subcommands: []*cli.Command{
			changeCommand("enable", "", "turn access control on (refused until a user holds the root role)",
				"cairn auth enable", 0, nil,
				func(_ *cli.Context, ctx context.Context, cl *client.Client, _ []string) (uint64, string, error) {
					rev, err := cl.AuthEnable(ctx)
					return rev, "access control enabled", err
				}),
			changeCommand("disable", "", "turn access control off: every request is allowed",
				"cairn auth disable", 0, nil,
				func(_ *cli.Context, ctx context.Context, cl *client.Client, _ []string) (uint64, string, error) {
					rev, err := cl.AuthDisable(ctx)
					return rev, "access control disabled", err
				}),
			{
				Name: "status", Usage: "show whether access control is on (needs no user)",
				Description: "Example:\n   cairn auth status",
				Flags:       []cli.Flag{jsonFlag()},
				Action: func(c *cli.Context) error {
					if _, err := positional(c, 0, "no arguments"); err != nil {
						return err
					}
					return withClient(c, func(ctx context.Context, cl *client.Client) error {
						st, err := cl.AuthStatus(ctx)
						if err != nil {
							return err
						}
						if boolFlag(c, "json") {
							return printJSON(c.App.Writer, st)
						}
						state := "disabled"
						if st.Enabled {
							state = "enabled"
						}
						_, err = fmt.Fprintf(c.App.Writer, "access control %s (auth revision %d)\n", state, st.Revision)
						return err
					})
				},
			},
		},
	}
}

func userCommand() *cli.Command {
	return &cli.Command{
		Name:  "user",
		Usage: "manage users (access control)",
		Subcommands: []*cli.Command{
			{
				Name: "add", Usage: "create a user (asks for its password twice, or reads it with --password-stdin)", ArgsUsage: "NAME",
				Description: "Example:\n   cairn user add root\n   cairn user add ann --password-stdin\n   cairn user add backup-agent --no-password",
				Flags: []cli.Flag{
					passwordStdinFlag(),
					&cli.BoolFlag{Name: "no-password", Usage: "no password: the user authenticates only by client certificate (its CN)"},
					jsonFlag(),
				},
				Action: func(c *cli.Context) error {
					args, err := positional(c, 1, "NAME")
					if err != nil {
						return err
					}
					name := args[0]
					pw := ""
					if c.Bool("no-password") {
						if c.Bool("password-stdin") {
							return usageError("--no-password and --password-stdin exclude each other")
						}
					} else {
						if pw, err = newPassword(c, name); err != nil {
							return err
						}
					}
					return withClient(c, func(ctx context.Context, cl *client.Client) error {
						rev, err := cl.UserAdd(ctx, name, pw, c.Bool("no-password"))
						if err != nil {
							return err
						}
						return printChange(c, rev, "user %s added", name)
					})
				},
			},
			changeCommand("del", "NAME", "delete a user (its tokens stop working at once)", "cairn user del ann", 1, nil,
				func(c *cli.Context, ctx context.Context, cl *client.Client, args []string) (uint64, string, error) {
					rev, err := cl.UserDelete(ctx, args[0])
					return rev, "user " + args[0] + " deleted", err
				}),
			{
				Name: "passwd", Usage: "set a user's password (its tokens stop working at once)", ArgsUsage: "NAME",
				Description: "Example:\n   cairn user passwd ann --password-stdin",
				Flags:       []cli.Flag{passwordStdinFlag(), jsonFlag()},
				Action: func(c *cli.Context) error {
					args, err := positional(c, 1, "NAME")
					if err != nil {
						return err
					}
					name := args[0]
					pw, err := newPassword(c, name)
					if err != nil {
						return err
					}
					return withClient(c, func(ctx context.Context, cl *client.Client) error {
						rev, err := cl.UserPassword(ctx, name, pw)
						if err != nil {
							return err
						}
						return printChange(c, rev, "password of %s changed", name)
					})
				},
			},
			{
				Name: "list", Usage: "list the users with their roles",
				Description: "Example:\n   cairn user list",
				Flags:       []cli.Flag{jsonFlag()},
				Action: func(c *cli.Context) error {
					if _, err := positional(c, 0, "no arguments"); err != nil {
						return err
					}
					return withClient(c, func(ctx context.Context, cl *client.Client) error {
						us, err := cl.UserList(ctx)
						if err != nil {
							return err
						}
						return printUsers(c, us)
					})
				},
			},
			{
				Name: "get", Usage: "show a user's roles and whether it has a password", ArgsUsage: "NAME",
				Description: "Example:\n   cairn user get ann",
				Flags:       []cli.Flag{jsonFlag()},
				Action: func(c *cli.Context) error {
					args, err := positional(c, 1, "NAME")
					if err != nil {
						return err
					}
					return withClient(c, func(ctx context.Context, cl *client.Client) error {
						u, err := cl.UserGet(ctx, args[0])
						if err != nil {
							return err
						}
						if boolFlag(c, "json") {
							return printJSON(c.App.Writer, u)
						}
						return printUsers(c, []api.UserInfo{*u})
					})
				},
			},
			changeCommand("grant", "NAME ROLE", "give a user a role", "cairn user grant ann app-writer", 2, nil,
				func(c *cli.Context, ctx context.Context, cl *client.Client, args []string) (uint64, string, error) {
					u, r := args[0], args[1]
					rev, err := cl.UserGrantRole(ctx, u, r)
					return rev, "user " + u + " granted role " + r, err
				}),
			changeCommand("revoke", "NAME ROLE", "take a role from a user", "cairn user revoke ann app-writer", 2, nil,
				func(c *cli.Context, ctx context.Context, cl *client.Client, args []string) (uint64, string, error) {
					u, r := args[0], args[1]
					rev, err := cl.UserRevokeRole(ctx, u, r)
					return rev, "role " + r + " revoked from user " + u, err
				}),
		},
	}
}

func printUsers(c *cli.Context, us []api.UserInfo) error {
	if boolFlag(c, "json") {
		if us == nil {
			us = []api.UserInfo{}
		}
		return printJSON(c.App.Writer, us)
	}
	tw := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tPASSWORD\tROLES")
	for _, u := range us {
		pw := "no"
		if u.HasPassword {
			pw = "yes"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", u.Name, pw, strings.Join(u.Roles, ","))
	}
	return tw.Flush()
}

// permissionFlags are role grant's and revoke's --key and --prefix.
func permissionFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "key", Usage: "one key"},
		&cli.StringFlag{Name: "prefix", Usage: `every key under this prefix ("" for all keys)`},
	}
}

// permissionTarget returns --key K or --prefix P: exactly one is needed.
func permissionTarget(c *cli.Context) (key string, prefix bool, err error) {
	switch {
	case c.IsSet("key") == c.IsSet("prefix"):
		return "", false, usageError("%s needs one of --key K and --prefix P", c.Command.Name)
	case c.IsSet("prefix"):
		return c.String("prefix"), true, nil
	}
	return c.String("key"), false, nil
}

// describeTarget names a permission's keys for messages and tables.
func describeTarget(key string, prefix bool) string {
	if prefix {
		return fmt.Sprintf("prefix %q", key)
	}
	return fmt.Sprintf("key %q", key)
}

func roleCommand() *cli.Command {
	return &cli.Command{
		Name:  "role",
		Usage: "manage roles and their permissions (access control)",
		Subcommands: []*cli.Command{
			changeCommand("add", "NAME", "create a role (with the admin permission when --admin)",
				"cairn role add app-writer", 1,
				[]cli.Flag{&cli.BoolFlag{Name: "admin", Usage: "the role may administer the cluster (log, backups, compaction, membership, access control)"}},
				func(c *cli.Context, ctx context.Context, cl *client.Client, args []string) (uint64, string, error) {
					rev, err := cl.RoleAdd(ctx, args[0], c.Bool("admin"))
					return rev, "role " + args[0] + " added", err
				}),
			changeCommand("del", "NAME", "delete a role (not root)", "cairn role del app-writer", 1, nil,
				func(c *cli.Context, ctx context.Context, cl *client.Client, args []string) (uint64, string, error) {
					rev, err := cl.RoleDelete(ctx, args[0])
					return rev, "role " + args[0] + " deleted", err
				}),
			{
				Name: "list", Usage: "list the roles with their permissions",
				Description: "Example:\n   cairn role list",
				Flags:       []cli.Flag{jsonFlag()},
				Action: func(c *cli.Context) error {
					if _, err := positional(c, 0, "no arguments"); err != nil {
						return err
					}
					return withClient(c, func(ctx context.Context, cl *client.Client) error {
						rs, err := cl.RoleList(ctx)
						if err != nil {
							return err
						}
						return printRoles(c, rs)
					})
				},
			},
			{
				Name: "get", Usage: "show a role's permissions", ArgsUsage: "NAME",
				Description: "Example:\n   cairn role get app-writer",
				Flags:       []cli.Flag{jsonFlag()},
				Action: func(c *cli.Context) error {
					args, err := positional(c, 1, "NAME")
					if err != nil {
						return err
					}
					return withClient(c, func(ctx context.Context, cl *client.Client) error {
						r, err := cl.RoleGet(ctx, args[0])
						if err != nil {
							return err
						}
						if boolFlag(c, "json") {
							return printJSON(c.App.Writer, r)
						}
						return printRoles(c, []api.RoleInfo{*r})
					})
				},
			},
			changeCommand("grant", "ROLE", "give a role read, write or readwrite on a key or a prefix",
				"cairn role grant app-writer --prefix app/ --access readwrite", 1,
				append(permissionFlags(), &cli.StringFlag{Name: "access", Usage: "read, write or readwrite (required)"}),
				func(c *cli.Context, ctx context.Context, cl *client.Client, args []string) (uint64, string, error) {
					key, prefix, err := permissionTarget(c)
					if err != nil {
						return 0, "", err
					}
					access := c.String("access")
					switch access {
					case api.AccessRead, api.AccessWrite, api.AccessReadWrite:
					default:
						return 0, "", usageError("role grant needs --access read, write or readwrite (got %q)", access)
					}
					role := args[0]
					rev, err := cl.RoleGrant(ctx, role, api.Permission{Key: key, Prefix: prefix, Access: access})
					return rev, fmt.Sprintf("role %s granted %s on %s", role, access, describeTarget(key, prefix)), err
				}),
			changeCommand("revoke", "ROLE", "take a role's permission on a key or a prefix",
				"cairn role revoke app-writer --prefix app/", 1, permissionFlags(),
				func(c *cli.Context, ctx context.Context, cl *client.Client, args []string) (uint64, string, error) {
					key, prefix, err := permissionTarget(c)
					if err != nil {
						return 0, "", err
					}
					role := args[0]
					rev, err := cl.RoleRevoke(ctx, role, key, prefix)
					return rev, fmt.Sprintf("role %s: permission on %s revoked", role, describeTarget(key, prefix)), err
				}),
		},
	}
}

func printRoles(c *cli.Context, rs []api.RoleInfo) error {
	if boolFlag(c, "json") {
		if rs == nil {
			rs = []api.RoleInfo{}
		}
		return printJSON(c.App.Writer, rs)
	}
	tw := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ROLE\tADMIN\tACCESS\tON")
	for _, r := range rs {
		admin := "no"
		if r.Admin {
			admin = "yes"
		}
		if len(r.Permissions) == 0 {
			fmt.Fprintf(tw, "%s\t%s\t-\t-\n", r.Name, admin)
		}
		for _, p := range r.Permissions {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", r.Name, admin, p.Access, describeTarget(p.Key, p.Prefix))
		}
	}
	return tw.Flush()
}
