package main

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cairn-db/cairn/api"
	"github.com/cairn-db/cairn/internal/testnet"
	"github.com/cairn-db/cairn/node"
)

// startOneNode starts a one-member in-process cluster and returns its
// --cluster flag.
func startOneNode(t *testing.T) string {
	t.Helper()
	cfg := node.DefaultConfig()
	cfg.ID, cfg.DataDir, cfg.Bootstrap = "s1", t.TempDir(), true
	cfg.RaftAddr, cfg.HTTPAddr = testnet.FreeAddr(t), testnet.FreeAddr(t)
	cfg.HeartbeatTimeout, cfg.ElectionTimeout, cfg.LeaderLeaseTimeout = 200*time.Millisecond, 200*time.Millisecond, 100*time.Millisecond
	cfg.CommitTimeout = 5 * time.Millisecond
	n, err := node.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = n.Close(context.Background()) })
	poll(t, "node ready", 10*time.Second, n.Ready)
	return "--cluster=" + n.HTTPURL()
}

// runIn runs the CLI in process with stdin, returning stdout, stderr and
// the exit status.
func runIn(t *testing.T, stdin io.Reader, args ...string) (string, string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out, errOut bytes.Buffer
	if stdin != nil {
		old := stdinReader
		stdinReader = stdin
		defer func() { stdinReader = old }()
	}
	err := Run(ctx, append([]string{"cairn"}, args...), &out, &errOut)
	return out.String(), errOut.String(), exitCode(err)
}

// setTerminal makes the CLI take its stdout for a terminal (or not) for
// the rest of the test.
func setTerminal(t *testing.T, tty bool) {
	old := isTerminal
	isTerminal = func(io.Writer) bool { return tty }
	t.Cleanup(func() { isTerminal = old })
}

// TestGetNewlineOnTerminal: a value gets a newline on a terminal only;
// on a pipe the bytes are exact.
func TestGetNewlineOnTerminal(t *testing.T) {
	cl := startOneNode(t)
	if _, e, code := runIn(t, nil, cl, "put", "k", "v"); code != 0 {
		t.Fatalf("put: %d %s", code, e)
	}
	setTerminal(t, false)
	if out, _, _ := runIn(t, nil, cl, "get", "k"); out != "v" {
		t.Errorf("pipe: %q, want exactly %q", out, "v")
	}
	setTerminal(t, true)
	if out, _, _ := runIn(t, nil, cl, "get", "k"); out != "v\n" {
		t.Errorf("terminal: %q, want %q", out, "v\n")
	}
}

// TestReplayedWriteSaysSo: a write whose idempotency key was used before
// says `replayed` in text mode, for put, del and txn.
func TestReplayedWriteSaysSo(t *testing.T) {
	cl := startOneNode(t)
	out, e, code := runIn(t, nil, cl, "put", "--idempotency-key", "k1", "a", "one")
	if code != 0 || strings.Contains(out, "replayed") {
		t.Fatalf("first put: %q %s exit %d", out, e, code)
	}
	out, _, code = runIn(t, nil, cl, "put", "--idempotency-key", "k1", "a", "two")
	if code != 0 || !strings.HasPrefix(out, "revision ") ||
		!strings.Contains(out, "(replayed: an earlier write with this idempotency key; this one's value was not written)") {
		t.Errorf("replayed put: %q exit %d", out, code)
	}
	if got, _, _ := runIn(t, nil, cl, "get", "a"); got != "one" {
		t.Errorf("value after the replay %q", got)
	}
	for _, args := range [][]string{{"del", "--idempotency-key", "k2", "a"}, {"del", "--idempotency-key", "k2", "a"}} {
		out, _, _ = runIn(t, nil, append([]string{cl}, args...)...)
	}
	if !strings.Contains(out, "(replayed: an earlier write with this idempotency key; this one was not applied)") {
		t.Errorf("replayed del: %q", out)
	}
	out, _, _ = runIn(t, nil, cl, "--json", "put", "--idempotency-key", "k1", "a", "three")
	if strings.Contains(out, "(replayed:") || !strings.Contains(strings.ToLower(out), `"replayed": true`) {
		t.Errorf("--json: %q", out)
	}
}

