// Package tlstest issues throwaway certificates for tests: a CA and
// member and client certificates under a test's directory.
package tlstest

import (
	"net"
	"os"
	"path/filepath"
	"testing"

	"github.com/cairn-db/cairn/internal/tlsutil"
)

// PKI is a test CA whose files live in Dir.
type PKI struct {
	Dir    string
	CA     *tlsutil.CA
	CAFile string
	// CAKeyFile holds the CA's key, for `cairn cert` tests.
	CAKeyFile string
}

// New creates a CA named name with its files in a new directory under
// tb.TempDir().
func New(tb testing.TB, name string) *PKI {
	tb.Helper()
	dir := filepath.Join(tb.TempDir(), name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		tb.Fatal(err)
	}
	ca, keyPEM, err := tlsutil.NewCA(name, 0)
	if err != nil {
		tb.Fatal(err)
	}
	p := &PKI{Dir: dir, CA: ca, CAFile: filepath.Join(dir, "ca.pem"), CAKeyFile: filepath.Join(dir, "ca-key.pem")}
	write(tb, p.CAFile, ca.CertPEM, 0o644)
	write(tb, p.CAKeyFile, keyPEM, 0o600)
	return p
}

// Loopback are the hosts a member certificate is valid for by default.
var Loopback = []string{"localhost", "127.0.0.1", "::1"}

// Member issues a member certificate for id valid for hosts (names or
// IPs; Loopback when none) and returns its files with the CA file.
func (p *PKI) Member(tb testing.TB, id string, hosts ...string) tlsutil.Files {
	tb.Helper()
	if len(hosts) == 0 {
		hosts = Loopback
	}
	req := tlsutil.Request{Kind: tlsutil.KindMember, Name: id}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			req.IPs = append(req.IPs, ip)
		} else {
			req.DNSNames = append(req.DNSNames, h)
		}
	}
	return p.Issue(tb, "member-"+id, req)
}

// Client issues a client certificate named name.
func (p *PKI) Client(tb testing.TB, name string) tlsutil.Files {
	tb.Helper()
	return p.Issue(tb, "client-"+name, tlsutil.Request{Kind: tlsutil.KindClient, Name: name})
}

// Issue issues req and writes it as base.pem and base-key.pem, replacing
// earlier files of that name (so tests can rotate).
func (p *PKI) Issue(tb testing.TB, base string, req tlsutil.Request) tlsutil.Files {
	tb.Helper()
	certPEM, keyPEM, err := p.CA.Issue(req)
	if err != nil {
		tb.Fatal(err)
	}
	f := tlsutil.Files{
		CertFile: filepath.Join(p.Dir, base+".pem"),
		KeyFile:  filepath.Join(p.Dir, base+"-key.pem"),
		CAFile:   p.CAFile,
	}
	write(tb, f.CertFile, certPEM, 0o644)
	write(tb, f.KeyFile, keyPEM, 0o600)
	return f
}

// write replaces name atomically (a rename), as a careful operator or a
// secrets agent does.
func write(tb testing.TB, name string, data []byte, perm os.FileMode) {
	tb.Helper()
	tmp := name + ".tmp"
	if err := os.WriteFile(tmp, data, perm); err != nil {
		tb.Fatal(err)
	}
	if err := os.Rename(tmp, name); err != nil {
		tb.Fatal(err)
	}
}
