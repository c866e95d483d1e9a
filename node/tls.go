package node

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"sync"

	"github.com/cairn-db/cairn/httpapi"
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

// memberTransport is the transport of this member's calls on other
// members under TLS, and of a standby's calls on its source
// (mirrorclient.go) with the mirror's TLS files. A keep-alive connection keeps the certificates of
// its handshake, and under steady traffic it is never idle long enough
// to close: after a rotation it would go on presenting the old member
// certificate, which the other members refuse once the old CA is gone
// from their bundle. So whenever the sources reload, calls move to a new
// transport (new connections, with the new certificates) and the old
// one's idle connections are closed; its connections still in use close
// once they are idle (at the latest at Close, or its idle timeout).
type memberTransport struct {
	sources []*tlsutil.Source
	make    func() *http.Transport

	mu   sync.Mutex
	gens []uint64
	cur  *http.Transport
	old  []*http.Transport // replaced ones, newest last (at most maxOldTransports)
}

// maxOldTransports bounds the replaced transports kept to close at Close;
// older ones are left to their idle timeout.
const maxOldTransports = 4

func newMemberTransport(newTransport func() *http.Transport, sources ...*tlsutil.Source) *memberTransport {
	return &memberTransport{sources: sources, make: newTransport}
}

// RoundTrip implements http.RoundTripper.
func (t *memberTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	return t.current().RoundTrip(req)
}

// current returns the transport for the sources' current files.
func (t *memberTransport) current() *http.Transport {
	gens := make([]uint64, len(t.sources))
	for i, s := range t.sources {
		_, _, gens[i] = s.Current()
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.cur != nil && slices.Equal(gens, t.gens) {
		return t.cur
	}
	if t.cur != nil {
		t.cur.CloseIdleConnections()
		t.old = append(t.old, t.cur)
		if len(t.old) > maxOldTransports {
			t.old[0].CloseIdleConnections()
			t.old = t.old[1:]
		}
	}
	t.cur, t.gens = t.make(), gens
	return t.cur
}

// CloseIdleConnections closes the idle connections of the current and
// the replaced transports (http.Client.CloseIdleConnections calls it).
func (t *memberTransport) CloseIdleConnections() {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, tr := range append(t.old, t.cur) {
		if tr != nil {
			tr.CloseIdleConnections()
		}
	}
}

// memberAuthenticator is the HTTP API's authenticator of members-only
// routes under TLS (httpapi.Options.Members): the caller is the member its
// verified member certificate names.
func memberAuthenticator(peer *tlsutil.Source) func(*http.Request) (string, error) {
	return httpapi.MemberAuthenticator(peer)
}
