package main

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/cairn-db/cairn/internal/tlsutil"
)

// File modes of what `cairn cert` writes: certificates are public, keys
// are the owner's alone.
const (
	certFileMode fs.FileMode = 0o644
	keyFileMode  fs.FileMode = 0o600
	certDirMode  fs.FileMode = 0o755
)

// Default validities in days (tlsutil's defaults) and the longest allowed.
const (
	defaultCADays   = 1825
	defaultCertDays = 365
	maxDays         = 36500
)

// fileName is what a member id or client name must look like: it becomes
// part of a file name (and, for a member, its certificate's URI SAN).
var fileName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)

// certCommand is `cairn cert`: a CA, member certificates and client
// certificates, without openssl (docs/cli.md, docs/security.md).
func certCommand() *cli.Command {
	// Each command gets its own flag values.
	dirFlag := func() cli.Flag {
		return &cli.StringFlag{Name: "dir", Value: ".", Usage: "directory to write the files to (created if missing)"}
	}
	daysFlag := func(def int) cli.Flag {
		return &cli.IntFlag{Name: "days", Value: def, Usage: "validity in days"}
	}
	// What to do when the files exist (default: refuse), and --json.
	existFlags := func() []cli.Flag {
		return []cli.Flag{
			&cli.BoolFlag{Name: "if-missing", Usage: "when both files exist, keep them and exit 0 (one of them alone is still refused); for set-up steps that run again"},
			&cli.BoolFlag{Name: "force", Usage: "replace existing files (each written to a temporary file and renamed over the old one); for rotation"},
			jsonFlag(),
		}
	}
	caFlags := func() []cli.Flag {
		return []cli.Flag{
			&cli.StringFlag{Name: "ca", Usage: "the CA's certificate (default: DIR/ca.pem)"},
			&cli.StringFlag{Name: "ca-key", Usage: "the CA's key (default: DIR/ca-key.pem)"},
		}
	}
	return &cli.Command{
		Name:  "cert",
		Usage: "create a CA, member certificates and client certificates for TLS",
		Description: `Files go to the current directory (or --dir); an existing file is not
overwritten (--if-missing keeps an existing pair and succeeds; --force
replaces it). Certificates are written with mode 0644, keys with 0600.
Example:
   cairn cert ca create --dir certs
   cairn cert member create --id n1 --host n1.example.com,10.0.0.1 --dir certs
   cairn cert client create --name admin --dir certs`,
		Subcommands: []*cli.Command{
			{
				Name: "ca", Usage: "the cluster's certificate authority",
				Subcommands: []*cli.Command{{
					Name: "create", Usage: "create a CA: DIR/ca.pem and DIR/ca-key.pem", ArgsUsage: " ",
					Description: "Example:\n   cairn cert ca create --dir certs",
					Flags: slices.Concat([]cli.Flag{dirFlag(),
						&cli.StringFlag{Name: "name", Value: "cairn-ca", Usage: "the CA's common name"},
						daysFlag(defaultCADays)}, existFlags()),
					Action: certCACreate,
				}},
			},
			{
				Name: "member", Usage: "member certificates (server and client use, naming the member)",
				Subcommands: []*cli.Command{{
					Name: "create", Usage: "create a member certificate: DIR/member-ID.pem and DIR/member-ID-key.pem", ArgsUsage: " ",
					Description: `The certificate is valid for the --host names and IP addresses, and always
for localhost and 127.0.0.1 (local health checks).
Example:
   cairn cert member create --id n1 --host n1.example.com,10.0.0.1 --dir certs`,
					Flags: slices.Concat([]cli.Flag{
						&cli.StringFlag{Name: "id", Usage: "the member's id (required)"},
						&cli.StringSliceFlag{Name: "host", Usage: "host name or IP address the member serves on (repeatable, comma-separated)"},
						dirFlag()}, caFlags(), []cli.Flag{daysFlag(defaultCertDays)}, existFlags()),
					Action: certMemberCreate,
				}},
			},
			{
				Name: "client", Usage: "client certificates (client use only; not a member)",
				Subcommands: []*cli.Command{{
					Name: "create", Usage: "create a client certificate: DIR/client-NAME.pem and DIR/client-NAME-key.pem", ArgsUsage: " ",
					Description: "Example:\n   cairn cert client create --name admin --dir certs",
					Flags: slices.Concat([]cli.Flag{
						&cli.StringFlag{Name: "name", Usage: "the client's name (required)"},
						dirFlag()}, caFlags(), []cli.Flag{daysFlag(defaultCertDays)}, existFlags()),
					Action: certClientCreate,
				}},
			},
		},
	}
}

