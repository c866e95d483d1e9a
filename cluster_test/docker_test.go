//go:build docker

package cluster_test

// Tests of the Docker deployment (Dockerfile, docker-compose.yml) on real
// containers. They need a Docker engine (nothing is pulled: the image is
// built FROM scratch from the host-built static binary), `docker compose`
// or `docker-compose`, make and Go. Run them with
//
//	bash scripts/docker-test.sh
//	go test -tags docker -count=1 -timeout 15m ./cluster_test/ -run Docker
//
// Every compose project gets a unique name, private subnet and host ports,
// and is taken down with its volumes (`down -v`) in t.Cleanup, also on
// failure. CAIRN_DOCKER_PREFIX (default "cairntest") starts every project
// name and image tag, so scripts/docker-test.sh can remove leftovers of a
// run that was killed before its cleanups ran.
//
// Every wait polls a condition until a deadline; there are no fixed sleeps.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cairn-db/cairn/api"
	"github.com/cairn-db/cairn/client"
	"github.com/cairn-db/cairn/internal/cluster"
	"github.com/cairn-db/cairn/internal/testutil"
)

// Deadlines of the Docker tests' waits.
const (
	dkWaitUp       = 2 * time.Minute  // compose up until every member is healthy
	dkWaitHealthy  = 90 * time.Second // one container back to healthy
	dkWaitLeader   = 30 * time.Second
	dkWaitConverge = 60 * time.Second
	dkPoll         = 200 * time.Millisecond
	dkCLITimeout   = "30s" // --timeout of each host CLI command
)

var dkServices = []string{"n1", "n2", "n3"}

// TestDocker builds the image once and runs the compose scenarios, each on
// its own project.
func TestDocker(t *testing.T) {
	env := dkSetup(t)
	t.Run("Defaults", func(t *testing.T) { testDockerDefaults(t, env) })
	if t.Failed() {
		return
	}
	t.Run("Failover", func(t *testing.T) { testDockerFailover(t, env) })
}

// dkEnv is what every scenario shares.
type dkEnv struct {
	repo    string   // repository root
	compose []string // "docker compose" or "docker-compose"
	image   string   // the image built for this run
	cairn   string   // the host binary (built by make image)
	prefix  string   // start of project names
}

func dkSetup(t *testing.T) *dkEnv {
	t.Helper()
	if _, err := dkRun(30*time.Second, nil, "docker", "info"); err != nil {
		t.Skipf("docker does not answer: %v", err)
	}
	repo, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	env := &dkEnv{repo: repo, cairn: filepath.Join(repo, "bin", "cairn")}
	if _, err := dkRun(30*time.Second, nil, "docker", "compose", "version"); err == nil {
		env.compose = []string{"docker", "compose"}
	} else if p, err := exec.LookPath("docker-compose"); err == nil {
		env.compose = []string{p}
	} else {
		t.Fatal("neither `docker compose` nor docker-compose is installed")
	}
	env.prefix = os.Getenv("CAIRN_DOCKER_PREFIX")
	if env.prefix == "" {
		env.prefix = "cairntest"
	}
	suffix := dkRandom()
	env.image = "cairn:" + env.prefix + suffix
	started := time.Now()
	out, err := dkRun(5*time.Minute, nil, "make", "-C", repo, "image", "IMAGE="+env.image)
	if err != nil {
		t.Fatalf("make image: %v\n%s", err, out)
	}
	t.Cleanup(func() {
		if out, err := dkRun(time.Minute, nil, "docker", "rmi", env.image); err != nil {
			t.Logf("docker rmi %s: %v\n%s", env.image, err, out)
		}
	})
	t.Logf("built %s and %s in %s; compose: %s", env.image, env.cairn, time.Since(started).Round(time.Millisecond), strings.Join(env.compose, " "))

	// The image: static binary, non-root user, data volume, health check.
	out, err = dkRun(time.Minute, nil, "docker", "image", "inspect", "--format", "{{json .Config}}", env.image)
	if err != nil {
		t.Fatalf("inspect image: %v\n%s", err, out)
	}
	var cfg struct {
		User        string
		Volumes     map[string]struct{}
		Healthcheck struct{ Test []string }
		Entrypoint  []string
	}
	if err := json.Unmarshal([]byte(out), &cfg); err != nil {
		t.Fatalf("image config: %v\n%s", err, out)
	}
	if cfg.User != "65532:65532" {
		t.Errorf("image user %q, want 65532:65532", cfg.User)
	}
	if _, ok := cfg.Volumes["/data"]; !ok {
		t.Errorf("image volumes %v, want /data", cfg.Volumes)
	}
	if len(cfg.Healthcheck.Test) < 2 || cfg.Healthcheck.Test[1] != "/cairn" {
		t.Errorf("image health check %q, want the cairn binary", cfg.Healthcheck.Test)
	}
	return env
}

