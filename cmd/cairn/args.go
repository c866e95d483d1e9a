package main

import (
	"slices"
	"strconv"
	"strings"

	"github.com/urfave/cli/v2"
)

// Flags anywhere (issue 19). urfave/cli stops parsing a command's flags at
// its first positional argument, so `cairn get KEY --json` would fail.
// reorderArgs rewrites the command line before urfave sees it, so that at
// every level (the app, a command, a subcommand) the flags come first:
//
//   - A flag takes the next word as its value unless it is a boolean flag
//     (known from the command's own cli.Flag definitions) or is written
//     --flag=value.
//   - A flag the command does not define but one of its parents does (the
//     global --cluster, --timeout, --json, ... given after the command)
//     moves to that parent: `cairn get KEY --cluster URL` is
//     `cairn --cluster URL get KEY`. The nearest level that defines it wins
//     (`role grant --key K` is role grant's --key, not the global one).
//   - `--` ends the flags: every word after it is a positional argument.
//   - `-` alone is a positional argument (standard input), and so is a
//     word like `-1` or `-2.5` that is a number and no flag's name.
//   - A word that looks like a flag but that no level defines stays a flag
//     of the innermost command, where urfave reports it (exit 2). A flag
//     that needs a value and has none ends the line at its level, so that
//     urfave says so.
//   - With --help or -h the positional arguments are dropped: help is for
//     the command, and urfave would take an argument for a command name.
//
// Positional arguments keep their order. When one of them begins with `-`,
// `--` is put before them so that urfave takes them as arguments.

// argLevel is one level of the command line: its flags and the words given
// for them.
type argLevel struct {
	flags map[string]bool // name (without dashes) -> takes a value
	words []string        // the level's flags with their values, in order
	name  string          // the (sub)command name that opens the level; "" for the app
}

// newArgLevel returns a level for the flags fs (and the help flag).
func newArgLevel(name string, fs []cli.Flag, extra ...cli.Flag) *argLevel {
	l := &argLevel{flags: map[string]bool{}, name: name}
	for _, f := range append(append([]cli.Flag{cli.HelpFlag}, extra...), fs...) {
		takes := true
		if dg, ok := f.(cli.DocGenerationFlag); ok {
			takes = dg.TakesValue()
		}
		if _, ok := f.(*cli.BoolFlag); ok {
			takes = false
		}
		for _, n := range f.Names() {
			l.flags[n] = takes
		}
	}
	return l
}

// flagName returns the name of a word that is written as a flag (-x, --x,
// --x=v) and whether it has its value inline.
func flagName(w string) (name string, inline bool, ok bool) {
	if len(w) < 2 || w[0] != '-' || w == "--" {
		return "", false, false
	}
	name = strings.TrimPrefix(strings.TrimPrefix(w, "-"), "-")
	if name == "" || name[0] == '-' || name[0] == '=' {
		return "", false, false
	}
	name, _, inline = strings.Cut(name, "=")
	return name, inline, true
}

// isNumber reports a word like -1 or -2.5.
func isNumber(w string) bool {
	_, err := strconv.ParseFloat(w, 64)
	return err == nil
}

// reorderArgs returns args (args[0] is the program name) with the flags of
// every level before its positional arguments (see above).
func reorderArgs(app *cli.App, args []string) []string {
	if len(args) < 2 {
		return args
	}
	var extra []cli.Flag
	if app.Version != "" && !app.HideVersion {
		extra = append(extra, cli.VersionFlag)
	}
	levels := []*argLevel{newArgLevel("", app.Flags, extra...)}
	commands := app.Commands
	var positional []string
	rest := args[1:]
	for i := 0; i < len(rest); i++ {
		w := rest[i]
		if w == "--" {
			positional = append(positional, rest[i+1:]...)
			return joinLevels(args[0], levels, positional, true)
		}
		name, inline, ok := flagName(w)
		if ok {
			// The nearest level that defines it.
			var at *argLevel
			for j := len(levels) - 1; j >= 0 && at == nil; j-- {
				if _, def := levels[j].flags[name]; def {
					at = levels[j]
				}
			}
			if at == nil && isNumber(w) {
				positional = append(positional, w)
				continue
			}
			if at == nil {
				at = levels[len(levels)-1] // urfave reports it
			}
			at.words = append(at.words, w)
			if at.flags[name] && !inline {
				if i+1 == len(rest) {
					// No value: the flag ends the line at its level, where
					// urfave says it needs one.
					for levels[len(levels)-1] != at {
						levels = levels[:len(levels)-1]
					}
					return joinLevels(args[0], levels, nil, false)
				}
				i++
				at.words = append(at.words, rest[i])
			}
			continue
		}
		// A positional word: a subcommand's name when it is the first one
		// and the level has subcommands.
		if len(positional) == 0 {
			if c := findCommand(commands, w); c != nil {
				levels = append(levels, newArgLevel(w, c.Flags))
				commands = c.Subcommands
				continue
			}
		}
		positional = append(positional, w)
	}
	return joinLevels(args[0], levels, positional, false)
}

// help reports a help flag given at any level.
func help(levels []*argLevel) bool {
	for _, l := range levels {
		for _, w := range l.words {
			if name, _, ok := flagName(w); ok && slices.Contains(cli.HelpFlag.Names(), name) {
				return true
			}
		}
	}
	return false
}

// findCommand returns the command of commands named name (or one of its
// aliases), or nil.
func findCommand(commands []*cli.Command, name string) *cli.Command {
	for _, c := range commands {
		if c.HasName(name) {
			return c
		}
	}
	return nil
}

// joinLevels joins the levels and the positional arguments into a command
// line; dashdash puts `--` before the positional arguments, as does one of
// them beginning with `-`.
func joinLevels(prog string, levels []*argLevel, positional []string, dashdash bool) []string {
	if help(levels) {
		// Help for the command, not for a command named by an argument.
		positional, dashdash = nil, false
	}
	out := []string{prog}
	for _, l := range levels {
		if l.name != "" {
			out = append(out, l.name)
		}
		out = append(out, l.words...)
	}
	for _, p := range positional {
		if len(p) > 1 && p[0] == '-' {
			dashdash = true
		}
	}
	if dashdash {
		out = append(out, "--")
	}
	return append(out, positional...)
}
