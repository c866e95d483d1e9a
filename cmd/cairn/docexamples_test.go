package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// shExample is one command of a page's ```sh blocks.
type shExample struct {
	page    string // README.md, docs/cli.md
	line    int
	section string // the "## " heading it is under
	text    string // the command, continuation lines joined, comment dropped
	comment string // its "  # ..." comment
	// shown are the "# ..." lines right below the command (no blank line
	// between), "# " removed: what a page shows it answers.
	shown []string
}

func (e shExample) String() string { return fmt.Sprintf("%s:%d: %s", e.page, e.line, e.text) }

// shExamples returns the commands of the ```sh blocks of a page (a path
// relative to the repository's root).
func shExamples(t *testing.T, page string) []shExample {
	t.Helper()
	f, err := os.Open(filepath.Join("..", "..", page))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var (
		out      []shExample
		inBlock  bool
		section  string
		pending  string
		comments string
		start    int
		below    bool // the previous line ended a command
	)
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		trimmed := strings.TrimSpace(line)
		if !inBlock && strings.HasPrefix(line, "## ") {
			section = strings.TrimPrefix(line, "## ")
		}
		if strings.HasPrefix(trimmed, "```") && !quoted(pending) {
			inBlock = !inBlock && trimmed == "```sh"
			below = false
			continue
		}
		if !inBlock {
			continue
		}
		if !quoted(pending) {
			if i := strings.Index(line, "  #"); i >= 0 {
				comments += strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(line[i:]), "#"))
				line = line[:i]
			}
		}
		line = strings.TrimSpace(line)
		if !quoted(pending) && (line == "" || strings.HasPrefix(line, "#")) {
			if below && line != "" {
				last := &out[len(out)-1]
				last.shown = append(last.shown, strings.TrimSpace(strings.TrimPrefix(line, "#")))
			} else {
				below = false
			}
			continue
		}
		below = false
		if pending == "" {
			start = n
		}
		// A line inside a single-quoted string goes on: the string (a JSON
		// body over several lines) is one word of the command.
		if quoted(pending + line) {
			pending += line + " "
			continue
		}
		if strings.HasSuffix(line, "\\") {
			pending += strings.TrimSuffix(line, "\\") + " "
			continue
		}
		text := strings.Join(strings.Fields(pending+line), " ")
		out = append(out, shExample{page: page, line: start, section: section, text: text, comment: comments})
		pending, comments, below = "", "", true
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if len(out) == 0 {
		t.Fatalf("%s has no sh commands", page)
	}
	return out
}

// quoted reports whether s ends inside a single-quoted string.
func quoted(s string) bool { return strings.Count(s, "'")%2 == 1 }

// docExamplesElsewhere are the sh examples of README.md and docs/cli.md
// that TestDocExamples does not run, with the test that does (or why
// none can): whole sections by "section TITLE", else the command as
// written. Every entry must still be on its page.
var docExamplesElsewhere = map[string]string{
	// README.md
	"go run ./cmd/cairn dev": "starts a cluster until Ctrl-C: TestDevQuickStart runs `cairn dev`",
	"go test ./...":          "runs the tests themselves",
	"go install github.com/cairn-db/cairn/cmd/cairn@latest": "needs the module from a proxy: TestGoInstallLatest serves this checkout as one",
	"make install":                    "installs into GOBIN: TestMakeInstall, with GOBIN a temporary directory",
	"source <(cairn completion bash)": "a shell's builtin: TestCompletionScripts runs it in bash and completes with it",
	"source <(cairn completion zsh)":  "a shell's builtin: TestCompletionScripts runs it in zsh (when installed) and completes with it",
	// docs/cli.md
	"section TLS":             "needs the page's host names and certificates: TestCLITLSDocExamples (a TLS fake server), TestSecurityDocWalkthrough",
	"section Users and roles": "prompts for passwords on a terminal: TestUsersAndRolesDocExamples (a fake console); TestAuthEndToEnd on a cluster",
	"cairn dev":               "starts a cluster until Ctrl-C: TestDevQuickStart",
	"cairn node run --id n1 --data-dir data/n1 --raft-addr 127.0.0.1:7001 --http-addr 127.0.0.1:8001 --bootstrap":                                        "a member of its own cluster: TestSecurityDocWalkthrough runs its page's node run lines as written; every cluster test starts members this way",
	"cairn node run --id n2 --data-dir data/n2 --raft-addr 127.0.0.1:7002 --http-addr 127.0.0.1:8002 --join http://127.0.0.1:8001":                       "as the line above",
	"cairn --cluster http://127.0.0.1:8001,http://127.0.0.1:8002 node repair --id n3 --data-dir data/n3":                                                 "needs a stopped member: TestIntegrityCLI",
	"cairn node run --id n3 --data-dir data/n3 --raft-addr 127.0.0.1:7003 --http-addr 127.0.0.1:8003 --join http://127.0.0.1:8001,http://127.0.0.1:8002": "the repaired member's restart: TestIntegrityCLI",
}