// dkCluster is one compose project.
type dkCluster struct {
	env     *dkEnv
	project string
	net     string // first three octets of the private /24
	ports   [3]int // host ports of n1..n3's HTTP API
	vars    []string
	http    *cluster.HTTP

	mu  sync.Mutex
	ids map[string]string // service -> container id
}

// dkUp brings a project up. hostURLs makes the members advertise their
// container addresses (reachable from a Linux host) instead of the service
// names.
func dkUp(t *testing.T, env *dkEnv, name string, hostURLs bool) *dkCluster {
	t.Helper()
	for attempt := 1; ; attempt++ {
		c := &dkCluster{
			env:     env,
			project: env.prefix + name + dkRandom(),
			net:     fmt.Sprintf("172.%d.%d", 24+rand.IntN(8), rand.IntN(256)),
			http:    cluster.NewHTTP(10 * time.Second),
			ids:     map[string]string{},
		}
		c.ports = dkFreePorts(t)
		c.vars = []string{
			"CAIRN_IMAGE=" + env.image,
			"CAIRN_NET=" + c.net,
			"CAIRN_HOST_IP=127.0.0.1",
			"CAIRN_LOG_LEVEL=info",
		}
		for i, p := range c.ports {
			c.vars = append(c.vars, fmt.Sprintf("CAIRN_PORT%d=%d", i+1, p))
			if hostURLs {
				c.vars = append(c.vars, fmt.Sprintf("CAIRN_URL%d=http://%s.%d:8001", i+1, c.net, 11+i))
			} else {
				c.vars = append(c.vars, fmt.Sprintf("CAIRN_URL%d=http://n%d:8001", i+1, i+1))
			}
		}
		t.Cleanup(func() { c.down(t) })
		started := time.Now()
		out, err := c.compose(3*time.Minute, "up", "-d")
		if err == nil {
			t.Logf("project %s up (subnet %s.0/24, host ports %v) in %s", c.project, c.net, c.ports, time.Since(started).Round(time.Millisecond))
			c.waitHealthy(t, dkWaitUp, dkServices...)
			t.Logf("all members healthy after %s", time.Since(started).Round(time.Millisecond))
			return c
		}
		// Another network may hold the random subnet, or another
		// process a port: take this attempt down and pick again.
		retry := strings.Contains(out, "overlap") || strings.Contains(out, "already allocated") ||
			strings.Contains(out, "address already in use")
		if !retry || attempt == 5 {
			t.Fatalf("compose up: %v\n%s", err, out)
		}
		t.Logf("compose up failed, retrying with another subnet and ports: %s", strings.TrimSpace(out))
		c.down(t)
	}
}

func (c *dkCluster) compose(timeout time.Duration, args ...string) (string, error) {
	full := append(append(append([]string(nil), c.env.compose[1:]...),
		"-f", filepath.Join(c.env.repo, "docker-compose.yml"), "-p", c.project), args...)
	return dkRun(timeout, c.vars, c.env.compose[0], full...)
}

// down removes the project with its volumes, after printing the members'
// logs if the test failed. Taking it down twice is harmless.
func (c *dkCluster) down(t *testing.T) {
	if t.Failed() {
		if out, err := c.compose(time.Minute, "logs", "--no-color", "--tail", "60"); err == nil {
			t.Logf("logs of %s:\n%s", c.project, out)
		}
	}
	if out, err := c.compose(3*time.Minute, "down", "-v", "--remove-orphans", "-t", "10"); err != nil {
		t.Errorf("compose down %s: %v\n%s", c.project, err, out)
	}
}

// id returns a service's container id.
func (c *dkCluster) id(t *testing.T, svc string) string {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	if id, ok := c.ids[svc]; ok {
		return id
	}
	out, err := c.compose(time.Minute, "ps", "-q", svc)
	id := strings.TrimSpace(out)
	if err != nil || id == "" || strings.Contains(id, "\n") {
		t.Fatalf("container of %s: %v\n%s", svc, err, out)
	}
	c.ids[svc] = id
	return id
}

