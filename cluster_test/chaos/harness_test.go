package chaos

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/cairn-db/cairn/api"
	"github.com/cairn-db/cairn/auth"
	"github.com/cairn-db/cairn/client"
	"github.com/cairn-db/cairn/internal/cluster"
	"github.com/cairn-db/cairn/internal/tlsutil/tlstest"
	"github.com/cairn-db/cairn/node"
)

// The chaos suite's cluster is the shared harness's (internal/cluster):
// five slots whose identities, addresses and data directories survive
// kills and restarts, every directed raft link through a proxy
// (partitions), and, in process, an HTTP front per member and the pause
// (freezeRaft, inproc_test.go). Its members run either as `cairn node
// run` processes or as node.Node values in the test process; everything
// else is the same code for both modes: the workload, the fault
// schedules and every check after a scenario. This file adds what only
// the chaos suite needs: per-scenario node settings, removed members.

func TestMain(m *testing.M) { cluster.Main(m) }

// nodeOpts are node settings a scenario gives its members, whatever runs
// them (flags for processes, node.Config fields in process). Zero fields
// keep the default.
type nodeOpts struct {
	snapshotThreshold uint64
	snapshotInterval  time.Duration
	trailingLogs      uint64
	logLevel          string // "": warn
}

// with returns o overridden by the non-zero fields of p.
func (o nodeOpts) with(p nodeOpts) nodeOpts {
	if p.snapshotThreshold != 0 {
		o.snapshotThreshold = p.snapshotThreshold
	}
	if p.snapshotInterval != 0 {
		o.snapshotInterval = p.snapshotInterval
	}
	if p.trailingLogs != 0 {
		o.trailingLogs = p.trailingLogs
	}
	if p.logLevel != "" {
		o.logLevel = p.logLevel
	}
	return o
}

// apply sets o's non-zero fields in spec.
func (o nodeOpts) apply(spec *cluster.Spec) {
	cfg := &spec.Config
	if o.snapshotThreshold != 0 {
		cfg.SnapshotThreshold = o.snapshotThreshold
	}
	if o.snapshotInterval != 0 {
		cfg.SnapshotInterval = o.snapshotInterval
	}
	if o.trailingLogs != 0 {
		cfg.TrailingLogs = o.trailingLogs
	}
	if o.logLevel != "" {
		spec.LogLevel = o.logLevel
	}
}

// Raft timings of every chaos member (the harness's).
const (
	chaosElection = cluster.Election
	chaosLease    = cluster.Lease
)

// maxSlots is how many members a chaos cluster can ever have: every
// node's dial map covers all of them, so members added later are
// reachable through proxies too.
const maxSlots = 5

// chaosCluster is a shared-harness cluster plus the chaos suite's own
// per-slot state.
type chaosCluster struct {
	*cluster.Cluster
	t       *testing.T
	removed [maxSlots]bool // no longer a member; never restarted
}

// newChaosCluster prepares maxSlots slots and their link proxies; nothing
// runs yet. opts apply to every node. bin is the binary of process
// members ("": the plain one).
func newChaosCluster(t *testing.T, mode string, opts nodeOpts, bin string) *chaosCluster {
	t.Helper()
	// Every scenario runs over TLS: raft, member-to-member calls and the
	// workload's clients, as a cluster deployed by the docs does.
	o := cluster.Options{Kind: cluster.InProc, Slots: maxSlots, Links: true, Fronts: true,
		Freeze: freezeRaft, HTTPTimeout: 5 * time.Second, Binary: bin, TLS: tlstest.New(t, "chaos"),
		// bcrypt at its lowest cost: at the default, the workload's
		// password checks (pure Go, ten times slower under -race) take the
		// CPU that raft's heartbeats need on two cores.
		Configure: func(cfg *node.Config) { cfg.BcryptCost = auth.MinBcryptCost }}
	if mode == modeProc {
		o.Kind = cluster.Proc
	}
	c := &chaosCluster{Cluster: cluster.New(t, o), t: t}
	for i := 0; i < maxSlots; i++ {
		c.Member(i).Update(opts.apply)
	}
	return c
}

// newCluster returns a chaos cluster of the mode.
func newCluster(t *testing.T, mode string, opts nodeOpts) *chaosCluster {
	t.Helper()
	return newChaosCluster(t, mode, opts, "")
}

// clientConfig is a client configuration for endpoints with the harness's
// client certificate (root, by its CN, once access control is on).
func (c *chaosCluster) clientConfig(endpoints []string) client.Config {
	cfg := client.DefaultConfig()
	cfg.Endpoints = endpoints
	f := c.ClientFiles()
	cfg.CAFile, cfg.CertFile, cfg.KeyFile = f.CAFile, f.CertFile, f.KeyFile
	return cfg
}

