package main

import (
	"bytes"
	"context"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// runCLIWithin runs the binary, killing it at the deadline d: a command
// still running then is a hang, reported as such.
func runCLIWithin(t *testing.T, d time.Duration, env []string, args ...string) (string, string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary(t), args...)
	cmd.Env = append(cmd.Environ(), env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("cairn %v still running after %s (a hang); stderr %q", args, d, errb.String())
	}
	return out.String(), errb.String(), processExit(t, err, args)
}

// A command that reaches no member exits 5, naming the endpoints it tried
// and why, within --timeout (CAIRN_TIMEOUT), and without it within the
// default 10 s: never a silent hang. Nothing is printed on stderr but the
// error (stderr is not a terminal).
func TestUnreachableClusterExits(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	a, b := "http://"+freePort(t), "http://"+freePort(t)
	for _, tc := range []struct {
		name string
		env  []string
		args []string
	}{
		{"timeout flag", nil, []string{"--cluster", a + "," + b, "--timeout", "2s", "get", "hello"}},
		{"CAIRN_TIMEOUT", []string{"CAIRN_TIMEOUT=2s"}, []string{"--cluster", a + "," + b, "put", "k", "v"}},
		{"default", nil, []string{"--cluster", a + "," + b, "get", "hello"}},
		{"watch", nil, []string{"--cluster", a + "," + b, "--timeout", "2s", "watch", "p/"}},
		{"status", nil, []string{"--cluster", a + "," + b, "--timeout", "2s", "node", "list"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// 30 s: well past the 10 s default, and not a speed test.
			out, errOut, code := runCLIWithin(t, 30*time.Second, tc.env, tc.args...)
			if code != exitUnavailable {
				t.Fatalf("exit %d, want %d; stdout %q stderr %q", code, exitUnavailable, out, errOut)
			}
			for _, want := range []string{a + ": connection refused", b + ": connection refused"} {
				if !strings.Contains(errOut, want) {
					t.Errorf("stderr %q does not say %q", errOut, want)
				}
			}
			if strings.Contains(errOut, "waiting for") {
				t.Errorf("stderr %q: a note on a pipe", errOut)
			}
		})
	}
}

// The example of docs/cli.md, "Unreachable cluster", run as written, says
// what the doc shows.
func TestUnreachableClusterDocExample(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	doc, err := os.ReadFile("../../docs/cli.md")
	if err != nil {
		t.Fatal(err)
	}
	const example = "cairn --cluster http://127.0.0.1:9999 --timeout 2s get hello"
	const shown = "cairn: client: unavailable: no member answered within 2s (tried http://127.0.0.1:9999: connection refused)"
	if !strings.Contains(string(doc), "\n"+example+"   # exit 5\n") || !strings.Contains(string(doc), "\n"+shown+"\n") {
		t.Fatalf("docs/cli.md no longer shows %q and its message", example)
	}
	if c, err := net.DialTimeout("tcp", "127.0.0.1:9999", time.Second); err == nil {
		c.Close()
		t.Skip("something listens on 127.0.0.1:9999")
	}
	_, errOut, code := runCLIWithin(t, 30*time.Second, nil, strings.Fields(example)[1:]...)
	if code != exitUnavailable || strings.TrimSpace(errOut) != shown {
		t.Fatalf("%s: exit %d, stderr %q; want %d and %q", example, code, errOut, exitUnavailable, shown)
	}
}
