package cluster

import (
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"time"

	"github.com/cairn-db/cairn/node"
)

// ProcMember is a `cairn node run` child process of a cairn binary.
type ProcMember struct {
	state
	bin string

	// Under state.mu:
	cmd        *exec.Cmd
	exited     chan struct{} // closed when cmd has exited
	expectExit bool          // set before the harness makes it exit
	unexpected []string
}

// NewProc returns a stopped process member of the binary bin (Binary).
func NewProc(bin string, spec Spec) *ProcMember {
	return &ProcMember{state: state{spec: spec}, bin: bin}
}

func (m *ProcMember) Kind() Kind       { return Proc }
func (m *ProcMember) Node() *node.Node { return nil }

func (m *ProcMember) Running() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.cmd != nil
}

func (m *ProcMember) Problems() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]string(nil), m.unexpected...)
}

// Start starts the process and returns without waiting.
func (m *ProcMember) Start() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cmd != nil {
		return fmt.Errorf("start %s: already running", m.spec.Config.ID)
	}
	args, err := Flags(m.spec.Config, m.spec.Level())
	if err != nil {
		return err
	}
	cmd := exec.Command(m.bin, args...)
	cmd.Stdout, cmd.Stderr = &m.log, &m.log
	if m.spec.Env != nil {
		cmd.Env = append(os.Environ(), m.spec.Env...)
	}
	fmt.Fprintf(&m.log, "--- start %s\n", m.spec.Config.ID)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", m.spec.Config.ID, err)
	}
	exited := make(chan struct{})
	m.cmd, m.exited, m.expectExit, m.paused = cmd, exited, false, false
	m.starts++
	go func() {
		err := cmd.Wait()
		m.mu.Lock()
		if !m.expectExit {
			m.unexpected = append(m.unexpected, fmt.Sprintf("%s exited unexpectedly: %v", m.spec.Config.ID, err))
		}
		if m.cmd == cmd {
			m.cmd, m.paused = nil, false
		}
		m.lastExit = err
		m.mu.Unlock()
		close(exited)
	}()
	return nil
}

// ExpectExit declares that the running process will exit by itself (a
// failpoint), so its exit is not a problem.
func (m *ProcMember) ExpectExit() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.expectExit = true
}

// Exited is closed when the current (or last) process has exited; nil
// before the first start.
func (m *ProcMember) Exited() <-chan struct{} {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.exited
}

// signal sends sig; for SIGKILL and SIGTERM it waits for the exit (30 s,
// then SIGKILL) and returns the exit error.
func (m *ProcMember) signal(sig syscall.Signal) error {
	m.mu.Lock()
	cmd, exited := m.cmd, m.exited
	if cmd == nil {
		m.mu.Unlock()
		if sig == syscall.SIGKILL || sig == syscall.SIGTERM {
			return nil
		}
		return fmt.Errorf("%s: %w", m.spec.Config.ID, errNotRunning)
	}
	switch sig {
	case syscall.SIGSTOP:
		m.paused = true
	case syscall.SIGCONT:
		m.paused = false
	default:
		m.expectExit = true
	}
	paused := m.paused
	m.mu.Unlock()
	if err := cmd.Process.Signal(sig); err != nil {
		return err
	}
	if sig == syscall.SIGSTOP || sig == syscall.SIGCONT {
		return nil
	}
	if paused { // a stopped process acts on SIGTERM only once continued
		_ = cmd.Process.Signal(syscall.SIGCONT)
	}
	select {
	case <-exited:
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		<-exited
		m.mu.Lock()
		m.lastExit = fmt.Errorf("%s did not exit within 30s of %v (killed): %v", m.spec.Config.ID, sig, m.lastExit)
		m.mu.Unlock()
	}
	return m.LastExit()
}

// Kill sends SIGKILL and waits for the exit. LastExit tells how it
// ended; the error is only about the signal.
func (m *ProcMember) Kill() error {
	_ = m.signal(syscall.SIGKILL)
	return nil
}

// Stop sends SIGTERM and waits: nil only for exit status 0.
func (m *ProcMember) Stop() error { return m.signal(syscall.SIGTERM) }

// Pause sends SIGSTOP.
func (m *ProcMember) Pause() error { return m.signal(syscall.SIGSTOP) }

// Resume sends SIGCONT.
func (m *ProcMember) Resume() error {
	if !m.Paused() {
		return nil
	}
	return m.signal(syscall.SIGCONT)
}
