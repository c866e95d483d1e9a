package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/cairn-db/cairn/internal/cluster"
	"github.com/cairn-db/cairn/internal/tlsutil/tlstest"
)

// runCLIEnv runs the binary with extra environment and stdin, and returns
// stdout, stderr and the exit status.
func runCLIEnv(t *testing.T, env []string, stdin string, args ...string) (string, string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary(t), args...)
	cmd.Env = append(os.Environ(), env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr, cmd.Stdin = &out, &errb, strings.NewReader(stdin)
	err := cmd.Run()
	return out.String(), errb.String(), processExit(t, err, args)
}

// TestAuthEndToEnd drives access control through the binary against a
// three-process cluster over TLS: CLI, client, HTTP, member, raft, state
// machine. Refusals exit 6 and write nothing; the log names who wrote.
func TestAuthEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	c := cluster.New(t, cluster.Options{Kind: cluster.Proc, TLS: tlstest.New(t, "ca")})
	c.Start(t, 3)
	admin := c.PKI().Client(t, "admin") // a CN that is no user: anonymous under access control
	base := []string{"CAIRN_CLUSTER=" + strings.Join(c.URLs(), ","), "CAIRN_CACERT=" + admin.CAFile,
		"CAIRN_CERT=" + admin.CertFile, "CAIRN_KEY=" + admin.KeyFile, "CAIRN_TIMEOUT=30s"}
	asRoot := append(append([]string(nil), base...), "CAIRN_USER=root", "CAIRN_PASSWORD=pw-root")
	asAnn := append(append([]string(nil), base...), "CAIRN_USER=ann", "CAIRN_PASSWORD=pw-ann")
	run := func(env []string, stdin string, want int, args ...string) string {
		t.Helper()
		out, errOut, code := runCLIEnv(t, env, stdin, args...)
		if code != want {
			t.Fatalf("cairn %v: exit %d, want %d\n%s%s", args, code, want, out, errOut)
		}
		return out + errOut
	}

	run(base, "pw-root\n", 0, "user", "add", "root", "--password-stdin")
	run(base, "", 0, "user", "grant", "root", "root")
	run(base, "", 0, "put", "before", "x")
	run(base, "", 0, "auth", "enable")

	// Anonymous (a client certificate naming no user): refused, exit 6.
	if out := run(base, "", 6, "put", "app/k", "v"); !strings.Contains(out, "unauthenticated") {
		t.Fatalf("anonymous put: %s", out)
	}
	run(asRoot, "", 0, "role", "add", "app")
	run(asRoot, "", 0, "role", "grant", "app", "--prefix", "app/", "--access", "readwrite")
	run(asRoot, "pw-ann\n", 0, "user", "add", "ann", "--password-stdin")
	run(asRoot, "", 0, "user", "grant", "ann", "app")

	run(asAnn, "", 0, "put", "app/k", "v1")
	if out := run(asAnn, "", 0, "get", "app/k"); out != "v1" {
		t.Fatalf("ann reads %q", out)
	}
	for _, args := range [][]string{{"get", "before"}, {"put", "other", "v"}, {"ls", "app"}, {"log"}, {"del", "--prefix", "ap"}} {
		// ls app and del --prefix ap: broader than the grant on "app/".
		if out := run(asAnn, "", 6, args...); !strings.Contains(out, "permission") {
			t.Fatalf("ann %v: %s", args, out)
		}
	}
	run(asAnn, "", 0, "ls", "app/")

	// A bad password, and a user whose role was revoked.
	bad := append(append([]string(nil), base...), "CAIRN_USER=ann", "CAIRN_PASSWORD=wrong")
	run(bad, "", 6, "get", "app/k")
	run(asRoot, "", 0, "user", "revoke", "ann", "app")
	run(asAnn, "", 6, "put", "app/k", "v2")

	// Nothing refused was written; the log names who wrote what.
	log := run(asRoot, "", 0, "log", "--json")
	for _, want := range []string{`"auth_user": "ann"`, `"key": "app/k"`} {
		if !strings.Contains(log, want) {
			t.Fatalf("log lacks %s:\n%s", want, log)
		}
	}
	for _, refused := range []string{`"key": "other"`, `"v2"`} {
		if strings.Contains(log, refused) {
			t.Fatalf("a refused write is in the log (%s):\n%s", refused, log)
		}
	}
	// The documented recovery of a lost root password: a client
	// certificate named root authenticates as root under mutual TLS.
	rootCert := c.PKI().Client(t, "root")
	byCert := []string{"CAIRN_CLUSTER=" + strings.Join(c.URLs(), ","), "CAIRN_CACERT=" + rootCert.CAFile,
		"CAIRN_CERT=" + rootCert.CertFile, "CAIRN_KEY=" + rootCert.KeyFile, "CAIRN_TIMEOUT=30s"}
	run(byCert, "new-root-pw\n", 0, "user", "passwd", "root", "--password-stdin")
	run(asRoot, "", 6, "user", "list") // the old password no longer works...
	asRoot = append(append([]string(nil), base...), "CAIRN_USER=root", "CAIRN_PASSWORD=new-root-pw")
	run(asRoot, "", 0, "auth", "disable") // ...the new one does
	run(base, "", 0, "put", "after", "x")
	c.WaitConverged(t) // the harness reads chains without credentials

}
