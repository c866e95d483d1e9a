package main

import (
	"bytes"
	"context"
	"io"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/creack/pty"
)

// runOnTerminal runs the binary with stderr on a pseudo-terminal and
// stdout (and stdin) on pipes; it returns stdout, what the terminal showed
// and the exit status.
func runOnTerminal(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	ptmx, tty, err := pty.Open()
	if err != nil {
		t.Skipf("no pseudo-terminal here: %v", err)
	}
	defer ptmx.Close()
	if err := pty.Setsize(ptmx, &pty.Winsize{Rows: 24, Cols: 120}); err != nil {
		t.Fatal(err)
	}
	var screen bytes.Buffer
	copied := make(chan struct{})
	go func() {
		defer close(copied)
		_, _ = io.Copy(&screen, ptmx) // ends with EIO once no process holds the terminal
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary(t), args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, tty
	err = cmd.Run()
	tty.Close()
	select {
	case <-copied:
	case <-ctx.Done():
		t.Fatalf("cairn %v: the terminal's output did not end", args)
	}
	return out.String(), screen.String(), processExit(t, err, args)
}

// controlBytes matches what a progress display writes: carriage returns
// and escape sequences.
var controlBytes = regexp.MustCompile("[\r\x1b]")

// TestProgressTerminalOnly runs the four long commands (bench fill,
// backup, restore, verify --deep) three ways: on pipes (stdout is exactly
// the result, stderr has no control character), with --quiet (stdout
// empty), and with stderr on a terminal (the progress shows there, stdout
// is still exactly the result).
func TestProgressTerminalOnly(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	c := startCluster(t)
	cluster := clusterFlag(c)
	dir := t.TempDir()
	n := 0
	newName := func(what string) string {
		n++
		return filepath.Join(dir, what+strings.Repeat("x", n))
	}
	type command struct {
		name   string
		args   func() []string // a fresh command line each run
		result *regexp.Regexp  // the whole of stdout
		desc   string          // the progress bar's description
	}
	full := filepath.Join(dir, "full.bak")
	if out, errOut, code := runCLI(t, "", cluster, "backup", "-o", full); code != 0 {
		t.Fatalf("backup: %d %s %s", code, out, errOut)
	}
	commands := []command{
		{
			name: "bench fill",
			args: func() []string {
				return []string{cluster, "bench", "--fill", "only", "--keys", "300", "--clients", "4"}
			},
			result: regexp.MustCompile(`^filled 300 keys in [0-9.]+s \([0-9]+ puts/s, 4 clients\)\n$`),
			desc:   "fill",
		},
		{
			name:   "backup",
			args:   func() []string { return []string{"backup", "-o", newName("b.bak"), cluster} },
			result: regexp.MustCompile(`^full backup: revision \d+, chain hash [0-9a-f]{64} -> \S+\n$`),
			desc:   "backup",
		},
		{
			name:   "restore",
			args:   func() []string { return []string{"restore", full, "--data-dir", newName("restored"), "--id", "r1"} },
			result: regexp.MustCompile(`^restored revision \d+, chain hash [0-9a-f]{64}, into \S+\nstart it with:\n  cairn node run --bootstrap --id r1 --data-dir \S+ \.\.\.\n$`),
			desc:   "restore",
		},
		{
			name:   "verify --deep",
			args:   func() []string { return []string{cluster, "verify", "--deep"} },
			result: regexp.MustCompile(`^WHAT +REVISION +HASH +STATE HASH +OK +NOTE\n(n[123] +\d+ +[0-9a-f]{16} +[0-9a-f]{16} +true +deep: .*\n){3}$`),
			desc:   "verify --deep",
		},
	}
	for _, cmd := range commands {
		t.Run(strings.ReplaceAll(cmd.name, " ", "_"), func(t *testing.T) {
			// On pipes: the result only.
			out, errOut, code := runCLI(t, "", cmd.args()...)
			if code != 0 {
				t.Fatalf("on a pipe: exit %d\n%s%s", code, out, errOut)
			}
			if !cmd.result.MatchString(out) {
				t.Errorf("on a pipe, stdout is not just the result:\n%q", out)
			}
			if controlBytes.MatchString(errOut) || controlBytes.MatchString(out) {
				t.Errorf("on a pipe, control characters:\nstdout %q\nstderr %q", out, errOut)
			}
			if errOut != "" {
				t.Errorf("on a pipe, stderr is not empty: %q", errOut)
			}

			// --quiet, before or after the command: nothing on stdout.
			for _, q := range [][]string{append([]string{"--quiet"}, cmd.args()...), append(cmd.args(), "-q")} {
				out, errOut, code := runCLI(t, "", q...)
				if code != 0 || out != "" || errOut != "" {
					t.Errorf("cairn %v: exit %d, stdout %q, stderr %q; want 0 and nothing", q, code, out, errOut)
				}
			}

			// stderr on a terminal: the progress shows there.
			out, screen, code := runOnTerminal(t, cmd.args()...)
			if code != 0 {
				t.Fatalf("on a terminal: exit %d\n%s%s", code, out, screen)
			}
			if !cmd.result.MatchString(out) {
				t.Errorf("with a terminal on stderr, stdout is not just the result:\n%q", out)
			}
			if !strings.Contains(screen, cmd.desc) || !strings.Contains(screen, "\r") {
				t.Errorf("the terminal shows no progress (%q):\n%q", cmd.desc, screen)
			}
			t.Logf("terminal: %q", screen)

			// --quiet on a terminal: no progress either.
			out, screen, code = runOnTerminal(t, append(cmd.args(), "--quiet")...)
			if code != 0 || out != "" || strings.Contains(screen, cmd.desc) {
				t.Errorf("--quiet on a terminal: exit %d, stdout %q, terminal %q", code, out, screen)
			}
		})
	}
}

// TestQuietKeepsErrors: --quiet (before or after the command) silences
// stdout, not the error nor the exit status.
func TestQuietKeepsErrors(t *testing.T) {
	var out, errOut bytes.Buffer
	err := Run(context.Background(), []string{"cairn", "--quiet", "completion", "fish"}, &out, &errOut)
	if exitCode(err) != exitUsage || out.Len() != 0 {
		t.Errorf("--quiet completion fish: %v (exit %d), stdout %q; want exit 2 and nothing", err, exitCode(err), out.String())
	}
	for _, args := range [][]string{{"cairn", "completion", "bash", "-q"}, {"cairn", "-q", "completion", "bash"}} {
		var out bytes.Buffer
		if err := Run(context.Background(), args, &out, io.Discard); err != nil || out.Len() != 0 {
			t.Errorf("%v: %v, stdout %q; want nothing", args, err, out.String())
		}
	}
	out.Reset()
	if err := Run(context.Background(), []string{"cairn", "completion", "bash"}, &out, io.Discard); err != nil || out.Len() == 0 {
		t.Errorf("without --quiet: %v, stdout %q", err, out.String())
	}
}
