//go:build docker

package cluster_test

// Tests of the Docker deployment (Dockerfile, docker-compose.yml) on real
// containers, all over TLS: the compose file makes the certificates with
// `cairn cert` in its cert-* services, and every client here (the host CLI,
// the Go client, the HTTP checks) uses the CA and the admin client
// certificate copied out of the certs volume, as docs/deploy.md tells a
// user to. They need a Docker engine (nothing is pulled: the image is
// built FROM scratch from the host-built static binary), `docker compose`
// or `docker-compose` (1.29 or later), make and Go. Run them with
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
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
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
	"github.com/cairn-db/cairn/internal/tlsutil"
	"github.com/cairn-db/cairn/internal/tlsutil/tlstest"
)

// Deadlines of the Docker tests' waits.
const (
	dkWaitUp       = 2 * time.Minute  // compose up until every member is healthy
	dkWaitHealthy  = 90 * time.Second // one container back to healthy
	dkWaitLeader   = 30 * time.Second
	dkWaitConverge = 60 * time.Second
	dkWaitReload   = 15 * time.Second // a rewritten certificate served (members look once a second)
	dkWaitDocs     = 8 * time.Minute  // docs/deploy.md's Compose examples, all of them
	dkPoll         = 200 * time.Millisecond
	dkCLITimeout   = "30s" // --timeout of each host CLI command
)

// The image's user, who owns the certificate files in the certs volume.
const dkUID = 65532

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
	t.Run("Docs", func(t *testing.T) { testDockerDocs(t, env) })
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
	if !slices.Contains(cfg.Healthcheck.Test, "https://127.0.0.1:8001") {
		t.Errorf("image health check %q, want it over HTTPS", cfg.Healthcheck.Test)
	}
	return env
}

