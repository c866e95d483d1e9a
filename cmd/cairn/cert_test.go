package main

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/cairn-db/cairn/internal/tlsutil"
)

// runCairn runs the CLI in process as main does: stdout, stderr (with
// main's "cairn: error" line) and the exit status.
func runCairn(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	var out, errOut bytes.Buffer
	err := Run(context.Background(), append([]string{"cairn"}, args...), &out, &errOut)
	if err != nil {
		fmt.Fprintln(&errOut, "cairn:", err)
	}
	return out.String(), errOut.String(), exitCode(err)
}

// docExamples returns the command lines of the sh blocks in docs/cli.md's
// section titled title.
func docExamples(t *testing.T, title string) []string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "..", "docs", "cli.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(data), "\n## "+title+"\n")
	if !ok {
		t.Fatalf("docs/cli.md has no section %q", title)
	}
	section, _, _ = strings.Cut(section, "\n## ")
	var lines []string
	in := false
	for _, l := range strings.Split(section, "\n") {
		switch {
		case strings.HasPrefix(l, "```"):
			in = !in
		case in && strings.TrimSpace(l) != "":
			lines = append(lines, l)
		}
	}
	if len(lines) == 0 {
		t.Fatalf("docs/cli.md, %s: no examples", title)
	}
	return lines
}

// runLine runs one example line verbatim (plain words: no quotes,
// comments or shell syntax, checked here) and fails on a non-zero status.
func runLine(t *testing.T, line string) string {
	t.Helper()
	if strings.ContainsAny(line, "'\"#$|&;<>\\`*") {
		t.Fatalf("example %q needs a shell; keep the examples plain", line)
	}
	words := strings.Fields(line)
	if words[0] != "cairn" {
		t.Fatalf("example %q does not run cairn", line)
	}
	out, errOut, code := runCairn(t, words[1:]...)
	if code != 0 {
		t.Fatalf("%s: exit %d: %s%s", line, code, out, errOut)
	}
	return out
}

func readCert(t *testing.T, name string) *x509.Certificate {
	t.Helper()
	data, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	b, rest := pem.Decode(data)
	if b == nil || b.Type != "CERTIFICATE" || len(bytes.TrimSpace(rest)) != 0 {
		t.Fatalf("%s: not one PEM certificate", name)
	}
	c, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func wantMode(t *testing.T, name string, mode os.FileMode) {
	t.Helper()
	fi, err := os.Stat(name)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != mode {
		t.Errorf("%s: mode %v, want %v", name, fi.Mode().Perm(), mode)
	}
}

// verifies checks that the CA in caFile signed cert for usage.
func verifies(t *testing.T, cert *x509.Certificate, caFile string, usage x509.ExtKeyUsage) error {
	t.Helper()
	roots := x509.NewCertPool()
	roots.AddCert(readCert(t, caFile))
	_, err := cert.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{usage}})
	return err
}