// TestTxnDashReadsStdin: `cairn txn -` reads standard input as `-f -`
// does, and `cairn txn FILE` reads the file.
func TestTxnDashReadsStdin(t *testing.T) {
	cl := startOneNode(t)
	txn := func(key string) string {
		return `{"operations":[{"op":"put","key":"` + key + `","value":"aGk="}]}`
	}
	if out, e, code := runIn(t, strings.NewReader(txn("a")), cl, "txn", "-"); code != 0 || !strings.HasPrefix(out, "revision ") {
		t.Fatalf("txn -: %q %s exit %d", out, e, code)
	}
	if out, e, code := runIn(t, strings.NewReader(txn("b")), cl, "txn", "-f", "-"); code != 0 || !strings.HasPrefix(out, "revision ") {
		t.Fatalf("txn -f -: %q %s exit %d", out, e, code)
	}
	file := filepath.Join(t.TempDir(), "t.json")
	if err := os.WriteFile(file, []byte(txn("c")), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, e, code := runIn(t, nil, cl, "txn", file); code != 0 || !strings.HasPrefix(out, "revision ") {
		t.Fatalf("txn FILE: %q %s exit %d", out, e, code)
	}
	for _, k := range []string{"a", "b", "c"} {
		if got, _, _ := runIn(t, nil, cl, "get", k); got != "hi" {
			t.Errorf("%s = %q", k, got)
		}
	}
	if _, _, code := runIn(t, nil, cl, "txn", "-f", file, "-"); code != exitUsage {
		t.Errorf("txn -f FILE -: exit %d, want %d", code, exitUsage)
	}
	if _, _, code := runIn(t, nil, cl, "txn", "a", "b"); code != exitUsage {
		t.Errorf("txn a b: exit %d, want %d", code, exitUsage)
	}
	// A replayed txn says so too.
	for i := 0; i < 2; i++ {
		out, _, _ := runIn(t, strings.NewReader(txn("d")), cl, "txn", "--idempotency-key", "t1", "-")
		if replayed := strings.Contains(out, "(replayed: an earlier write with this idempotency key; this one was not applied)"); replayed != (i == 1) {
			t.Errorf("txn %d: %q", i, out)
		}
	}
}

// TestVerifyBackupArguments: verify takes backup files as arguments, after
// --backup or alone, as restore does.
func TestVerifyBackupArguments(t *testing.T) {
	cl := startOneNode(t)
	dir := t.TempDir()
	full, inc := filepath.Join(dir, "full.bak"), filepath.Join(dir, "inc.bak")
	runIn(t, nil, cl, "put", "a", "1")
	if out, e, code := runIn(t, nil, cl, "backup", "-q", "-o", full); code != 0 {
		t.Fatalf("backup: %s%s", out, e)
	}
	runIn(t, nil, cl, "put", "b", "2")
	if out, e, code := runIn(t, nil, cl, "backup", "-q", "-o", inc, "--since-backup", full); code != 0 {
		t.Fatalf("incremental backup: %s%s", out, e)
	}
	for _, args := range [][]string{
		{"verify", "--backup", full, inc},
		{"verify", full, inc},
		{"verify", "--backup", full, "--backup", inc},
		{"verify", "--compare", full, inc},
	} {
		out, e, code := runIn(t, nil, append([]string{cl}, args...)...)
		if code != 0 || !strings.Contains(out, "backup "+full) || !strings.Contains(out, "backup "+inc) {
			t.Errorf("%v: exit %d\n%s%s", args, code, out, e)
		}
	}
	out, _, code := runIn(t, nil, cl, "verify", full, filepath.Join(dir, "missing.bak"))
	if code == 0 || !strings.Contains(out, "missing.bak") {
		t.Errorf("a missing file: exit %d\n%s", code, out)
	}
}

func TestEvenVotersWarning(t *testing.T) {
	members := func(roles ...string) *api.MembersResponse {
		m := &api.MembersResponse{}
		for _, r := range roles {
			m.Members = append(m.Members, api.Member{Role: r})
		}
		return m
	}
	v, nv := api.RoleVoter, api.RoleNonvoter
	for _, tc := range []struct {
		m    *api.MembersResponse
		want string
	}{
		{members(v), ""},
		{members(v, v, v), ""},
		{members(v, v, v, nv), ""},
		{members(v, v), "2 voters, an even number: a majority of 2 is 2, so it survives 0 voter failure(s), no more than with 1 voters"},
		{members(v, v, v, v, nv), "4 voters, an even number: a majority of 4 is 3, so it survives 1 voter failure(s), no more than with 3 voters"},
	} {
		got := evenVotersWarning(tc.m)
		if (tc.want == "") != (got == "") || !strings.Contains(got, tc.want) {
			t.Errorf("%d members: %q, want %q", len(tc.m.Members), got, tc.want)
		}
	}
}

// TestPromoteWarnsOnEvenVoters: promoting the second voter of a cluster
// warns on stderr and still exits 0.
func TestPromoteWarnsOnEvenVoters(t *testing.T) {
	cl := startOneNode(t)
	cfg := node.DefaultConfig()
	cfg.ID, cfg.DataDir, cfg.NonVoter = "s2", t.TempDir(), true
	cfg.RaftAddr, cfg.HTTPAddr = testnet.FreeAddr(t), testnet.FreeAddr(t)
	cfg.Join = []string{strings.TrimPrefix(cl, "--cluster=")}
	cfg.HeartbeatTimeout, cfg.ElectionTimeout, cfg.LeaderLeaseTimeout = 200*time.Millisecond, 200*time.Millisecond, 100*time.Millisecond
	n2, err := node.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = n2.Close(context.Background()) })
	poll(t, "s2 ready", 20*time.Second, n2.Ready)
	out, errOut, code := runIn(t, nil, cl, "node", "promote", "s2")
	if code != 0 || !strings.Contains(errOut, "warning: the cluster now has 2 voters, an even number") || strings.Contains(out, "warning") {
		t.Errorf("promote: exit %d\nstdout %s\nstderr %s", code, out, errOut)
	}
}

