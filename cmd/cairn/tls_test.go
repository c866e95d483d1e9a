package main

import (
	"bytes"
	"context"
	"encoding/json"
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
	"github.com/cairn-db/cairn/internal/tlsutil"
	"github.com/cairn-db/cairn/internal/tlsutil/tlstest"
)

// The CLI's client side over HTTPS, in process (Run), against a fake of
// the HTTP API (puts and gets of one leader) served with tlsutil's server
// configuration.

// fakeKV answers member discovery, PUT and GET /v1/kv/KEY.
type fakeKV struct {
	url string
	mu  sync.Mutex
	kv  map[string][]byte
	rev uint64
}

func (f *fakeKV) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	w.Header().Set(api.HeaderNode, "f1")
	w.Header().Set(api.HeaderLeaderURL, f.url)
	w.Header().Set(api.HeaderRevision, strconv.FormatUint(f.rev, 10))
	reply := func(status int, v any) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(v)
	}
	key, isKV := strings.CutPrefix(r.URL.Path, "/v1/kv/")
	switch {
	case r.Method == http.MethodGet && r.URL.Path == "/v1/cluster/members":
		reply(http.StatusOK, api.MembersResponse{Leader: "f1", Members: []api.Member{
			{ID: "f1", RaftAddr: "127.0.0.1:1", HTTPURL: f.url, Role: "voter", Leader: true, Reachable: true}}})
	case isKV && r.Method == http.MethodPut:
		b, _ := io.ReadAll(r.Body)
		if f.kv == nil {
			f.kv = map[string][]byte{}
		}
		f.rev++
		f.kv[key] = b
		reply(http.StatusOK, api.WriteResponse{Revision: f.rev, Time: time.Now()})
	case isKV && r.Method == http.MethodGet && f.kv[key] != nil:
		_, _ = w.Write(f.kv[key])
	default:
		reply(http.StatusNotFound, api.ErrorResponse{Error: api.Error{Code: api.CodeNotFound, Message: "not found"}})
	}
}

// startTLSFake serves fakeKV over HTTPS with server's certificate,
// requiring a client certificate signed by clientCA when it is not "".
func startTLSFake(t *testing.T, server tlsutil.Files, clientCA string) *httptest.Server {
	t.Helper()
	src, err := tlsutil.NewSource(tlsutil.Files{CertFile: server.CertFile, KeyFile: server.KeyFile}, nil)
	if err != nil {
		t.Fatal(err)
	}
	var cas []*tlsutil.Source
	if clientCA != "" {
		ca, err := tlsutil.NewSource(tlsutil.Files{CAFile: clientCA}, nil)
		if err != nil {
			t.Fatal(err)
		}
		cas = append(cas, ca)
	}
	f := &fakeKV{}
	s := httptest.NewUnstartedServer(f)
	s.Config.ErrorLog = log.New(io.Discard, "", 0)
	s.TLS = tlsutil.ServerConfig(src, cas, clientCA != "")
	s.StartTLS()
	t.Cleanup(s.Close)
	f.url = s.URL
	return s
}

// runTLSCLI runs the CLI in process with a 30 s context (no --timeout:
// a TLS failure must end the command by itself) and returns stdout,
// stderr as main prints it, and the exit status.
func runTLSCLI(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out, errb bytes.Buffer
	err := Run(ctx, append([]string{"cairn"}, args...), &out, &errb)
	if ctx.Err() != nil {
		t.Fatalf("cairn %v ran until the test's deadline: %v", args, err)
	}
	if err != nil {
		errb.WriteString("cairn: " + err.Error() + "\n")
	}
	return out.String(), errb.String(), exitCode(err)
}

// clearTLSEnv unsets the CLI's environment variables for the test.
func clearTLSEnv(t *testing.T) {
	for _, v := range []string{"CAIRN_CLUSTER", "CAIRN_CACERT", "CAIRN_CERT", "CAIRN_KEY", "CAIRN_TIMEOUT"} {
		t.Setenv(v, "")
	}
}

