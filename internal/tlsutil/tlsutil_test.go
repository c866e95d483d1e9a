package tlsutil_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/cairn-db/cairn/internal/tlsutil"
	"github.com/cairn-db/cairn/internal/tlsutil/tlstest"
)

func source(t *testing.T, f tlsutil.Files) *tlsutil.Source {
	t.Helper()
	s, err := tlsutil.NewSource(f, nil)
	if err != nil {
		t.Fatal(err)
	}
	s.SetCheckInterval(0)
	return s
}

// handshake runs one TLS handshake between a server and a client config
// over a loopback connection and returns both sides' errors.
func handshake(t *testing.T, server, client *tls.Config) (state tls.ConnectionState, serverErr, clientErr error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			done <- err
			return
		}
		defer c.Close()
		tc := tls.Server(c, server)
		_ = tc.SetDeadline(time.Now().Add(10 * time.Second))
		err = tc.Handshake()
		if err == nil {
			// TLS 1.3 clients finish before the server has checked their
			// certificate: read so that a refusal reaches the client.
			_, _ = tc.Write([]byte("x"))
		}
		done <- err
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	cfg := client.Clone()
	if cfg.ServerName == "" {
		cfg.ServerName = "localhost"
	}
	tc := tls.Client(c, cfg)
	_ = tc.SetDeadline(time.Now().Add(10 * time.Second))
	clientErr = tc.Handshake()
	if clientErr == nil {
		_, clientErr = tc.Read(make([]byte, 1))
		state = tc.ConnectionState()
	}
	return state, <-done, clientErr
}

func TestPeerHandshake(t *testing.T) {
	pki := tlstest.New(t, "cluster")
	n1 := source(t, pki.Member(t, "n1"))
	n2 := source(t, pki.Member(t, "n2"))

	other := tlstest.New(t, "other")
	stranger := source(t, other.Member(t, "n3"))
	client := source(t, pki.Client(t, "alice"))

	t.Run("members", func(t *testing.T) {
		st, se, ce := handshake(t, tlsutil.PeerListenerConfig(n1), tlsutil.PeerDialConfig(n2))
		if se != nil || ce != nil {
			t.Fatalf("server %v, client %v", se, ce)
		}
		if st.Version != tls.VersionTLS13 {
			t.Fatalf("version %x, want TLS 1.3", st.Version)
		}
		if id, ok := tlsutil.MemberID(st.PeerCertificates[0]); !ok || id != "n1" {
			t.Fatalf("server names %q %v, want n1", id, ok)
		}
	})
	t.Run("other CA refused by listener", func(t *testing.T) {
		// The stranger trusts anyone, so that what is tested is the
		// listener's refusal of its certificate.
		cert, _, _ := stranger.Current()
		trusting := &tls.Config{Certificates: []tls.Certificate{*cert}, InsecureSkipVerify: true, MinVersion: tls.VersionTLS13}
		_, se, _ := handshake(t, tlsutil.PeerListenerConfig(n1), trusting)
		if !errors.Is(se, tlsutil.ErrNotMember) {
			t.Fatalf("server error %v, want ErrNotMember", se)
		}
	})
	t.Run("other CA refused by dialer", func(t *testing.T) {
		_, _, ce := handshake(t, tlsutil.PeerListenerConfig(stranger), tlsutil.PeerDialConfig(n1))
		if ce == nil {
			t.Fatal("dialer accepted a member of another CA")
		}
	})
	t.Run("client certificate of the same CA is no member", func(t *testing.T) {
		cert, _, _ := client.Current()
		trusting := &tls.Config{Certificates: []tls.Certificate{*cert}, InsecureSkipVerify: true, MinVersion: tls.VersionTLS13}
		_, se, _ := handshake(t, tlsutil.PeerListenerConfig(n1), trusting)
		if !errors.Is(se, tlsutil.ErrNotMember) || !strings.Contains(se.Error(), "names no member") {
			// A client certificate lacks server use too, but the listener
			// checks client use: what it refuses is the missing member name.
			t.Fatalf("server error %v, want names no member", se)
		}
	})
	t.Run("no certificate", func(t *testing.T) {
		plain := &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS13}
		_, se, _ := handshake(t, tlsutil.PeerListenerConfig(n1), plain)
		if se == nil {
			t.Fatal("listener accepted a client without a certificate")
		}
	})
	t.Run("TLS 1.2 refused", func(t *testing.T) {
		old := tlsutil.PeerDialConfig(n2).Clone()
		old.MaxVersion = tls.VersionTLS12
		old.MinVersion = tls.VersionTLS12
		_, se, _ := handshake(t, tlsutil.PeerListenerConfig(n1), old)
		if se == nil || !strings.Contains(se.Error(), "version") {
			t.Fatalf("server error %v, want a protocol version refusal", se)
		}
	})
}