// docExitStatus matches a comment that gives an example's exit status.
var docExitStatus = regexp.MustCompile(`^exit (\d+)\b`)

// TestDocExamples runs every command of the sh blocks of docs/cli.md and
// README.md, in that order, as written, against one three-member cluster
// that starts empty (so the revisions are those the page shows), in an
// empty directory, with CAIRN_CLUSTER naming the cluster and no other
// CAIRN_* variable; each must exit 0, or N when its comment begins with
// "exit N". The substitutions, all that differs from a reader's shell:
//
//   - 127.0.0.1:8001, :8002, :8003 are the members n1, n2 and n3 (their HTTP
//     addresses); any other 127.0.0.1:7xxx or :8xxx is a free port;
//   - `go run ./cmd/cairn` is the binary;
//   - `echo WORDS | cairn ...`: WORDS (single quotes removed) and a
//     newline are the command's stdin.
//
// docExamplesElsewhere lists the few examples run by other tests.
func TestDocExamples(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	examples := append(shExamples(t, "docs/cli.md"), shExamples(t, "README.md")...)
	var run []shExample
	used := map[string]bool{}
	for _, e := range examples {
		if _, ok := docExamplesElsewhere["section "+e.section]; ok && e.page == "docs/cli.md" {
			used["section "+e.section] = true
			continue
		}
		if _, ok := docExamplesElsewhere[e.text]; ok {
			used[e.text] = true
			continue
		}
		run = append(run, e)
	}
	for k := range docExamplesElsewhere {
		if !used[k] {
			t.Errorf("docExamplesElsewhere: %q is not on README.md or docs/cli.md any more", k)
		}
	}

	c := startCluster(t)
	dir := t.TempDir()
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "CAIRN_") {
			env = append(env, kv)
		}
	}
	env = append(env, "CAIRN_CLUSTER="+strings.Join(c.URLs(), ","))
	ports := map[string]string{}
	for i := 0; i < 3; i++ {
		ports[fmt.Sprintf("127.0.0.1:%d", 8001+i)] = strings.TrimPrefix(c.URL(i), "http://")
	}
	rewrite := func(s string) string {
		return docPort.ReplaceAllStringFunc(s, func(m string) string {
			if _, ok := ports[m]; !ok {
				ports[m] = freePort(t)
			}
			return ports[m]
		})
	}

	for _, e := range run {
		text, stdin := e.text, ""
		if echo, rest, ok := strings.Cut(text, " | "); ok && strings.HasPrefix(echo, "echo ") {
			stdin = strings.Trim(strings.TrimPrefix(echo, "echo "), "'") + "\n"
			text = rest
		}
		text = strings.Replace(text, "go run ./cmd/cairn ", "cairn ", 1)
		if strings.ContainsAny(text, "'\"$|&;<>`*\\") {
			t.Fatalf("%s: needs a shell; keep the examples plain", e)
		}
		words := strings.Fields(rewrite(text))
		if words[0] != "cairn" {
			t.Fatalf("%s: the test runs only cairn", e)
		}
		want := 0
		if m := docExitStatus.FindStringSubmatch(e.comment); m != nil {
			want, _ = strconv.Atoi(m[1])
		}
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		cmd := exec.CommandContext(ctx, binary(t), words[1:]...)
		var out bytes.Buffer
		cmd.Dir, cmd.Env, cmd.Stdin, cmd.Stdout, cmd.Stderr = dir, env, strings.NewReader(stdin), &out, &out
		err := cmd.Run()
		cancel()
		code := 0
		code = processExit(t, err, e)
		if code != want {
			t.Fatalf("%s: exit %d, want %d\n%s", e, code, want, out.String())
		}
		t.Logf("%s: exit %d\n%s", e, code, out.String())
	}
}