func TestCLITLS(t *testing.T) {
	clearTLSEnv(t)
	pki, other := tlstest.New(t, "ca"), tlstest.New(t, "other")
	srv := startTLSFake(t, pki.Member(t, "n1"), pki.CAFile)
	admin := pki.Client(t, "admin")
	wrongName := startTLSFake(t, pki.Member(t, "n2", "other.example"), pki.CAFile)
	cluster := "--cluster=" + srv.URL
	tlsFlags := []string{"--cacert", pki.CAFile, "--cert", admin.CertFile, "--key", admin.KeyFile}

	if _, errOut, code := runTLSCLI(t, append(append([]string{cluster}, tlsFlags...), "put", "greeting", "hello")...); code != 0 {
		t.Fatalf("put: exit %d: %s", code, errOut)
	}
	// The docs' form: a host name, the flags before the command.
	port := srv.URL[strings.LastIndex(srv.URL, ":")+1:]
	out, errOut, code := runTLSCLI(t, append(append([]string{"--cluster", "https://localhost:" + port}, tlsFlags...), "get", "greeting")...)
	if code != 0 || out != "hello" {
		t.Fatalf("get: exit %d, stdout %q: %s", code, out, errOut)
	}

	for _, tc := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"unknown CA", []string{cluster, "--cacert", other.CAFile, "--cert", admin.CertFile, "--key", admin.KeyFile, "get", "greeting"},
			exitUnavailable, "not signed by a CA"},
		{"no client certificate", []string{cluster, "--cacert", pki.CAFile, "get", "greeting"},
			exitUnavailable, "requires a client certificate"},
		{"http:// to HTTPS", append(append([]string{"--cluster", "http://" + strings.TrimPrefix(srv.URL, "https://")}, tlsFlags...), "put", "k", "v"),
			exitUnavailable, "http:// used but the server speaks HTTPS"},
		{"name mismatch", append(append([]string{"--cluster", wrongName.URL}, tlsFlags...), "get", "greeting"),
			exitUnavailable, "not valid for host 127.0.0.1: it names other.example"},
		{"missing CA file", []string{cluster, "--cacert", filepath.Join(t.TempDir(), "nope.pem"), "get", "greeting"},
			exitUsage, "nope.pem"},
		{"key file is not a key", []string{cluster, "--cacert", pki.CAFile, "--cert", admin.CertFile, "--key", pki.CAFile, "get", "greeting"},
			exitUsage, admin.CertFile},
		{"cert without key", []string{cluster, "--cacert", pki.CAFile, "--cert", admin.CertFile, "get", "greeting"},
			exitUsage, "--cert and --key go together"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, errOut, code := runTLSCLI(t, tc.args...)
			if code != tc.code || !strings.Contains(errOut, tc.want) || out != "" {
				t.Fatalf("exit %d (want %d), stdout %q, stderr %q (want it to mention %q)", code, tc.code, out, errOut, tc.want)
			}
		})
	}
}

func TestCLITLSEnv(t *testing.T) {
	clearTLSEnv(t)
	pki := tlstest.New(t, "ca")
	srv := startTLSFake(t, pki.Member(t, "n1"), pki.CAFile)
	admin := pki.Client(t, "admin")
	t.Setenv("CAIRN_CLUSTER", srv.URL)
	t.Setenv("CAIRN_CACERT", pki.CAFile)
	t.Setenv("CAIRN_CERT", admin.CertFile)
	t.Setenv("CAIRN_KEY", admin.KeyFile)
	if _, errOut, code := runTLSCLI(t, "put", "k", "v"); code != 0 {
		t.Fatalf("put: exit %d: %s", code, errOut)
	}
	if out, errOut, code := runTLSCLI(t, "get", "k"); code != 0 || out != "v" {
		t.Fatalf("get: exit %d, %q: %s", code, out, errOut)
	}
	// Without the client certificate the server refuses us.
	t.Setenv("CAIRN_CERT", "")
	t.Setenv("CAIRN_KEY", "")
	if _, errOut, code := runTLSCLI(t, "get", "k"); code != exitUnavailable || !strings.Contains(errOut, "client certificate") {
		t.Fatalf("get without a client certificate: exit %d: %s", code, errOut)
	}
	// A flag wins over the environment.
	t.Setenv("CAIRN_CACERT", filepath.Join(t.TempDir(), "missing.pem"))
	if _, errOut, code := runTLSCLI(t, "--cacert", pki.CAFile, "--cert", admin.CertFile, "--key", admin.KeyFile, "get", "k"); code != 0 {
		t.Fatalf("--cacert over CAIRN_CACERT: exit %d: %s", code, errOut)
	}
	if _, errOut, code := runTLSCLI(t, "get", "k"); code != exitUsage || !strings.Contains(errOut, "missing.pem") {
		t.Fatalf("missing CAIRN_CACERT file: exit %d: %s", code, errOut)
	}
}