// dkCluster is one compose project.
type dkCluster struct {
	env     *dkEnv
	project string
	net     string // first three octets of the private /24
	ports   [3]int // host ports of n1..n3's HTTPS API
	vars    []string
	http    *cluster.HTTP
	certs   string      // host directory with ca.pem, client-admin.pem, client-admin-key.pem
	tls     *tls.Config // the admin client's: CA and client certificate

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
				c.vars = append(c.vars, fmt.Sprintf("CAIRN_URL%d=https://%s.%d:8001", i+1, c.net, 11+i))
			} else {
				c.vars = append(c.vars, fmt.Sprintf("CAIRN_URL%d=https://n%d:8001", i+1, i+1))
			}
		}
		t.Cleanup(func() { c.down(t) })
		started := time.Now()
		out, err := c.compose(3*time.Minute, "up", "-d")
		if err == nil {
			t.Logf("project %s up (subnet %s.0/24, host ports %v) in %s", c.project, c.net, c.ports, time.Since(started).Round(time.Millisecond))
			// The members start once the cert-* services are done, so
			// the certificates are there.
			c.fetchCerts(t)
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

// url is a service's HTTPS API as the host reaches it.
func (c *dkCluster) url(svc string) string {
	return fmt.Sprintf("https://127.0.0.1:%d", c.ports[c.index(svc)])
}

// dkCertFiles is what the cert-* services write into the certs volume.
var dkCertFiles = []string{
	"ca.pem", "ca-key.pem",
	"member-n1.pem", "member-n1-key.pem", "member-n2.pem", "member-n2-key.pem", "member-n3.pem", "member-n3-key.pem",
	"client-admin.pem", "client-admin-key.pem",
}

// fetchCerts copies the CA and the admin client certificate out of the
// certs volume (through n1's container, as docs/deploy.md does) and makes
// the project's HTTP client use them.
func (c *dkCluster) fetchCerts(t *testing.T) {
	t.Helper()
	c.certs = t.TempDir()
	for _, f := range []string{"ca.pem", "client-admin.pem", "client-admin-key.pem"} {
		c.docker(t, "cp", c.id(t, "n1")+":/certs/"+f, filepath.Join(c.certs, f))
	}
	c.tls = dkTLSConfig(t, filepath.Join(c.certs, "ca.pem"), filepath.Join(c.certs, "client-admin.pem"), filepath.Join(c.certs, "client-admin-key.pem"))
	c.http.Client().Transport = &http.Transport{TLSClientConfig: c.tls, MaxIdleConnsPerHost: 16}
}

// dkTLSConfig is a client configuration trusting caFile and presenting
// certFile (if not empty).
func dkTLSConfig(t *testing.T, caFile, certFile, keyFile string) *tls.Config {
	t.Helper()
	ca, err := os.ReadFile(caFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) {
		t.Fatalf("%s: no certificate", caFile)
	}
	cfg := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS13}
	if certFile != "" {
		pair, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			t.Fatal(err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	return cfg
}

// tlsFlags are the host CLI's flags for the admin client.
func (c *dkCluster) tlsFlags() []string {
	return []string{"--cacert", filepath.Join(c.certs, "ca.pem"),
		"--cert", filepath.Join(c.certs, "client-admin.pem"), "--key", filepath.Join(c.certs, "client-admin-key.pem")}
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
// --timeout, as the admin client.
func (c *dkCluster) cli(endpoints []string, timeout string, args ...string) (string, error) {
	return c.cliAs(c.tlsFlags(), endpoints, timeout, args...)
}

// cliAs runs the host's cairn binary with the given TLS flags.
func (c *dkCluster) cliAs(tlsFlags, endpoints []string, timeout string, args ...string) (string, error) {
	full := slices.Concat([]string{"--cluster", strings.Join(endpoints, ","), "--timeout", timeout}, tlsFlags, args)
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
// The container's environment gives it the local member's HTTPS URL, the
// CA and the member's certificate.
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
// their service names) and checks the certificates it made, that clients
// without the right credentials are refused, the CLI inside the containers
// and from the host, a second `up`, and a certificate rotation.
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
	if !st.TLS || st.Insecure {
		t.Errorf("node status n1: tls %v, insecure %v; want TLS on", st.TLS, st.Insecure)
	}

	// The members advertise https://n1:8001 ..., which the host cannot
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
	t.Run("Certificates", func(t *testing.T) { c.checkCertificates(t) })
	t.Run("Refused", func(t *testing.T) { c.checkRefused(t) })
	t.Run("UpAgain", func(t *testing.T) { c.checkUpAgain(t) })
	t.Run("Rotation", func(t *testing.T) { c.checkRotation(t) })
}

// checkCertificates checks the files the cert-* services wrote into the
// volume (owner, modes, nothing else), the host copies, and the
// certificates the members serve.
func (c *dkCluster) checkCertificates(t *testing.T) {
	// `docker cp` of a directory to stdout is a tar archive with the
	// files' owners and modes as they are in the volume.
	out, err := dkRun(time.Minute, nil, "docker", "cp", c.id(t, "n1")+":/certs", "-")
	if err != nil {
		t.Fatalf("docker cp /certs: %v\n%.500s", err, out)
	}
	tr := tar.NewReader(strings.NewReader(out))
	var files []string
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Typeflag != tar.TypeReg {
			continue
		}
		name := filepath.Base(h.Name)
		files = append(files, name)
		want := int64(0o644)
		if strings.HasSuffix(name, "-key.pem") {
			want = 0o600
		}
		if h.Mode&0o777 != want || h.Uid != dkUID || h.Gid != dkUID {
			t.Errorf("/certs/%s: mode %o, owner %d:%d; want %o, %d:%d", name, h.Mode&0o777, h.Uid, h.Gid, want, dkUID, dkUID)
		}
	}
	sort.Strings(files)
	want := slices.Sorted(slices.Values(dkCertFiles))
	if !slices.Equal(files, want) {
		t.Errorf("files in the certs volume %v, want %v", files, want)
	}

	// The host copies keep the modes.
	for _, f := range []string{"ca.pem", "client-admin.pem", "client-admin-key.pem"} {
		fi, err := os.Stat(filepath.Join(c.certs, f))
		if err != nil {
			t.Fatal(err)
		}
		want := os.FileMode(0o644)
		if strings.HasSuffix(f, "-key.pem") {
			want = 0o600
		}
		if fi.Mode().Perm() != want {
			t.Errorf("host copy %s: mode %v, want %v", f, fi.Mode().Perm(), want)
		}
	}

	// Each member serves its own member certificate, which names its
	// service name and fixed address (and 127.0.0.1, verified by the
	// handshake).
	for i, s := range dkServices {
		cert, err := c.servedCert(s)
		if err != nil {
			t.Fatalf("%s: %v", s, err)
		}
		if id, ok := tlsutil.MemberID(cert); !ok || id != s {
			t.Errorf("%s serves a certificate of member %q (%v)", s, id, ok)
		}
		ip := net.ParseIP(fmt.Sprintf("%s.%d", c.net, 11+i))
		if !slices.Contains(cert.DNSNames, s) || !slices.ContainsFunc(cert.IPAddresses, ip.Equal) {
			t.Errorf("%s's certificate names %v %v, want %s and %s", s, cert.DNSNames, cert.IPAddresses, s, ip)
		}
		t.Logf("%s serves serial %x, valid until %s, names %v %v", s, cert.SerialNumber, cert.NotAfter.Format(time.DateOnly), cert.DNSNames, cert.IPAddresses)
	}
}

// servedCert returns the certificate a member serves on its published
// port, verified against the CA (with the host name 127.0.0.1).
func (c *dkCluster) servedCert(svc string) (*x509.Certificate, error) {
	d := &tls.Dialer{NetDialer: &net.Dialer{Timeout: 5 * time.Second}, Config: c.tls.Clone()}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := d.DialContext(ctx, "tcp", strings.TrimPrefix(c.url(svc), "https://"))
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	return conn.(*tls.Conn).ConnectionState().PeerCertificates[0], nil
}

// checkRefused checks that the published ports serve nobody without the
// right credentials: a plaintext client, a TLS client without a client
// certificate, one with a certificate of another CA, and one that does not
// trust the cluster's CA. None of their writes happens; the CLI exits 5.
func (c *dkCluster) checkRefused(t *testing.T) {
	other := tlstest.New(t, "other")
	stranger := other.Client(t, "admin")
	type try struct {
		name  string
		tls   *tls.Config // nil: plaintext
		flags []string    // the CLI's TLS flags
	}
	ca := filepath.Join(c.certs, "ca.pem")
	tries := []try{
		{"plaintext", nil, nil},
		{"no client certificate", dkTLSConfig(t, ca, "", ""), []string{"--cacert", ca}},
		{"a client certificate of another CA", dkTLSConfig(t, ca, stranger.CertFile, stranger.KeyFile),
			[]string{"--cacert", ca, "--cert", stranger.CertFile, "--key", stranger.KeyFile}},
		{"a client that does not trust the cluster's CA", dkTLSConfig(t, other.CAFile, filepath.Join(c.certs, "client-admin.pem"), filepath.Join(c.certs, "client-admin-key.pem")),
			[]string{"--cacert", other.CAFile, "--cert", filepath.Join(c.certs, "client-admin.pem"), "--key", filepath.Join(c.certs, "client-admin-key.pem")}},
	}
	for i, tr := range tries {
		key := fmt.Sprintf("refused-%d", i)
		for _, s := range dkServices {
			base := c.url(s)
			if tr.tls == nil {
				base = strings.Replace(base, "https://", "http://", 1)
			}
			hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: tr.tls}}
			for _, req := range []struct{ method, path string }{
				{http.MethodPut, "/v1/kv/" + key},
				{http.MethodGet, "/v1/kv/a"},
				{http.MethodGet, "/v1/status"},
			} {
				r, err := http.NewRequest(req.method, base+req.path, strings.NewReader("x"))
				if err != nil {
					t.Fatal(err)
				}
				resp, err := hc.Do(r)
				if err == nil {
					body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
					resp.Body.Close()
					// Go's TLS server answers a plaintext request with a
					// bare 400 and closes the connection.
					if tr.tls != nil || resp.StatusCode != http.StatusBadRequest {
						t.Errorf("%s: %s %s%s answered %d %q", tr.name, req.method, base, req.path, resp.StatusCode, body)
					}
				}
			}
			hc.CloseIdleConnections()
		}
		// The CLI: a TLS failure is exit status 5, at once.
		started := time.Now()
		ep := c.url("n1")
		if tr.tls == nil {
			ep = strings.Replace(ep, "https://", "http://", 1)
		}
		out, err := c.cliAs(tr.flags, []string{ep}, dkCLITimeout, "put", key, "x")
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 5 {
			t.Errorf("%s: cairn put: %v, want exit status 5\n%s", tr.name, err, out)
		} else {
			t.Logf("%s: the CLI exits 5 after %s: %s", tr.name, time.Since(started).Round(time.Millisecond), strings.TrimSpace(out))
		}
		// Nothing was written.
		code, body, err := c.get(c.url("n1") + "/v1/kv/" + key + "?format=json")
		if err != nil || code != http.StatusNotFound {
			t.Errorf("%s: after the refused writes GET %s = %d %s %v, want 404", tr.name, key, code, body, err)
		}
	}
}

