package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// completions runs the binary with args and --generate-bash-completion
// and returns the lines it prints.
func completions(t *testing.T, args ...string) []string {
	t.Helper()
	out, errOut, code := runCLI(t, "", append(args, completeFlag)...)
	if code != 0 || errOut != "" {
		t.Fatalf("cairn %v %s: exit %d, stderr %q", args, completeFlag, code, errOut)
	}
	return strings.Fields(out)
}

// TestCompletionFlag asks the binary for completions the way the scripts
// do, with flags before and after the command.
func TestCompletionFlag(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	has := func(t *testing.T, got []string, want ...string) {
		t.Helper()
		for _, w := range want {
			if !slices.Contains(got, w) {
				t.Errorf("%q not among %q", w, got)
			}
		}
	}
	hasNot := func(t *testing.T, got []string, not ...string) {
		t.Helper()
		for _, w := range not {
			if slices.Contains(got, w) {
				t.Errorf("%q among %q", w, got)
			}
		}
	}
	top := completions(t)
	has(t, top, "get", "put", "node", "backup", "verify", "completion", "--cluster", "--json", "--quiet", "--timeout")
	for _, args := range [][]string{
		{"node"},
		{"--json", "node"},
		{"node", "--json"},
		{"--cluster", "http://127.0.0.1:1", "node"},
		{"node", "--cluster", "http://127.0.0.1:1"},
	} {
		got := completions(t, args...)
		has(t, got, "list", "health", "promote", "run", "--cluster", "--json")
		hasNot(t, got, "get", "put")
	}
	get := completions(t, "get")
	has(t, get, "--consistency", "--min-revision", "--json", "--cluster", "--help")
	hasNot(t, get, "help", "node", "list")
	has(t, completions(t, "get", "greeting"), "--consistency")
	has(t, completions(t, "completion"), "bash", "zsh")
	// After a flag that takes a value: nothing (the shell offers files).
	if got := completions(t, "get", "--consistency"); len(got) != 0 {
		t.Errorf("after --consistency: %q, want nothing", got)
	}
	if got := completions(t, "--cluster"); len(got) != 0 {
		t.Errorf("after --cluster: %q, want nothing", got)
	}
	// After a boolean flag: the command's words again.
	has(t, completions(t, "--json"), "get", "node")
	// After --, only arguments: nothing, and nothing runs (this put would
	// fail to reach the cluster, with exit 5).
	if got := completions(t, "--cluster", "http://127.0.0.1:1", "put", "--", "-k"); len(got) != 0 {
		t.Errorf("after --: %q, want nothing", got)
	}
}

// shellLine runs script in a shell (bash --norc or zsh -f) with the binary
// on PATH as cairn, and returns its stdout.
func shellLine(t *testing.T, shell []string, script string) string {
	t.Helper()
	bin := t.TempDir()
	if err := os.Symlink(binary(t), filepath.Join(bin, "cairn")); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, shell[0], append(shell[1:], "-c", script)...)
	cmd.Env = append(os.Environ(), "PATH="+bin+string(os.PathListSeparator)+os.Getenv("PATH"), "HOME="+t.TempDir())
	out, err := cmd.Output()
	if err != nil {
		var stderr string
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = string(ee.Stderr)
		}
		t.Fatalf("%v: %v\n%s\n%s", shell, err, out, stderr)
	}
	return string(out)
}

// completionCases are command lines being completed (the last word is
// the one under the cursor) and candidates each must offer, or, for a
// want that begins with "!", must not.
var completionCases = []struct {
	line string
	want []string
}{
	{"cairn ", []string{"get", "node", "put", "backup", "!--json", "!--cluster"}},
	{"cairn no", []string{"node", "!get"}},
	{"cairn node ", []string{"list", "health", "promote", "!get"}},
	{"cairn --json node he", []string{"health", "!list"}},
	{"cairn get --con", []string{"--consistency", "!--json"}},
	{"cairn get greeting --js", []string{"--json"}},
	{"cairn get greeting --clu", []string{"--cluster"}},
	{"cairn -", []string{"--cluster", "--quiet", "-q", "!get"}},
	{"cairn completion ", []string{"bash", "zsh"}},
}

// checkCandidates checks one case's candidates (one a line in out).
func checkCandidates(t *testing.T, line, out string, want []string) {
	t.Helper()
	got := strings.Fields(out)
	for _, w := range want {
		if not, ok := strings.CutPrefix(w, "!"); ok {
			if slices.Contains(got, not) {
				t.Errorf("%q: %q offered (%q)", line, not, got)
			}
		} else if !slices.Contains(got, w) {
			t.Errorf("%q: %q not offered (%q)", line, w, got)
		}
	}
}