// TestCLITLSBenchRotate: bench --rotate builds its own HTTP client, with
// the TLS flags.
func TestCLITLSBenchRotate(t *testing.T) {
	clearTLSEnv(t)
	pki := tlstest.New(t, "ca")
	srv := startTLSFake(t, pki.Member(t, "n1"), pki.CAFile)
	admin := pki.Client(t, "admin")
	hostPort := strings.TrimPrefix(srv.URL, "https://") // host:port means https:// with --cacert
	out, errOut, code := runTLSCLI(t, "--cluster", hostPort, "--cacert", pki.CAFile, "--cert", admin.CertFile, "--key", admin.KeyFile,
		"bench", "--op", "put", "--rotate", "--clients", "2", "--connections", "1", "--keys", "10",
		"--duration", "200ms", "--warmup", "0s", "--json")
	if code != 0 {
		t.Fatalf("bench: exit %d: %s", code, errOut)
	}
	var res struct {
		Ops    int64 `json:"ops"`
		Errors int64 `json:"errors"`
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("bench output %q: %v", out, err)
	}
	if res.Ops == 0 || res.Errors != 0 {
		t.Fatalf("bench: %s", out)
	}
	// With the wrong CA, the bench's client fails at once.
	other := tlstest.New(t, "other")
	_, errOut, code = runTLSCLI(t, "--cluster", hostPort, "--cacert", other.CAFile,
		"bench", "--op", "put", "--rotate", "--keys", "10", "--duration", "200ms", "--warmup", "0s")
	if code == 0 {
		t.Fatalf("bench with an unknown CA succeeded: %s", errOut)
	}
}

// TestCLITLSDocExamples runs docs/cli.md's TLS examples, with the
// certificate files the Certificates section's commands write, against the
// fake server: each line verbatim but for https://n1.example.com:8001,
// which becomes the server's address (its certificate names 127.0.0.1).
func TestCLITLSDocExamples(t *testing.T) {
	clearTLSEnv(t)
	data, err := os.ReadFile(filepath.Join("..", "..", "docs", "cli.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(data), "\n## TLS\n")
	if !ok {
		t.Fatal("docs/cli.md has no TLS section")
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
		t.Fatal("docs/cli.md's TLS section has no examples")
	}

	t.Chdir(t.TempDir())
	ca, _, err := tlsutil.NewCA("cairn-ca", 0)
	if err != nil {
		t.Fatal(err)
	}
	write := func(name string, data []byte) {
		if err := os.MkdirAll(filepath.Dir(name), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := tlsutil.WriteFile(name, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	issue := func(base string, req tlsutil.Request) tlsutil.Files {
		cert, key, err := ca.Issue(req)
		if err != nil {
			t.Fatal(err)
		}
		f := tlsutil.Files{CertFile: base + ".pem", KeyFile: base + "-key.pem"}
		write(f.CertFile, cert)
		write(f.KeyFile, key)
		return f
	}
	write(filepath.Join("certs", "ca.pem"), ca.CertPEM)
	issue(filepath.Join("certs", "client-admin"), tlsutil.Request{Kind: tlsutil.KindClient, Name: "admin"})
	member := issue(filepath.Join("server", "member-n1"), tlsutil.Request{Kind: tlsutil.KindMember, Name: "n1",
		DNSNames: []string{"localhost"}, IPs: []net.IP{net.IPv4(127, 0, 0, 1)}})
	srv := startTLSFake(t, member, filepath.Join("certs", "ca.pem"))

	var outs []string
	for _, line := range lines {
		if strings.ContainsAny(line, "'\"#$|&;<>\\`*") {
			t.Fatalf("example %q needs a shell; keep the examples plain", line)
		}
		words := strings.Fields(strings.ReplaceAll(line, "https://n1.example.com:8001", srv.URL))
		if words[0] != "cairn" {
			t.Fatalf("example %q does not run cairn", line)
		}
		out, errOut, code := runTLSCLI(t, words[1:]...)
		if code != 0 {
			t.Fatalf("%s: exit %d: %s", line, code, errOut)
		}
		outs = append(outs, out)
	}
	if got := outs[len(outs)-1]; got != "hello" {
		t.Fatalf("the last example printed %q, want hello", got)
	}
}
