package cluster

import (
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cairn-db/cairn/internal/testutil"
	"github.com/cairn-db/cairn/node"
)

// Kind is how a cluster's members run.
type Kind int

const (
	// InProc members are node.Node values in the test process.
	InProc Kind = iota
	// Proc members are `cairn node run` child processes.
	Proc
)

func (k Kind) String() string {
	if k == Proc {
		return "proc"
	}
	return "inproc"
}

// ErrUnsupported is returned by a member operation its kind cannot do.
var ErrUnsupported = errors.New("not supported by this kind of member")

// Spec is how a member runs. Its node.Config carries the identity,
// addresses, how it first joins, timings and options for both kinds (a
// process gets it as flags, see Flags); it can be changed between starts
// (Member.Update).
type Spec struct {
	Config node.Config
	// LogLevel is debug, info, warn or error ("": warn). An in-process
	// member logs into its buffer (Logs) unless Config.Logger is set.
	LogLevel string
	// Env is extra environment (KEY=value) for a process's next starts.
	Env []string
}

// Level returns the spec's log level.
func (s Spec) Level() string {
	if s.LogLevel == "" {
		return "warn"
	}
	return s.LogLevel
}

// Member is one cluster member. Its id, data directory and addresses
// survive Stop, Kill and the next Start. Start returns without waiting
// for the member to be ready (Cluster.WaitReady waits).
type Member interface {
	Kind() Kind
	ID() string
	// URL is the HTTP URL clients and peers use (a front's, when the
	// cluster has fronts).
	URL() string
	RaftAddr() string
	DataDir() string
	Spec() Spec
	// Update changes the spec for the next starts.
	Update(func(*Spec))

	Start() error
	// Stop shuts the member down gracefully and returns what went wrong
	// (a process's non-zero exit, a failed Close).
	Stop() error
	// Kill crashes the member: no draining, no graceful shutdown.
	Kill() error
	// Pause freezes a running member (SIGSTOP); Resume lets it go on.
	Pause() error
	Resume() error

	Running() bool
	Paused() bool
	// Starts counts the member's starts.
	Starts() int
	// LastExit is how the last run ended (a process's exit error; a
	// failed Close).
	LastExit() error
	// Logs is everything the member logged, across restarts, each start
	// marked with a "--- start <id>" line.
	Logs() string
	// Problems lists what went wrong without being asked for: a process
	// that exited on its own, an in-process raft that shut down.
	Problems() []string
	// Node is the running node.Node of an in-process member, else nil.
	Node() *node.Node
}

// state is what both kinds of member keep: the spec and how the member
// has run, under one lock, and its log.
type state struct {
	mu       sync.Mutex
	spec     Spec
	paused   bool
	starts   int
	lastExit error
	log      testutil.SyncBuffer
}

func (m *state) ID() string       { return m.Spec().Config.ID }
func (m *state) RaftAddr() string { return m.Spec().Config.RaftAddr }
func (m *state) DataDir() string  { return m.Spec().Config.DataDir }
func (m *state) Logs() string     { return m.log.String() }

func (m *state) URL() string {
	cfg := m.Spec().Config
	if cfg.AdvertiseHTTP != "" {
		return cfg.AdvertiseHTTP
	}
	if cfg.TLS() {
		return "https://" + cfg.HTTPAddr
	}
	return "http://" + cfg.HTTPAddr
}

func (m *state) Spec() Spec {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.spec
}

func (m *state) Update(f func(*Spec)) {
	m.mu.Lock()
	defer m.mu.Unlock()
	f(&m.spec)
}

func (m *state) Paused() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.paused
}

func (m *state) Starts() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.starts
}

func (m *state) LastExit() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.lastExit
}