func certCACreate(c *cli.Context) error {
	if err := args(c, 0, "no arguments"); err != nil {
		return err
	}
	validity, err := certDays(c)
	if err != nil {
		return err
	}
	name := strings.TrimSpace(c.String("name"))
	if name == "" {
		return usageError("--name is empty")
	}
	dir := c.String("dir")
	certFile, keyFile := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "ca-key.pem")
	if keep, err := checkExisting(c, certFile, keyFile); err != nil || keep {
		return err
	}
	ca, keyPEM, err := tlsutil.NewCA(name, validity)
	if err != nil {
		return err
	}
	return writePair(c, certFile, ca.CertPEM, keyFile, keyPEM)
}

func certMemberCreate(c *cli.Context) error {
	if err := args(c, 0, "no arguments"); err != nil {
		return err
	}
	id := c.String("id")
	if id == "" {
		return usageError("member create needs --id")
	}
	if !fileName.MatchString(id) {
		return usageError("--id %q: use letters, digits, '.', '_' and '-' (starting with a letter or digit)", id)
	}
	req := tlsutil.Request{Kind: tlsutil.KindMember, Name: id}
	var err error
	if req.DNSNames, req.IPs, err = certHosts(c.StringSlice("host")); err != nil {
		return err
	}
	return issue(c, req, "member-"+id)
}

func certClientCreate(c *cli.Context) error {
	if err := args(c, 0, "no arguments"); err != nil {
		return err
	}
	name := c.String("name")
	if name == "" {
		return usageError("client create needs --name")
	}
	if !fileName.MatchString(name) {
		return usageError("--name %q: use letters, digits, '.', '_' and '-' (starting with a letter or digit)", name)
	}
	return issue(c, tlsutil.Request{Kind: tlsutil.KindClient, Name: name}, "client-"+name)
}

// issue issues req with the CA of --ca and --ca-key and writes it as
// DIR/base.pem and DIR/base-key.pem.
func issue(c *cli.Context, req tlsutil.Request, base string) error {
	validity, err := certDays(c)
	if err != nil {
		return err
	}
	req.Validity = validity
	dir := c.String("dir")
	caFile, caKeyFile := c.String("ca"), c.String("ca-key")
	if caFile == "" {
		caFile = filepath.Join(dir, "ca.pem")
	}
	if caKeyFile == "" {
		caKeyFile = filepath.Join(dir, "ca-key.pem")
	}
	certFile, keyFile := filepath.Join(dir, base+".pem"), filepath.Join(dir, base+"-key.pem")
	if keep, err := checkExisting(c, certFile, keyFile); err != nil || keep {
		return err
	}
	ca, err := tlsutil.LoadCA(caFile, caKeyFile)
	if err != nil {
		return usageError("%v (create a CA with `cairn cert ca create`, or name it with --ca and --ca-key)", err)
	}
	certPEM, keyPEM, err := ca.Issue(req)
	if err != nil {
		return usageError("%v", err)
	}
	if end := time.Now().Add(validity); end.After(ca.Cert.NotAfter) {
		fmt.Fprintf(c.App.ErrWriter, "cairn: note: the CA %s expires on %s, and so does this certificate\n",
			caFile, ca.Cert.NotAfter.UTC().Format(time.DateOnly))
	}
	return writePair(c, certFile, certPEM, keyFile, keyPEM)
}

// certDays is --days as a validity.
func certDays(c *cli.Context) (time.Duration, error) {
	days := c.Int("days")
	if days < 1 || days > maxDays {
		return 0, usageError("--days %d: use 1 to %d", days, maxDays)
	}
	return time.Duration(days) * 24 * time.Hour, nil
}

// certHosts splits --host values (repeatable, comma-separated) into names
// and IP addresses, adding localhost and 127.0.0.1.
func certHosts(values []string) ([]string, []net.IP, error) {
	var names []string
	var ips []net.IP
	for _, v := range values {
		for _, h := range splitList(v) {
			h = strings.TrimSuffix(strings.TrimPrefix(h, "["), "]")
			if ip := net.ParseIP(h); ip != nil {
				if !slices.ContainsFunc(ips, ip.Equal) {
					ips = append(ips, ip)
				}
				continue
			}
			if !validHostName(h) {
				return nil, nil, usageError("--host %q: not a host name or IP address (give names and addresses without scheme or port)", h)
			}
			if h = strings.ToLower(h); !slices.Contains(names, h) {
				names = append(names, h)
			}
		}
	}
	if !slices.Contains(names, "localhost") {
		names = append(names, "localhost")
	}
	if lo := net.IPv4(127, 0, 0, 1); !slices.ContainsFunc(ips, lo.Equal) {
		ips = append(ips, lo)
	}
	return names, ips, nil
}

