package node

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cairn-db/cairn/auth"
	"github.com/cairn-db/cairn/httpapi"
	"github.com/cairn-db/cairn/internal/tlsutil"
	"github.com/cairn-db/cairn/internal/tlsutil/tlstest"
)

// TestMirrorTLSAndAuthSource: a standby follows a source that serves
// TLS only (client certificates required) with access control on, as a
// mirror user whose role reads the whole keyspace: its member-local
// credentials are the source's CA, a client certificate and the user's
// password. A user without that role cannot read the stream.
func TestMirrorTLSAndAuthSource(t *testing.T) {
	pki := tlstest.New(t, "source-ca")
	sc := tlsTestConfig(t, pki, "s1")
	sc.Bootstrap = true
	sc.BcryptCost = auth.MinBcryptCost
	src := startNode(t, sc)
	waitFor(t, "source ready", 10*time.Second, src.Ready)
	ctx := context.Background()
	putN(t, src, "a", 20) // before access control: Write is not stamped
	hash := func(pw string) []byte {
		h, err := auth.HashPasswordCost(pw, auth.MinBcryptCost)
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	for _, c := range []auth.Change{
		{Kind: auth.AddUser, User: "root", PasswordHash: hash("root-pw")},
		{Kind: auth.GrantRole, User: "root", Role: auth.RootRole},
		{Kind: auth.AddRole, Role: "mirror"},
		{Kind: auth.GrantPermission, Role: "mirror", Permission: auth.Permission{Key: "", Prefix: true, Access: auth.Read}},
		{Kind: auth.AddUser, User: "dr", PasswordHash: hash("dr-pw")},
		{Kind: auth.GrantRole, User: "dr", Role: "mirror"},
		{Kind: auth.AddRole, Role: "some"},
		{Kind: auth.GrantPermission, Role: "some", Permission: auth.Permission{Key: "a/", Prefix: true, Access: auth.Read}},
		{Kind: auth.AddUser, User: "partial", PasswordHash: hash("partial-pw")},
		{Kind: auth.GrantRole, User: "partial", Role: "some"},
		{Kind: auth.Enable, TokenKey: key},
	} {
		if _, err := src.ChangeAuth(ctx, c); err != nil {
			t.Fatalf("auth change %v: %v", c.Kind, err)
		}
	}
	client := pki.Client(t, "standby-m1")

	// A user whose role reads part of the keyspace only: refused.
	bad := startStandalone(t, "m0", func(c *Config) {
		c.MirrorCAFile, c.MirrorCertFile, c.MirrorKeyFile = client.CAFile, client.CertFile, client.KeyFile
		c.MirrorUser, c.MirrorPassword = "partial", "partial-pw"
	})
	if _, err := bad.MirrorStart(ctx, mirrorStart(src.HTTPURL())); err != nil {
		t.Fatalf("start (the source's status is open): %v", err)
	}
	waitFor(t, "the partial user refused", 10*time.Second, func() error {
		st, _ := bad.MirrorStatus(ctx, httpapi.MirrorStatusOptions{})
		if !strings.Contains(st.LastError, "permission_denied") {
			return errorf("last error %q", st.LastError)
		}
		return nil
	})
	if bad.fsm.Revision() != 0 {
		t.Fatal("a refused mirror applied records")
	}

	standby := startStandalone(t, "m1", func(c *Config) {
		c.MirrorCAFile, c.MirrorCertFile, c.MirrorKeyFile = client.CAFile, client.CertFile, client.KeyFile
		c.MirrorUser, c.MirrorPassword = "dr", "dr-pw"
	})
	if _, err := standby.MirrorStart(ctx, mirrorStart(src.HTTPURL())); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the standby caught up over TLS as the mirror user", 20*time.Second, caughtUp(src, standby))
}

// TestMirrorClientReloadsCertificates: the mirror client reads its
// certificate, key and CA through a reloading source, as the member's own
// TLS files are: after the client certificate's files are rewritten, the
// next connection presents the new certificate; after the source moves to
// a certificate of another CA, connections fail until the mirror CA file
// is rewritten with that CA, and then succeed. No restart, no new client.
func TestMirrorClientReloadsCertificates(t *testing.T) {
	pki1, pki2 := tlstest.New(t, "source-ca-1"), tlstest.New(t, "source-ca-2")
	serverCert := func(p *tlstest.PKI) *tls.Certificate {
		f := p.Member(t, "src")
		c, err := tls.LoadX509KeyPair(f.CertFile, f.KeyFile)
		if err != nil {
			t.Fatal(err)
		}
		return &c
	}
	var current atomic.Pointer[tls.Certificate]
	current.Store(serverCert(pki1))
	// The source stand-in answers the common name of the client
	// certificate each connection presented.
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if len(r.TLS.PeerCertificates) == 0 {
			http.Error(w, "no client certificate", http.StatusUnauthorized)
			return
		}
		_, _ = io.WriteString(w, r.TLS.PeerCertificates[0].Subject.CommonName)
	}))
	// Per handshake: StartTLS adds a certificate of its own to srv.TLS,
	// which a client without SNI (an IP address) would otherwise get.
	srv.TLS = &tls.Config{GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
		return &tls.Config{MinVersion: tls.VersionTLS12, ClientAuth: tls.RequireAnyClientCert,
			Certificates: []tls.Certificate{*current.Load()}}, nil
	}}
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshakes below
	srv.StartTLS()
	defer srv.Close()

	dir := t.TempDir()
	caFile := filepath.Join(dir, "mirror-ca.pem")
	writeFileAtomic(t, caFile, pki1.CA.CertPEM)
	own := pki2.Issue(t, "mirror-client", tlsutil.Request{Kind: tlsutil.KindClient, Name: "standby-a"})
	cfg := Config{MirrorCAFile: caFile, MirrorCertFile: own.CertFile, MirrorKeyFile: own.KeyFile}
	client, err := newMirrorClient(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer client.CloseIdleConnections()
	get := func() (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL, nil)
		if err != nil {
			return "", err
		}
		resp, err := client.Do(req)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			return "", fmt.Errorf("HTTP %d: %s", resp.StatusCode, b)
		}
		return string(b), err
	}
	presents := func(want string) func() error {
		return func() error {
			got, err := get()
			if err != nil {
				return err
			}
			if got != want {
				return fmt.Errorf("the client presented %q, want %q", got, want)
			}
			return nil
		}
	}
	if err := presents("standby-a")(); err != nil {
		t.Fatal(err)
	}

	// A new client certificate in the same files (a rotation).
	pki2.Issue(t, "mirror-client", tlsutil.Request{Kind: tlsutil.KindClient, Name: "standby-b"})
	waitFor(t, "the new client certificate presented", 10*time.Second, presents("standby-b"))

	// The source moves to a certificate of another CA: refused while the
	// mirror CA file names the old one only (new connections: the open
	// ones keep their handshake).
	current.Store(serverCert(pki2))
	srv.CloseClientConnections()
	if _, err := get(); err == nil || !errors.As(err, new(*tls.CertificateVerificationError)) {
		t.Fatalf("a source certificate of an untrusted CA: %v", err)
	}
	writeFileAtomic(t, caFile, pki2.CA.CertPEM)
	waitFor(t, "the source trusted through the rewritten CA file", 10*time.Second, presents("standby-b"))

	// Files that do not load keep the previous ones.
	writeFileAtomic(t, caFile, []byte("not PEM"))
	srv.CloseClientConnections()
	if err := presents("standby-b")(); err != nil {
		t.Fatalf("after a CA file that does not load: %v", err)
	}
}

// writeFileAtomic replaces name with data by a rename.
func writeFileAtomic(t *testing.T, name string, data []byte) {
	t.Helper()
	tmp := name + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, name); err != nil {
		t.Fatal(err)
	}
}
