package cluster_test

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The process runner starts real `cairn node run` processes. The binary is
// built once per test run (on first use) and removed by TestMain.
var (
	binOnce sync.Once
	binDir  string
	binPath string
	binErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// cairnBinary builds cmd/cairn once and returns its path.
func cairnBinary(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		binDir, binErr = os.MkdirTemp("", "cairn-chaos-bin-")
		if binErr != nil {
			return
		}
		binPath = filepath.Join(binDir, "cairn")
		build := exec.Command("go", "build", "-o", binPath, "../cmd/cairn")
		var out bytes.Buffer
		build.Stdout, build.Stderr = &out, &out
		if err := build.Run(); err != nil {
			binErr = fmt.Errorf("building cairn: %v\n%s", err, out.String())
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

// procRunner runs each member as a `cairn node run` process of bin: kill is
// SIGKILL, pause SIGSTOP, resume SIGCONT, stop SIGTERM (exit status 0
// required).
type procRunner struct {
	bin string
}

// newProcCluster returns a chaos cluster of `cairn node run` processes.
func newProcCluster(t *testing.T, opts nodeOpts) *chaosCluster {
	t.Helper()
	return newChaosCluster(t, &procRunner{bin: cairnBinary(t)}, opts)
}

func (*procRunner) prepare(c *chaosCluster) {}

// start starts slot i's process and returns without waiting.
func (r *procRunner) start(c *chaosCluster, i int) {
	c.t.Helper()
	n := c.nodes[i]
	boot := c.bootPlan(i)
	n.mu.Lock()
	defer n.mu.Unlock()
	dm := c.dialMap(i)
	var pairs []string
	for from, to := range dm {
		pairs = append(pairs, from+"="+to)
	}
	sort.Strings(pairs)
	args := []string{"node", "run", "--id", n.id, "--data-dir", n.dataDir,
		"--raft-addr", n.raftAddr, "--http-addr", n.httpAddr,
		"--heartbeat-timeout", chaosHeartbeat.String(), "--election-timeout", chaosElection.String(),
		"--leader-lease-timeout", chaosLease.String(), "--test-raft-dial-map", strings.Join(pairs, ",")}
	args = append(args, c.nodeOpts(i).flags()...)
	if boot.bootstrap {
		args = append(args, "--bootstrap")
	} else {
		args = append(args, "--join", strings.Join(boot.join, ","))
	}
	cmd := exec.Command(r.bin, args...)
	cmd.Stdout, cmd.Stderr = &n.log, &n.log
	if n.env != nil {
		cmd.Env = append(os.Environ(), n.env...)
	}
	fmt.Fprintf(&n.log, "--- start %s\n", n.id)
	if err := cmd.Start(); err != nil {
		c.t.Fatalf("start %s: %v", n.id, err)
	}
	n.cmd, n.done, n.expectExit, n.paused, n.waitedExit = cmd, make(chan error, 1), false, false, false
	n.starts++
	go func(cmd *exec.Cmd, done chan error) {
		err := cmd.Wait()
		n.mu.Lock()
		if !n.expectExit {
			n.unexpected = append(n.unexpected, fmt.Sprintf("%s exited unexpectedly: %v", n.id, err))
		}
		n.mu.Unlock()
		done <- err
	}(cmd, n.done)
}

// signal sends sig to slot i; for SIGKILL and SIGTERM it waits for the
// exit and returns the process's exit error.
func (r *procRunner) signal(c *chaosCluster, i int, sig syscall.Signal) error {
	c.t.Helper()
	n := c.nodes[i]
	n.mu.Lock()
	cmd, done := n.cmd, n.done
	if cmd == nil {
		n.mu.Unlock()
		return nil
	}
	switch sig {
	case syscall.SIGSTOP:
		n.paused = true
		n.pauses++
	case syscall.SIGCONT:
		n.paused = false
	default:
		n.expectExit = true
		if sig == syscall.SIGKILL {
			n.kills++
		}
	}
	paused := n.paused
	n.mu.Unlock()
	if err := cmd.Process.Signal(sig); err != nil {
		return err
	}
	if sig == syscall.SIGSTOP || sig == syscall.SIGCONT {
		return nil
	}
	if paused { // a stopped process only acts on SIGTERM once resumed
		_ = cmd.Process.Signal(syscall.SIGCONT)
	}
	var err error
	select {
	case err = <-done:
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		err = fmt.Errorf("%s did not exit within 30s of %v (killed): %v", n.id, sig, <-done)
	}
	n.mu.Lock()
	n.cmd, n.paused, n.lastExit = nil, false, err
	n.mu.Unlock()
	return err
}

func (r *procRunner) kill(c *chaosCluster, i int)   { r.signal(c, i, syscall.SIGKILL) }
func (r *procRunner) pause(c *chaosCluster, i int)  { r.signal(c, i, syscall.SIGSTOP) }
func (r *procRunner) resume(c *chaosCluster, i int) { r.signal(c, i, syscall.SIGCONT) }

func (r *procRunner) stop(c *chaosCluster, i int) error {
	return r.signal(c, i, syscall.SIGTERM)
}

// problems: a process that exited on its own is recorded by its waiter.
func (*procRunner) problems(*chaosCluster) []string { return nil }