// checkUpAgain runs `up -d` on the running project: the cert-* services
// run again and keep the files, and the members go on as they were.
func (c *dkCluster) checkUpAgain(t *testing.T) {
	before := c.volumeFile(t, "ca.pem")
	started := map[string]string{}
	for _, s := range dkServices {
		started[s] = c.startedAt(t, s)
	}
	if out, err := c.compose(3*time.Minute, "up", "-d"); err != nil {
		t.Fatalf("a second compose up: %v\n%s", err, out)
	}
	if after := c.volumeFile(t, "ca.pem"); !bytes.Equal(before, after) {
		t.Errorf("a second up changed the CA")
	}
	for _, s := range dkServices {
		if got := c.startedAt(t, s); got != started[s] {
			t.Errorf("a second up restarted %s (started %s, now %s)", s, started[s], got)
		}
	}
	c.waitHealthy(t, dkWaitHealthy, dkServices...)
	c.mustCLI(t, "put", "up-again", "yes")
}

// checkRotation writes a new certificate for n1 over the old one as
// docs/deploy.md says, and checks that n1 serves it within a few seconds,
// without a restart, and still works with the others.
func (c *dkCluster) checkRotation(t *testing.T) {
	old, err := c.servedCert("n1")
	if err != nil {
		t.Fatal(err)
	}
	startedAt := c.startedAt(t, "n1")
	out, err := c.compose(2*time.Minute, "run", "--rm", "--no-deps", "-T", "cert-n1", "cert", "member", "create",
		"--id", "n1", "--host", "n1,"+c.net+".11", "--dir", "/certs", "--force")
	if err != nil {
		t.Fatalf("rotating n1's certificate: %v\n%s", err, out)
	}
	fresh := c.volumeFile(t, "member-n1.pem")
	if bytes.Contains(fresh, old.Raw) {
		t.Fatal("the certificate file did not change")
	}
	began := time.Now()
	dkWaitFor(t, "n1 to serve its new certificate", dkWaitReload, func() error {
		cert, err := c.servedCert("n1")
		if err != nil {
			return err
		}
		if cert.SerialNumber.Cmp(old.SerialNumber) == 0 {
			return fmt.Errorf("still the old one, serial %x", cert.SerialNumber)
		}
		return nil
	})
	t.Logf("n1 serves its new certificate %s after it was written", time.Since(began).Round(time.Millisecond))
	if got := c.startedAt(t, "n1"); got != startedAt {
		t.Errorf("n1 restarted (started %s, now %s)", startedAt, got)
	}
	// n1 still works with the other members: a write through it, read
	// from the others, and the containers' own health checks.
	if out, err := c.cli([]string{c.url("n1")}, dkCLITimeout, "put", "rotated", "yes"); err != nil {
		t.Fatalf("put through n1 after the rotation: %v\n%s", err, out)
	}
	for _, s := range []string{"n2", "n3"} {
		if out, err := c.exec(t, s, "get", "rotated"); err != nil || strings.TrimSpace(out) != "yes" {
			t.Fatalf("get rotated inside %s: %v %q", s, err, out)
		}
	}
	c.waitHealthy(t, dkWaitHealthy, dkServices...)
}

