package cluster

import (
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"path/filepath"

	"github.com/cairn-db/cairn/internal/tlsutil"
	"github.com/cairn-db/cairn/internal/tlsutil/tlstest"
)

// A cluster with Options.TLS runs every member with a member certificate
// of that PKI (node.Config's Peer* files; the client side defaults to
// them), and the harness's HTTP client speaks HTTPS with a client
// certificate of the same CA. The files live in the PKI's directory under
// tlstest's names (member-<id>.pem, member-<id>-key.pem,
// client-harness.pem, ...), so a test rotates them by rewriting them
// (ReissueMember, ReissueClient, or the PKI's own Issue).

// HarnessClientName is the name of the harness's client certificate.
const HarnessClientName = "harness"

// tlsState is a TLS cluster's PKI and the harness's own client source.
type tlsState struct {
	pki    *tlstest.PKI
	client *tlsutil.Source // the harness's client certificate and the CA
}

func newTLSState(tb TB, pki *tlstest.PKI) *tlsState {
	tb.Helper()
	files, err := issue(pki.CA, pki.Dir, pki.CAFile, "client-"+HarnessClientName,
		tlsutil.Request{Kind: tlsutil.KindClient, Name: HarnessClientName})
	if err != nil {
		tb.Fatalf("cluster: %v", err)
	}
	src, err := tlsutil.NewSource(files, nil)
	if err != nil {
		tb.Fatalf("cluster: %v", err)
	}
	// Rotation tests rewrite the files; the harness picks them up at its
	// next handshake.
	src.SetCheckInterval(0)
	return &tlsState{pki: pki, client: src}
}

// memberRequest is the certificate request of member id on the given
// addresses: valid for localhost, 127.0.0.1, ::1 and the addresses' IPs.
func memberRequest(id string, addrs ...string) tlsutil.Request {
	req := tlsutil.Request{Kind: tlsutil.KindMember, Name: id}
	seen := map[string]bool{}
	hosts := append([]string(nil), tlstest.Loopback...)
	for _, a := range addrs {
		if h, _, err := net.SplitHostPort(a); err == nil {
			hosts = append(hosts, h)
		}
	}
	for _, h := range hosts {
		if h == "" || seen[h] {
			continue
		}
		seen[h] = true
		if ip := net.ParseIP(h); ip != nil {
			req.IPs = append(req.IPs, ip)
		} else {
			req.DNSNames = append(req.DNSNames, h)
		}
	}
	return req
}

// issue issues req from ca and writes it as dir/base.pem and
// dir/base-key.pem (replacing them atomically), with caFile as the CA.
func issue(ca *tlsutil.CA, dir, caFile, base string, req tlsutil.Request) (tlsutil.Files, error) {
	certPEM, keyPEM, err := ca.Issue(req)
	if err != nil {
		return tlsutil.Files{}, err
	}
	f := tlsutil.Files{
		CertFile: filepath.Join(dir, base+".pem"),
		KeyFile:  filepath.Join(dir, base+"-key.pem"),
		CAFile:   caFile,
	}
	// The key first: a reader that finds the new key with the old
	// certificate fails to load and keeps what it had until the next
	// check; either order is safe (tlsutil.Source).
	if err := WriteFileAtomic(f.KeyFile, keyPEM, 0o600); err != nil {
		return tlsutil.Files{}, err
	}
	if err := WriteFileAtomic(f.CertFile, certPEM, 0o644); err != nil {
		return tlsutil.Files{}, err
	}
	return f, nil
}

// WriteFileAtomic replaces name with data through a rename, as a careful
// operator or a secrets agent does.
func WriteFileAtomic(name string, data []byte, perm os.FileMode) error {
	tmp := name + ".tmp"
	if err := os.WriteFile(tmp, data, perm); err != nil {
		return err
	}
	return os.Rename(tmp, name)
}

// PKI returns the cluster's PKI (nil without TLS).
func (c *Cluster) PKI() *tlstest.PKI {
	if c.tls == nil {
		return nil
	}
	return c.tls.pki
}

// ClientTLS returns a new client configuration like the harness's own: a
// client certificate of the cluster's CA (not a member's), the members'
// certificates verified against the CA file. Nil without TLS.
func (c *Cluster) ClientTLS() *tls.Config {
	if c.tls == nil {
		return nil
	}
	return tlsutil.ClientConfig(c.tls.client, []*tlsutil.Source{c.tls.client})
}

// ClientFiles returns the harness's client certificate files (zero
// without TLS).
func (c *Cluster) ClientFiles() tlsutil.Files {
	if c.tls == nil {
		return tlsutil.Files{}
	}
	return c.tls.client.Files()
}

// ReissueMember rewrites member idx's certificate and key with a new
// certificate from ca (nil: the cluster's CA) for the same hosts, and
// returns it (PEM). The member picks it up at its next handshake.
func (c *Cluster) ReissueMember(tb TB, idx int, ca *tlsutil.CA) []byte {
	tb.Helper()
	if c.tls == nil {
		tb.Fatalf("cluster: ReissueMember needs Options.TLS")
	}
	if ca == nil {
		ca = c.tls.pki.CA
	}
	cfg := c.Config(idx)
	files, err := issue(ca, c.tls.pki.Dir, c.tls.pki.CAFile, "member-"+cfg.ID, memberRequest(cfg.ID, cfg.RaftAddr, cfg.HTTPAddr))
	if err != nil {
		tb.Fatalf("cluster: %v", err)
	}
	b, err := os.ReadFile(files.CertFile)
	if err != nil {
		tb.Fatalf("cluster: %v", err)
	}
	return b
}

// ReissueClient rewrites the harness's client certificate with a new one
// from ca (nil: the cluster's CA).
func (c *Cluster) ReissueClient(tb TB, ca *tlsutil.CA) {
	tb.Helper()
	if c.tls == nil {
		tb.Fatalf("cluster: ReissueClient needs Options.TLS")
	}
	if ca == nil {
		ca = c.tls.pki.CA
	}
	if _, err := issue(ca, c.tls.pki.Dir, c.tls.pki.CAFile, "client-"+HarnessClientName,
		tlsutil.Request{Kind: tlsutil.KindClient, Name: HarnessClientName}); err != nil {
		tb.Fatalf("cluster: %v", err)
	}
	if err := c.tls.client.Reload(); err != nil {
		tb.Fatalf("cluster: reload the harness's client certificate: %v", err)
	}
}

// memberFiles issues member id's certificate for its addresses and
// returns its files.
func (s *tlsState) memberFiles(id, raftAddr, httpAddr string) (tlsutil.Files, error) {
	f, err := issue(s.pki.CA, s.pki.Dir, s.pki.CAFile, "member-"+id, memberRequest(id, raftAddr, httpAddr))
	if err != nil {
		return f, fmt.Errorf("member %s certificate: %w", id, err)
	}
	return f, nil
}
