package client

import (
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Config configures a Client.
type Config struct {
	// Endpoints are the nodes to contact first: base URLs such as
	// http://127.0.0.1:8001 (host:port is accepted). The client discovers
	// the other members from them.
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
	// HTTPClient sends the requests; nil uses a client of the package's
	// own. Its Timeout should be zero or at least RequestTimeout.
	HTTPClient *http.Client
	// Logger receives debug logs of retries and discovery; nil discards.
	Logger *slog.Logger
}

// DefaultConfig returns a Config with default timeouts and no endpoints.
func DefaultConfig() Config {
	return Config{
		RequestTimeout: 10 * time.Second,
		MaxBackoff:     2 * time.Second,
	}
}

// Validate reports whether c can build a Client.
func (c Config) Validate() error {
	if len(c.Endpoints) == 0 {
		return fmt.Errorf("%w: at least one endpoint is required", ErrInvalidConfig)
	}
	for _, e := range c.Endpoints {
		if _, err := normalizeEndpoint(e); err != nil {
			return err
		}
	}
	if c.RequestTimeout <= 0 {
		return fmt.Errorf("%w: request timeout must be positive", ErrInvalidConfig)
	}
	if c.MaxBackoff <= 0 {
		return fmt.Errorf("%w: max backoff must be positive", ErrInvalidConfig)
	}
	return nil
}

// normalizeEndpoint turns host:port into http://host:port and drops a
// trailing slash.
func normalizeEndpoint(s string) (string, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return "", fmt.Errorf("%w: empty endpoint", ErrInvalidConfig)
	}
	if !strings.Contains(s, "://") {
		s = "http://" + s
	}
	u, err := url.Parse(s)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return "", fmt.Errorf("%w: endpoint %q is not an http(s) URL or host:port", ErrInvalidConfig, s)
	}
	return strings.TrimRight(s, "/"), nil
}
