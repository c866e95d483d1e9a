package httpapi

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/cairn-db/cairn/api"
	"github.com/cairn-db/cairn/fsm"
	"github.com/cairn-db/cairn/internal/tlsutil"
	"github.com/cairn-db/cairn/internal/tlsutil/tlstest"
)

func newSource(t *testing.T, f tlsutil.Files) *tlsutil.Source {
	t.Helper()
	s, err := tlsutil.NewSource(f, nil)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// tlsPeer is a Peer calling as id with the certificate files own (none
// when zero), trusting the servers that roots' CA signed.
func tlsPeer(t *testing.T, id string, own tlsutil.Files, roots *tlsutil.Source) *Peer {
	t.Helper()
	var src *tlsutil.Source
	if !own.IsZero() {
		src = newSource(t, own)
	}
	tr := &http.Transport{DialTLSContext: tlsutil.DialTLSContext(tlsutil.ClientConfig(src, []*tlsutil.Source{roots}), nil)}
	t.Cleanup(tr.CloseIdleConnections)
	return NewPeer(id, &http.Client{Transport: tr, Timeout: 10 * time.Second})
}

// TestMembersOnlyOverTLS serves the API over real TLS as a member does
// (tlsutil.ServerConfig, client certificates verified against the peer
// CA when given, MemberAuthenticator) and calls the members-only routes
// with Peer: a member certificate passes and is the member the leader
// sees; a member claiming another id, a client certificate from the same
// CA, a member certificate from another CA and no certificate are all
// refused, and nothing of theirs reaches the service.
func TestMembersOnlyOverTLS(t *testing.T) {
	pki := tlstest.New(t, "cluster")
	other := tlstest.New(t, "other")
	server := newSource(t, pki.Member(t, "n1"))
	peer := newSource(t, tlsutil.Files{CAFile: pki.CAFile})

	leader := newFake()
	leader.readIndex = 42
	srv := httptest.NewUnstartedServer(New(leader, Options{Members: MemberAuthenticator(peer)}))
	srv.TLS = tlsutil.ServerConfig(server, []*tlsutil.Source{peer}, false)
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the other CA's failed handshakes
	srv.StartTLS()
	t.Cleanup(srv.Close)
	if !strings.HasPrefix(srv.URL, "https://127.0.0.1:") {
		t.Fatalf("server URL %s", srv.URL)
	}
	ctx := context.Background()
	txns := []fsm.Txn{{Ops: []fsm.Op{put("k", "v")}}}

	// A member: its writes and read index reach the leader as its own.
	n2 := tlsPeer(t, "n2", pki.Member(t, "n2"), peer)
	out, err := n2.ForwardWrites(ctx, srv.URL, txns)
	if err != nil || len(out) != 1 || out[0].Err != nil || out[0].Result.Revision != 7 {
		t.Fatalf("member's forwarded writes: %+v %v", out, err)
	}
	if idx, err := n2.ReadIndex(ctx, srv.URL); err != nil || idx != 42 {
		t.Fatalf("member's read index: %d %v", idx, err)
	}
	if _, err := n2.Compact(ctx, srv.URL, 2); err != nil {
		t.Fatalf("member's forwarded compaction: %v", err)
	}
	// A member joins itself; another member's join goes only forwarded.
	if _, err := n2.Join(ctx, srv.URL, api.JoinRequest{ID: "n2", RaftAddr: "r", HTTPURL: "https://h"}, false); err != nil {
		t.Fatalf("a member joining itself: %v", err)
	}
	if _, err := n2.Join(ctx, srv.URL, api.JoinRequest{ID: "n5", RaftAddr: "r", HTTPURL: "https://h"}, true); err != nil {
		t.Fatalf("a join forwarded by a member: %v", err)
	}
	if _, err := n2.Join(ctx, srv.URL, api.JoinRequest{ID: "n6", RaftAddr: "r", HTTPURL: "https://h"}, false); RemoteCode(err) != api.CodePermissionDenied {
		t.Fatalf("a member joining another: %v, want permission_denied", err)
	}
	want := []string{"write k", "compact", "join n2 r https://h false", "join n5 r https://h false", "read-index"}
	if got := reached(leader); !reflect.DeepEqual(got, want) {
		t.Fatalf("the leader saw %q, want %q", got, want)
	}
	if want := []string{"n2", "n2", "", "n2"}; !reflect.DeepEqual(leader.forwarded, want) {
		t.Fatalf("forwarded by %q, want %q", leader.forwarded, want)
	}
	if want := []string{"n2"}; !reflect.DeepEqual(leader.readIndexes, want) {
		t.Fatalf("read indexes for %q, want %q", leader.readIndexes, want)
	}

	// Refused: each one's forwarded writes and read index reach nothing.
	before := reached(leader)
	for _, c := range []struct {
		name      string
		peer      *Peer
		handshake bool // may fail in the handshake instead
	}{
		{"a member naming another member", tlsPeer(t, "n3", pki.Member(t, "n4"), peer), false},
		{"a client certificate from the cluster's CA", tlsPeer(t, "alice", pki.Client(t, "alice"), peer), false},
		{"a member certificate from another CA", tlsPeer(t, "n2", other.Member(t, "n2"), peer), true},
		{"no certificate", tlsPeer(t, "n2", tlsutil.Files{}, peer), false},
	} {
		_, werr := c.peer.ForwardWrites(ctx, srv.URL, txns)
		_, rerr := c.peer.ReadIndex(ctx, srv.URL)
		_, jerr := c.peer.Join(ctx, srv.URL, api.JoinRequest{ID: "n3", RaftAddr: "r", HTTPURL: "https://h"}, false)
		for _, err := range []error{werr, rerr, jerr} {
			if RemoteCode(err) == api.CodePermissionDenied {
				continue
			}
			if c.handshake && err != nil && RemoteCode(err) == "" && errors.Is(err, ErrNoLeader) {
				continue // refused in the handshake: no answer at all
			}
			t.Errorf("%s: %v, want permission_denied", c.name, err)
		}
	}
	if got := reached(leader); !reflect.DeepEqual(got, before) {
		t.Fatalf("refused callers reached the leader: %q, before %q", got, before)
	}

	// A client (a client certificate, or none) is still served as one.
	alice := tlsPeer(t, "alice", pki.Client(t, "alice"), peer)
	if st, err := alice.Status(ctx, srv.URL); err != nil || st.ID != "n1" {
		t.Fatalf("a client's status: %+v %v", st, err)
	}
}

// TestMemberAuthenticator: no TLS, no certificate, and a certificate
// that is not a member's are ErrPermissionDenied.
func TestMemberAuthenticator(t *testing.T) {
	pki := tlstest.New(t, "cluster")
	auth := MemberAuthenticator(newSource(t, tlsutil.Files{CAFile: pki.CAFile}))
	r := httptest.NewRequest("POST", ReadIndexPath, nil)
	if _, err := auth(r); !errors.Is(err, ErrPermissionDenied) || !strings.Contains(err.Error(), "not a TLS connection") {
		t.Fatalf("plain HTTP: %v", err)
	}
	r.TLS = &tls.ConnectionState{}
	if _, err := auth(r); !errors.Is(err, ErrPermissionDenied) || !strings.Contains(err.Error(), "no client certificate") {
		t.Fatalf("no certificate: %v", err)
	}
	client := newSource(t, pki.Client(t, "alice"))
	cert, _, _ := client.Current()
	r.TLS.PeerCertificates = []*x509.Certificate{cert.Leaf}
	if _, err := auth(r); !errors.Is(err, ErrPermissionDenied) || !errors.Is(err, tlsutil.ErrNotMember) {
		t.Fatalf("client certificate: %v", err)
	}
	member := newSource(t, pki.Member(t, "n2"))
	cert, _, _ = member.Current()
	r.TLS.PeerCertificates = []*x509.Certificate{cert.Leaf}
	if id, err := auth(r); err != nil || id != "n2" {
		t.Fatalf("member certificate: %q %v", id, err)
	}
}