// workloadConfig is the workload's client configuration: the members'
// URLs, TLS with a client certificate of its own whose CN is no user (so
// that a request without a token is refused, not served as the harness's
// root user), and the workload's user.
func (c *chaosCluster) workloadConfig() client.Config {
	cfg := c.clientConfig(c.URLs())
	f := c.PKI().Client(c.t, "workload")
	cfg.CertFile, cfg.KeyFile = f.CertFile, f.KeyFile
	cfg.Username, cfg.Password = chaosUser, chaosPassword
	return cfg
}

// tlsConfig is clientConfig with a request timeout and a backoff cap.
func (c *chaosCluster) tlsConfig(endpoints []string, timeout, backoff time.Duration) client.Config {
	cfg := c.clientConfig(endpoints)
	cfg.RequestTimeout, cfg.MaxBackoff = timeout, backoff
	return cfg
}

// The harness's operations, bound to the cluster's test.
func (c *chaosCluster) id(i int) string { return c.Member(i).ID() }
func (c *chaosCluster) start(i int)     { c.t.Helper(); c.Restart(c.t, i) }
func (c *chaosCluster) kill(i int)      { c.Kill(c.t, i) }
func (c *chaosCluster) pause(i int)     { c.t.Helper(); c.Pause(c.t, i) }
func (c *chaosCluster) resume(i int)    { c.t.Helper(); c.Resume(c.t, i) }
func (c *chaosCluster) stop(i int)      { c.t.Helper(); c.Stop(c.t, i) }
func (c *chaosCluster) leader() int     { c.t.Helper(); return c.Leader(c.t) }
func (c *chaosCluster) waitReady(i int) { c.t.Helper(); c.WaitReady(c.t, i) }

// startN starts n members and checks that they run over TLS.
func (c *chaosCluster) startN(n int) {
	c.t.Helper()
	c.Start(c.t, n)
	for i := range n {
		st, err := c.Status(i)
		if err != nil {
			c.t.Fatal(err)
		}
		if !st.TLS || st.Insecure {
			c.t.Fatalf("%s runs without TLS (tls=%t insecure=%t)", st.ID, st.TLS, st.Insecure)
		}
	}
	c.enableAuth()
}

// The workload's user: it may read and write every key, and is no admin.
const (
	chaosUser     = "chaos"
	chaosPassword = "chaos-password"
)

// enableAuth turns access control on, as a deployment following the docs
// would run: the harness's client certificate (CN harness) is a user
// holding the root role, so the harness's own checks and the scenarios'
// membership changes act as root by certificate; the workload's clients
// authenticate as chaosUser with a password and bearer tokens, and every
// write they make is checked again at apply.
func (c *chaosCluster) enableAuth() {
	c.t.Helper()
	cl, err := client.New(c.tlsConfig(c.URLs(), 5*time.Second, 200*time.Millisecond))
	if err != nil {
		c.t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	steps := []func() (uint64, error){
		func() (uint64, error) { return cl.UserAdd(ctx, cluster.HarnessClientName, "", true) },
		func() (uint64, error) { return cl.UserGrantRole(ctx, cluster.HarnessClientName, "root") },
		func() (uint64, error) { return cl.RoleAdd(ctx, "chaos-rw", false) },
		func() (uint64, error) {
			return cl.RoleGrant(ctx, "chaos-rw", api.Permission{Key: "", Prefix: true, Access: api.AccessReadWrite})
		},
		func() (uint64, error) { return cl.UserAdd(ctx, chaosUser, chaosPassword, false) },
		func() (uint64, error) { return cl.UserGrantRole(ctx, chaosUser, "chaos-rw") },
		func() (uint64, error) { return cl.AuthEnable(ctx) },
	}
	for i, step := range steps {
		if _, err := step(); err != nil {
			c.t.Fatalf("enabling access control, step %d: %v", i+1, err)
		}
	}
}

// override changes slot i's settings for its next starts (over the
// cluster's).
func (c *chaosCluster) override(i int, o nodeOpts) { c.Member(i).Update(o.apply) }

// rejoin makes removed slot i a new member on its next start: fresh data,
// the same id, joining through the running members.
func (c *chaosCluster) rejoin(i int) error {
	if err := os.RemoveAll(c.Config(i).DataDir); err != nil {
		return err
	}
	c.removed[i] = false
	join := c.URLs()
	c.Member(i).Update(func(s *cluster.Spec) { s.Config.Bootstrap, s.Config.Join = false, join })
	return nil
}

// members returns the running slots that have not been removed.
func (c *chaosCluster) members() []int {
	var out []int
	for _, i := range c.Running() {
		if !c.removed[i] {
			out = append(out, i)
		}
	}
	return out
}

// others returns every running slot but i.
func (c *chaosCluster) others(i int) []int {
	var out []int
	for _, j := range c.Running() {
		if j != i {
			out = append(out, j)
		}
	}
	return out
}

// pollUntil polls cond with a deadline.
var pollUntil = cluster.WaitFor

// node is slot i's running in-process node (nil otherwise).
func (c *chaosCluster) node(i int) *node.Node { return c.Node(i) }
