package client

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/cairn-db/cairn/internal/tlsutil"
)

// Config configures a Client.
type Config struct {
	// Endpoints are the nodes to contact first: base URLs such as
	// http://127.0.0.1:8001 or https://n1:8001. host:port is accepted: it
	// means https://host:port when TLS is configured (CAFile, CertFile or
	// TLSConfig), else http://host:port. The client discovers the other
	// members from them.
	Endpoints []string
	// RequestTimeout bounds one attempt of a request. A call is retried
	// until its context ends.
	RequestTimeout time.Duration
	// ReadYourWrites makes stale reads (and reads with no explicit
	// MinRevision) carry min_revision = the highest revision this client
	// has seen.
	ReadYourWrites bool
	// MaxBackoff caps the delay between retries.
	MaxBackoff time.Duration
	// UnreachableTimeout, when positive, ends a call with ErrUnavailable
	// when no endpoint has sent it an HTTP answer (of any status) for
	// that long since the call began: every endpoint refused the
	// connection, could not be resolved, or did not answer. The error
	// names each endpoint tried and why it failed. It bounds only that
	// phase: once a member has answered (even not_leader or
	// unavailable), the call is retried until its context ends, and a
	// stream whose headers have arrived (a restore, a watch) is not cut
	// off. For Watch it bounds the first connection only. Zero (the
	// default): calls are retried until their context ends.
	UnreachableTimeout time.Duration
	// SlowCallNote, when set, is called once in a call that has been
	// retrying for SlowCallAfter, with a short note of what it waits for
	// and why each endpoint tried failed ("waiting for a leader
	// (http://n1:8001: connection refused, http://n2:8001: not_leader)").
	// It is called from the calling goroutine. The command-line tool
	// prints it on a terminal.
	SlowCallNote  func(note string)
	SlowCallAfter time.Duration
	// HTTPClient sends the requests; nil uses a client of the package's
	// own. Its Timeout should be zero or at least RequestTimeout. It is
	// used as is: the TLS fields below configure only the package's own
	// client and may not be combined with it (configure your transport's
	// TLSClientConfig, or wrap the transport NewTransport returns).
	HTTPClient *http.Client
	// Logger receives debug logs of retries and discovery; nil discards.
	Logger *slog.Logger

	// CAFile is a PEM bundle of the CA certificates that may sign the
	// servers' certificates (the cluster's CA, `cairn cert ca create`).
	// Empty: the system's roots verify https:// endpoints. The server's
	// host name is checked against its certificate.
	CAFile string
	// CertFile and KeyFile are a client certificate (chain) and its key
	// in PEM, presented to servers that ask for one (mutual TLS). Both or
	// neither.
	//
	// CAFile, CertFile and KeyFile are read by New (a file that does not
	// load is ErrInvalidConfig) and again whenever their content changes,
	// checked at most once a second when a new connection is made, so a
	// rotated CA bundle or certificate takes effect without a new Client.
	CertFile string
	KeyFile  string
	// TLSConfig, when set, is used (cloned) for https:// endpoints
	// instead of CAFile, CertFile and KeyFile, which are then ignored.
	TLSConfig *tls.Config

	// Username and Password are a user's credentials, for a cluster with
	// access control enabled (docs/security.md). With Username set, the
	// client exchanges them for a bearer token (POST
	// /v1/auth/authenticate) before its first request, sends the token
	// with every request, gets a new one shortly before it expires, and
	// once when a member refuses it (the call is then sent again). A
	// token is valid on every member. Bad credentials end the call with
	// ErrUnauthenticated; they are not retried. When the cluster says
	// access control is disabled, the client sends no token until a
	// member asks for one. Empty: no credentials (anonymous, or the user
	// a client certificate names under mutual TLS). Neither the password
	// nor the token is ever logged.
	Username string
	Password string
	// Credentials, when set, is called for the user and password each
	// time the client authenticates (the first time, and after a token
	// was refused or expired), instead of Username and Password, which
	// must then be empty: to prompt for a password only when needed, or
	// to read a rotated one. Its error ends the call that needed a token.
	Credentials func(ctx context.Context) (user, password string, err error)
}

// DefaultConfig returns a Config with default timeouts and no endpoints.
func DefaultConfig() Config {
	return Config{
		RequestTimeout: 10 * time.Second,
		MaxBackoff:     2 * time.Second,
		SlowCallAfter:  2 * time.Second,
	}
}