// Flags returns cfg as `cairn node run` flags, with the given log level.
// A field that differs from node.DefaultConfig and has no flag is an
// error: a process could not honour it.
func Flags(cfg node.Config, level string) ([]string, error) {
	d := node.DefaultConfig()
	f := []string{"node", "run", "--id", cfg.ID, "--data-dir", cfg.DataDir,
		"--raft-addr", cfg.RaftAddr, "--http-addr", cfg.HTTPAddr,
		"--heartbeat-timeout", cfg.HeartbeatTimeout.String(), "--election-timeout", cfg.ElectionTimeout.String(),
		"--leader-lease-timeout", cfg.LeaderLeaseTimeout.String(), "--log-level", level}
	str := func(name, v, def string) {
		if v != def {
			f = append(f, "--"+name, v)
		}
	}
	u64 := func(name string, v, def uint64) { str(name, strconv.FormatUint(v, 10), strconv.FormatUint(def, 10)) }
	num := func(name string, v, def int64) { str(name, strconv.FormatInt(v, 10), strconv.FormatInt(def, 10)) }
	dur := func(name string, v, def time.Duration) { str(name, v.String(), def.String()) }
	str("advertise-raft", cfg.AdvertiseRaft, "")
	str("advertise-http", cfg.AdvertiseHTTP, "")
	if cfg.Bootstrap {
		f = append(f, "--bootstrap")
	}
	str("join", strings.Join(cfg.Join, ","), "")
	if cfg.NonVoter {
		f = append(f, "--non-voter")
	}
	u64("snapshot-threshold", cfg.SnapshotThreshold, d.SnapshotThreshold)
	dur("snapshot-interval", cfg.SnapshotInterval, d.SnapshotInterval)
	u64("snapshot-log-bytes", cfg.SnapshotLogBytes, d.SnapshotLogBytes)
	u64("trailing-logs", cfg.TrailingLogs, d.TrailingLogs)
	num("max-append-entries", int64(cfg.MaxAppendEntries), int64(d.MaxAppendEntries))
	num("max-inflight-writes", int64(cfg.MaxInflightWrites), int64(d.MaxInflightWrites))
	dur("watch-max-delay", cfg.WatchMaxDelay, d.WatchMaxDelay)
	dur("commit-timeout", cfg.CommitTimeout, d.CommitTimeout)
	dur("scrub-interval", cfg.ScrubInterval, d.ScrubInterval)
	num("max-value-size", int64(cfg.MaxValueSize), int64(d.MaxValueSize))
	num("max-request-bytes", cfg.MaxRequestBytes, d.MaxRequestBytes)
	num("max-ops", int64(cfg.MaxOps), int64(d.MaxOps))
	num("quota-backend-bytes", cfg.QuotaBackendBytes, d.QuotaBackendBytes)
	num("min-free-bytes", cfg.MinFreeBytes, d.MinFreeBytes)
	if cfg.SyncEveryCommit {
		f = append(f, "--fsm-sync")
	}
	if cfg.EnablePprof {
		f = append(f, "--pprof")
	}
	num("bcrypt-cost", int64(cfg.BcryptCost), int64(d.BcryptCost))
	dur("auth-token-ttl", cfg.AuthTokenTTL, d.AuthTokenTTL)
	str("peer-cert-file", cfg.PeerCertFile, "")
	str("peer-key-file", cfg.PeerKeyFile, "")
	str("peer-trusted-ca-file", cfg.PeerTrustedCAFile, "")
	str("cert-file", cfg.CertFile, "")
	str("key-file", cfg.KeyFile, "")
	str("trusted-ca-file", cfg.TrustedCAFile, "")
	if cfg.ClientCertAuth != d.ClientCertAuth {
		f = append(f, fmt.Sprintf("--client-cert-auth=%t", cfg.ClientCertAuth))
	}
	if cfg.Insecure {
		f = append(f, "--insecure")
	}
	dur("mirror-checkpoint-window", cfg.MirrorCheckpointWindow, d.MirrorCheckpointWindow)
	dur("mirror-report-interval", cfg.MirrorReportInterval, d.MirrorReportInterval)
	num("mirror-max-rate", cfg.MirrorMaxRate, d.MirrorMaxRate)
	str("mirror-ca-file", cfg.MirrorCAFile, "")
	str("mirror-cert-file", cfg.MirrorCertFile, "")
	str("mirror-key-file", cfg.MirrorKeyFile, "")
	str("mirror-user", cfg.MirrorUser, "")
	str("mirror-password", cfg.MirrorPassword, "")
	if len(cfg.RaftDialMap) > 0 {
		var pairs []string
		for from, to := range cfg.RaftDialMap {
			pairs = append(pairs, from+"="+to)
		}
		sort.Strings(pairs)
		f = append(f, "--test-raft-dial-map", strings.Join(pairs, ","))
	}
	var noFlag []string
	check := func(name string, same bool) {
		if !same {
			noFlag = append(noFlag, name)
		}
	}
	check("ApplyTimeout", cfg.ApplyTimeout == d.ApplyTimeout)
	check("ReadTimeout", cfg.ReadTimeout == d.ReadTimeout)
	check("IdempotencyWindow", cfg.IdempotencyWindow == d.IdempotencyWindow)
	check("RetainRevisions", cfg.RetainRevisions == d.RetainRevisions)
	check("RetainAge", cfg.RetainAge == d.RetainAge)
	check("ShutdownTimeout", cfg.ShutdownTimeout == d.ShutdownTimeout)
	check("MaxWatchers", cfg.MaxWatchers == d.MaxWatchers)
	check("WatchWriteTimeout", cfg.WatchWriteTimeout == d.WatchWriteTimeout)
	if len(noFlag) > 0 {
		return nil, fmt.Errorf("%s: %s set but a process has no flag for it", cfg.ID, strings.Join(noFlag, ", "))
	}
	return f, nil
}