func TestServerAndClientConfig(t *testing.T) {
	pki := tlstest.New(t, "cluster")
	serverSrc := source(t, pki.Member(t, "n1"))
	ca := source(t, tlsutil.Files{CAFile: pki.CAFile})
	alice := source(t, pki.Client(t, "alice"))
	other := tlstest.New(t, "other")

	t.Run("client certificate required and given", func(t *testing.T) {
		_, se, ce := handshake(t, tlsutil.ServerConfig(serverSrc, []*tlsutil.Source{ca}, true), tlsutil.ClientConfig(alice, []*tlsutil.Source{ca}))
		if se != nil || ce != nil {
			t.Fatalf("server %v, client %v", se, ce)
		}
	})
	t.Run("client certificate required and missing", func(t *testing.T) {
		_, se, _ := handshake(t, tlsutil.ServerConfig(serverSrc, []*tlsutil.Source{ca}, true), tlsutil.ClientConfig(nil, []*tlsutil.Source{ca}))
		if se == nil {
			t.Fatal("server accepted a client without a certificate")
		}
	})
	t.Run("client certificate optional", func(t *testing.T) {
		_, se, ce := handshake(t, tlsutil.ServerConfig(serverSrc, []*tlsutil.Source{ca}, false), tlsutil.ClientConfig(nil, []*tlsutil.Source{ca}))
		if se != nil || ce != nil {
			t.Fatalf("server %v, client %v", se, ce)
		}
	})
	t.Run("unknown CA", func(t *testing.T) {
		otherCA := source(t, tlsutil.Files{CAFile: other.CAFile})
		_, _, ce := handshake(t, tlsutil.ServerConfig(serverSrc, []*tlsutil.Source{ca}, false), tlsutil.ClientConfig(nil, []*tlsutil.Source{otherCA}))
		var ua x509.UnknownAuthorityError
		if !errors.As(ce, &ua) {
			t.Fatalf("client error %v, want x509.UnknownAuthorityError", ce)
		}
	})
	t.Run("name mismatch", func(t *testing.T) {
		elsewhere := source(t, pki.Member(t, "n9", "other.example"))
		_, _, ce := handshake(t, tlsutil.ServerConfig(elsewhere, []*tlsutil.Source{ca}, false), tlsutil.ClientConfig(nil, []*tlsutil.Source{ca}))
		var he x509.HostnameError
		if !errors.As(ce, &he) {
			t.Fatalf("client error %v, want x509.HostnameError", ce)
		}
	})
	t.Run("expired", func(t *testing.T) {
		old := source(t, pki.Issue(t, "expired", tlsutil.Request{
			Kind: tlsutil.KindMember, Name: "n8", DNSNames: []string{"localhost"},
			NotBefore: time.Now().Add(-48 * time.Hour), NotAfter: time.Now().Add(-24 * time.Hour),
		}))
		_, _, ce := handshake(t, tlsutil.ServerConfig(old, []*tlsutil.Source{ca}, false), tlsutil.ClientConfig(nil, []*tlsutil.Source{ca}))
		var ci x509.CertificateInvalidError
		if !errors.As(ce, &ci) || ci.Reason != x509.Expired {
			t.Fatalf("client error %v, want expired", ce)
		}
	})
	t.Run("union of CA pools", func(t *testing.T) {
		otherCA := source(t, tlsutil.Files{CAFile: other.CAFile})
		stranger := source(t, other.Client(t, "carol"))
		_, se, ce := handshake(t, tlsutil.ServerConfig(serverSrc, []*tlsutil.Source{ca, otherCA}, true), tlsutil.ClientConfig(stranger, []*tlsutil.Source{ca}))
		if se != nil || ce != nil {
			t.Fatalf("server %v, client %v", se, ce)
		}
	})
}

