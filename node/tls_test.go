package node

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/cairn-db/cairn/api"
	"github.com/cairn-db/cairn/internal/testutil"
	"github.com/cairn-db/cairn/internal/tlsutil"
	"github.com/cairn-db/cairn/internal/tlsutil/tlstest"
)

func TestIsLoopbackAddr(t *testing.T) {
	for addr, want := range map[string]bool{
		"127.0.0.1:7001": true, "127.45.3.2:0": true, "[::1]:8001": true, "localhost:8001": true, "LOCALHOST:1": true,
		":8001": false, "0.0.0.0:8001": false, "[::]:8001": false, "10.0.0.1:8001": false, "example.com:1": false,
		"127.0.0.1": false, // no port: not a bind address
	} {
		if got := isLoopbackAddr(addr); got != want {
			t.Errorf("isLoopbackAddr(%q) = %t, want %t", addr, got, want)
		}
	}
}

func TestNormalizeURL(t *testing.T) {
	for _, c := range []struct {
		in    string
		tlsOn bool
		want  string
	}{
		{"127.0.0.1:8001", false, "http://127.0.0.1:8001"},
		{"127.0.0.1:8001", true, "https://127.0.0.1:8001"},
		{"localhost:8001/", true, "https://localhost:8001"},
		{"https://n1:8001/", false, "https://n1:8001"},
		{"http://n1:8001", true, "http://n1:8001"},
		{"", true, ""},
	} {
		if got := normalizeURL(c.in, c.tlsOn); got != c.want {
			t.Errorf("normalizeURL(%q, %t) = %q, want %q", c.in, c.tlsOn, got, c.want)
		}
	}
}

func TestConfigValidateTLS(t *testing.T) {
	pki := tlstest.New(t, "ca")
	m := pki.Member(t, "n1")
	withPeer := func(c *Config) {
		c.PeerCertFile, c.PeerKeyFile, c.PeerTrustedCAFile = m.CertFile, m.KeyFile, m.CAFile
	}
	for _, c := range []struct {
		name   string
		change func(*Config)
		want   string // "": valid
	}{
		{"defaults on loopback", func(*Config) {}, ""},
		{"peer TLS", withPeer, ""},
		{"peer TLS on every interface", func(c *Config) { withPeer(c); c.HTTPAddr, c.RaftAddr = "0.0.0.0:8001", "0.0.0.0:7001" }, ""},
		{"peer cert without key", func(c *Config) { withPeer(c); c.PeerKeyFile = "" }, "go together"},
		{"peer CA alone", func(c *Config) { c.PeerTrustedCAFile = m.CAFile }, "go together"},
		{"client TLS without peer TLS", func(c *Config) { c.CertFile, c.KeyFile = m.CertFile, m.KeyFile }, "need peer TLS"},
		{"trusted CA without peer TLS", func(c *Config) { c.TrustedCAFile = m.CAFile }, "need peer TLS"},
		{"cert without key", func(c *Config) { withPeer(c); c.CertFile = m.CertFile }, "--cert-file and --key-file go together"},
		{"http on every interface", func(c *Config) { c.HTTPAddr = "0.0.0.0:8001" },
			"refusing to listen on 0.0.0.0:8001 without TLS: set --peer-cert-file, --peer-key-file and --peer-trusted-ca-file (docs/security.md) or pass --insecure"},
		{"raft on an empty host", func(c *Config) { c.RaftAddr = ":7001" }, "refusing to listen on :7001 without TLS"},
		{"raft on ::", func(c *Config) { c.RaftAddr = "[::]:7001" }, "refusing to listen on [::]:7001 without TLS"},
		{"insecure", func(c *Config) { c.HTTPAddr, c.Insecure = "0.0.0.0:8001", true }, ""},
		{"localhost", func(c *Config) { c.HTTPAddr = "localhost:8001" }, ""},
		{"http advertised under TLS", func(c *Config) { withPeer(c); c.AdvertiseHTTP = "http://n1:8001" }, "must be https"},
		{"https advertised under TLS", func(c *Config) { withPeer(c); c.AdvertiseHTTP = "https://n1:8001" }, ""},
		{"host:port advertised under TLS", func(c *Config) { withPeer(c); c.AdvertiseHTTP = "n1:8001" }, ""},
	} {
		cfg := testConfig(t, "n1")
		cfg.Bootstrap = true
		c.change(&cfg)
		err := cfg.Validate()
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%s: %v, want valid", c.name, err)
		case c.want != "" && (!errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%s: %v, want ErrInvalidConfig saying %q", c.name, err, c.want)
		}
	}
	if !DefaultConfig().ClientCertAuth {
		t.Error("DefaultConfig().ClientCertAuth is false, want true")
	}
	// The client side defaults to the peer files.
	cfg := testConfig(t, "n1")
	withPeer(&cfg)
	d := cfg.withTLSDefaults()
	if d.CertFile != m.CertFile || d.KeyFile != m.KeyFile || d.TrustedCAFile != m.CAFile {
		t.Errorf("client-side files %q %q %q, want the peer files", d.CertFile, d.KeyFile, d.TrustedCAFile)
	}
}

