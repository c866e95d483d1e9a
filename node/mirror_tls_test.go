package node

import (
	"context"
	"crypto/rand"
	"strings"
	"testing"
	"time"

	"github.com/cairn-db/cairn/auth"
	"github.com/cairn-db/cairn/internal/tlsutil/tlstest"
)

// TestMirrorTLSAndAuthSource: a standby follows a source that serves
// TLS only (client certificates required) with access control on, as a
// mirror user whose role reads the whole keyspace: its member-local
// credentials are the source's CA, a client certificate and the user's
// password. A user without that role cannot read the stream.
func TestMirrorTLSAndAuthSource(t *testing.T) {
	pki := tlstest.New(t, "source-ca")
	sc := tlsTestConfig(t, pki, "s1")
	sc.Bootstrap = true
	sc.BcryptCost = auth.MinBcryptCost
	src := startNode(t, sc)
	waitFor(t, "source ready", 10*time.Second, src.Ready)
	ctx := context.Background()
	putN(t, src, "a", 20) // before access control: Write is not stamped
	hash := func(pw string) []byte {
		h, err := auth.HashPasswordCost(pw, auth.MinBcryptCost)
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	for _, c := range []auth.Change{
		{Kind: auth.AddUser, User: "root", PasswordHash: hash("root-pw")},
		{Kind: auth.GrantRole, User: "root", Role: auth.RootRole},
		{Kind: auth.AddRole, Role: "mirror"},
		{Kind: auth.GrantPermission, Role: "mirror", Permission: auth.Permission{Key: "", Prefix: true, Access: auth.Read}},
		{Kind: auth.AddUser, User: "dr", PasswordHash: hash("dr-pw")},
		{Kind: auth.GrantRole, User: "dr", Role: "mirror"},
		{Kind: auth.AddRole, Role: "some"},
		{Kind: auth.GrantPermission, Role: "some", Permission: auth.Permission{Key: "a/", Prefix: true, Access: auth.Read}},
		{Kind: auth.AddUser, User: "partial", PasswordHash: hash("partial-pw")},
		{Kind: auth.GrantRole, User: "partial", Role: "some"},
		{Kind: auth.Enable, TokenKey: key},
	} {
		if _, err := src.ChangeAuth(ctx, c); err != nil {
			t.Fatalf("auth change %v: %v", c.Kind, err)
		}
	}
	client := pki.Client(t, "standby-m1")

	// A user whose role reads part of the keyspace only: refused.
	bad := startStandalone(t, "m0", func(c *Config) {
		c.MirrorCAFile, c.MirrorCertFile, c.MirrorKeyFile = client.CAFile, client.CertFile, client.KeyFile
		c.MirrorUser, c.MirrorPassword = "partial", "partial-pw"
	})
	if _, err := bad.MirrorStart(ctx, mirrorStart(src.HTTPURL())); err != nil {
		t.Fatalf("start (the source's status is open): %v", err)
	}
	waitFor(t, "the partial user refused", 10*time.Second, func() error {
		st, _ := bad.MirrorStatus(ctx)
		if !strings.Contains(st.LastError, "permission_denied") {
			return errorf("last error %q", st.LastError)
		}
		return nil
	})
	if bad.fsm.Revision() != 0 {
		t.Fatal("a refused mirror applied records")
	}

	standby := startStandalone(t, "m1", func(c *Config) {
		c.MirrorCAFile, c.MirrorCertFile, c.MirrorKeyFile = client.CAFile, client.CertFile, client.KeyFile
		c.MirrorUser, c.MirrorPassword = "dr", "dr-pw"
	})
	if _, err := standby.MirrorStart(ctx, mirrorStart(src.HTTPURL())); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the standby caught up over TLS as the mirror user", 20*time.Second, caughtUp(src, standby))
}