func TestSourceReload(t *testing.T) {
	pki := tlstest.New(t, "cluster")
	files := pki.Member(t, "n1")
	src := source(t, files)
	first, _, gen := src.Current()

	// Unchanged files: nothing reloads.
	if c, _, g := src.Current(); g != gen || c != first {
		t.Fatal("reloaded unchanged files")
	}

	// A new certificate under the same names is picked up.
	pki.Member(t, "n1")
	second, _, gen2 := src.Current()
	if gen2 == gen || second.Leaf.SerialNumber.Cmp(first.Leaf.SerialNumber) == 0 {
		t.Fatal("rewritten certificate not reloaded")
	}

	// A key that does not match (written before its certificate) keeps
	// the previous pair and says why.
	other := pki.Member(t, "n2")
	key, err := os.ReadFile(other.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(files.KeyFile, key, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := src.Reload(); !errors.Is(err, tlsutil.ErrConfig) {
		t.Fatalf("Reload of a mismatched pair: %v, want ErrConfig", err)
	}
	if c, _, g := src.Current(); g != gen2 || c != second {
		t.Fatal("a pair that does not load replaced the current one")
	}

	// A CA bundle that gains a CA: both verify.
	next := tlstest.New(t, "next")
	bundle := append(pki.CA.CertPEM, next.CA.CertPEM...)
	caFile := t.TempDir() + "/bundle.pem"
	if err := os.WriteFile(caFile, pki.CA.CertPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	roots := source(t, tlsutil.Files{CAFile: caFile})
	nextServer := source(t, next.Member(t, "n1"))
	if _, _, ce := handshake(t, tlsutil.ServerConfig(nextServer, nil, false), tlsutil.ClientConfig(nil, []*tlsutil.Source{roots})); ce == nil {
		t.Fatal("a CA not in the bundle verified")
	}
	if err := os.WriteFile(caFile, bundle, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, ce := handshake(t, tlsutil.ServerConfig(nextServer, nil, false), tlsutil.ClientConfig(nil, []*tlsutil.Source{roots})); ce != nil {
		t.Fatalf("after adding the CA to the bundle: %v", ce)
	}
}

func TestNewSourceErrors(t *testing.T) {
	pki := tlstest.New(t, "cluster")
	good := pki.Member(t, "n1")
	for name, f := range map[string]tlsutil.Files{
		"nothing":          {},
		"cert without key": {CertFile: good.CertFile},
		"missing file":     {CertFile: good.CertFile, KeyFile: good.KeyFile + ".nope"},
		"CA not PEM":       {CAFile: good.KeyFile},
		"key as cert":      {CertFile: good.KeyFile, KeyFile: good.KeyFile},
	} {
		if _, err := tlsutil.NewSource(f, nil); !errors.Is(err, tlsutil.ErrConfig) {
			t.Errorf("%s: %v, want ErrConfig", name, err)
		}
	}
}

func TestIssue(t *testing.T) {
	pki := tlstest.New(t, "cluster")
	f := pki.Member(t, "n1", "n1.example", "10.0.0.1")
	pair, err := tls.LoadX509KeyPair(f.CertFile, f.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	leaf := pair.Leaf
	if id, ok := tlsutil.MemberID(leaf); !ok || id != "n1" {
		t.Fatalf("member id %q %v", id, ok)
	}
	if len(leaf.DNSNames) != 1 || leaf.DNSNames[0] != "n1.example" || len(leaf.IPAddresses) != 1 || !leaf.IPAddresses[0].Equal(net.ParseIP("10.0.0.1")) {
		t.Fatalf("hosts %v %v", leaf.DNSNames, leaf.IPAddresses)
	}
	if leaf.NotAfter.After(pki.CA.Cert.NotAfter) {
		t.Fatal("certificate outlives its CA")
	}
	c := pki.Client(t, "alice")
	cp, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := tlsutil.MemberID(cp.Leaf); ok {
		t.Fatal("a client certificate names a member")
	}
	if len(cp.Leaf.ExtKeyUsage) != 1 || cp.Leaf.ExtKeyUsage[0] != x509.ExtKeyUsageClientAuth {
		t.Fatalf("client usages %v", cp.Leaf.ExtKeyUsage)
	}
	if err := tlsutil.WriteFile(f.CertFile, []byte("x"), 0o644); err == nil {
		t.Fatal("WriteFile overwrote a file")
	}
	ca, err := tlsutil.LoadCA(pki.CAFile, pki.CAKeyFile)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tlsutil.LoadCA(f.CertFile, f.KeyFile); !errors.Is(err, tlsutil.ErrConfig) {
		t.Fatalf("LoadCA of a member certificate: %v", err)
	}
	if _, _, err := ca.Issue(tlsutil.Request{Kind: tlsutil.KindClient}); !errors.Is(err, tlsutil.ErrConfig) {
		t.Fatalf("Issue without a name: %v", err)
	}
}

func TestMemberID(t *testing.T) {
	for in, want := range map[string]string{
		"cairn://member/n1":   "n1",
		"cairn://member/":     "",
		"cairn://member/a/b":  "",
		"cairn://other/n1":    "",
		"https://member/n1":   "",
		"spiffe://member/n1x": "",
	} {
		u, err := tlsutil.MemberURI("x").Parse(in)
		if err != nil {
			t.Fatal(err)
		}
		got, ok := tlsutil.MemberID(&x509.Certificate{URIs: []*url.URL{u}})
		if got != want || ok != (want != "") {
			t.Errorf("%s: %q %v, want %q", in, got, ok, want)
		}
	}
}

// An IP address sends no SNI, so the host dialled must reach the check:
// DialTLSContext hands it over, and ClientConfig alone refuses to guess.
func TestClientChecksIPHosts(t *testing.T) {
	pki := tlstest.New(t, "cluster")
	ca := source(t, tlsutil.Files{CAFile: pki.CAFile})
	serve := func(t *testing.T, hosts ...string) string {
		srv := source(t, pki.Member(t, "n1", hosts...))
		ln, err := tls.Listen("tcp", "127.0.0.1:0", tlsutil.ServerConfig(srv, nil, false))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				_ = c.(*tls.Conn).Handshake()
				c.Close()
			}
		}()
		return ln.Addr().String()
	}
	dial := tlsutil.DialTLSContext(tlsutil.ClientConfig(nil, []*tlsutil.Source{ca}), nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	good := serve(t, "127.0.0.1")
	c, err := dial(ctx, "tcp", good)
	if err != nil {
		t.Fatalf("certificate for 127.0.0.1: %v", err)
	}
	c.Close()

	wrong := serve(t, "localhost", "10.9.9.9")
	var he x509.HostnameError
	if _, err := dial(ctx, "tcp", wrong); !errors.As(err, &he) {
		t.Fatalf("certificate without 127.0.0.1: %v, want x509.HostnameError", err)
	}

	raw, err := net.Dial("tcp", good)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	if err := tls.Client(raw, tlsutil.ClientConfig(nil, []*tlsutil.Source{ca})).HandshakeContext(ctx); err == nil || !strings.Contains(err.Error(), "no host name") {
		t.Fatalf("ClientConfig without a host: %v, want a refusal", err)
	}
}

// VerifyMember remembers a verified leaf, and forgets it when the CA pool
// changes: a member of a CA taken out of the bundle is refused at once.
func TestVerifyMemberCache(t *testing.T) {
	pki := tlstest.New(t, "cluster")
	caFile := t.TempDir() + "/ca.pem"
	if err := os.WriteFile(caFile, pki.CA.CertPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	src := source(t, tlsutil.Files{CAFile: caFile})
	f := pki.Member(t, "n2")
	pair, err := tls.LoadX509KeyPair(f.CertFile, f.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	chain := []*x509.Certificate{pair.Leaf}
	for range 3 {
		if id, err := src.VerifyMember(chain); err != nil || id != "n2" {
			t.Fatalf("VerifyMember: %q %v", id, err)
		}
	}
	other := tlstest.New(t, "other")
	if err := os.WriteFile(caFile, other.CA.CertPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := src.VerifyMember(chain); !errors.Is(err, tlsutil.ErrNotMember) {
		t.Fatalf("after the CA left the bundle: %v, want ErrNotMember", err)
	}
	client := pki.Client(t, "alice")
	cp, err := tls.LoadX509KeyPair(client.CertFile, client.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(caFile, pki.CA.CertPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := src.VerifyMember([]*x509.Certificate{cp.Leaf}); !errors.Is(err, tlsutil.ErrNotMember) {
		t.Fatalf("a client certificate: %v, want ErrNotMember", err)
	}
}
