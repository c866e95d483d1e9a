package node

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/cairn-db/cairn/api"
	"github.com/cairn-db/cairn/internal/tlsutil"
)

// newMirrorClient returns the HTTP client of a standby's calls on its
// source cluster: a transport of its own (the source is another cluster:
// not this member's certificate or CA unless configured so), with the
// mirror credentials (MirrorCAFile, MirrorCertFile/MirrorKeyFile,
// MirrorUser/MirrorPassword). Compression is left to the caller, so that
// the bytes are counted and rate limited as they travel. Secrets are
// member-local configuration, never replicated or logged.
//
// The mirror's certificate, key and CA come from a tlsutil.Source, which
// reloads them when their files change (checked at most once a second,
// when a handshake needs them), as the member's own do: a handshake presents the current
// certificate and checks the source's against the current CA, and after
// a reload the next request opens a new connection (memberTransport), so
// a rotation needs no restart. A stream already open keeps its
// connection until it ends.
func newMirrorClient(cfg Config, log *slog.Logger) (*http.Client, error) {
	newTransport := func() *http.Transport {
		return &http.Transport{MaxIdleConnsPerHost: 4, IdleConnTimeout: 90 * time.Second,
			DisableCompression: true, ResponseHeaderTimeout: 30 * time.Second}
	}
	var rt http.RoundTripper
	files := tlsutil.Files{CertFile: cfg.MirrorCertFile, KeyFile: cfg.MirrorKeyFile, CAFile: cfg.MirrorCAFile}
	if files.IsZero() {
		rt = newTransport()
	} else {
		src, err := tlsutil.NewSource(files, log)
		if err != nil {
			return nil, fmt.Errorf("%w: mirror TLS files: %w", ErrInvalidConfig, err)
		}
		// Without a CA file, the system's roots check the source's
		// certificate (the union of no pool).
		tc := tlsutil.ClientConfig(src, []*tlsutil.Source{src})
		// A source may be reached through a proxy that speaks TLS 1.2.
		tc.MinVersion = tls.VersionTLS12
		rt = newMemberTransport(func() *http.Transport {
			tr := newTransport()
			tr.TLSClientConfig = tc
			tr.DialTLSContext = tlsutil.DialTLSContext(tc, nil) // checks IP hosts too
			return tr
		}, src)
	}
	if cfg.MirrorUser != "" {
		rt = &mirrorAuth{base: rt, user: cfg.MirrorUser, password: cfg.MirrorPassword}
	}
	return &http.Client{Transport: rt}, nil
}

// mirrorAuth authenticates a standby's requests to an access-controlled
// source as the mirror user: it asks the source for a bearer token
// (POST /v1/auth/authenticate) when it has none or it is about to expire,
// and again after a 401. A token is valid on every member of the source
// cluster (one token key per cluster).
type mirrorAuth struct {
	base           http.RoundTripper
	user, password string

	mu      sync.Mutex
	token   string
	expires time.Time
}

// CloseIdleConnections closes the base transport's idle connections
// (http.Client.CloseIdleConnections reaches it through this).
func (a *mirrorAuth) CloseIdleConnections() {
	if c, ok := a.base.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

// RoundTrip implements http.RoundTripper.
func (a *mirrorAuth) RoundTrip(req *http.Request) (*http.Response, error) {
	tok, err := a.tokenFor(req)
	if err != nil {
		return nil, err
	}
	r := req.Clone(req.Context())
	r.Header.Set("Authorization", "Bearer "+tok)
	resp, err := a.base.RoundTrip(r)
	if err == nil && resp.StatusCode == http.StatusUnauthorized {
		a.mu.Lock()
		if a.token == tok {
			a.token = ""
		}
		a.mu.Unlock()
	}
	return resp, err
}

func (a *mirrorAuth) tokenFor(req *http.Request) (string, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.token != "" && time.Until(a.expires) > 30*time.Second {
		return a.token, nil
	}
	body, err := json.Marshal(api.AuthenticateRequest{User: a.user, Password: a.password})
	if err != nil {
		return "", err
	}
	u := req.URL.Scheme + "://" + req.URL.Host + "/v1/auth/authenticate"
	ar, err := http.NewRequestWithContext(req.Context(), http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return "", err
	}
	ar.Header.Set("Content-Type", "application/json")
	resp, err := a.base.RoundTrip(ar)
	if err != nil {
		return "", fmt.Errorf("authenticating as mirror user %q at %s: %w", a.user, req.URL.Host, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("authenticating as mirror user %q at %s: HTTP %d: %s", a.user, req.URL.Host, resp.StatusCode, strings.TrimSpace(string(data)))
	}
	var out api.AuthenticateResponse
	if err := json.Unmarshal(data, &out); err != nil || out.Token == "" {
		return "", fmt.Errorf("authenticating as mirror user %q at %s: malformed answer", a.user, req.URL.Host)
	}
	a.token, a.expires = out.Token, out.ExpiresAt
	return a.token, nil
}
