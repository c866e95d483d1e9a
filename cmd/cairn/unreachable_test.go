package main

import (
	"bytes"
	"context"
	"errors"
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
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		return out.String(), errb.String(), ee.ExitCode()
	case err != nil:
		t.Fatalf("run cairn %v: %v", args, err)
	}
	return out.String(), errb.String(), 0
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
