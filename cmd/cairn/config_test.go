package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cairn-db/cairn/internal/cluster"
	"github.com/cairn-db/cairn/internal/testnet"

	"github.com/cairn-db/cairn/api"
)

// cleanEnv returns the test's environment without any CAIRN_* variable,
// plus extra.
func cleanEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "CAIRN_") {
			env = append(env, kv)
		}
	}
	return append(env, extra...)
}

// proc is a `cairn` process started with raw arguments and environment
// (the shared harness's members always get --id and the addresses as
// flags, which is what this file must not do).
type proc struct {
	id, httpAddr string
	cmd          *exec.Cmd
	log          *bytes.Buffer
	done         chan error
}

func (p *proc) url() string { return "http://" + p.httpAddr }

// stop sends sig and waits for the process to exit.
func (p *proc) stop(t *testing.T, sig syscall.Signal) error {
	t.Helper()
	if p.cmd == nil {
		return nil
	}
	_ = p.cmd.Process.Signal(sig)
	select {
	case err := <-p.done:
		p.cmd = nil
		return err
	case <-time.After(30 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
		p.cmd = nil
		return errors.New("did not exit within 30s")
	}
}

// waitReady waits until p answers /readyz.
func waitReady(t *testing.T, p *proc) {
	t.Helper()
	h := cluster.NewHTTP(5 * time.Second)
	defer h.CloseIdleConnections()
	poll(t, p.id+" ready", 30*time.Second, func() error { return h.Ready(p.url()) })
}

// startRaw starts `cairn <args>` with exactly the given CAIRN_* variables.
// The returned proc is stopped at cleanup; it must exit cleanly.
func startRaw(t *testing.T, id, httpAddr string, env []string, args ...string) *proc {
	t.Helper()
	p := &proc{id: id, httpAddr: httpAddr, log: &bytes.Buffer{}}
	p.cmd = exec.Command(binary(t), args...)
	p.cmd.Env = cleanEnv(env...)
	p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", id, err)
	}
	p.done = make(chan error, 1)
	go func(c *exec.Cmd, done chan error) { done <- c.Wait() }(p.cmd, p.done)
	t.Cleanup(func() {
		if err := p.stop(t, syscall.SIGTERM); err != nil {
			t.Errorf("%s exit: %v\n%s", id, err, p.log)
		}
	})
	return p
}

// runEnv runs the binary with a clean environment plus env and returns
// stdout, stderr and the exit status.
func runEnv(t *testing.T, env []string, args ...string) (string, string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary(t), args...)
	cmd.Env = cleanEnv(env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	return out.String(), errb.String(), processExit(t, err, args)
}

