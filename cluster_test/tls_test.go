package cluster_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/cairn-db/cairn/api"
	"github.com/cairn-db/cairn/fsm"
	"github.com/cairn-db/cairn/httpapi"
	"github.com/cairn-db/cairn/internal/cluster"
	"github.com/cairn-db/cairn/internal/tlsutil"
	"github.com/cairn-db/cairn/internal/tlsutil/tlstest"
	"github.com/cairn-db/cairn/node"
)

// Transport security (issue 15): clusters whose members run with TLS,
// and the attacks the issue lists, made as an attacker on the same
// network would make them.

// StartTLSCluster starts an n-member in-process cluster whose members run
// with TLS (member certificates of a new test CA) and whose harness
// client speaks HTTPS with a client certificate of that CA.
func StartTLSCluster(t *testing.T, n int, opts cluster.Options) *Cluster {
	t.Helper()
	if opts.TLS == nil {
		opts.TLS = tlstest.New(t, "cluster-ca")
	}
	configure := opts.Configure
	opts.Configure = func(cfg *node.Config) {
		cfg.CommitTimeout = 5 * time.Millisecond
		cfg.ApplyTimeout = 5 * time.Second
		cfg.ShutdownTimeout = 5 * time.Second
		if configure != nil {
			configure(cfg)
		}
	}
	c := cluster.New(t, opts)
	c.Start(t, n)
	return c
}

func TestTLSClusterWritesAndReadsEverywhere(t *testing.T) {
	c := StartTLSCluster(t, 3, cluster.Options{})
	leader := c.Leader(t)
	for i := 0; i < c.N(); i++ {
		if !strings.HasPrefix(c.URL(i), "https://") {
			t.Fatalf("%s URL %s, want https", c.Config(i).ID, c.URL(i))
		}
		st, err := c.Status(i)
		if err != nil {
			t.Fatal(err)
		}
		if !st.TLS || st.Insecure {
			t.Errorf("%s status tls=%t insecure=%t, want tls=true insecure=false", st.ID, st.TLS, st.Insecure)
		}
	}
	// Every member takes writes: followers forward them to the leader
	// over HTTPS with their member certificates.
	var last uint64
	for i := 0; i < c.N(); i++ {
		key := fmt.Sprintf("tls/%d", i)
		r := c.Do(t, i, http.MethodPut, "/v1/kv/"+key, []byte(c.Config(i).ID), http.Header{"Idempotency-Key": {key}})
		for tries := 0; r.Code == http.StatusServiceUnavailable && tries < 50; tries++ {
			c.Leader(t)
			r = c.Do(t, i, http.MethodPut, "/v1/kv/"+key, []byte(c.Config(i).ID), http.Header{"Idempotency-Key": {key}})
		}
		if r.Code != http.StatusOK {
			t.Fatalf("put through %s: %s", c.Config(i).ID, r)
		}
		last = max(last, r.Revision())
	}
	// Linearizable reads on followers ask the leader for a read index,
	// over HTTPS too.
	for i := 0; i < c.N(); i++ {
		for j := 0; j < c.N(); j++ {
			r := c.Get(t, i, fmt.Sprintf("tls/%d", j), "")
			if r.Code != http.StatusOK || string(r.Body) != c.Config(j).ID {
				t.Fatalf("linearizable get of tls/%d from %s: %s", j, c.Config(i).ID, r)
			}
			if r.Revision() < last {
				t.Errorf("linearizable get from %s reflects revision %d < %d", c.Config(i).ID, r.Revision(), last)
			}
		}
	}
	// Members see each other over HTTPS.
	for _, m := range c.Members(t, leader).Members {
		if !m.Reachable || !strings.HasPrefix(m.HTTPURL, "https://") {
			t.Errorf("member %+v, want reachable over https", m)
		}
	}
	if head := c.WaitConverged(t); head.Revision < last {
		t.Errorf("converged at %d, want at least %d", head.Revision, last)
	}
}

// attacker is a raft client built with hashicorp/raft's own RPC encoding
// (its NetworkTransport) over a stream layer of the test's choice.
type attacker struct {
	trans *raft.NetworkTransport
}

// attackStream is a raft stream layer for an attacker: plain TCP (cfg
// nil) or TLS with the given configuration.
type attackStream struct {
	net.Listener
	cfg *tls.Config
}