// Validate reports whether c can build a Client. It loads the TLS files
// (CAFile, CertFile, KeyFile) to check them.
func (c Config) Validate() error {
	if len(c.Endpoints) == 0 {
		return fmt.Errorf("%w: at least one endpoint is required", ErrInvalidConfig)
	}
	for _, e := range c.Endpoints {
		if _, err := normalizeEndpoint(e, "http"); err != nil {
			return err
		}
	}
	if c.RequestTimeout <= 0 {
		return fmt.Errorf("%w: request timeout must be positive", ErrInvalidConfig)
	}
	if c.UnreachableTimeout < 0 {
		return fmt.Errorf("%w: unreachable timeout must not be negative", ErrInvalidConfig)
	}
	if c.MaxBackoff <= 0 {
		return fmt.Errorf("%w: max backoff must be positive", ErrInvalidConfig)
	}
	if c.Password != "" && c.Username == "" {
		return fmt.Errorf("%w: Password without Username", ErrInvalidConfig)
	}
	if c.Credentials != nil && (c.Username != "" || c.Password != "") {
		return fmt.Errorf("%w: Credentials and Username/Password exclude each other", ErrInvalidConfig)
	}
	if c.HTTPClient != nil && c.usesTLS() {
		return fmt.Errorf("%w: CAFile, CertFile, KeyFile and TLSConfig configure the package's own HTTP client "+
			"and do not apply to a given HTTPClient (set its transport's TLSClientConfig, or use NewTransport)", ErrInvalidConfig)
	}
	_, _, err := c.clientTLS()
	return err
}

// usesTLS reports whether any TLS setting is given.
func (c Config) usesTLS() bool {
	return c.TLSConfig != nil || c.CAFile != "" || c.CertFile != "" || c.KeyFile != ""
}

// defaultScheme is the scheme of endpoints given as host:port.
func (c Config) defaultScheme() string {
	if c.usesTLS() {
		return "https"
	}
	return "http"
}

// clientTLS returns the TLS configuration of the package's own transport:
// TLSConfig cloned, or one built on reloading sources for the files
// (files true), or nil when nothing is set (https:// endpoints are then
// verified against the system's roots by net/http's defaults).
func (c Config) clientTLS() (tc *tls.Config, files bool, err error) {
	if c.TLSConfig != nil {
		return c.TLSConfig.Clone(), false, nil
	}
	if c.CAFile == "" && c.CertFile == "" && c.KeyFile == "" {
		return nil, false, nil
	}
	if (c.CertFile == "") != (c.KeyFile == "") {
		return nil, false, fmt.Errorf("%w: CertFile (--cert) %q and KeyFile (--key) %q go together: give both or neither",
			ErrInvalidConfig, c.CertFile, c.KeyFile)
	}
	var own *tlsutil.Source
	if c.CertFile != "" {
		s, err := tlsutil.NewSource(tlsutil.Files{CertFile: c.CertFile, KeyFile: c.KeyFile}, c.Logger)
		if err != nil {
			return nil, false, fmt.Errorf("%w: client certificate (CertFile, KeyFile): %w", ErrInvalidConfig, err)
		}
		own = s
	}
	var roots []*tlsutil.Source
	if c.CAFile != "" {
		s, err := tlsutil.NewSource(tlsutil.Files{CAFile: c.CAFile}, c.Logger)
		if err != nil {
			return nil, false, fmt.Errorf("%w: CA bundle (CAFile): %w", ErrInvalidConfig, err)
		}
		roots = append(roots, s)
	}
	return tlsutil.ClientConfig(own, roots), true, nil
}

// NewTransport returns an *http.Transport like the one a Client builds for
// itself when Config.HTTPClient is nil, with cfg's TLS settings (CAFile,
// CertFile, KeyFile, TLSConfig), for callers who wrap it in an HTTPClient
// of their own. Only cfg's TLS settings and Logger are looked at; a file
// that does not load is ErrInvalidConfig.
func NewTransport(cfg Config) (*http.Transport, error) {
	tc, files, err := cfg.clientTLS()
	if err != nil {
		return nil, err
	}
	return newTransport(tc, files), nil
}

// newTransport returns the package's own transport with TLS configuration
// tc (nil: net/http's defaults).
//
// A configuration from files (tlsutil.ClientConfig) verifies the server
// in VerifyConnection, which sees the host name only as the SNI the client
// sent, and no SNI is sent for an IP address. So connections are dialed
// with tlsutil.DialTLSContext, which checks the host dialed; through a
// proxy (TLSClientConfig) a server without SNI is refused.
func newTransport(tc *tls.Config, files bool) *http.Transport {
	t := &http.Transport{
		Proxy:               http.ProxyFromEnvironment,
		MaxIdleConns:        256,
		MaxIdleConnsPerHost: 64,
		IdleConnTimeout:     90 * time.Second,
		TLSClientConfig:     tc,
	}
	if tc == nil || !files || tc.VerifyConnection == nil {
		return t
	}
	t.TLSClientConfig = tc // through a proxy: refuses IP addresses, which it cannot check
	t.DialTLSContext = tlsutil.DialTLSContext(tc, nil)
	return t
}

// normalizeEndpoint turns host:port into scheme://host:port and drops a
// trailing slash.
func normalizeEndpoint(s, scheme string) (string, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return "", fmt.Errorf("%w: empty endpoint", ErrInvalidConfig)
	}
	if !strings.Contains(s, "://") {
		s = scheme + "://" + s
	}
	u, err := url.Parse(s)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return "", fmt.Errorf("%w: endpoint %q is not an http(s) URL or host:port", ErrInvalidConfig, s)
	}
	return strings.TrimRight(s, "/"), nil
}
