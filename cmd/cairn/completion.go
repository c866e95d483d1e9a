package main

import (
	"fmt"
	"slices"
	"strings"

	"github.com/urfave/cli/v2"
)

// Shell completion (docs/cli.md, "Shell completion").
//
// The scripts that `cairn completion bash|zsh` prints ask the binary
// itself: they run `cairn WORDS... --generate-bash-completion`, WORDS
// being the words before the one being completed, and the binary prints
// one candidate a line: the subcommands of the command WORDS name, then
// every flag that command accepts, its own and its parents' (flags go
// anywhere). The scripts keep the flags when the word being completed
// begins with `-`, else the subcommands. After a flag that takes a value
// the binary prints nothing, and the shell completes file names.

// completeFlag is urfave/cli's hidden flag that asks for completions; it
// must be the last word of the command line.
const completeFlag = "--generate-bash-completion"

// completionArgs reports whether args (args[0] is the program name) ask
// for completions, and returns them without completeFlag.
func completionArgs(args []string) ([]string, bool) {
	if len(args) > 1 && args[len(args)-1] == completeFlag {
		return args[:len(args)-1], true
	}
	return args, false
}

// setCompletion gives c and its subcommands cairn's completer; last is
// the word before completeFlag on the command line ("" if none).
func setCompletion(c *cli.Command, last string) {
	c.BashComplete = func(ctx *cli.Context) { complete(ctx, last) }
	for _, s := range c.Subcommands {
		setCompletion(s, last)
	}
}

// complete prints the candidates for the command of ctx (see above).
func complete(ctx *cli.Context, last string) {
	w := ctx.App.Writer
	// Every flag of the command and of its parents, the nearest first.
	var flags []cli.Flag
	for _, cc := range ctx.Lineage() {
		if cc.Command != nil {
			flags = append(flags, cc.Command.Flags...)
		}
	}
	if name, inline, ok := flagName(last); ok && !inline {
		if takes, def := newArgLevel("", flags).flags[name]; def && takes {
			return // the word being completed is this flag's value
		}
	}
	if ctx.Command != nil {
		// urfave/cli gives every command a help subcommand: offered only
		// beside real ones.
		subs := slices.DeleteFunc(slices.Clone(ctx.Command.Subcommands), func(s *cli.Command) bool { return s.Hidden })
		if len(subs) == 1 && subs[0].Name == "help" {
			subs = nil
		}
		for _, s := range subs {
			fmt.Fprintln(w, s.Name)
		}
	}
	var seen []string
	for _, f := range flags {
		if vf, ok := f.(cli.VisibleFlag); ok && !vf.IsVisible() {
			continue
		}
		for _, n := range f.Names() {
			if slices.Contains(seen, n) {
				continue
			}
			seen = append(seen, n)
			if len(n) == 1 {
				fmt.Fprintln(w, "-"+n)
			} else {
				fmt.Fprintln(w, "--"+n)
			}
		}
	}
	if !slices.Contains(seen, "help") {
		fmt.Fprintln(w, "--help")
	}
}

func completionCommand() *cli.Command {
	script := func(text string) cli.ActionFunc {
		return func(c *cli.Context) error {
			if c.NArg() > 0 {
				return usageError("completion %s takes no arguments", c.Command.Name)
			}
			_, err := fmt.Fprint(c.App.Writer, strings.TrimLeft(text, "\n"))
			return err
		}
	}
	return &cli.Command{
		Name: "completion", Usage: "print a shell completion script (bash or zsh)", ArgsUsage: "bash|zsh",
		Description: `Prints a script that makes the shell complete cairn's commands,
subcommands and flags. Load it in the shell's start-up file.
Example:
   source <(cairn completion bash)   # in ~/.bashrc
   source <(cairn completion zsh)    # in ~/.zshrc, after compinit`,
		Subcommands: []*cli.Command{
			{Name: "bash", Usage: "the bash completion script", ArgsUsage: " ", Action: script(bashCompletion)},
			{Name: "zsh", Usage: "the zsh completion script", ArgsUsage: " ", Action: script(zshCompletion)},
		},
		Action: func(c *cli.Context) error {
			return usageError("completion takes bash or zsh (got %q)", strings.Join(c.Args().Slice(), " "))
		},
	}
}

// bashCompletion is `cairn completion bash`.
const bashCompletion = `
# cairn completion for bash: source <(cairn completion bash)
_cairn_complete() {
    local cur="${COMP_WORDS[COMP_CWORD]}" line cands=()
    COMPREPLY=()
    while IFS= read -r line; do
        if [[ "$cur" == -* ]]; then
            [[ "$line" == -* ]] && cands+=("$line")
        else
            [[ "$line" != -* ]] && cands+=("$line")
        fi
    done < <("${COMP_WORDS[0]}" "${COMP_WORDS[@]:1:COMP_CWORD-1}" --generate-bash-completion 2>/dev/null)
    local IFS=$'\n'
    COMPREPLY=($(compgen -W "${cands[*]}" -- "$cur"))
}
complete -o default -o bashdefault -F _cairn_complete cairn
`

// zshCompletion is `cairn completion zsh`.
const zshCompletion = `
#compdef cairn
# cairn completion for zsh: source <(cairn completion zsh), after compinit,
# or save it as _cairn in a directory of $fpath
_cairn() {
    local cur="${words[CURRENT]}" line
    local -a cands
    for line in "${(@f)$("${words[1]}" "${(@)words[2,CURRENT-1]}" --generate-bash-completion 2>/dev/null)}"; do
        [[ -z "$line" ]] && continue
        if [[ "$cur" == -* ]]; then
            [[ "$line" == -* ]] && cands+=("$line")
        else
            [[ "$line" != -* ]] && cands+=("$line")
        fi
    done
    if (( ${#cands} )); then
        compadd -- "${cands[@]}"
    else
        _files
    fi
}
# Sourced, it registers _cairn; saved as _cairn in $fpath, the file is the
# completion function's body and completes.
if [[ "${funcstack[1]}" == _cairn ]]; then
    _cairn "$@"
else
    compdef _cairn cairn
fi
`
