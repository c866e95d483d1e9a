package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/hashicorp/raft"

	"github.com/cairn-db/cairn/internal/testutil"
	"github.com/cairn-db/cairn/node"
)

// Freezer stops a running node where a SIGSTOP would stop a process and
// returns what lets it go on. The harness has none of its own: freezing
// raft from outside needs node internals (the chaos suite's reaches them
// by reflection).
type Freezer func(*node.Node) (thaw func(), err error)

// InProcMember is a node.Node in the test process.
type InProcMember struct {
	state
	freeze Freezer
	node   *node.Node // under state.mu
	thaw   func()
}

// NewInProc returns a stopped in-process member. freeze may be nil
// (Pause is then unsupported).
func NewInProc(spec Spec, freeze Freezer) *InProcMember {
	return &InProcMember{state: state{spec: spec}, freeze: freeze}
}

func (m *InProcMember) Kind() Kind { return InProc }

func (m *InProcMember) Node() *node.Node {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.node
}

func (m *InProcMember) Running() bool { return m.Node() != nil }

// Start starts the node on its data directory. Its addresses were free
// when allocated and are released by Close; a restart may briefly find
// one still held, so node.New is retried for up to 10 s.
func (m *InProcMember) Start() error {
	m.mu.Lock()
	if m.node != nil {
		m.mu.Unlock()
		return fmt.Errorf("start %s: already running", m.spec.Config.ID)
	}
	cfg := m.spec.Config
	level := m.spec.Level()
	m.mu.Unlock()
	if cfg.Logger == nil {
		var l slog.Level
		if err := l.UnmarshalText([]byte(level)); err != nil {
			return fmt.Errorf("start %s: log level %q: %v", cfg.ID, level, err)
		}
		cfg.Logger = slog.New(slog.NewTextHandler(&m.log, &slog.HandlerOptions{Level: l}))
	}
	fmt.Fprintf(&m.log, "--- start %s\n", cfg.ID)
	var nd *node.Node
	var err error
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(testutil.PollEvery) {
		if nd, err = node.New(cfg); err == nil || time.Now().After(deadline) {
			break
		}
	}
	if err != nil {
		return fmt.Errorf("start %s: %w", cfg.ID, err)
	}
	m.mu.Lock()
	m.node, m.paused, m.thaw = nd, false, nil
	m.starts++
	m.mu.Unlock()
	return nil
}

// closeLimit bounds how long Close may take before the harness reports it
// hung (instead of hanging the test binary).
const closeLimit = 60 * time.Second

// closeNode closes nd. A paused node's raft loop may be blocked on what
// the Freezer holds, and raft's shutdown waits for it: thaw lets it go,
// but only once raft has been told to shut down (its state says so at
// once), so it wakes only to stop.
func closeNode(nd *node.Node, ctx context.Context, thaw func()) error {
	done := make(chan error, 1)
	go func() { done <- nd.Close(ctx) }()
	if thaw != nil {
		deadline := time.Now().Add(10 * time.Second)
		for nd.Raft().State() != raft.Shutdown && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
		thaw()
	}
	select {
	case err := <-done:
		return err
	case <-time.After(closeLimit):
		return fmt.Errorf("node.Close of %s did not return within %s", nd.ID(), closeLimit)
	}
}

// Kill closes the node with an already expired context: the HTTP server
// closes every connection without draining, raft shuts down without a
// snapshot, a leadership transfer or leaving the configuration. (The
// cluster also takes its links down around it, when it has links.)
func (m *InProcMember) Kill() error {
	m.mu.Lock()
	nd, thaw := m.node, m.thaw
	m.mu.Unlock()
	if nd == nil {
		return nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := closeNode(nd, ctx, thaw)
	m.mu.Lock()
	m.node, m.paused, m.thaw, m.lastExit = nil, false, nil, err
	m.mu.Unlock()
	return err
}

// Stop closes the node with 30 s to drain (a paused node is resumed
// first, as a stopped process acts on SIGTERM only once continued).
func (m *InProcMember) Stop() error {
	_ = m.Resume()
	nd := m.Node()
	if nd == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := closeNode(nd, ctx, nil)
	m.mu.Lock()
	m.node, m.lastExit = nil, err
	m.mu.Unlock()
	return err
}

// Pause freezes the node with the member's Freezer.
func (m *InProcMember) Pause() error {
	if m.freeze == nil {
		return fmt.Errorf("pause %s: %w (no Freezer)", m.ID(), ErrUnsupported)
	}
	m.mu.Lock()
	nd, paused := m.node, m.paused
	m.mu.Unlock()
	if nd == nil {
		return fmt.Errorf("pause %s: not running", m.ID())
	}
	if paused {
		return nil
	}
	thaw, err := m.freeze(nd)
	if err != nil {
		return fmt.Errorf("pause %s: %w", m.ID(), err)
	}
	m.mu.Lock()
	m.paused, m.thaw = true, thaw
	m.mu.Unlock()
	return nil
}

// Resume lets a paused node go on.
func (m *InProcMember) Resume() error {
	m.mu.Lock()
	paused, thaw := m.paused, m.thaw
	m.paused, m.thaw = false, nil
	m.mu.Unlock()
	if paused && thaw != nil {
		thaw()
	}
	return nil
}

// Problems: an in-process node cannot exit, but its raft can shut down
// on its own (a member removed from the cluster).
func (m *InProcMember) Problems() []string {
	if nd := m.Node(); nd != nil && nd.Raft().State() == raft.Shutdown {
		return []string{m.ID() + ": raft shut down on its own"}
	}
	return nil
}

var errNotRunning = errors.New("not running")
