package client_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cairn-db/cairn/api"
	"github.com/cairn-db/cairn/client"
	"github.com/cairn-db/cairn/internal/tlsutil"
	"github.com/cairn-db/cairn/internal/tlsutil/tlstest"
)

// fakeAPI is the least of the HTTP API a client needs for puts and gets:
// one member that is the leader, an in-memory map, and member discovery
// answering with the server's own URL. Every request is counted.
type fakeAPI struct {
	url      string // set once the server has started
	mu       sync.Mutex
	kv       map[string][]byte
	rev      uint64
	requests int
}

func (f *fakeAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.requests++
	w.Header().Set(api.HeaderNode, "f1")
	w.Header().Set(api.HeaderLeader, "f1")
	w.Header().Set(api.HeaderLeaderURL, f.url)
	w.Header().Set(api.HeaderRevision, strconv.FormatUint(f.rev, 10))
	key, isKV := strings.CutPrefix(r.URL.Path, "/v1/kv/")
	switch {
	case r.Method == http.MethodGet && r.URL.Path == "/v1/cluster/members":
		writeJSON(w, http.StatusOK, api.MembersResponse{Leader: "f1", Members: []api.Member{
			{ID: "f1", RaftAddr: "127.0.0.1:1", HTTPURL: f.url, Role: "voter", Leader: true, Reachable: true}}})
	case isKV && r.Method == http.MethodPut:
		b, err := io.ReadAll(r.Body)
		if err != nil {
			return
		}
		if f.kv == nil {
			f.kv = map[string][]byte{}
		}
		f.rev++
		f.kv[key] = b
		writeJSON(w, http.StatusOK, api.WriteResponse{Revision: f.rev, Time: time.Now()})
	case isKV && r.Method == http.MethodGet:
		v, ok := f.kv[key]
		if !ok {
			writeJSON(w, http.StatusNotFound, api.ErrorResponse{Error: api.Error{Code: api.CodeNotFound, Message: "key not found"}})
			return
		}
		w.Header().Set(api.HeaderModRevision, strconv.FormatUint(f.rev, 10))
		_, _ = w.Write(v)
	default:
		writeJSON(w, http.StatusNotFound, api.ErrorResponse{Error: api.Error{Code: api.CodeNotFound, Message: "no route"}})
	}
}

func (f *fakeAPI) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.requests
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// tlsServer is a fake API server over HTTPS with tlsutil's server
// configuration: its certificate from serverFiles, client certificates
// verified against clientCA (required when requireClientCert). Its
// sources look at their files at every handshake.
type tlsServer struct {
	*httptest.Server
	api *fakeAPI
}

func startTLSServer(t tb, serverFiles tlsutil.Files, clientCA string, requireClientCert bool) *tlsServer {
	t.Helper()
	return startTLSServerWith(t, serverFiles, clientCA, requireClientCert, nil)
}

// startTLSServerWith is startTLSServer with wrap (if not nil) in front of
// the fake API.
func startTLSServerWith(t tb, serverFiles tlsutil.Files, clientCA string, requireClientCert bool,
	wrap func(http.Handler) http.Handler) *tlsServer {
	t.Helper()
	src, err := tlsutil.NewSource(tlsutil.Files{CertFile: serverFiles.CertFile, KeyFile: serverFiles.KeyFile}, nil)
	if err != nil {
		t.Fatalf("server certificate: %v", err)
	}
	src.SetCheckInterval(0)
	var cas []*tlsutil.Source
	if clientCA != "" {
		ca, err := tlsutil.NewSource(tlsutil.Files{CAFile: clientCA}, nil)
		if err != nil {
			t.Fatalf("client CA: %v", err)
		}
		ca.SetCheckInterval(0)
		cas = append(cas, ca)
	}
	f := &fakeAPI{}
	var h http.Handler = f
	if wrap != nil {
		h = wrap(f)
	}
	s := httptest.NewUnstartedServer(h)
	s.Config.ErrorLog = log.New(io.Discard, "", 0) // handshake failures are the point
	s.TLS = tlsutil.ServerConfig(src, cas, requireClientCert)
	s.StartTLS()
	t.Cleanup(s.Close)
	f.url = s.URL
	return &tlsServer{Server: s, api: f}
}

