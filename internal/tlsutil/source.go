// Package tlsutil builds cairn's TLS configurations: the raft stream
// layer's (mutual, TLS 1.3, members only), the HTTP API's (server, with
// optional client certificates) and the clients' (members calling members,
// the Go client, the CLI). Certificates, keys and CA bundles come from PEM
// files held by a Source, which reloads them when they change, so a
// rotation needs no restart. gen.go issues certificates (`cairn cert`).
//
// A member certificate names its member with a URI SAN
// "cairn://member/<id>" (MemberURI). Only such a certificate, signed by the
// peer CA, is a member's: a client certificate from the same CA is not.
// See DESIGN.md.
package tlsutil

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"
)

// Errors returned by the package.
var (
	// ErrConfig reports a file that cannot be used: missing, unreadable,
	// not PEM, a key that does not match its certificate, a CA bundle
	// without a certificate.
	ErrConfig = errors.New("tlsutil: bad TLS configuration")
	// ErrNotMember reports a certificate that verifies but names no
	// member (no cairn://member/ URI SAN), or one that does not verify
	// against the peer CA.
	ErrNotMember = errors.New("tlsutil: not a member certificate")
)

// DefaultCheckInterval is how often, at most, a Source looks at its files
// for changes; it looks only when a handshake needs them.
const DefaultCheckInterval = time.Second

// Files names the PEM files of one side of TLS. Any may be empty where the
// side needs no such file (a client that only checks the server needs
// just CAFile).
type Files struct {
	// CertFile and KeyFile are this side's certificate chain and key.
	CertFile string
	KeyFile  string
	// CAFile is the bundle of CA certificates trusted to sign the other
	// side's certificate.
	CAFile string
}

// IsZero reports whether no file is named.
func (f Files) IsZero() bool { return f == Files{} }

// HasPair reports whether a certificate and key are named.
func (f Files) HasPair() bool { return f.CertFile != "" || f.KeyFile != "" }

// Source holds a certificate and a CA pool loaded from Files. It reloads
// them when a file's content changes (checked at most once per interval,
// when a handshake asks); a change that does not load (a key written
// before its certificate, say) keeps the previous ones and is logged, and
// is tried again at the next check. Safe for concurrent use.
type Source struct {
	files    Files
	log      *slog.Logger
	interval time.Duration
	now      func() time.Time

	mu      sync.Mutex
	raw     [3][]byte // cert, key, CA as last loaded
	cert    *tls.Certificate
	pool    *x509.CertPool
	gen     uint64 // counts successful loads
	checked time.Time
	lastErr string // the last reload failure logged, to log each once

	verified verifiedMembers // VerifyMember's memory
}

// NewSource loads files; it fails with ErrConfig if they do not load. A
// certificate needs its key and the other way round; CAFile may be empty
// when the side verifies nothing.
func NewSource(files Files, log *slog.Logger) (*Source, error) {
	if (files.CertFile == "") != (files.KeyFile == "") {
		return nil, fmt.Errorf("%w: a certificate file needs its key file and the other way round", ErrConfig)
	}
	if files.IsZero() {
		return nil, fmt.Errorf("%w: no certificate, key or CA file given", ErrConfig)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Source{files: files, log: log, interval: DefaultCheckInterval, now: time.Now}
	raw, err := s.read()
	if err != nil {
		return nil, err
	}
	if err := s.load(raw); err != nil {
		return nil, err
	}
	s.checked = s.now()
	return s, nil
}

// SetCheckInterval changes how often the files are looked at (tests use
// 0: at every handshake).
func (s *Source) SetCheckInterval(d time.Duration) {
	s.mu.Lock()
	s.interval = d
	s.mu.Unlock()
}

// Files returns the files the source reads.
func (s *Source) Files() Files { return s.files }

// Current returns the certificate (nil without one), the CA pool (nil
// without one) and a generation that changes whenever they do, reloading
// them first if the files changed.
func (s *Source) Current() (*tls.Certificate, *x509.CertPool, uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if now := s.now(); now.Sub(s.checked) >= s.interval {
		s.checked = now
		s.reloadLocked()
	}
	return s.cert, s.pool, s.gen
}

// Reload looks at the files now and loads them if they changed; it
// returns the error of a change that did not load.
func (s *Source) Reload() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.checked = s.now()
	return s.reloadLocked()
}

func (s *Source) reloadLocked() error {
	raw, err := s.read()
	if err == nil && bytes.Equal(raw[0], s.raw[0]) && bytes.Equal(raw[1], s.raw[1]) && bytes.Equal(raw[2], s.raw[2]) {
		return nil
	}
	if err == nil {
		err = s.load(raw)
	}
	if err != nil {
		if msg := err.Error(); msg != s.lastErr {
			s.lastErr = msg
			s.log.Warn("TLS files changed but do not load; keeping the previous ones", "err", err)
		}
		return err
	}
	s.lastErr = ""
	s.log.Info("TLS files reloaded", "cert", s.files.CertFile, "ca", s.files.CAFile)
	return nil
}

func (s *Source) read() ([3][]byte, error) {
	var raw [3][]byte
	for i, name := range []string{s.files.CertFile, s.files.KeyFile, s.files.CAFile} {
		if name == "" {
			continue
		}
		b, err := os.ReadFile(name)
		if err != nil {
			return raw, fmt.Errorf("%w: %w", ErrConfig, err)
		}
		raw[i] = b
	}
	return raw, nil
}

// load parses raw and, if it all parses, makes it current.
func (s *Source) load(raw [3][]byte) error {
	var cert *tls.Certificate
	if s.files.CertFile != "" {
		c, err := tls.X509KeyPair(raw[0], raw[1])
		if err != nil {
			return fmt.Errorf("%w: certificate %s with key %s: %w", ErrConfig, s.files.CertFile, s.files.KeyFile, err)
		}
		cert = &c
	}
	var pool *x509.CertPool
	if s.files.CAFile != "" {
		pool = x509.NewCertPool()
		if !pool.AppendCertsFromPEM(raw[2]) {
			return fmt.Errorf("%w: CA file %s holds no PEM certificate", ErrConfig, s.files.CAFile)
		}
	}
	s.raw, s.cert, s.pool = raw, cert, pool
	s.gen++
	return nil
}