func TestDevSelf(t *testing.T) {
	def := strings.Split(defaultCluster, ",")
	other := []string{"http://127.0.0.1:9001", "http://127.0.0.1:9002"}
	for _, tc := range []struct {
		argv0 string
		urls  []string
		want  string
	}{
		{"/tmp/go-build3891688252/b001/exe/cairn", def, "go run ./cmd/cairn"},
		{"cairn", def, "cairn"},
		{"./bin/cairn", def, "./bin/cairn"},
		{"/opt/my tools/cairn", def, "'/opt/my tools/cairn'"},
		{"cairn", other, "cairn --cluster http://127.0.0.1:9001,http://127.0.0.1:9002"},
	} {
		if got := devSelf(tc.argv0, tc.urls); got != tc.want {
			t.Errorf("devSelf(%q) = %q, want %q", tc.argv0, got, tc.want)
		}
	}
}

// TestDelSaysWhatItDeleted: del says whether it deleted the key (or how
// many keys under the prefix); the bare revision stays the line's start.
func TestDelSaysWhatItDeleted(t *testing.T) {
	cl := startOneNode(t)
	for _, k := range []string{"a", "u/1", "u/2", "u/3"} {
		runIn(t, nil, cl, "put", k, "v")
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"del", "a"}, "(deleted a)"},
		{[]string{"del", "a"}, "(nothing deleted: a did not exist)"},
		{[]string{"del", "never"}, "(nothing deleted: never did not exist)"},
		{[]string{"del", "u/1"}, "(deleted u/1)"},
		{[]string{"del", "--prefix", "u/"}, "(deleted 2 keys under u/)"},
		{[]string{"del", "--prefix", "u/"}, "(nothing deleted: no key under u/)"},
	} {
		out, e, code := runIn(t, nil, append([]string{cl}, tc.args...)...)
		if code != 0 || !strings.HasPrefix(out, "revision ") || !strings.HasSuffix(out, " "+tc.want+"\n") {
			t.Errorf("%v: %q, want %q (exit %d, %s)", tc.args, out, tc.want, code, e)
		}
	}
}