// validHostName reports a DNS name (a leading "*." wildcard allowed).
func validHostName(h string) bool {
	h = strings.TrimPrefix(h, "*.")
	if h == "" || len(h) > 253 {
		return false
	}
	for _, label := range strings.Split(h, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
				return false
			}
		}
	}
	return true
}

// checkExisting applies --if-missing and --force to a certificate and its
// key about to be written: keep is true when --if-missing found both (it
// prints "kept" and their names); without either flag an existing file is
// refused.
func checkExisting(c *cli.Context, certFile, keyFile string) (keep bool, err error) {
	ifMissing, force := c.Bool("if-missing"), c.Bool("force")
	switch {
	case ifMissing && force:
		return false, usageError("--if-missing and --force are exclusive")
	case force:
		return false, nil
	case ifMissing:
		var have []string
		for _, f := range []string{certFile, keyFile} {
			if _, err := os.Lstat(f); err == nil {
				have = append(have, f)
			} else if !errors.Is(err, fs.ErrNotExist) {
				return false, err
			}
		}
		switch len(have) {
		case 2:
			return true, printPair(c, certFile, keyFile, true)
		case 1:
			return false, usageError("%s exists without its pair: refusing to write next to it (--if-missing keeps only a complete pair)", have[0])
		}
		return false, nil
	}
	return false, refuseExisting(certFile, keyFile)
}

// refuseExisting fails with a usage error naming the first of files that
// exists: `cairn cert` never overwrites without --force.
func refuseExisting(files ...string) error {
	for _, f := range files {
		if _, err := os.Lstat(f); err == nil {
			return usageError("%s already exists: refusing to overwrite it", f)
		} else if !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	return nil
}

// writePair writes a certificate (0644) and its key (0600) to new files,
// creating their directory if needed, and prints their names. If the key
// cannot be written the certificate is removed again.
func writePair(c *cli.Context, certFile string, certPEM []byte, keyFile string, keyPEM []byte) error {
	if err := os.MkdirAll(filepath.Dir(certFile), certDirMode); err != nil {
		return err
	}
	if c.Bool("force") {
		// The key first: a reader that sees the new key with the old
		// certificate fails to load the pair and keeps what it had, until
		// the certificate follows.
		if err := writeReplace(keyFile, keyPEM, keyFileMode); err != nil {
			return err
		}
		if err := writeReplace(certFile, certPEM, certFileMode); err != nil {
			return err
		}
		return printPair(c, certFile, keyFile, false)
	}
	if err := writeNew(certFile, certPEM, certFileMode); err != nil {
		return err
	}
	if err := writeNew(keyFile, keyPEM, keyFileMode); err != nil {
		os.Remove(certFile)
		return err
	}
	return printPair(c, certFile, keyFile, false)
}

// certPair is `cairn cert ... create --json`: the files of the pair, and
// whether they were kept as they were (--if-missing) rather than written.
type certPair struct {
	CertFile string `json:"cert_file"`
	KeyFile  string `json:"key_file"`
	Kept     bool   `json:"kept"`
}

// printPair prints the files of a pair written or kept.
func printPair(c *cli.Context, certFile, keyFile string, kept bool) error {
	if boolFlag(c, "json") {
		return printJSON(c.App.Writer, certPair{CertFile: certFile, KeyFile: keyFile, Kept: kept})
	}
	if kept {
		_, err := fmt.Fprintf(c.App.Writer, "kept %s\nkept %s\n", certFile, keyFile)
		return err
	}
	_, err := fmt.Fprintf(c.App.Writer, "%s\n%s\n", certFile, keyFile)
	return err
}

// writeReplace writes name, replacing it if it exists, by a rename of a
// temporary file in the same directory, so a reader sees the old file or
// the new one, never a part; the file gets exactly mode perm.
func writeReplace(name string, data []byte, perm fs.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(name), "."+filepath.Base(name)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // a no-op after the rename
	if err := tmp.Chmod(perm); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), name)
}

// writeNew writes a new file with exactly mode perm (whatever the umask).
func writeNew(name string, data []byte, perm fs.FileMode) error {
	if err := tlsutil.WriteFile(name, data, perm); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return usageError("%s already exists: refusing to overwrite it", name)
		}
		return err
	}
	return os.Chmod(name, perm)
}