func (s *attackStream) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	d := &net.Dialer{Timeout: timeout}
	if s.cfg == nil {
		return d.Dial("tcp", string(addr))
	}
	td := tls.Dialer{NetDialer: d, Config: s.cfg}
	return td.Dial("tcp", string(addr))
}

func newAttacker(t *testing.T, cfg *tls.Config) *attacker {
	t.Helper()
	var trans *raft.NetworkTransport
	if cfg == nil {
		// raft's own TCP transport, exactly as a member without TLS.
		tr, err := raft.NewTCPTransport("127.0.0.1:0", nil, 1, 2*time.Second, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		trans = tr
	} else {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		trans = raft.NewNetworkTransport(&attackStream{Listener: ln, cfg: cfg}, 1, 2*time.Second, io.Discard)
	}
	t.Cleanup(func() { _ = trans.Close() })
	return &attacker{trans: trans}
}

// appendEntries sends one AppendEntries in term carrying a crafted write
// of key, as if from a leader whose log ends at prev.
func (a *attacker) appendEntries(id, addr string, term, prev uint64, key string) error {
	data, err := fsm.EncodeCommand(fsm.Command{Batch: &fsm.Batch{
		Time:   time.Now(),
		Limits: fsm.Limits{MaxValueSize: 1 << 20},
		Txns:   []fsm.Txn{{Ops: []fsm.Op{{Kind: fsm.OpPut, Key: key, Value: []byte("injected")}}, User: "attacker"}},
	}})
	if err != nil {
		return err
	}
	req := &raft.AppendEntriesRequest{
		RPCHeader:         raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, ID: []byte("attacker"), Addr: []byte(a.trans.LocalAddr())},
		Term:              term,
		PrevLogEntry:      prev,
		PrevLogTerm:       term,
		Entries:           []*raft.Log{{Index: prev + 1, Term: term, Type: raft.LogCommand, Data: data, AppendedAt: time.Now()}},
		LeaderCommitIndex: prev + 1,
	}
	var resp raft.AppendEntriesResponse
	if err := a.trans.AppendEntries(raft.ServerID(id), raft.ServerAddress(addr), req, &resp); err != nil {
		return err
	}
	return fmt.Errorf("accepted: %+v", resp)
}

// clusterIntact checks that the attacks changed nothing: the same leader
// in the same term, every acknowledged write (keys prefix0000.. up to
// count, revision acked) present on every member, no injected key
// anywhere, and equal chain heads.
func clusterIntact(t *testing.T, c *Cluster, leader int, term uint64, prefix string, count int, acked uint64, injected []string) {
	t.Helper()
	if l, tm := c.LeaderNow(); l != leader || tm != term {
		t.Errorf("leader %d in term %d after the attacks, want %s still leading in term %d", l, tm, c.Config(leader).ID, term)
	}
	head := c.WaitConvergedAt(t, acked)
	for i := 0; i < c.N(); i++ {
		for k := 0; k < count; k++ {
			key := fmt.Sprintf("%s%04d", prefix, k)
			r := c.Get(t, i, key, "consistency=stale")
			if r.Code != http.StatusOK || string(r.Body) != fmt.Sprintf("v%d", k) {
				t.Fatalf("%s on %s: %s", key, c.Config(i).ID, r)
			}
		}
		for _, key := range injected {
			if r := c.Get(t, i, key, "consistency=stale"); r.Code != http.StatusNotFound {
				t.Errorf("injected %s on %s: %s", key, c.Config(i).ID, r)
			}
		}
	}
	if l, tm := c.LeaderNow(); l != leader || tm != term {
		t.Errorf("leader %d in term %d after the checks, want %s in term %d", l, tm, c.Config(leader).ID, term)
	}
	t.Logf("chain heads equal at revision %d (%.12s)", head.Revision, head.Hash)
}

// member certificate of another CA, and a client certificate of the
// cluster's own CA, as TLS configurations an attacker would dial with
// (the attacker does not check the server: the server must refuse).
func attackerTLS(t *testing.T, files tlsutil.Files) *tls.Config {
	t.Helper()
	cert, err := tls.LoadX509KeyPair(files.CertFile, files.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{cert}, InsecureSkipVerify: true} //nolint:gosec // an attacker
}