func (c *dkCluster) index(svc string) int {
	for i, s := range dkServices {
		if s == svc {
			return i
		}
	}
	panic("unknown service " + svc)
}

// url is a service's HTTP API as the host reaches it.
func (c *dkCluster) url(svc string) string {
	return fmt.Sprintf("http://127.0.0.1:%d", c.ports[c.index(svc)])
}

func (c *dkCluster) urls() []string {
	var us []string
	for _, s := range dkServices {
		us = append(us, c.url(s))
	}
	return us
}

// docker runs a docker command.
func (c *dkCluster) docker(t *testing.T, args ...string) string {
	t.Helper()
	out, err := dkRun(2*time.Minute, nil, "docker", args...)
	if err != nil {
		t.Fatalf("docker %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// health returns the Docker health status of a service's container.
func (c *dkCluster) health(t *testing.T, svc string) (string, error) {
	out, err := dkRun(time.Minute, nil, "docker", "inspect", "--format", "{{.State.Status}}/{{if .State.Health}}{{.State.Health.Status}}{{end}}", c.id(t, svc))
	return strings.TrimSpace(out), err
}

// waitHealthy waits until each service's container is running and healthy
// and its /readyz answers 200 through the published port.
func (c *dkCluster) waitHealthy(t *testing.T, timeout time.Duration, svcs ...string) {
	t.Helper()
	dkWaitFor(t, fmt.Sprintf("%v healthy", svcs), timeout, func() error {
		for _, s := range svcs {
			h, err := c.health(t, s)
			if err != nil {
				return fmt.Errorf("%s: %v %s", s, err, h)
			}
			if h != "running/healthy" {
				return fmt.Errorf("%s is %s", s, h)
			}
			code, body, err := c.get(c.url(s) + "/readyz")
			if err != nil {
				return err
			}
			if code != http.StatusOK {
				return fmt.Errorf("%s /readyz: %d %s", s, code, body)
			}
		}
		return nil
	})
}

func (c *dkCluster) get(u string) (int, []byte, error) {
	r, err := c.http.Do(context.Background(), http.MethodGet, u, nil, nil)
	return r.Code, r.Body, err
}

func (c *dkCluster) getJSON(u string, v any) error { return c.http.GetJSON(u, 10*time.Second, v) }

func (c *dkCluster) status(svc string) (api.StatusResponse, error) { return c.http.Status(c.url(svc)) }

// endpoints names the services for the shared wait conditions (a
// member's id is its service name).
func (c *dkCluster) endpoints(svcs ...string) []cluster.Endpoint {
	var eps []cluster.Endpoint
	for _, s := range svcs {
		eps = append(eps, cluster.Endpoint{ID: s, URL: c.url(s)})
	}
	return eps
}

// leader waits until exactly one of the given services leads and the
// others name it (cluster.HTTP.FindLeader), and returns it.
func (c *dkCluster) leader(t *testing.T, svcs ...string) string {
	t.Helper()
	var leader string
	dkWaitFor(t, "a leader among "+strings.Join(svcs, ","), dkWaitLeader, func() error {
		i, _, err := c.http.FindLeader(c.endpoints(svcs...))
		if err == nil {
			leader = svcs[i]
		}
		return err
	})
	return leader
}

// converge waits until every service reports the same chain head, at
// least at revision min, on GET /v1/chain?consistency=stale, and returns it.
func (c *dkCluster) converge(t *testing.T, min uint64) api.ChainResponse {
	t.Helper()
	var head api.ChainResponse
	dkWaitFor(t, "chain heads to converge", dkWaitConverge, func() error {
		var err error
		head, err = c.http.Converged(c.endpoints(dkServices...), min)
		return err
	})
	return head
}

// cli runs the host's cairn binary against the given endpoints with a
// --timeout.
func (c *dkCluster) cli(endpoints []string, timeout string, args ...string) (string, error) {
	full := append([]string{"--cluster", strings.Join(endpoints, ","), "--timeout", timeout}, args...)
	noProxy := c.net + ".0/24,127.0.0.1,localhost"
	return dkRun(time.Minute, []string{"NO_PROXY=" + noProxy, "no_proxy=" + noProxy}, c.env.cairn, full...)
}

// mustCLI runs the host CLI and fails the test on a non-zero exit.
func (c *dkCluster) mustCLI(t *testing.T, args ...string) string {
	t.Helper()
	out, err := c.cli(c.urls(), dkCLITimeout, args...)
	if err != nil {
		t.Fatalf("cairn %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// cliGet reads a key through the host CLI.
func (c *dkCluster) cliGet(t *testing.T, key string) string {
	t.Helper()
	return c.mustCLI(t, "get", key)
}

// exec runs the cairn binary inside a service's container (no shell there).
func (c *dkCluster) exec(t *testing.T, svc string, args ...string) (string, error) {
	t.Helper()
	full := append([]string{"exec", c.id(t, svc), "/cairn", "--timeout", dkCLITimeout}, args...)
	return dkRun(time.Minute, nil, "docker", full...)
}

// network returns the name of the project's network a container is on.
func (c *dkCluster) network(t *testing.T, svc string) string {
	t.Helper()
	out := c.docker(t, "inspect", "--format", "{{range $k, $v := .NetworkSettings.Networks}}{{$k}} {{end}}", c.id(t, svc))
	nets := strings.Fields(out)
	if len(nets) != 1 {
		t.Fatalf("%s is on networks %v, want one", svc, nets)
	}
	return nets[0]
}

// testDockerDefaults runs the compose file as shipped (members advertise
// their service names) and checks the CLI inside the containers and from
// the host.
func testDockerDefaults(t *testing.T, env *dkEnv) {
	c := dkUp(t, env, "d", false)

	// The CLI inside a container resolves the service names.
	if out, err := c.exec(t, "n2", "put", "hello", "world"); err != nil {
		t.Fatalf("cairn put inside n2: %v\n%s", err, out)
	}
	if out, err := c.exec(t, "n3", "get", "hello"); err != nil || strings.TrimSpace(out) != "world" {
		t.Fatalf("cairn get inside n3: %v %q", err, out)
	}

	// Commands addressed to one node work from the host.
	for _, s := range dkServices {
		if out, err := c.cli([]string{c.url(s)}, dkCLITimeout, "node", "health", "--endpoint", c.url(s)); err != nil {
			t.Fatalf("host cairn node health %s: %v\n%s", s, err, out)
		}
	}
	out := c.mustCLI(t, "node", "status", "--endpoint", c.url("n1"), "--json")
	var st api.StatusResponse
	if err := json.Unmarshal([]byte(out), &st); err != nil || st.ID != "n1" {
		t.Fatalf("node status n1: %v %q", err, out)
	}

	// The members advertise http://n1:8001 ..., which the host cannot
	// resolve: the client must keep using its configured endpoints.
	t.Run("HostCLIWithServiceNames", func(t *testing.T) {
		out, err := c.cli(c.urls(), "10s", "put", "a", "b")
		if err != nil {
			t.Fatalf("host cairn put: %v\n%s", err, out)
		}
		if got := c.cliGet(t, "a"); got != "b" {
			t.Fatalf("host cairn get a = %q, want b", got)
		}
	})
}

// testDockerFailover kills the leader, partitions a follower and restarts
// every member in turn under a write load, through the host CLI and the Go
// client. Members advertise their container addresses, which a Linux host
// reaches, so the clients can follow the discovered members.
func testDockerFailover(t *testing.T, env *dkEnv) {
	c := dkUp(t, env, "f", true)
	// Docker Desktop (macOS, Windows) does not route the host to container
	// addresses; a Linux host does.
	if _, _, err := c.get(fmt.Sprintf("http://%s.11:8001/healthz", c.net)); err != nil {
		t.Skipf("the host cannot reach the containers' addresses (not a Linux Docker host?): %v", err)
	}

	// A write and a read through the host CLI.
	c.mustCLI(t, "put", "a", "b")
	if got := c.cliGet(t, "a"); got != "b" {
		t.Fatalf("get a = %q, want b", got)
	}

	// Kill the leader: the other two elect a new one that serves writes
	// and reads.
	old := c.leader(t, dkServices...)
	var rest []string
	for _, s := range dkServices {
		if s != old {
			rest = append(rest, s)
		}
	}
	started := time.Now()
	c.docker(t, "kill", c.id(t, old))
	nl := c.leader(t, rest...)
	if nl == old {
		t.Fatalf("leader is still %s", old)
	}
	t.Logf("killed leader %s; %s leads after %s", old, nl, time.Since(started).Round(time.Millisecond))
	for i := 0; i < 5; i++ {
		c.mustCLI(t, "put", fmt.Sprintf("after-kill/%d", i), strconv.Itoa(i))
	}
	for i := 0; i < 5; i++ {
		if got := c.cliGet(t, fmt.Sprintf("after-kill/%d", i)); got != strconv.Itoa(i) {
			t.Fatalf("after-kill/%d = %q", i, got)
		}
	}
	var kv api.KeyValueResponse
	if err := c.getJSON(c.url(nl)+"/v1/kv/after-kill/4?format=json", &kv); err != nil || string(kv.KV.Value) != "4" {
		t.Fatalf("new leader %s reads after-kill/4: %v %q", nl, err, kv.KV.Value)
	}
	st, err := c.status(nl)
	if err != nil {
		t.Fatal(err)
	}

	// Start the killed member again: it rejoins and catches up.
	started = time.Now()
	c.docker(t, "start", c.id(t, old))
	c.waitHealthy(t, dkWaitHealthy, old)
	head := c.converge(t, st.Revision)
	t.Logf("%s back and converged at revision %d after %s", old, head.Revision, time.Since(started).Round(time.Millisecond))

	// Partition a follower: the majority keeps writing; after reconnecting
	// the follower catches up.
	leader := c.leader(t, dkServices...)
	follower := ""
	for _, s := range dkServices {
		if s != leader {
			follower = s
			break
		}
	}
	network := c.network(t, follower)
	c.docker(t, "network", "disconnect", network, c.id(t, follower))
	reconnected := false
	reconnect := func() {
		if reconnected {
			return
		}
		reconnected = true
		// The same address and DNS name it had (compose gave it both).
		c.docker(t, "network", "connect", "--ip", fmt.Sprintf("%s.%d", c.net, 11+c.index(follower)),
			"--alias", follower, network, c.id(t, follower))
	}
	defer reconnect()
	started = time.Now()
	for i := 0; i < 10; i++ {
		c.mustCLI(t, "put", fmt.Sprintf("partition/%d", i), strconv.Itoa(i))
	}
	lst, err := c.status(leader)
	if err != nil {
		t.Fatal(err)
	}
	// The partitioned follower, asked from inside its container, is behind.
	out, err := c.exec(t, follower, "node", "status", "--endpoint", "http://127.0.0.1:8001", "--json")
	if err != nil {
		t.Fatalf("status inside %s: %v\n%s", follower, err, out)
	}
	var fst api.StatusResponse
	if err := json.Unmarshal([]byte(out), &fst); err != nil {
		t.Fatalf("status inside %s: %v\n%s", follower, err, out)
	}
	if fst.Revision >= lst.Revision {
		t.Fatalf("partitioned %s is at revision %d, the leader at %d: it was not cut off", follower, fst.Revision, lst.Revision)
	}
	reconnect()
	c.waitHealthy(t, dkWaitHealthy, follower)
	head = c.converge(t, lst.Revision)
	t.Logf("%s cut off at revision %d while the leader reached %d; caught up at %d, %s after the partition began",
		follower, fst.Revision, lst.Revision, head.Revision, time.Since(started).Round(time.Millisecond))
	if got := c.cliGet(t, "partition/9"); got != "9" {
		t.Fatalf("partition/9 = %q", got)
	}

	// Rolling restart under a light write load: every write succeeds and
	// every acknowledged write is there afterwards, exactly once.
	c.rollingRestart(t)
}

// dkWrite is an acknowledged write of the load.
type dkWrite struct {
	key      string
	revision uint64
}

// rollingRestart restarts n1, n2 and n3 in turn (the leader among them,
// wherever it is), each time waiting until all three are healthy and
// writes are flowing again.
func (c *dkCluster) rollingRestart(t *testing.T) {
	noProxy := &http.Client{Transport: &http.Transport{Proxy: nil}}
	cfg := client.DefaultConfig()
	cfg.Endpoints = c.urls()
	cfg.RequestTimeout = 5 * time.Second
	cfg.MaxBackoff = time.Second
	cfg.HTTPClient = noProxy
	cl, err := client.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()

	var (
		mu      sync.Mutex
		acked   []dkWrite
		failed  []error
		slowest time.Duration
	)
	count := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(acked)
	}
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			key := fmt.Sprintf("roll/%05d", i)
			// Each write gets its own deadline, independent of stop, so a
			// write in flight when the load stops still finishes.
			wctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
			begin := time.Now()
			res, err := cl.Put(wctx, key, []byte(key))
			took := time.Since(begin)
			cancel()
			mu.Lock()
			slowest = max(slowest, took)
			if err != nil {
				failed = append(failed, fmt.Errorf("%s after %s: %w", key, took, err))
			} else {
				acked = append(acked, dkWrite{key, res.Revision})
			}
			mu.Unlock()
		}
	}()
	defer func() { stop(); <-done }()

	waitProgress := func(what string, n int) {
		from := count()
		dkWaitFor(t, fmt.Sprintf("%d acknowledged writes %s", n, what), dkWaitConverge, func() error {
			if got := count() - from; got < n {
				return fmt.Errorf("%d so far", got)
			}
			return nil
		})
	}
	waitProgress("before the restarts", 5)
	for _, s := range dkServices {
		started := time.Now()
		c.docker(t, "restart", "-t", "30", c.id(t, s))
		c.waitHealthy(t, dkWaitHealthy, dkServices...)
		t.Logf("restarted %s: healthy again after %s, %d writes acknowledged so far", s, time.Since(started).Round(time.Millisecond), count())
		// Still serving with every member back.
		waitProgress("after restarting "+s, 5)
	}
	stop()
	<-done

	mu.Lock()
	defer mu.Unlock()
	t.Logf("load: %d writes acknowledged, %d failed, slowest %s", len(acked), len(failed), slowest.Round(time.Millisecond))
	if len(failed) > 0 {
		t.Fatalf("%d writes failed during the rolling restart, first: %v", len(failed), failed[0])
	}

	// Every acknowledged write is there, at the revision it was acknowledged
	// with and written once (a double apply would move its revision).
	got := map[string]client.KeyValue{}
	it := cl.List(context.Background(), "roll/")
	for it.Next() {
		got[it.KV().Key] = it.KV()
	}
	if err := it.Err(); err != nil {
		t.Fatal(err)
	}
	if len(got) != len(acked) {
		t.Errorf("%d keys under roll/, %d writes acknowledged", len(got), len(acked))
	}
	revs := map[uint64]string{}
	for _, w := range acked {
		kv, ok := got[w.key]
		switch {
		case !ok:
			t.Errorf("acknowledged write %s (revision %d) is lost", w.key, w.revision)
		case string(kv.Value) != w.key:
			t.Errorf("%s = %q", w.key, kv.Value)
		case kv.ModRevision != w.revision || kv.CreateRevision != w.revision:
			t.Errorf("%s acknowledged at revision %d, stored created %d modified %d", w.key, w.revision, kv.CreateRevision, kv.ModRevision)
		}
		if other, dup := revs[w.revision]; dup {
			t.Errorf("%s and %s acknowledged with the same revision %d", other, w.key, w.revision)
		}
		revs[w.revision] = w.key
	}
	var last uint64
	for _, w := range acked {
		last = max(last, w.revision)
	}
	head := c.converge(t, last)
	t.Logf("after the rolling restart every member is at revision %d, hash %.16s", head.Revision, head.Hash)
}

// dkRun runs a command with extra environment variables and a deadline,
// returning its combined output.
func dkRun(timeout time.Duration, env []string, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), env...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.WaitDelay = 5 * time.Second
	err := cmd.Run()
	if ctx.Err() != nil {
		err = fmt.Errorf("%w (%s %s: no result within %s)", err, name, strings.Join(args, " "), timeout)
	}
	return out.String(), err
}

// dkWaitFor polls cond every dkPoll with a deadline: conditions here run
// docker commands.
func dkWaitFor(t *testing.T, what string, timeout time.Duration, cond func() error) {
	t.Helper()
	testutil.WaitForEvery(t, what, timeout, dkPoll, cond)
}

// dkFreePorts returns three distinct free loopback ports.
func dkFreePorts(t *testing.T) [3]int {
	t.Helper()
	var ports [3]int
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	for i := range ports {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns = append(lns, ln)
		ports[i] = ln.Addr().(*net.TCPAddr).Port
	}
	sort.Ints(ports[:])
	return ports
}

func dkRandom() string {
	const letters = "abcdefghijklmnopqrstuvwxyz0123456789"
	b := make([]byte, 6)
	for i := range b {
		b[i] = letters[rand.IntN(len(letters))]
	}
	return string(b)
}