// volumeFile returns a file of the certs volume, through n1's container.
func (c *dkCluster) volumeFile(t *testing.T, name string) []byte {
	t.Helper()
	out, err := dkRun(time.Minute, nil, "docker", "cp", c.id(t, "n1")+":/certs/"+name, "-")
	if err != nil {
		t.Fatalf("docker cp %s: %v\n%s", name, err, out)
	}
	tr := tar.NewReader(strings.NewReader(out))
	if _, err := tr.Next(); err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(tr)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// startedAt is when a service's container last started.
func (c *dkCluster) startedAt(t *testing.T, svc string) string {
	t.Helper()
	return strings.TrimSpace(c.docker(t, "inspect", "--format", "{{.State.StartedAt}}", c.id(t, svc)))
}

// testDockerFailover kills the leader, partitions a follower and restarts
// every member in turn under a write load, through the host CLI and the Go
// client. Members advertise their container addresses, which a Linux host
// reaches, so the clients can follow the discovered members.
func testDockerFailover(t *testing.T, env *dkEnv) {
	c := dkUp(t, env, "f", true)
	// Docker Desktop (macOS, Windows) does not route the host to container
	// addresses; a Linux host does.
	if _, _, err := c.get(fmt.Sprintf("https://%s.11:8001/healthz", c.net)); err != nil {
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
	out, err := c.exec(t, follower, "node", "status", "--endpoint", "https://127.0.0.1:8001", "--json")
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

// testDockerDocs runs the Compose examples of docs/deploy.md, the shell
// blocks marked <!-- test: docker -->, in document order as one bash
// session, the way a reader would type them: in a scratch directory, with
// `cairn` on the PATH (bin/cairn) and this run's project name, image,
// subnet and ports. The blocks bring the project up, copy the certificates
// out, use the CLI on the host and in the containers, recreate the members
// with other URLs, rotate a certificate, replace the members one at a time,
// stop, start and remove everything.
func testDockerDocs(t *testing.T, env *dkEnv) {
	blocks := dkDocBlocks(t, filepath.Join(env.repo, "docs", "deploy.md"), "docker")
	if len(blocks) < 5 {
		t.Fatalf("%d blocks marked <!-- test: docker --> in docs/deploy.md, want at least 5", len(blocks))
	}
	for attempt := 1; ; attempt++ {
		c := &dkCluster{
			env:     env,
			project: env.prefix + "docs" + dkRandom(),
			net:     fmt.Sprintf("172.%d.%d", 24+rand.IntN(8), rand.IntN(256)),
			http:    cluster.NewHTTP(10 * time.Second),
			ids:     map[string]string{},
		}
		c.ports = dkFreePorts(t)
		c.vars = []string{"CAIRN_IMAGE=" + env.image, "CAIRN_NET=" + c.net, "CAIRN_HOST_IP=127.0.0.1", "CAIRN_LOG_LEVEL=info"}
		for i, p := range c.ports {
			c.vars = append(c.vars, fmt.Sprintf("CAIRN_PORT%d=%d", i+1, p))
		}
		t.Cleanup(func() { c.down(t) })

		// The examples use the defaults: 127.0.0.1:8001.., 172.28.53.
		repl := []string{"172.28.53.", c.net + "."}
		for i, p := range c.ports {
			repl = append(repl, fmt.Sprintf("127.0.0.1:%d", 8001+i), fmt.Sprintf("127.0.0.1:%d", p))
		}
		r := strings.NewReplacer(repl...)
		var script strings.Builder
		// `docker compose` is the Compose plugin or, where only Compose v1
		// is installed, docker-compose; exec and run get -T, as the test
		// has no terminal.
		script.WriteString(`set -euo pipefail
docker() {
  if [ "${1:-}" = compose ]; then
    shift
    case "${1:-}" in exec | run) c=$1; shift; set -- "$c" -T "$@" ;; esac
    if command docker compose version >/dev/null 2>&1; then command docker compose "$@"; else docker-compose "$@"; fi
  else
    command docker "$@"
  fi
}
`)
		for _, b := range blocks {
			fmt.Fprintf(&script, "echo '+++ docs/deploy.md line %d' >&2\n%s\n", b.line, r.Replace(b.text))
		}
		dir := t.TempDir()
		noProxy := c.net + ".0/24,127.0.0.1,localhost"
		vars := append(slices.Clone(c.vars),
			"COMPOSE_PROJECT_NAME="+c.project,
			"COMPOSE_FILE="+filepath.Join(env.repo, "docker-compose.yml"),
			"PATH="+filepath.Join(env.repo, "bin")+string(os.PathListSeparator)+os.Getenv("PATH"),
			// Every CLI command of the examples gives up in time.
			"CAIRN_TIMEOUT=60s",
			"NO_PROXY="+noProxy, "no_proxy="+noProxy)
		started := time.Now()
		cmd := []string{"bash", "-x", "-c", script.String()}
		out, err := dkRunIn(dir, dkWaitDocs, vars, cmd[0], cmd[1:]...)
		if err == nil {
			t.Logf("the %d Compose examples of docs/deploy.md ran in %s", len(blocks), time.Since(started).Round(time.Millisecond))
			return
		}
		retry := strings.Contains(out, "overlap") || strings.Contains(out, "already allocated") ||
			strings.Contains(out, "address already in use")
		if !retry || attempt == 3 {
			t.Fatalf("the Compose examples of docs/deploy.md: %v\n%s", err, out)
		}
		t.Logf("compose up failed, retrying with another subnet and ports: %.300s", out)
		c.down(t)
	}
}

// dkDocBlock is a shell block of a doc.
type dkDocBlock struct {
	line int // of the opening fence
	text string
}

// dkDocBlocks returns the ```sh blocks of a markdown file that directly
// follow the line <!-- test: marker -->, without their indentation.
func dkDocBlocks(t *testing.T, file, marker string) []dkDocBlock {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var (
		blocks []dkDocBlock
		armed  bool
		in     *dkDocBlock
		indent string
		fence  = regexp.MustCompile("^([ \t]*)```sh[ \t]*$")
	)
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		switch {
		case in != nil && strings.TrimSpace(line) == "```" && strings.HasPrefix(line, indent):
			blocks = append(blocks, *in)
			in = nil
		case in != nil:
			in.text += strings.TrimPrefix(line, indent) + "\n"
		case armed && fence.MatchString(line):
			indent = fence.FindStringSubmatch(line)[1]
			in = &dkDocBlock{line: n}
		}
		armed = strings.TrimSpace(line) == "<!-- test: "+marker+" -->"
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if in != nil {
		t.Fatalf("%s: the block at line %d is not closed", file, in.line)
	}
	return blocks
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
	// The Go client's own TLS (files, reloaded), in a transport that
	// ignores proxy settings.
	tr, err := client.NewTransport(client.Config{
		CAFile:   filepath.Join(c.certs, "ca.pem"),
		CertFile: filepath.Join(c.certs, "client-admin.pem"),
		KeyFile:  filepath.Join(c.certs, "client-admin-key.pem"),
	})
	if err != nil {
		t.Fatal(err)
	}
	tr.Proxy = nil
	cfg := client.DefaultConfig()
	cfg.Endpoints = c.urls()
	cfg.RequestTimeout = 5 * time.Second
	cfg.MaxBackoff = time.Second
	cfg.HTTPClient = &http.Client{Transport: tr}
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
	return dkRunIn("", timeout, env, name, args...)
}

// dkRunIn is dkRun in a working directory.
func dkRunIn(dir string, timeout time.Duration, env []string, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
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