func TestTLSRaftRefusesNonMembers(t *testing.T) {
	c := StartTLSCluster(t, 3, cluster.Options{})
	const prefix, count = "acked/", 60
	acked := c.WriteKeys(t, prefix, count)
	leader := c.Leader(t)
	st, err := c.Status(leader)
	if err != nil {
		t.Fatal(err)
	}
	term := st.Term
	fol := c.Followers(t)

	other := tlstest.New(t, "other-ca")
	attacks := []struct {
		name string
		cfg  *tls.Config
	}{
		{"no certificate (plain TCP)", nil},
		{"member certificate of another CA", attackerTLS(t, other.Member(t, c.Config(fol[0]).ID))},
		{"client certificate of the cluster's CA", attackerTLS(t, c.PKI().Client(t, "mallory"))},
		{"TLS without a certificate", &tls.Config{MinVersion: tls.VersionTLS13, InsecureSkipVerify: true}}, //nolint:gosec // an attacker
	}
	var injected []string
	for ai, a := range attacks {
		at := newAttacker(t, a.cfg)
		for _, target := range []struct {
			idx  int
			term uint64
		}{{fol[0], term}, {fol[1], term}, {leader, term + 1}} {
			st, err := c.Status(target.idx)
			if err != nil {
				t.Fatal(err)
			}
			key := fmt.Sprintf("injected/%d/%s", ai, st.ID)
			injected = append(injected, key)
			if err := at.appendEntries(st.ID, c.Member(target.idx).RaftAddr(), target.term, st.CommitIndex, key); err == nil {
				t.Errorf("%s: AppendEntries to %s in term %d was not refused", a.name, st.ID, target.term)
			} else {
				t.Logf("%s: AppendEntries to %s (term %d): %v", a.name, st.ID, target.term, err)
			}
		}
	}
	clusterIntact(t, c, leader, term, prefix, count, acked, injected)
	// Refused in the handshake: raft never decoded anything.
	for i := 0; i < c.N(); i++ {
		logs := c.Member(i).Logs()
		if !strings.Contains(logs, "raft connection refused") {
			t.Errorf("%s logged no refused raft connection", c.Config(i).ID)
		}
		for _, bad := range []string{"failed to decode incoming command", "unknown rpc type"} {
			if strings.Contains(logs, bad) {
				t.Errorf("%s: raft decoded an attacker's bytes (%q in its log)", c.Config(i).ID, bad)
			}
		}
	}
	// And the cluster still takes writes.
	if r := c.Put(t, fol[0], "after", "ok", ""); r.Code != http.StatusOK {
		t.Fatalf("put after the attacks: %s", r)
	}
}