// TestCertDocExamples runs docs/cli.md's `cairn cert` examples verbatim
// in an empty directory and checks what they wrote: the files, their
// modes, the member and client certificates' names, hosts and uses, and
// that the CA signed them. The examples in the commands' help must be
// among them.
func TestCertDocExamples(t *testing.T) {
	examples := docExamples(t, "Certificates")
	for _, help := range helpExamples(certCommand()) {
		if !slices.Contains(examples, help) {
			t.Errorf("help example %q is not in docs/cli.md's Certificates section", help)
		}
	}
	t.Chdir(t.TempDir())
	var printed []string
	for _, line := range examples {
		printed = append(printed, strings.Fields(runLine(t, line))...)
	}
	files := map[string]os.FileMode{
		"ca.pem": 0o644, "ca-key.pem": 0o600,
		"member-n1.pem": 0o644, "member-n1-key.pem": 0o600,
		"member-n2.pem": 0o644, "member-n2-key.pem": 0o600,
		"client-admin.pem": 0o644, "client-admin-key.pem": 0o600,
	}
	var want []string
	for name, mode := range files {
		want = append(want, filepath.Join("certs", name))
		wantMode(t, filepath.Join("certs", name), mode)
	}
	slices.Sort(want)
	slices.Sort(printed)
	if !reflect.DeepEqual(printed, want) {
		t.Fatalf("printed %q, want %q", printed, want)
	}
	caFile := filepath.Join("certs", "ca.pem")
	if ca := readCert(t, caFile); !ca.IsCA || ca.Subject.CommonName != "cairn-ca" {
		t.Fatalf("CA %+v", ca.Subject)
	}
	if _, err := tlsutil.LoadCA(caFile, filepath.Join("certs", "ca-key.pem")); err != nil {
		t.Fatalf("the CA does not load: %v", err)
	}

	for _, m := range []struct {
		id    string
		names []string
		ips   []string
	}{
		{"n1", []string{"n1.example.com", "localhost"}, []string{"10.0.0.1", "127.0.0.1"}},
		{"n2", []string{"n2.example.com", "localhost"}, []string{"10.0.0.2", "127.0.0.1"}},
	} {
		f := tlsutil.Files{CertFile: filepath.Join("certs", "member-"+m.id+".pem"), KeyFile: filepath.Join("certs", "member-"+m.id+"-key.pem"), CAFile: caFile}
		cert := readCert(t, f.CertFile)
		if id, ok := tlsutil.MemberID(cert); !ok || id != m.id {
			t.Errorf("member %s's certificate names member %q %v", m.id, id, ok)
		}
		var ips []string
		for _, ip := range cert.IPAddresses {
			ips = append(ips, ip.String())
		}
		if !reflect.DeepEqual(cert.DNSNames, m.names) || !reflect.DeepEqual(ips, m.ips) {
			t.Errorf("member %s valid for %q %q, want %q %q", m.id, cert.DNSNames, ips, m.names, m.ips)
		}
		if !reflect.DeepEqual(cert.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}) {
			t.Errorf("member %s's uses %v, want server and client", m.id, cert.ExtKeyUsage)
		}
		for _, usage := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
			if err := verifies(t, cert, caFile, usage); err != nil {
				t.Errorf("member %s: %v", m.id, err)
			}
		}
		for _, host := range append(m.names, m.ips...) {
			if err := cert.VerifyHostname(host); err != nil {
				t.Errorf("member %s: %v", m.id, err)
			}
		}
		// Usable as a member: the key matches and the peer CA takes it.
		src, err := tlsutil.NewSource(f, nil)
		if err != nil {
			t.Fatal(err)
		}
		if id, err := src.VerifyMember([]*x509.Certificate{cert}); err != nil || id != m.id {
			t.Errorf("member %s verifies as %q: %v", m.id, id, err)
		}
	}

	f := tlsutil.Files{CertFile: filepath.Join("certs", "client-admin.pem"), KeyFile: filepath.Join("certs", "client-admin-key.pem"), CAFile: caFile}
	cert := readCert(t, f.CertFile)
	if cert.Subject.CommonName != "admin" || len(cert.URIs) != 0 || len(cert.DNSNames)+len(cert.IPAddresses) != 0 {
		t.Errorf("client certificate: %v, URIs %v, hosts %v %v", cert.Subject, cert.URIs, cert.DNSNames, cert.IPAddresses)
	}
	if !reflect.DeepEqual(cert.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}) {
		t.Errorf("client uses %v, want client only", cert.ExtKeyUsage)
	}
	if err := verifies(t, cert, caFile, x509.ExtKeyUsageClientAuth); err != nil {
		t.Error(err)
	}
	if err := verifies(t, cert, caFile, x509.ExtKeyUsageServerAuth); err == nil {
		t.Error("a client certificate verifies for server use")
	}
	src, err := tlsutil.NewSource(f, nil)
	if err != nil {
		t.Fatal(err)
	}
	if id, err := src.VerifyMember([]*x509.Certificate{cert}); err == nil {
		t.Errorf("a client certificate is member %q", id)
	}
}

// helpExamples returns the "cairn cert ..." example lines of a command's
// and its subcommands' descriptions.
func helpExamples(c *cli.Command) []string {
	var out []string
	for _, l := range strings.Split(c.Description, "\n") {
		if l = strings.TrimSpace(l); strings.HasPrefix(l, "cairn ") {
			out = append(out, l)
		}
	}
	for _, s := range c.Subcommands {
		out = append(out, helpExamples(s)...)
	}
	return out
}