// Secure by default: a node without TLS does not listen on every
// interface unless told to, and then says so.
func TestSecureByDefault(t *testing.T) {
	cfg := testConfig(t, "n1")
	cfg.Bootstrap = true
	_, port, _ := net.SplitHostPort(freeAddr(t))
	cfg.HTTPAddr = "0.0.0.0:" + port
	_, err := New(cfg)
	if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), "refusing to listen on 0.0.0.0:"+port+" without TLS") {
		t.Fatalf("New on 0.0.0.0 without TLS: %v, want ErrInvalidConfig refusing", err)
	}

	var logs testutil.SyncBuffer
	cfg.Insecure = true
	cfg.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelWarn}))
	n := startNode(t, cfg)
	waitFor(t, "n1 ready", 10*time.Second, n.Ready)
	if !strings.Contains(logs.String(), "running without TLS (--insecure)") {
		t.Errorf("no warning about --insecure in the log:\n%s", logs.String())
	}
	st, err := n.Status()
	if err != nil {
		t.Fatal(err)
	}
	if st.TLS || !st.Insecure {
		t.Errorf("status tls=%t insecure=%t, want false, true", st.TLS, st.Insecure)
	}
	code, body := do(t, "GET", "http://127.0.0.1:"+port+"/v1/status", "")
	var sr api.StatusResponse
	if code != 200 || json.Unmarshal([]byte(body), &sr) != nil || !sr.Insecure || sr.TLS {
		t.Errorf("GET /v1/status: %d %s, want insecure=true tls=false", code, body)
	}
}

// tlsTestConfig is testConfig with member id's certificate of pki.
func tlsTestConfig(t *testing.T, pki *tlstest.PKI, id string) Config {
	cfg := testConfig(t, id)
	hosts := append([]string{}, tlstest.Loopback...)
	for _, a := range []string{cfg.RaftAddr, cfg.HTTPAddr} {
		h, _, _ := net.SplitHostPort(a)
		hosts = append(hosts, h)
	}
	m := pki.Member(t, id, hosts...)
	cfg.PeerCertFile, cfg.PeerKeyFile, cfg.PeerTrustedCAFile = m.CertFile, m.KeyFile, m.CAFile
	return cfg
}

func TestTLSNodes(t *testing.T) {
	pki := tlstest.New(t, "ca")
	var logs testutil.SyncBuffer
	c1 := tlsTestConfig(t, pki, "n1")
	c1.Bootstrap = true
	c1.Insecure = true // ignored, with a warning
	c1.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelWarn}))
	n1 := startNode(t, c1)
	waitFor(t, "n1 ready", 10*time.Second, n1.Ready)
	if !strings.HasPrefix(n1.HTTPURL(), "https://") {
		t.Fatalf("n1 URL %s, want https", n1.HTTPURL())
	}
	if !strings.Contains(logs.String(), "--insecure ignored") {
		t.Errorf("no warning that --insecure is ignored:\n%s", logs.String())
	}
	c2 := tlsTestConfig(t, pki, "n2")
	// A bare host:port joins over https.
	c2.Join = []string{strings.TrimPrefix(n1.HTTPURL(), "https://")}
	n2 := startNode(t, c2)
	waitFor(t, "n2 ready", 15*time.Second, n2.Ready)
	st, err := n2.Status()
	if err != nil {
		t.Fatal(err)
	}
	if !st.TLS || st.Insecure {
		t.Errorf("status tls=%t insecure=%t, want true, false", st.TLS, st.Insecure)
	}

	// A client with a client certificate of the CA writes through the
	// follower (forwarded over HTTPS with n2's member certificate).
	cl := pki.Client(t, "alice")
	src, err := tlsutil.NewSource(cl, nil)
	if err != nil {
		t.Fatal(err)
	}
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DialTLSContext: tlsutil.DialTLSContext(tlsutil.ClientConfig(src, []*tlsutil.Source{src}), nil)}}
	defer hc.CloseIdleConnections()
	req, _ := http.NewRequest(http.MethodPut, n2.HTTPURL()+"/v1/kv/k", strings.NewReader("v"))
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("put through n2: %d %s", resp.StatusCode, b)
	}
	// Without a client certificate: refused in the handshake.
	caOnly, err := tlsutil.NewSource(tlsutil.Files{CAFile: cl.CAFile}, nil)
	if err != nil {
		t.Fatal(err)
	}
	bare := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DialTLSContext: tlsutil.DialTLSContext(tlsutil.ClientConfig(nil, []*tlsutil.Source{caOnly}), nil)}}
	defer bare.CloseIdleConnections()
	if resp, err := bare.Get(n1.HTTPURL() + "/v1/status"); err == nil {
		resp.Body.Close()
		t.Errorf("GET without a client certificate: %d, want a failed handshake", resp.StatusCode)
	}
}