// TestCompletionScripts loads `cairn completion bash` in bash --norc as
// the docs say (source <(cairn completion bash)), sets COMP_WORDS and
// COMP_CWORD as bash does on TAB, calls the completion function and checks
// COMPREPLY; then the same with zsh -f and compinit (words and CURRENT,
// compadd capturing the candidates), when zsh is installed.
func TestCompletionScripts(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	t.Run("bash", func(t *testing.T) {
		if _, err := exec.LookPath("bash"); err != nil {
			t.Skip("bash is not installed: the bash completion script is not tested here")
		}
		var script strings.Builder
		script.WriteString("source <(cairn completion bash)\n")
		script.WriteString(`[[ "$(complete -p cairn)" == *"-F _cairn_complete"* ]] || { echo "not registered" >&2; exit 1; }` + "\n")
		for _, c := range completionCases {
			words := strings.Split(c.line, " ")
			script.WriteString("COMP_WORDS=(")
			for _, w := range words {
				script.WriteString(shellQuote(w) + " ")
			}
			script.WriteString(")\n")
			script.WriteString("COMP_CWORD=" + strconv.Itoa(len(words)-1) + "\n")
			script.WriteString("COMP_LINE=" + shellQuote(c.line) + "; COMP_POINT=${#COMP_LINE}\n")
			script.WriteString(`_cairn_complete; printf '%s\n' "${COMPREPLY[@]}"; echo "#END"` + "\n")
		}
		checkShellCases(t, shellLine(t, []string{"bash", "--norc", "--noprofile"}, script.String()))
	})
	// zsh: sourced as the docs say, and saved as _cairn in $fpath.
	fpathDir := t.TempDir()
	for _, load := range []struct{ name, lines string }{
		{"zsh", "autoload -U compinit && compinit -u\nsource <(cairn completion zsh)\n"},
		{"zsh-fpath", "cairn completion zsh > " + shellQuote(filepath.Join(fpathDir, "_cairn")) + "\nfpath=(" + shellQuote(fpathDir) + " $fpath)\nautoload -U compinit && compinit -u -D\n"},
	} {
		t.Run(load.name, func(t *testing.T) { checkZshScript(t, load.lines) })
	}
}

// checkZshScript loads the zsh script with lines and checks the cases.
func checkZshScript(t *testing.T, lines string) {
	if _, err := exec.LookPath("zsh"); err != nil {
		if os.Getenv("CAIRN_REQUIRE_ZSH") == "1" {
			t.Fatal("zsh is not installed but CAIRN_REQUIRE_ZSH=1 (.ci/run sets it after installing zsh)")
		}
		t.Skip("zsh is not installed (Debian: apt-get install zsh): the zsh completion script is not tested here")
	}
	var script strings.Builder
	script.WriteString(lines)
	script.WriteString(`[[ "${_comps[cairn]}" == _cairn ]] || { echo "not registered" >&2; exit 1 }` + "\n")
	// Outside a completion widget compadd cannot run: this one prints
	// the candidates it is given that the real one would show, those
	// that begin with the word being completed.
	script.WriteString(`compadd() { [[ "$1" == -- ]] && shift; local c; for c; do [[ "$c" == "${words[CURRENT]}"* ]] && print -r -- "$c"; done; return 0 }` + "\n")
	script.WriteString(`_files() { print -r -- "<files>" }` + "\n")
	for _, c := range completionCases {
		words := strings.Split(c.line, " ")
		script.WriteString("words=(")
		for _, w := range words {
			script.WriteString(shellQuote(w) + " ")
		}
		script.WriteString(")\n")
		script.WriteString("CURRENT=" + strconv.Itoa(len(words)) + "\n")
		script.WriteString("_cairn; echo '#END'\n")
	}
	// After a flag that takes a value: file names.
	script.WriteString("words=(cairn backup -o ''); CURRENT=4; _cairn; echo '#END'\n")
	out := shellLine(t, []string{"zsh", "-f"}, script.String())
	parts := strings.Split(out, "#END\n")
	checkShellCases(t, strings.Join(parts[:len(completionCases)], "#END\n")+"#END\n")
	if got := strings.TrimSpace(parts[len(completionCases)]); got != "<files>" {
		t.Errorf("cairn backup -o <TAB>: %q, want file names", got)
	}
}

// checkShellCases splits a shell's output at the #END lines and checks
// each case.
func checkShellCases(t *testing.T, out string) {
	t.Helper()
	parts := strings.Split(out, "#END\n")
	if len(parts) < len(completionCases) {
		t.Fatalf("%d results for %d cases:\n%s", len(parts), len(completionCases), out)
	}
	for i, c := range completionCases {
		checkCandidates(t, c.line, parts[i], c.want)
	}
}

// shellQuote quotes s for bash and zsh.
func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }
