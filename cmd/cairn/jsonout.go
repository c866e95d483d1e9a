package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/cairn-db/cairn/api"
	"github.com/cairn-db/cairn/client"
)

// One JSON shape (issue 19, docs/cli.md "JSON output"): with --json, a
// command prints on stdout the body the HTTP API answers for the same
// request (api.KeyValueResponse for get, api.ListResponse for ls,
// api.WriteResponse for put, del and txn, ...), and a command with no HTTP
// counterpart prints a struct of its own with snake_case names. A failed
// command prints its error on stderr as the API's error body,
// api.ErrorResponse, with the API's error code (errorCode); the exit
// status is the same as without --json.

// jsonModeError is the error of a command run with --json: main prints it
// as an api.ErrorResponse (printError).
type jsonModeError struct{ err error }

func (e *jsonModeError) Error() string { return e.err.Error() }
func (e *jsonModeError) Unwrap() error { return e.err }

// jsonRequested reports whether the command line (as reorderArgs rewrote
// it: at every level the flags first, then the (sub)command name, the
// positional arguments last) sets --json at any level.
func jsonRequested(app *cli.App, line []string) bool {
	level := newArgLevel("", app.Flags)
	commands := app.Commands
	on := false
	for i := 1; i < len(line); i++ {
		w := line[i]
		if w == "--" {
			break
		}
		if name, inline, ok := flagName(w); ok {
			takes := level.flags[name]
			if name == "json" && !takes {
				on = true
				if _, v, ok := strings.Cut(w, "="); ok {
					on, _ = strconv.ParseBool(v)
				}
			}
			if takes && !inline {
				i++ // its value
			}
			continue
		}
		c := findCommand(commands, w)
		if c == nil {
			break // the first positional argument: no flag after it
		}
		level, commands = newArgLevel(w, c.Flags), c.Subcommands
	}
	return on
}

// errorBody returns err as the API's error body: the server's code and
// details when the server answered, else the code errorCode gives it. The
// message is the one printed without --json.
func errorBody(err error) api.ErrorResponse {
	e := api.Error{Code: errorCode(err), Message: err.Error()}
	var ae *client.APIError
	if errors.As(err, &ae) {
		switch ae.Code {
		case api.CodeNotLeader, api.CodeUnavailable, api.CodeCorrupt:
			// The codes whose body names the leader (api.Error).
			e.LeaderURL = ae.LeaderURL
		}
	}
	var ce *client.ConflictError
	if errors.As(err, &ce) {
		e.Conflicts = ce.Conflicts
	}
	var cpe *client.CompactedError
	if errors.As(err, &cpe) {
		e.OldestRevision = cpe.Oldest
	}
	return api.ErrorResponse{Error: e}
}

// printError prints a failed command's error on w (stderr): as an
// api.ErrorResponse, one line of JSON, when the command ran with --json,
// else as "cairn: message".
func printError(w io.Writer, err error) {
	var jm *jsonModeError
	if errors.As(err, &jm) {
		b, merr := json.Marshal(errorBody(jm.err))
		if merr == nil {
			fmt.Fprintf(w, "%s\n", b)
			return
		}
	}
	fmt.Fprintln(w, "cairn:", err)
}