// startPlainServer is the fake API over plain HTTP.
func startPlainServer(t *testing.T) *httptest.Server {
	t.Helper()
	f := &fakeAPI{}
	s := httptest.NewServer(f)
	t.Cleanup(s.Close)
	f.url = s.URL
	return s
}

// tlsClient is a client for endpoints with mod applied to its config;
// RequestTimeout is long so that only a permanent failure can end a call
// well before its context.
func tlsClient(t *testing.T, mod func(*client.Config), endpoints ...string) *client.Client {
	t.Helper()
	return newClient(t, func(cfg *client.Config) {
		cfg.RequestTimeout = 20 * time.Second
		if mod != nil {
			mod(cfg)
		}
	}, endpoints...)
}

// ctx30 is a context with a 30 s deadline: a TLS failure must end a call
// long before it.
func ctx30(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// wantTLSError checks that err is ErrTLS, not the context's end, and that
// its message holds every one of parts.
func wantTLSError(t *testing.T, ctx context.Context, err error, parts ...string) {
	t.Helper()
	if err == nil {
		t.Fatal("call succeeded; want ErrTLS")
	}
	if !errors.Is(err, client.ErrTLS) {
		t.Fatalf("err = %v; want ErrTLS", err)
	}
	if ctx.Err() != nil || errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("ErrTLS only when the context ended: %v", err)
	}
	if errors.Is(err, client.ErrUnavailable) {
		t.Fatalf("ErrTLS is not ErrUnavailable: %v", err)
	}
	for _, p := range parts {
		if !strings.Contains(err.Error(), p) {
			t.Fatalf("err = %q; want it to mention %q", err, p)
		}
	}
}

func putGet(ctx context.Context, c *client.Client) error {
	if _, err := c.Put(ctx, "k", []byte("v")); err != nil {
		return err
	}
	kv, err := c.Get(ctx, "k")
	if err != nil {
		return err
	}
	if string(kv.Value) != "v" {
		return errors.New("read " + string(kv.Value))
	}
	return nil
}

