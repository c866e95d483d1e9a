package node

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"net/http"

	"github.com/cairn-db/cairn/internal/tlsutil"
)

// tlsSources are a TLS member's certificate sources, made once in New;
// each reloads its files when they change (tlsutil.Source).
type tlsSources struct {
	// peer is the member certificate and the peer CA: raft in both
	// directions, and the client side of calls on other members.
	peer *tlsutil.Source
	// http is the HTTP API's server certificate with the trusted CA
	// (client certificates); the same source as peer when the files are
	// the same (the default).
	http *tlsutil.Source
}

// newTLSSources loads cfg's TLS files (cfg with its TLS defaults).
func newTLSSources(cfg Config, log *slog.Logger) (*tlsSources, error) {
	peerFiles := tlsutil.Files{CertFile: cfg.PeerCertFile, KeyFile: cfg.PeerKeyFile, CAFile: cfg.PeerTrustedCAFile}
	peer, err := tlsutil.NewSource(peerFiles, log)
	if err != nil {
		return nil, fmt.Errorf("%w: peer TLS files: %w", ErrInvalidConfig, err)
	}
	s := &tlsSources{peer: peer, http: peer}
	httpFiles := tlsutil.Files{CertFile: cfg.CertFile, KeyFile: cfg.KeyFile, CAFile: cfg.TrustedCAFile}
	if httpFiles != peerFiles {
		if s.http, err = tlsutil.NewSource(httpFiles, log); err != nil {
			return nil, fmt.Errorf("%w: HTTP TLS files: %w", ErrInvalidConfig, err)
		}
	}
	return s, nil
}

// cas are the distinct sources whose CA pools verify certificates on the
// HTTP API (the trusted CA and the peer CA).
func (s *tlsSources) cas() []*tlsutil.Source {
	if s.http == s.peer {
		return []*tlsutil.Source{s.peer}
	}
	return []*tlsutil.Source{s.http, s.peer}
}

// serverConfig is the HTTPS listener's configuration: client certificates
// verified against the trusted and peer CAs, required when
// requireClientCert.
func (s *tlsSources) serverConfig(requireClientCert bool) *tls.Config {
	return tlsutil.ServerConfig(s.http, s.cas(), requireClientCert)
}

// memberClientConfig is the configuration of this member's calls on other
// members' HTTP API: its member certificate as client certificate, the
// server verified against the peer and trusted CAs with its host name.
func (s *tlsSources) memberClientConfig() *tls.Config {
	return tlsutil.ClientConfig(s.peer, s.cas())
}

// memberAuthenticator is the HTTP API's authenticator of members-only
// routes under TLS (httpapi.Options.Members): the caller is the member its
// verified member certificate names; anyone else gets an error wrapping
// tlsutil.ErrNotMember. It is the one place that builds it.
//
// TODO(merge): httpapi.MemberAuthenticator(peer) replaces this body.
func memberAuthenticator(peer *tlsutil.Source) func(*http.Request) (string, error) {
	return func(r *http.Request) (string, error) {
		if r.TLS == nil {
			return "", fmt.Errorf("%w: not a TLS connection", tlsutil.ErrNotMember)
		}
		return peer.VerifyMember(r.TLS.PeerCertificates)
	}
}