// A node whose TLS files do not load does not start, with
// ErrInvalidConfig.
func TestTLSBadFiles(t *testing.T) {
	pki := tlstest.New(t, "ca")
	cfg := tlsTestConfig(t, pki, "n1")
	cfg.Bootstrap = true
	cfg.PeerKeyFile = pki.CAKeyFile // not the certificate's key
	if _, err := New(cfg); !errors.Is(err, ErrInvalidConfig) || !errors.Is(err, tlsutil.ErrConfig) {
		t.Fatalf("New with a mismatched key: %v, want ErrInvalidConfig and tlsutil.ErrConfig", err)
	}
}

// The TLS listener hands raft only connections whose handshake
// completed: a stalled handshake holds up no other, failed ones are
// dropped, and Close ends handshakes in progress.
func TestTLSListener(t *testing.T) {
	pki := tlstest.New(t, "ca")
	member, err := tlsutil.NewSource(pki.Member(t, "n1"), nil)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := newTLSListener(raw, tlsutil.PeerListenerConfig(member), slog.New(slog.DiscardHandler))
	defer l.Close()
	addr := raw.Addr().String()

	// A stalled client: connected, sends nothing.
	stalled, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer stalled.Close()
	// A plaintext client that sends garbage.
	plain, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	if _, err := plain.Write([]byte("\x00\x01garbage that is no ClientHello")); err != nil {
		t.Fatal(err)
	}

	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			close(accepted)
			return
		}
		accepted <- c
	}()
	d := tls.Dialer{Config: tlsutil.PeerDialConfig(member)}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	good, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		t.Fatalf("member dial: %v", err)
	}
	defer good.Close()
	select {
	case c, ok := <-accepted:
		if !ok {
			t.Fatal("Accept failed")
		}
		tc, isTLS := c.(*tls.Conn)
		if !isTLS || !tc.ConnectionState().HandshakeComplete {
			t.Fatalf("Accept returned %T without a completed handshake", c)
		}
		if c.RemoteAddr().String() != good.LocalAddr().String() {
			t.Fatalf("Accept returned %s, want the member's connection from %s", c.RemoteAddr(), good.LocalAddr())
		}
		c.Close()
	case <-time.After(5 * time.Second):
		t.Fatal("the member's connection was not accepted while another handshake stalled")
	}
	// The plaintext client's connection was closed by the listener.
	_ = plain.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadAll(plain); isTimeout(err) {
		t.Fatalf("plaintext connection: %v, want it closed", err)
	}

	// Close ends the stalled handshake and Accept returns.
	done := make(chan error, 1)
	go func() {
		_, err := l.Accept()
		done <- err
	}()
	start := time.Now()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Close took %s with a handshake in progress", d)
	}
	if err := <-done; !errors.Is(err, net.ErrClosed) {
		t.Errorf("Accept after Close: %v, want net.ErrClosed", err)
	}
	_ = stalled.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadAll(stalled); isTimeout(err) {
		t.Errorf("stalled connection after Close: %v, want it closed", err)
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// After the member's files reload, its calls on other members use new
// connections (with the new certificate), not the old keep-alive ones.
func TestMemberTransportFollowsReloads(t *testing.T) {
	pki := tlstest.New(t, "ca")
	files := pki.Member(t, "n1")
	src, err := tlsutil.NewSource(files, nil)
	if err != nil {
		t.Fatal(err)
	}
	made := 0
	mt := newMemberTransport(func() *http.Transport { made++; return &http.Transport{} }, src)
	first := mt.current()
	if mt.current() != first || made != 1 {
		t.Fatalf("a new transport without a reload (%d made)", made)
	}
	pki.Member(t, "n1") // re-issued: new files
	if err := src.Reload(); err != nil {
		t.Fatal(err)
	}
	if mt.current() == first || made != 2 {
		t.Fatalf("the same transport after a reload (%d made)", made)
	}
	mt.CloseIdleConnections()
}