func TestTLSGoodCA(t *testing.T) {
	pki := tlstest.New(t, "ca")
	srv := startTLSServer(t, pki.Member(t, "n1"), "", false)
	c := tlsClient(t, func(cfg *client.Config) { cfg.CAFile = pki.CAFile }, srv.URL)
	ctx := ctx30(t)
	if err := putGet(ctx, c); err != nil {
		t.Fatal(err)
	}
	// Discovery learned the member's https:// URL and uses it.
	ms, err := c.Members(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := ms.Members[0].HTTPURL; got != srv.URL || !strings.HasPrefix(got, "https://") {
		t.Fatalf("member URL %q", got)
	}
	if c.Leader() != srv.URL {
		t.Fatalf("leader %q, want %q", c.Leader(), srv.URL)
	}
}

func TestTLSHostPortMeansHTTPS(t *testing.T) {
	pki := tlstest.New(t, "ca")
	srv := startTLSServer(t, pki.Member(t, "n1"), "", false)
	hostPort := strings.TrimPrefix(srv.URL, "https://")
	c := tlsClient(t, func(cfg *client.Config) { cfg.CAFile = pki.CAFile }, hostPort)
	if err := putGet(ctx30(t), c); err != nil {
		t.Fatal(err)
	}
}

func TestTLSUnknownCA(t *testing.T) {
	pki, other := tlstest.New(t, "ca"), tlstest.New(t, "other")
	srv := startTLSServer(t, pki.Member(t, "n1"), "", false)
	c := tlsClient(t, func(cfg *client.Config) { cfg.CAFile = other.CAFile }, srv.URL)
	ctx := ctx30(t)
	_, err := c.Get(ctx, "k")
	wantTLSError(t, ctx, err, "not signed by a CA", srv.URL, "unknown authority")
	var uae x509.UnknownAuthorityError
	if !errors.As(err, &uae) {
		t.Fatalf("err does not unwrap to x509.UnknownAuthorityError: %v", err)
	}
	// Writes and watches end the same way.
	_, err = c.Put(ctx, "k", []byte("v"))
	wantTLSError(t, ctx, err, "not signed by a CA")
	_, err = c.Watch(ctx, "", 0)
	wantTLSError(t, ctx, err, "not signed by a CA")
	_, err = c.Backup(ctx, io.Discard, client.BackupOptions{})
	wantTLSError(t, ctx, err, "not signed by a CA")
	if n := srv.api.count(); n != 0 {
		t.Fatalf("%d requests reached the server", n)
	}
}

// TestTLSEveryEndpointOnce: with several endpoints, some failing TLS and
// some not listening at all, a call tries each and ends with ErrTLS.
func TestTLSEveryEndpointOnce(t *testing.T) {
	pki, other := tlstest.New(t, "ca"), tlstest.New(t, "other")
	s1 := startTLSServer(t, pki.Member(t, "n1"), "", false)
	s2 := startTLSServer(t, pki.Member(t, "n2"), "", false)
	down := "https://" + freeAddr(t)
	c := tlsClient(t, func(cfg *client.Config) { cfg.CAFile = other.CAFile }, s1.URL, down, s2.URL)
	ctx := ctx30(t)
	_, err := c.Put(ctx, "k", []byte("v"))
	wantTLSError(t, ctx, err, "not signed by a CA")
}

// TestTLSOtherEndpointWorks: an endpoint that fails TLS is skipped for
// one that works.
func TestTLSOtherEndpointWorks(t *testing.T) {
	pki, other := tlstest.New(t, "ca"), tlstest.New(t, "other")
	bad := startTLSServer(t, other.Member(t, "n1"), "", false)
	good := startTLSServer(t, pki.Member(t, "n2"), "", false)
	c := tlsClient(t, func(cfg *client.Config) { cfg.CAFile = pki.CAFile }, bad.URL, good.URL)
	for i := range 3 {
		if _, err := c.Get(ctx30(t), "k"); !errors.Is(err, client.ErrNotFound) {
			t.Fatalf("get %d: %v; want ErrNotFound from the good server", i, err)
		}
	}
	// Pinned to the bad one: ErrTLS at once.
	ctx := ctx30(t)
	_, err := c.Get(ctx, "k", client.Endpoint(bad.URL))
	wantTLSError(t, ctx, err, "not signed by a CA")
}

// TestTLSFailsAfterAnAnswer: the only endpoint answers 503 once, then
// presents a certificate from a CA the client does not trust (its files
// were replaced). The call ends with ErrTLS at once, not retrying the
// endpoint until its context ends.
func TestTLSFailsAfterAnAnswer(t *testing.T) {
	pki, other := tlstest.New(t, "ca"), tlstest.New(t, "other")
	mf := pki.Member(t, "n1")
	of := other.Member(t, "n1")
	var once sync.Once
	srv := startTLSServerWith(t, mf, "", false, func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path != "/v1/kv/k" {
				next.ServeHTTP(w, r)
				return
			}
			answered := false
			once.Do(func() {
				copyFile(t, of.KeyFile, mf.KeyFile)
				copyFile(t, of.CertFile, mf.CertFile)
				w.Header().Set("Connection", "close")
				writeJSON(w, http.StatusServiceUnavailable, api.ErrorResponse{Error: api.Error{Code: api.CodeUnavailable, Message: "no leader"}})
				answered = true
			})
			if !answered {
				next.ServeHTTP(w, r)
			}
		})
	})
	c := tlsClient(t, func(cfg *client.Config) { cfg.CAFile = pki.CAFile }, srv.URL)
	ctx := ctx30(t)
	_, err := c.Get(ctx, "k")
	wantTLSError(t, ctx, err, "not signed by a CA")
}

func TestTLSExpiredServerCert(t *testing.T) {
	pki := tlstest.New(t, "ca")
	past := time.Now().Add(-48 * time.Hour)
	files := pki.Issue(t, "member-old", tlsutil.Request{Kind: tlsutil.KindMember, Name: "n1",
		DNSNames: []string{"localhost"}, IPs: []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore: past.Add(-time.Hour), NotAfter: past})
	srv := startTLSServer(t, files, "", false)
	c := tlsClient(t, func(cfg *client.Config) { cfg.CAFile = pki.CAFile }, srv.URL)
	ctx := ctx30(t)
	_, err := c.Get(ctx, "k")
	wantTLSError(t, ctx, err, "expired or is not yet valid", past.UTC().Format(time.RFC3339))
}