// writeYAML writes a config file; every value is a double-quoted string
// (valid YAML) unless it is a bool.
func writeYAML(t *testing.T, values map[string]any) string {
	t.Helper()
	keys := make([]string, 0, len(values))
	for k := range values {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		switch v := values[k].(type) {
		case bool:
			fmt.Fprintf(&b, "%s: %t\n", k, v)
		case string:
			fmt.Fprintf(&b, "%s: %s\n", k, strconv.Quote(v))
		default:
			t.Fatalf("yaml value %T", v)
		}
	}
	path := filepath.Join(t.TempDir(), "cairn.yaml")
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestNodeRunFromEnvAndConfigFile(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}

	// A missing id is a usage error, reported before anything starts.
	dir := t.TempDir()
	_, errOut, code := runEnv(t, nil, "node", "run", "--data-dir", dir, "--raft-addr", freePort(t), "--http-addr", freePort(t))
	if code != exitUsage || !strings.Contains(errOut, "id is required") {
		t.Fatalf("node run without --id: exit %d, stderr %q; want %d and \"id is required\"", code, errOut, exitUsage)
	}
	// So is a commit timeout longer than the heartbeat timeout.
	_, errOut, code = runEnv(t, nil, "node", "run", "--id", "n0", "--data-dir", dir, "--raft-addr", freePort(t), "--http-addr", freePort(t),
		"--commit-timeout", "2s")
	if code != exitUsage || !strings.Contains(errOut, "commit timeout 2s exceeds heartbeat timeout 1s") {
		t.Fatalf("node run --commit-timeout 2s: exit %d, stderr %q; want %d and the limit", code, errOut, exitUsage)
	}

	timing := map[string]any{"heartbeat-timeout": "300ms", "election-timeout": "300ms",
		"leader-lease-timeout": "150ms", "log-level": "warn"}
	timingEnv := []string{"CAIRN_HEARTBEAT_TIMEOUT=300ms", "CAIRN_ELECTION_TIMEOUT=300ms",
		"CAIRN_LEADER_LEASE_TIMEOUT=150ms", "CAIRN_LOG_LEVEL=warn"}

	addr := func() string { return testnet.FreeAddr(t) }

	// n1: everything from the YAML file named by --config.
	http1 := addr()
	file1 := map[string]any{"id": "file-n1", "data-dir": t.TempDir(), "raft-addr": addr(),
		"http-addr": http1, "bootstrap": true}
	for k, v := range timing {
		file1[k] = v
	}
	p1 := startRaw(t, "file-n1", http1, nil, "node", "run", "--config", writeYAML(t, file1))
	waitReady(t, p1)

	// n2: everything from CAIRN_* variables.
	http2 := addr()
	p2 := startRaw(t, "env-n2", http2, append([]string{"CAIRN_ID=env-n2", "CAIRN_DATA_DIR=" + t.TempDir(),
		"CAIRN_RAFT_ADDR=" + addr(), "CAIRN_HTTP_ADDR=" + http2, "CAIRN_JOIN=" + p1.url()}, timingEnv...),
		"node", "run")

	// n3: precedence. The file (named by CAIRN_CONFIG) gives an id and an
	// HTTP address that the environment overrides, and the id from the
	// environment is overridden by the flag.
	http3, http3File := addr(), addr()
	file3 := map[string]any{"id": "file-n3", "data-dir": t.TempDir(), "raft-addr": addr(),
		"http-addr": http3File, "join": p1.url()}
	for k, v := range timing {
		file3[k] = v
	}
	p3 := startRaw(t, "flag-n3", http3, []string{"CAIRN_CONFIG=" + writeYAML(t, file3),
		"CAIRN_ID=env-n3", "CAIRN_HTTP_ADDR=" + http3}, "node", "run", "--id", "flag-n3")

	waitReady(t, p2)
	waitReady(t, p3)

	want := map[string]string{"file-n1": p1.url(), "env-n2": p2.url(), "flag-n3": p3.url()}
	cluster := "--cluster=" + p1.url()
	poll(t, "node list with every member reachable", 30*time.Second, func() error {
		out, errOut, code := runEnv(t, nil, cluster, "--json", "node", "list")
		if code != 0 {
			return fmt.Errorf("exit %d: %s", code, errOut)
		}
		var m api.MembersResponse
		if err := json.Unmarshal([]byte(out), &m); err != nil {
			return fmt.Errorf("decode %q: %w", out, err)
		}
		got := map[string]string{}
		for _, x := range m.Members {
			if !x.Reachable {
				return fmt.Errorf("%s unreachable: %s", x.ID, out)
			}
			got[x.ID] = x.HTTPURL
		}
		if len(got) != len(want) {
			return fmt.Errorf("members %v, want %v", got, want)
		}
		for id, u := range want {
			if got[id] != u {
				return fmt.Errorf("member %s: http %q, want %q (all: %v)", id, got[id], u, got)
			}
		}
		return nil
	})
	if out, errOut, code := runEnv(t, nil, "--cluster="+p3.url(), "put", "cfg", "ok"); code != 0 {
		t.Fatalf("put via n3: %d %s %s", code, out, errOut)
	}
	if out, _, code := runEnv(t, nil, "--cluster="+p2.url(), "get", "cfg"); code != 0 || out != "ok" {
		t.Fatalf("get via n2: %d %q", code, out)
	}

	// SIGTERM: each process shuts down gracefully and exits 0.
	for _, p := range []*proc{p3, p2, p1} {
		if err := p.stop(t, syscall.SIGTERM); err != nil {
			t.Fatalf("%s: exit after SIGTERM: %v\n%s", p.id, err, p.log)
		}
	}
}