// TestCertRefusesToOverwrite: an existing certificate or key is never
// replaced (exit 2 naming it), and nothing else is written.
func TestCertRefusesToOverwrite(t *testing.T) {
	t.Chdir(t.TempDir())
	runLine(t, "cairn cert ca create")
	ca, _ := os.ReadFile("ca.pem")
	_, errOut, code := runCairn(t, "cert", "ca", "create")
	if code != exitUsage || !strings.Contains(errOut, "ca.pem already exists") {
		t.Fatalf("second CA: exit %d: %s", code, errOut)
	}
	if again, _ := os.ReadFile("ca.pem"); !bytes.Equal(again, ca) {
		t.Fatal("ca.pem changed")
	}
	// Only the key exists: refused, and no certificate left behind.
	if err := os.WriteFile("member-n1-key.pem", []byte("mine"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, errOut, code = runCairn(t, "cert", "member", "create", "--id", "n1")
	if code != exitUsage || !strings.Contains(errOut, "member-n1-key.pem already exists") {
		t.Fatalf("existing member key: exit %d: %s", code, errOut)
	}
	if _, err := os.Stat("member-n1.pem"); err == nil {
		t.Fatal("a certificate was written next to a key it does not match")
	}
	if key, _ := os.ReadFile("member-n1-key.pem"); string(key) != "mine" {
		t.Fatal("the existing key changed")
	}
	runLine(t, "cairn cert client create --name alice")
	_, errOut, code = runCairn(t, "cert", "client", "create", "--name", "alice")
	if code != exitUsage || !strings.Contains(errOut, "client-alice.pem already exists") {
		t.Fatalf("second client: exit %d: %s", code, errOut)
	}
}

// TestCertDays: --days sets the validity; a certificate never outlasts
// its CA (with a note); out-of-range days are usage errors.
func TestCertDays(t *testing.T) {
	t.Chdir(t.TempDir())
	near := func(name string, days int) {
		t.Helper()
		c := readCert(t, name)
		want := time.Now().Add(time.Duration(days) * 24 * time.Hour)
		if d := c.NotAfter.Sub(want); d < -time.Minute || d > time.Minute {
			t.Errorf("%s: not after %v, want about %v", name, c.NotAfter, want)
		}
		if c.NotBefore.After(time.Now()) {
			t.Errorf("%s: not valid yet (%v)", name, c.NotBefore)
		}
	}
	runLine(t, "cairn cert ca create --days 30 --name test-ca")
	near("ca.pem", 30)
	runLine(t, "cairn cert member create --id n1 --days 10")
	near("member-n1.pem", 10)
	runLine(t, "cairn cert client create --name bob --days 2")
	near("client-bob.pem", 2)
	_, errOut, code := runCairn(t, "cert", "client", "create", "--name", "carol")
	if code != 0 || !strings.Contains(errOut, "expires on") {
		t.Fatalf("a default validity past the CA's: exit %d: %q", code, errOut)
	}
	near("client-carol.pem", 30)

	dir := t.TempDir()
	runLine(t, "cairn cert ca create --dir "+dir)
	near(filepath.Join(dir, "ca.pem"), 1825)
	runLine(t, "cairn cert member create --id n2 --dir "+dir)
	near(filepath.Join(dir, "member-n2.pem"), 365)
	for _, days := range []string{"0", "-1", "36501", "x"} {
		if _, errOut, code := runCairn(t, "cert", "member", "create", "--id", "n3", "--dir", dir, "--days", days); code != exitUsage {
			t.Errorf("--days %s: exit %d: %s", days, code, errOut)
		}
	}
}

// TestCertFlags: hosts repeated and comma-separated, IPv6, duplicates;
// a CA from another directory; bad input is a usage error that writes
// nothing.
func TestCertFlags(t *testing.T) {
	t.Chdir(t.TempDir())
	runLine(t, "cairn cert ca create --dir ca")
	runLine(t, "cairn cert member create --id db-1.east --host a.example,10.1.2.3 --host ::1 --host A.example --host localhost,127.0.0.1 --dir out --ca ca/ca.pem --ca-key ca/ca-key.pem")
	c := readCert(t, filepath.Join("out", "member-db-1.east.pem"))
	if want := []string{"a.example", "localhost"}; !reflect.DeepEqual(c.DNSNames, want) {
		t.Errorf("names %q, want %q", c.DNSNames, want)
	}
	if want := []net.IP{net.ParseIP("10.1.2.3"), net.ParseIP("::1"), net.ParseIP("127.0.0.1")}; len(c.IPAddresses) != len(want) ||
		!slices.EqualFunc(c.IPAddresses, want, net.IP.Equal) {
		t.Errorf("IPs %v, want %v", c.IPAddresses, want)
	}
	if id, _ := tlsutil.MemberID(c); id != "db-1.east" {
		t.Errorf("member %q", id)
	}

	for _, args := range [][]string{
		{"member", "create"},
		{"member", "create", "--id", "a/b"},
		{"member", "create", "--id", "../n1"},
		{"member", "create", "--id", "n1", "--host", "http://n1:8001"},
		{"member", "create", "--id", "n1", "--host", "n1:8001"},
		{"member", "create", "--id", "n1", "--host", "bad host"},
		{"member", "create", "--id", "n1", "extra"},
		{"member", "create", "--id", "n1"}, // no CA in the current directory
		{"member", "create", "--id", "n1", "--ca", "out/member-db-1.east.pem", "--ca-key", "out/member-db-1.east-key.pem"}, // not a CA
		{"member", "create", "--id", "n1", "--ca", "ca/ca.pem", "--ca-key", "out/member-db-1.east-key.pem"},                // not its key
		{"client", "create"},
		{"client", "create", "--name", "a b"},
		{"ca", "create", "--name", ""},
		{"ca", "create", "--bogus"},
	} {
		_, errOut, code := runCairn(t, append([]string{"cert"}, args...)...)
		if code != exitUsage {
			t.Errorf("cairn cert %q: exit %d, want %d: %s", args, code, exitUsage, errOut)
		}
	}
	if _, errOut, _ := runCairn(t, "cert", "member", "create", "--id", "n1"); !strings.Contains(errOut, "cairn cert ca create") {
		t.Errorf("a missing CA does not say how to make one: %s", errOut)
	}
	entries, _ := os.ReadDir(".")
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if !reflect.DeepEqual(names, []string{"ca", "out"}) {
		t.Errorf("refused commands wrote %q", names)
	}
}