func TestTLSNameMismatch(t *testing.T) {
	pki := tlstest.New(t, "ca")
	srv := startTLSServer(t, pki.Member(t, "n1", "other.example"), "", false)
	c := tlsClient(t, func(cfg *client.Config) { cfg.CAFile = pki.CAFile }, srv.URL)
	ctx := ctx30(t)
	_, err := c.Get(ctx, "k")
	wantTLSError(t, ctx, err, "not valid for host 127.0.0.1", "other.example")
}

func TestTLSClientCert(t *testing.T) {
	pki, other := tlstest.New(t, "ca"), tlstest.New(t, "other")
	srv := startTLSServer(t, pki.Member(t, "n1"), pki.CAFile, true)

	t.Run("none", func(t *testing.T) {
		c := tlsClient(t, func(cfg *client.Config) { cfg.CAFile = pki.CAFile }, srv.URL)
		ctx := ctx30(t)
		_, err := c.Get(ctx, "k")
		wantTLSError(t, ctx, err, "requires a client certificate")
	})
	t.Run("other CA", func(t *testing.T) {
		cf := other.Client(t, "mallory")
		c := tlsClient(t, func(cfg *client.Config) {
			cfg.CAFile, cfg.CertFile, cfg.KeyFile = pki.CAFile, cf.CertFile, cf.KeyFile
		}, srv.URL)
		ctx := ctx30(t)
		_, err := c.Put(ctx, "k", []byte("v"))
		wantTLSError(t, ctx, err, "refused our client certificate")
	})
	t.Run("good", func(t *testing.T) {
		cf := pki.Client(t, "alice")
		c := tlsClient(t, func(cfg *client.Config) {
			cfg.CAFile, cfg.CertFile, cfg.KeyFile = pki.CAFile, cf.CertFile, cf.KeyFile
		}, srv.URL)
		if err := putGet(ctx30(t), c); err != nil {
			t.Fatal(err)
		}
	})
}

// TestTLSCAReload: the client's CA file and the server's certificate are
// replaced by ones from a new CA; once the client makes a new connection
// (and has looked at its file again, at most a second later), it works
// with the same Client.
func TestTLSCAReload(t *testing.T) {
	pki := tlstest.New(t, "ca")
	mf := pki.Member(t, "n1")
	srv := startTLSServer(t, mf, "", false)
	dir := t.TempDir()
	caFile := filepath.Join(dir, "ca.pem")
	copyFile(t, pki.CAFile, caFile)
	c := tlsClient(t, func(cfg *client.Config) { cfg.CAFile = caFile }, srv.URL)
	if err := putGet(ctx30(t), c); err != nil {
		t.Fatal(err)
	}

	// Rotate to a new CA: the server first (it reloads at its next
	// handshake), then the client's bundle.
	next := tlstest.New(t, "next")
	nf := next.Member(t, "n1")
	copyFile(t, nf.KeyFile, mf.KeyFile)
	copyFile(t, nf.CertFile, mf.CertFile)
	srv.CloseClientConnections()
	ctx := ctx30(t)
	_, err := c.Get(ctx, "k")
	wantTLSError(t, ctx, err, "not signed by a CA") // the old bundle does not know the new CA

	copyFile(t, next.CAFile, caFile)
	waitFor(t, "a get with the new CA", 10*time.Second, func() error {
		srv.CloseClientConnections()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, err := c.Get(ctx, "k")
		return err
	})
}

// copyFile replaces dst with src's content atomically.
func copyFile(t *testing.T, src, dst string) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst+".tmp", b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(dst+".tmp", dst); err != nil {
		t.Fatal(err)
	}
}