// forgedBatch is the body a member forwards to the leader: one write.
func forgedBatch(t *testing.T, key string) []byte {
	t.Helper()
	body, err := fsm.EncodeCommand(fsm.Command{Batch: &fsm.Batch{
		Txns: []fsm.Txn{{Ops: []fsm.Op{{Kind: fsm.OpPut, Key: key, Value: []byte("forged")}}, User: "forger"}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	return body
}

func TestTLSMemberRoutesNeedMemberCertificate(t *testing.T) {
	c := StartTLSCluster(t, 3, cluster.Options{})
	leader := c.Leader(t)
	fol := c.Followers(t)
	before := c.WaitConverged(t)

	// The harness's client certificate is the cluster CA's, but not a
	// member's; the forwarded header names a real member.
	hdr := http.Header{api.HeaderForwarded: {c.Config(fol[0]).ID}, "Content-Type": {"application/octet-stream"}}
	for _, idx := range []int{leader, fol[0]} {
		r := c.Do(t, idx, http.MethodPost, httpapi.ForwardWritesPath, forgedBatch(t, "forged/writes"), hdr)
		expectError(t, r, http.StatusForbidden, api.CodePermissionDenied)
		r = c.Do(t, idx, http.MethodPost, httpapi.ReadIndexPath, nil, hdr)
		expectError(t, r, http.StatusForbidden, api.CodePermissionDenied)
	}
	head := c.WaitConverged(t)
	if head.Revision != before.Revision {
		t.Errorf("revision %d after the refused calls, want %d", head.Revision, before.Revision)
	}
	for i := 0; i < c.N(); i++ {
		if r := c.Get(t, i, "forged/writes", "consistency=stale"); r.Code != http.StatusNotFound {
			t.Errorf("forged/writes on %s: %s", c.Config(i).ID, r)
		}
	}
}

// A join under TLS needs a member certificate: a client certificate of
// the cluster's CA cannot add a fake voter, through a follower or the
// leader.
func TestTLSJoinNeedsMemberCertificate(t *testing.T) {
	c := StartTLSCluster(t, 3, cluster.Options{})
	leader := c.Leader(t)
	fol := c.Followers(t)
	fake := api.JoinRequest{ID: "fake", RaftAddr: "127.0.0.1:9", HTTPURL: "https://127.0.0.1:9"}
	for _, idx := range []int{fol[0], leader} {
		r := c.PostJSON(t, idx, "/v1/cluster/members", fake)
		expectError(t, r, http.StatusForbidden, api.CodePermissionDenied)
	}
	if _, ok := findMember(c.Members(t, leader), "fake"); ok {
		t.Fatalf("fake member joined")
	}
	cf := c.Node(leader).Raft().GetConfiguration()
	if err := cf.Error(); err != nil {
		t.Fatal(err)
	}
	if n := len(cf.Configuration().Servers); n != 3 {
		t.Errorf("%d servers in the raft configuration, want 3", n)
	}
}

// A plaintext client gets nothing from a TLS listener, and a client
// without a certificate fails its handshake (client certificates are
// required by default).
func TestTLSPlaintextAndNoCertificateRefused(t *testing.T) {
	c := StartTLSCluster(t, 1, cluster.Options{})
	before := c.WaitConverged(t)
	ctx := context.Background()
	plain := cluster.NewHTTP(5 * time.Second)
	defer plain.CloseIdleConnections()
	for _, path := range []string{"/v1/status", "/v1/kv/plain"} {
		r, err := plain.Do(ctx, http.MethodPut, "http://"+c.Config(0).HTTPAddr+path, []byte("x"), nil)
		if err == nil && (r.Code != http.StatusBadRequest || !strings.Contains(string(r.Body), "HTTPS")) {
			t.Errorf("plaintext PUT %s: %s, want a refusal", path, r)
		}
	}
	noCert := cluster.NewHTTPTLS(5*time.Second, tlsutil.ClientConfig(nil, []*tlsutil.Source{mustSource(t, tlsutil.Files{CAFile: c.PKI().CAFile})}))
	defer noCert.CloseIdleConnections()
	for _, path := range []string{"/v1/kv/nocert", httpapi.ForwardWritesPath} {
		if r, err := noCert.Do(ctx, http.MethodPut, c.URL(0)+path, []byte("x"), http.Header{api.HeaderForwarded: {"n1"}}); err == nil {
			t.Errorf("PUT %s without a client certificate: %s, want a failed handshake", path, r)
		}
	}
	// A client certificate of another CA fails too.
	other := tlstest.New(t, "other-ca")
	otherSrc := mustSource(t, tlsutil.Files{CertFile: other.Client(t, "eve").CertFile, KeyFile: other.Client(t, "eve").KeyFile, CAFile: c.PKI().CAFile})
	otherCA := cluster.NewHTTPTLS(5*time.Second, tlsutil.ClientConfig(otherSrc, []*tlsutil.Source{otherSrc}))
	defer otherCA.CloseIdleConnections()
	if r, err := otherCA.Do(ctx, http.MethodPut, c.URL(0)+"/v1/kv/othercert", []byte("x"), nil); err == nil {
		t.Errorf("PUT with another CA's client certificate: %s, want a failed handshake", r)
	}
	if head := c.WaitConverged(t); head.Revision != before.Revision {
		t.Errorf("revision %d after refused requests, want %d", head.Revision, before.Revision)
	}
}

// Without required client certificates (--client-cert-auth=false) a
// client without one reaches the API, but not the members-only routes.
func TestTLSMemberRoutesWithoutClientCertAuth(t *testing.T) {
	c := StartTLSCluster(t, 1, cluster.Options{Configure: func(cfg *node.Config) { cfg.ClientCertAuth = false }})
	noCert := cluster.NewHTTPTLS(5*time.Second, tlsutil.ClientConfig(nil, []*tlsutil.Source{mustSource(t, tlsutil.Files{CAFile: c.PKI().CAFile})}))
	defer noCert.CloseIdleConnections()
	ctx := context.Background()
	r, err := noCert.Do(ctx, http.MethodPut, c.URL(0)+"/v1/kv/open", []byte("v"), nil)
	if err != nil || r.Code != http.StatusOK {
		t.Fatalf("put without a client certificate, none required: %v %s", err, r)
	}
	before := r.Revision()
	hdr := http.Header{api.HeaderForwarded: {"n1"}}
	r, err = noCert.Do(ctx, http.MethodPost, c.URL(0)+httpapi.ForwardWritesPath, forgedBatch(t, "forged"), hdr)
	if err != nil {
		t.Fatal(err)
	}
	expectError(t, r, http.StatusForbidden, api.CodePermissionDenied)
	r, err = noCert.Do(ctx, http.MethodPost, c.URL(0)+httpapi.ReadIndexPath, nil, hdr)
	if err != nil {
		t.Fatal(err)
	}
	expectError(t, r, http.StatusForbidden, api.CodePermissionDenied)
	if head := c.WaitConverged(t); head.Revision != before {
		t.Errorf("revision %d after forged writes, want %d", head.Revision, before)
	}
}

func mustSource(t *testing.T, files tlsutil.Files) *tlsutil.Source {
	t.Helper()
	s, err := tlsutil.NewSource(files, nil)
	if err != nil {
		t.Fatal(err)
	}
	s.SetCheckInterval(0)
	return s
}

// servedSerial dials addr with cfg and returns the serial of the
// certificate the server presented, once the server accepted the
// connection (an HTTPS port when https, else a raft port).
func servedSerial(addr string, cfg *tls.Config, https bool) (string, error) {
	d := tls.Dialer{NetDialer: &net.Dialer{Timeout: 2 * time.Second}, Config: cfg}
	conn, err := d.Dial("tcp", addr)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	tc, ok := conn.(*tls.Conn)
	if !ok {
		return "", errors.New("not a TLS connection")
	}
	// In TLS 1.3 the server checks the client's certificate after the
	// client's handshake ends: a refusal arrives as an alert on the first
	// read. Read a byte to see it: the HTTPS port answers a request; the
	// raft port sends nothing (and is sent nothing, so raft decodes
	// nothing), so a read that times out means accepted.
	_ = conn.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if https {
		if _, err := conn.Write([]byte("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")); err != nil {
			return "", err
		}
	}
	if _, err := conn.Read(make([]byte, 1)); err != nil && !isTimeout(err) {
		return "", err
	}
	return tc.ConnectionState().PeerCertificates[0].SerialNumber.String(), nil
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// serialOf returns the serial of the first certificate in certPEM.
func serialOf(t *testing.T, certPEM []byte) string {
	t.Helper()
	b, _ := pem.Decode(certPEM)
	if b == nil {
		t.Fatal("no PEM certificate")
	}
	cert, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return cert.SerialNumber.String()
}

// Certificates and CA bundles rotate without a restart and without a
// failed write beyond the writer's own retries.
func TestTLSRotationUnderLoad(t *testing.T) {
	pki := tlstest.New(t, "cluster-ca")
	c := StartTLSCluster(t, 3, cluster.Options{TLS: pki, Slots: 3, Links: true})
	leader := c.Leader(t)

	// The writer: one key after another through the members in turn,
	// each retried with its idempotency key on a transient failure, as
	// clients do. It stops at the end of the test.
	var (
		committed atomic.Int64
		failed    atomic.Value // string: the first write that failed for good
		stop      = make(chan struct{})
		wg        sync.WaitGroup
	)
	failed.Store("")
	wg.Add(1)
	go func() {
		defer wg.Done()
		for k := 0; ; k++ {
			select {
			case <-stop:
				return
			default:
			}
			key := fmt.Sprintf("rot/%05d", k)
			var last string
			ok := false
			for try := 0; try < 100 && !ok; try++ {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				r, err := c.HTTP.Do(ctx, http.MethodPut, c.URL(k%3)+"/v1/kv/"+key, []byte("v"), http.Header{"Idempotency-Key": {key}})
				cancel()
				switch {
				case err == nil && r.Code == http.StatusOK:
					ok = true
				case err == nil && r.Code != http.StatusServiceUnavailable && r.Code != http.StatusGatewayTimeout:
					last = r.String()
					try = 100 // not transient
				default:
					last = fmt.Sprint(err, r)
					select {
					case <-stop:
						return
					case <-time.After(20 * time.Millisecond):
					}
				}
			}
			if !ok {
				failed.CompareAndSwap("", fmt.Sprintf("%s: %s", key, last))
				return
			}
			committed.Add(1)
		}
	}()
	var stopOnce sync.Once
	stopWriter := func() {
		stopOnce.Do(func() { close(stop) })
		wg.Wait()
	}
	defer stopWriter()
	progress := func(what string) {
		t.Helper()
		n := committed.Load()
		waitFor(t, "writes to go on "+what, 20*time.Second, func() error {
			if f := failed.Load().(string); f != "" {
				t.Fatalf("a write failed %s: %s", what, f)
			}
			if committed.Load() < n+20 {
				return fmt.Errorf("%d writes committed, %d before", committed.Load(), n)
			}
			return nil
		})
	}
	// newConns makes everyone open new connections: the links drop every
	// raft connection, the harness its keep-alive ones.
	newConns := func() {
		for i := 0; i < 3; i++ {
			for j := 0; j < 3; j++ {
				if i != j {
					c.Link(i, j).Down()
					c.Link(i, j).Up()
				}
			}
		}
		c.HTTP.CloseIdleConnections()
	}
	progress("before rotating")

	// What a prober presents to reach each port: a member certificate of
	// the given CA (the raft port takes members only).
	probe := func(ca *tlsutil.CA, caFile string) *tls.Config {
		p := &tlstest.PKI{Dir: t.TempDir(), CA: ca, CAFile: caFile}
		files := p.Member(t, "prober")
		cert, err := tls.LoadX509KeyPair(files.CertFile, files.KeyFile)
		if err != nil {
			t.Fatal(err)
		}
		return &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{cert}, InsecureSkipVerify: true} //nolint:gosec // checks the serial only
	}
	waitServed := func(what string, cfg *tls.Config, want []string) {
		t.Helper()
		waitFor(t, what, 20*time.Second, func() error {
			for i := 0; i < 3; i++ {
				for k, addr := range []string{c.Config(i).HTTPAddr, c.Member(i).RaftAddr()} {
					got, err := servedSerial(addr, cfg, k == 0)
					if err != nil {
						return fmt.Errorf("%s at %s: %w", c.Config(i).ID, addr, err)
					}
					if got != want[i] {
						return fmt.Errorf("%s at %s serves serial %s, want %s", c.Config(i).ID, addr, got, want[i])
					}
				}
			}
			return nil
		})
	}

	// 1. Every member's certificate is re-issued by the same CA.
	want := make([]string, 3)
	for i := range want {
		want[i] = serialOf(t, c.ReissueMember(t, i, nil))
	}
	c.ReissueClient(t, nil)
	waitServed("re-issued certificates to be served", probe(pki.CA, pki.CAFile), want)
	newConns()
	progress("after re-issuing the certificates")

	// 2. A new CA: first a bundle of both, then certificates from the new
	// one, then a bundle of the new one only.
	newCA, _, err := tlsutil.NewCA("cluster-ca-2", 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := cluster.WriteFileAtomic(pki.CAFile, append(append([]byte{}, pki.CA.CertPEM...), newCA.CertPEM...), 0o644); err != nil {
		t.Fatal(err)
	}
	newProbe := probe(newCA, pki.CAFile)
	// Every member takes the new CA's certificates once it read the
	// bundle (the member certificates are still the old CA's).
	waitServed("the bundle to be read", newProbe, want)
	newConns()
	progress("after the CA bundle")

	for i := range want {
		want[i] = serialOf(t, c.ReissueMember(t, i, newCA))
	}
	c.ReissueClient(t, newCA)
	waitServed("the new CA's certificates to be served", newProbe, want)
	newConns()
	progress("after the new CA's certificates")

	if err := cluster.WriteFileAtomic(pki.CAFile, newCA.CertPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	oldProbe := probe(pki.CA, pki.CAFile)
	waitFor(t, "the old CA to be refused everywhere", 20*time.Second, func() error {
		for i := 0; i < 3; i++ {
			for k, addr := range []string{c.Config(i).HTTPAddr, c.Member(i).RaftAddr()} {
				if _, err := servedSerial(addr, oldProbe, k == 0); err == nil {
					return fmt.Errorf("%s at %s still takes the old CA's certificates", c.Config(i).ID, addr)
				}
			}
		}
		return nil
	})
	newConns()
	progress("after dropping the old CA")
	waitServed("the new CA's certificates to be served", newProbe, want)

	if l, _ := c.LeaderNow(); l < 0 {
		t.Errorf("no leader after the rotation (was %s)", c.Config(leader).ID)
	}
	stopWriter()
	if f := failed.Load().(string); f != "" {
		t.Fatalf("a write failed: %s", f)
	}
	head := c.WaitConverged(t)
	t.Logf("%d writes committed during the rotation; converged at revision %d", committed.Load(), head.Revision)
	if int64(head.Revision) < committed.Load() {
		t.Errorf("head revision %d below the %d writes acknowledged", head.Revision, committed.Load())
	}
}
