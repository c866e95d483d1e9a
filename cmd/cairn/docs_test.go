package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cairn-db/cairn/internal/testutil"
)

// TestSecurityDocWalkthrough runs every ```sh block of docs/security.md
// with the binary, in order, in an empty directory: certificates made by
// `cairn cert`, three members over TLS, and client commands with the
// CAIRN_* variables the page exports.
func TestSecurityDocWalkthrough(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	runDocScript(t, "../../docs/security.md")
}

// docCommand is one command of a documentation page's sh blocks.
type docCommand struct {
	line int
	args []string
}

// docCommands returns the commands of the ```sh blocks of a markdown
// page (a path relative to this directory): comments and blank lines
// dropped, continuation lines joined.
func docCommands(t *testing.T, path string) []docCommand {
	t.Helper()
	page, err := filepath.Rel(filepath.Join("..", ".."), path)
	if err != nil {
		t.Fatal(err)
	}
	var out []docCommand
	for _, e := range shExamples(t, page) {
		out = append(out, docCommand{line: e.line, args: strings.Fields(e.text)})
	}
	if len(out) == 0 {
		t.Fatalf("%s has no sh commands", path)
	}
	return out
}

// docPort matches the loopback ports pages use (7001.., 8001..).
var docPort = regexp.MustCompile(`127\.0\.0\.1:([78]\d{3})\b`)

// runDocScript runs a page's commands as a reader would: `export` sets
// variables for the rest of the page, `cairn node run` starts a member in
// the background (stopped with SIGTERM at the end, and it must exit 0),
// and any other `cairn` command must exit 0 once the members started so
// far are ready. A command may begin with `echo WORD |` (WORD and a
// newline are its stdin) and with NAME=value assignments (its own
// environment). The pages' fixed ports (127.0.0.1:7001, :8001, ...) are
// replaced, consistently, by free ones, so that the test meets no other
// cluster; nothing else is changed.
func runDocScript(t *testing.T, path string) {
	t.Helper()
	dir := t.TempDir()
	ports := map[string]string{}
	rewrite := func(s string) string {
		return docPort.ReplaceAllStringFunc(s, func(m string) string {
			if _, ok := ports[m]; !ok {
				// The host stays 127.0.0.1, which the page's certificates name.
				ln, err := net.Listen("tcp", "127.0.0.1:0")
				if err != nil {
					t.Fatal(err)
				}
				ports[m] = ln.Addr().String()
				ln.Close()
			}
			return ports[m]
		})
	}
	env := os.Environ()
	var members []string // HTTP URLs of the members started
	for _, c := range docCommands(t, path) {
		args := make([]string, len(c.args))
		for i, a := range c.args {
			args[i] = rewrite(a)
		}
		where := fmt.Sprintf("%s:%d: %s", filepath.Base(path), c.line, strings.Join(c.args, " "))
		stdin := ""
		if len(args) > 3 && args[0] == "echo" && args[2] == "|" {
			stdin, args = args[1]+"\n", args[3:]
		}
		cmdEnv := env
		for len(args) > 1 && args[0] != "export" && strings.Contains(args[0], "=") {
			cmdEnv = append(slices.Clip(cmdEnv), args[0])
			args = args[1:]
		}
		switch {
		case args[0] == "export":
			for _, kv := range args[1:] {
				if !strings.Contains(kv, "=") {
					t.Fatalf("%s: export of %q", where, kv)
				}
				env = append(env, kv)
			}
		case args[0] != "cairn":
			t.Fatalf("%s: the test runs only cairn and export", where)
		case len(args) > 2 && args[1] == "node" && args[2] == "run":
			members = append(members, startDocMember(t, where, dir, env, args[1:]))
		default:
			for _, u := range members {
				waitDocMember(t, where, dir, env, u)
			}
			members = nil
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			cmd := exec.CommandContext(ctx, binary(t), args[1:]...)
			cmd.Dir, cmd.Env, cmd.Stdin = dir, cmdEnv, strings.NewReader(stdin)
			out, err := cmd.CombinedOutput()
			cancel()
			if err != nil {
				t.Fatalf("%s: %v\n%s", where, err, out)
			}
			t.Logf("%s\n%s", where, out)
		}
	}
}

// startDocMember starts `cairn node run` and returns its HTTP URL.
func startDocMember(t *testing.T, where, dir string, env, args []string) string {
	t.Helper()
	url := ""
	for i, a := range args {
		if a == "--http-addr" && i+1 < len(args) {
			url = "https://" + args[i+1]
			if !strings.Contains(strings.Join(args, " "), "--peer-cert-file") {
				url = "http://" + args[i+1]
			}
		}
	}
	if url == "" {
		t.Fatalf("%s: a member without --http-addr", where)
	}
	cmd := exec.Command(binary(t), args...)
	var out syncBuffer
	cmd.Dir, cmd.Env, cmd.Stdout, cmd.Stderr = dir, env, &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatalf("%s: %v", where, err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("%s: after SIGTERM: %v\n%s", where, err, out.String())
			}
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			t.Errorf("%s: did not stop on SIGTERM\n%s", where, out.String())
		}
	})
	return url
}

// waitDocMember waits until `cairn node health` (with the page's
// variables, so with its certificates) passes for the member at url.
func waitDocMember(t *testing.T, where, dir string, env []string, url string) {
	t.Helper()
	testutil.WaitForEvery(t, where+": member "+url+" ready", 60*time.Second, 200*time.Millisecond, func() error {
		cmd := exec.Command(binary(t), "--timeout", "2s", "node", "health", "--endpoint", url)
		cmd.Dir, cmd.Env = dir, env
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("%w: %s", err, bytes.TrimSpace(out))
		}
		return nil
	})
}

// docExamples returns the command lines of the sh blocks in docs/cli.md's
// section titled title.
func docExamples(t *testing.T, title string) []string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "..", "docs", "cli.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(data), "\n## "+title+"\n")
	if !ok {
		t.Fatalf("docs/cli.md has no section %q", title)
	}
	section, _, _ = strings.Cut(section, "\n## ")
	var lines []string
	in := false
	for _, l := range strings.Split(section, "\n") {
		switch {
		case strings.HasPrefix(l, "```"):
			in = !in
		case in && strings.TrimSpace(l) != "":
			lines = append(lines, l)
		}
	}
	if len(lines) == 0 {
		t.Fatalf("docs/cli.md, %s: no examples", title)
	}
	return lines
}

// TestMirrorDocWalkthrough runs every ```sh block of docs/mirror.md with
// the binary, in order, in an empty directory: a source and a standby
// member, mirror start, status --caught-up, verify --source, promotion,
// and a second standby seeded from a backup.
func TestMirrorDocWalkthrough(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	runDocScript(t, "../../docs/mirror.md")
}