func TestTLSBadFiles(t *testing.T) {
	pki := tlstest.New(t, "ca")
	cf := pki.Client(t, "alice")
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "not.pem")
	if err := os.WriteFile(notPEM, []byte("hello"), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing.pem")
	for _, tc := range []struct {
		name string
		mod  func(*client.Config)
		want string
	}{
		{"missing CA", func(c *client.Config) { c.CAFile = missing }, missing},
		{"CA not PEM", func(c *client.Config) { c.CAFile = notPEM }, notPEM},
		{"cert without key", func(c *client.Config) { c.CertFile = cf.CertFile }, "KeyFile"},
		{"key without cert", func(c *client.Config) { c.KeyFile = cf.KeyFile }, "CertFile"},
		{"key of another cert", func(c *client.Config) { c.CertFile, c.KeyFile = cf.CertFile, pki.CAKeyFile }, cf.CertFile},
		{"missing cert", func(c *client.Config) { c.CertFile, c.KeyFile = missing, cf.KeyFile }, missing},
		{"with HTTPClient", func(c *client.Config) { c.CAFile, c.HTTPClient = pki.CAFile, &http.Client{} }, "HTTPClient"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := client.DefaultConfig()
			cfg.Endpoints = []string{"https://127.0.0.1:1"}
			tc.mod(&cfg)
			err := cfg.Validate()
			if !errors.Is(err, client.ErrInvalidConfig) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate: %v; want ErrInvalidConfig naming %q", err, tc.want)
			}
			if _, err := client.New(cfg); !errors.Is(err, client.ErrInvalidConfig) {
				t.Fatalf("New: %v", err)
			}
			if _, err := client.NewTransport(cfg); tc.name != "with HTTPClient" && !errors.Is(err, client.ErrInvalidConfig) {
				t.Fatalf("NewTransport: %v", err)
			}
		})
	}
}

func TestTLSConfigGiven(t *testing.T) {
	pki := tlstest.New(t, "ca")
	srv := startTLSServer(t, pki.Member(t, "n1"), "", false)
	pem, err := os.ReadFile(pki.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(pem)

	// TLSConfig wins over the files, which are not even read.
	given := &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS13}
	c := tlsClient(t, func(cfg *client.Config) {
		cfg.TLSConfig = given
		cfg.CAFile = filepath.Join(t.TempDir(), "missing.pem")
	}, srv.URL)
	if err := putGet(ctx30(t), c); err != nil {
		t.Fatal(err)
	}
	// It is used: an empty pool trusts nothing.
	c = tlsClient(t, func(cfg *client.Config) { cfg.TLSConfig = &tls.Config{RootCAs: x509.NewCertPool()} }, srv.URL)
	ctx := ctx30(t)
	_, err = c.Get(ctx, "k")
	wantTLSError(t, ctx, err, "not signed by a CA")
}

// TestNewTransport wraps the client's own transport in a caller's
// HTTPClient.
func TestNewTransport(t *testing.T) {
	pki := tlstest.New(t, "ca")
	srv := startTLSServer(t, pki.Member(t, "n1"), "", false)
	tr, err := client.NewTransport(client.Config{CAFile: pki.CAFile})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.CloseIdleConnections()
	var calls sync.Map
	hc := &http.Client{Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
		calls.Store(r.URL.Path, true)
		return tr.RoundTrip(r)
	})}
	c := tlsClient(t, func(cfg *client.Config) { cfg.HTTPClient = hc }, srv.URL)
	if err := putGet(ctx30(t), c); err != nil {
		t.Fatal(err)
	}
	if _, ok := calls.Load("/v1/kv/k"); !ok {
		t.Fatal("the given HTTPClient was not used")
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func TestTLSSchemeMismatch(t *testing.T) {
	pki := tlstest.New(t, "ca")
	t.Run("https client, plain server", func(t *testing.T) {
		plain := startPlainServer(t)
		u := "https://" + strings.TrimPrefix(plain.URL, "http://")
		c := tlsClient(t, func(cfg *client.Config) { cfg.CAFile = pki.CAFile }, u)
		ctx := ctx30(t)
		_, err := c.Get(ctx, "k")
		wantTLSError(t, ctx, err, "https:// used but the server speaks plain HTTP")
	})
	t.Run("http client, TLS server", func(t *testing.T) {
		srv := startTLSServer(t, pki.Member(t, "n1"), "", false)
		u := "http://" + strings.TrimPrefix(srv.URL, "https://")
		c := tlsClient(t, nil, u)
		ctx := ctx30(t)
		_, err := c.Put(ctx, "k", []byte("v"))
		wantTLSError(t, ctx, err, "http:// used but the server speaks HTTPS")
		_, err = c.Watch(ctx, "", 0)
		wantTLSError(t, ctx, err, "http:// used but the server speaks HTTPS")
		_, err = c.Backup(ctx, io.Discard, client.BackupOptions{})
		wantTLSError(t, ctx, err, "http:// used but the server speaks HTTPS")
	})
}
