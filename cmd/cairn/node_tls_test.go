package main

import (
	"fmt"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cairn-db/cairn/internal/cluster"
	"github.com/cairn-db/cairn/internal/tlsutil"
	"github.com/cairn-db/cairn/internal/tlsutil/tlstest"
)

// Secure by default: `cairn node run` refuses a non-loopback address
// without TLS, and with --insecure starts and says so in its status.
func TestNodeRunSecureByDefault(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	_, port, _ := net.SplitHostPort(freePort(t))
	args := []string{"node", "run", "--id", "n1", "--data-dir", t.TempDir(), "--raft-addr", freePort(t),
		"--http-addr", "0.0.0.0:" + port, "--bootstrap", "--log-level", "warn"}
	_, errOut, code := runEnv(t, nil, args...)
	want := "refusing to listen on 0.0.0.0:" + port + " without TLS: set --peer-cert-file, --peer-key-file and --peer-trusted-ca-file (docs/security.md) or pass --insecure"
	if code != exitUsage || !strings.Contains(errOut, want) {
		t.Fatalf("node run on 0.0.0.0 without TLS: exit %d, stderr %q; want %d and %q", code, errOut, exitUsage, want)
	}

	// --insecure from the environment.
	p := startRaw(t, "n1", "127.0.0.1:"+port, []string{"CAIRN_INSECURE=true"}, args...)
	waitReady(t, p)
	h := cluster.NewHTTP(5 * time.Second)
	defer h.CloseIdleConnections()
	st, err := h.Status(p.url())
	if err != nil {
		t.Fatal(err)
	}
	if !st.Insecure || st.TLS {
		t.Errorf("status insecure=%t tls=%t, want true, false", st.Insecure, st.TLS)
	}
	if err := p.stop(t, syscall.SIGTERM); err != nil {
		t.Fatalf("exit: %v\n%s", err, p.log)
	}
	if !strings.Contains(p.log.String(), "running without TLS (--insecure)") {
		t.Errorf("no warning about --insecure in the log:\n%s", p.log)
	}
}

// The TLS flags from the YAML file and from CAIRN_* variables: a member
// configured each way, over HTTPS and raft TLS.
func TestNodeRunTLSFromEnvAndConfigFile(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	pki := tlstest.New(t, "ca")
	timing := map[string]any{"heartbeat-timeout": "300ms", "election-timeout": "300ms",
		"leader-lease-timeout": "150ms", "log-level": "warn"}
	member := func(id string, addrs ...string) tlsutil.Files {
		hosts := append([]string{}, tlstest.Loopback...)
		for _, a := range addrs {
			h, _, _ := net.SplitHostPort(a)
			hosts = append(hosts, h)
		}
		return pki.Member(t, id, hosts...)
	}

	raft1, http1 := freePort(t), freePort(t)
	m1 := member("n1", raft1, http1)
	file := map[string]any{"id": "n1", "data-dir": t.TempDir(), "raft-addr": raft1, "http-addr": http1, "bootstrap": true,
		"peer-cert-file": m1.CertFile, "peer-key-file": m1.KeyFile, "peer-trusted-ca-file": m1.CAFile}
	for k, v := range timing {
		file[k] = v
	}
	startRaw(t, "n1", http1, nil, "node", "run", "--config", writeYAML(t, file))

	raft2, http2 := freePort(t), freePort(t)
	m2 := member("n2", raft2, http2)
	startRaw(t, "n2", http2, []string{"CAIRN_ID=n2", "CAIRN_DATA_DIR=" + t.TempDir(), "CAIRN_RAFT_ADDR=" + raft2,
		"CAIRN_HTTP_ADDR=" + http2, "CAIRN_JOIN=" + http1, // a bare host:port joins over https
		"CAIRN_PEER_CERT_FILE=" + m2.CertFile, "CAIRN_PEER_KEY_FILE=" + m2.KeyFile, "CAIRN_PEER_TRUSTED_CA_FILE=" + m2.CAFile,
		"CAIRN_HEARTBEAT_TIMEOUT=300ms", "CAIRN_ELECTION_TIMEOUT=300ms", "CAIRN_LEADER_LEASE_TIMEOUT=150ms", "CAIRN_LOG_LEVEL=warn"},
		"node", "run")

	cl := pki.Client(t, "admin")
	src, err := tlsutil.NewSource(cl, nil)
	if err != nil {
		t.Fatal(err)
	}
	h := cluster.NewHTTPTLS(5*time.Second, tlsutil.ClientConfig(src, []*tlsutil.Source{src}))
	defer h.CloseIdleConnections()
	for _, u := range []string{"https://" + http1, "https://" + http2} {
		poll(t, u+" ready over TLS", 30*time.Second, func() error {
			if err := h.Ready(u); err != nil {
				return err
			}
			st, err := h.Status(u)
			if err != nil {
				return err
			}
			if !st.TLS || st.Insecure {
				return fmt.Errorf("status tls=%t insecure=%t", st.TLS, st.Insecure)
			}
			return nil
		})
	}
	r, err := h.Do(t.Context(), http.MethodPut, "https://"+http2+"/v1/kv/tls", []byte("yes"), nil)
	if err != nil || r.Code != http.StatusOK {
		t.Fatalf("put through n2: %v %s", err, r)
	}
}

// The harness runs process members with TLS too (their node.Config's TLS
// fields become flags).
func TestProcClusterTLS(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	c := cluster.New(t, cluster.Options{Kind: cluster.Proc, TLS: tlstest.New(t, "ca")})
	c.Start(t, 3)
	for i := 0; i < 3; i++ {
		if r := c.Put(t, i, fmt.Sprintf("k%d", i), "v", ""); r.Code != http.StatusOK {
			t.Fatalf("put through %s: %s", c.Config(i).ID, r)
		}
		st, err := c.Status(i)
		if err != nil {
			t.Fatal(err)
		}
		if !st.TLS || st.Insecure {
			t.Errorf("%s: status tls=%t insecure=%t", st.ID, st.TLS, st.Insecure)
		}
	}
	c.WaitConverged(t)
}
