package client_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/cairn-db/cairn/client"
	"github.com/cairn-db/cairn/internal/tlsutil"
)

// exampleEnv gives the test helpers what they need outside a test: temp
// dirs, cleanups and a fatal that panics.
type exampleEnv struct{ cleanups []func() }

func (e *exampleEnv) Helper() {}
func (e *exampleEnv) TempDir() string {
	d, err := os.MkdirTemp("", "cairn-example-")
	if err != nil {
		panic(err)
	}
	e.Cleanup(func() { _ = os.RemoveAll(d) })
	return d
}
func (e *exampleEnv) Fatalf(format string, args ...any) { panic(fmt.Sprintf(format, args...)) }
func (e *exampleEnv) Cleanup(f func())                  { e.cleanups = append(e.cleanups, f) }
func (e *exampleEnv) close() {
	for i := len(e.cleanups) - 1; i >= 0; i-- {
		e.cleanups[i]()
	}
}

// startExampleNode starts a fresh single-node cluster and returns its URL
// and a function that stops it.
func startExampleNode() (url string, stop func()) {
	env := &exampleEnv{}
	nodes := startCluster(env, 1)
	return nodes[0].HTTPURL(), env.close
}

func Example() {
	url, stop := startExampleNode()
	defer stop()

	cfg := client.DefaultConfig()
	cfg.Endpoints = []string{url}
	c, err := client.New(cfg)
	if err != nil {
		panic(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	w, err := c.Put(ctx, "greeting", []byte("hello, world"))
	if err != nil {
		panic(err)
	}
	kv, err := c.Get(ctx, "greeting")
	if err != nil {
		panic(err)
	}
	fmt.Printf("%s = %q (written at revision %d)\n", kv.Key, kv.Value, w.Revision)

	_, err = c.Get(ctx, "missing")
	fmt.Println("missing:", errors.Is(err, client.ErrNotFound))
	// Output:
	// greeting = "hello, world" (written at revision 1)
	// missing: true
}

// A transaction with preconditions: move a balance between two accounts
// only if neither changed since it was read.
func ExampleTxn() {
	url, stop := startExampleNode()
	defer stop()
	cfg := client.DefaultConfig()
	cfg.Endpoints = []string{url}
	c, _ := client.New(cfg)
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	a, _ := c.Put(ctx, "accounts/alice", []byte("100"))
	b, _ := c.Put(ctx, "accounts/bob", []byte("0"))

	w, err := c.Txn().
		If(client.KeyAtRevision("accounts/alice", a.Revision), client.KeyAtRevision("accounts/bob", b.Revision)).
		Put("accounts/alice", []byte("60")).
		Put("accounts/bob", []byte("40")).
		User("alice").Description("transfer 40").
		Commit(ctx)
	if err != nil {
		panic(err)
	}
	fmt.Println("committed at revision", w.Revision)

	// The same preconditions now fail: both keys moved on.
	_, err = c.Txn().If(client.KeyAtRevision("accounts/alice", a.Revision)).Delete("accounts/alice").Commit(ctx)
	var ce *client.ConflictError
	if errors.As(err, &ce) {
		for _, cf := range ce.Conflicts {
			fmt.Printf("conflict on %s: now at revision %d\n", cf.Key, cf.CurrentRevision)
		}
	}
	// Output:
	// committed at revision 3
	// conflict on accounts/alice: now at revision 3
}

// Optimistic concurrency: read, compute, write back only if unchanged,
// and retry on conflict.
func ExampleClient_Put_retryOnConflict() {
	url, stop := startExampleNode()
	defer stop()
	cfg := client.DefaultConfig()
	cfg.Endpoints = []string{url}
	c, _ := client.New(cfg)
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	increment := func() error {
		for {
			var n int
			rev := uint64(0) // 0: the key must be absent
			kv, err := c.Get(ctx, "counter")
			switch {
			case errors.Is(err, client.ErrNotFound):
			case err != nil:
				return err
			default:
				fmt.Sscan(string(kv.Value), &n)
				rev = kv.ModRevision
			}
			_, err = c.Put(ctx, "counter", []byte(fmt.Sprint(n+1)), client.IfRevision(rev))
			if errors.Is(err, client.ErrConflict) {
				continue // someone else wrote first: read again
			}
			return err
		}
	}
	done := make(chan error)
	for range 5 {
		go func() { done <- increment() }()
	}
	for range 5 {
		if err := <-done; err != nil {
			panic(err)
		}
	}
	kv, _ := c.Get(ctx, "counter")
	fmt.Println("counter =", string(kv.Value))
	// Output:
	// counter = 5
}

// Reading old state: every version stays readable at its revision until
// compacted.
func ExampleAtRevision() {
	url, stop := startExampleNode()
	defer stop()
	cfg := client.DefaultConfig()
	cfg.Endpoints = []string{url}
	c, _ := client.New(cfg)
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	v1, _ := c.Put(ctx, "config", []byte("v1"))
	c.Put(ctx, "config", []byte("v2"))

	old, _ := c.Get(ctx, "config", client.AtRevision(v1.Revision))
	cur, _ := c.Get(ctx, "config")
	fmt.Printf("at %d: %s; now: %s\n", v1.Revision, old.Value, cur.Value)

	versions, _ := c.History(ctx, "config")
	for _, v := range versions {
		fmt.Printf("revision %d: %s\n", v.Revision, v.Value)
	}

	if err := c.Compact(ctx, 2); err != nil {
		panic(err)
	}
	_, err := c.Get(ctx, "config", client.AtRevision(v1.Revision))
	var ce *client.CompactedError
	if errors.As(err, &ce) {
		fmt.Println("compacted; oldest revision is", ce.Oldest)
	}
	// Output:
	// at 1: v1; now: v2
	// revision 2: v2
	// revision 1: v1
	// compacted; oldest revision is 2
}

// Listing a prefix as one consistent snapshot, page by page.
func ExampleClient_List() {
	url, stop := startExampleNode()
	defer stop()
	cfg := client.DefaultConfig()
	cfg.Endpoints = []string{url}
	c, _ := client.New(cfg)
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	for _, name := range []string{"ann", "bob", "cy"} {
		c.Put(ctx, "users/"+name, []byte(name))
	}
	it := c.List(ctx, "users/", client.Limit(2))
	for it.Next() {
		fmt.Println(it.KV().Key)
	}
	if err := it.Err(); err != nil {
		panic(err)
	}
	// Output:
	// users/ann
	// users/bob
	// users/cy
}

// startExampleTLSServer issues a CA, a member certificate for the loopback
// addresses and a client certificate (what `cairn cert` writes), and
// serves a fake of the API's puts and gets over HTTPS with client
// certificates required. It returns the server's URL, the files, and a
// second CA's file that signed nothing of it.
func startExampleTLSServer() (url string, pki tlsutil.Files, otherCA string, stop func()) {
	env := &exampleEnv{}
	dir := env.TempDir()
	issue := func(base string, ca *tlsutil.CA, req tlsutil.Request) tlsutil.Files {
		cert, key, err := ca.Issue(req)
		if err != nil {
			panic(err)
		}
		f := tlsutil.Files{CertFile: filepath.Join(dir, base+".pem"), KeyFile: filepath.Join(dir, base+"-key.pem")}
		if err := tlsutil.WriteFile(f.CertFile, cert, 0o644); err != nil {
			panic(err)
		}
		if err := tlsutil.WriteFile(f.KeyFile, key, 0o600); err != nil {
			panic(err)
		}
		return f
	}
	newCA := func(name string) (*tlsutil.CA, string) {
		ca, _, err := tlsutil.NewCA(name, 0)
		if err != nil {
			panic(err)
		}
		file := filepath.Join(dir, name+".pem")
		if err := tlsutil.WriteFile(file, ca.CertPEM, 0o644); err != nil {
			panic(err)
		}
		return ca, file
	}
	ca, caFile := newCA("ca")
	_, otherCA = newCA("other-ca")
	member := issue("member-n1", ca, tlsutil.Request{Kind: tlsutil.KindMember, Name: "n1",
		DNSNames: []string{"localhost"}, IPs: []net.IP{net.IPv4(127, 0, 0, 1)}})
	srv := startTLSServer(env, member, caFile, true)
	pki = issue("client-admin", ca, tlsutil.Request{Kind: tlsutil.KindClient, Name: "admin"})
	pki.CAFile = caFile
	return srv.URL, pki, otherCA, env.close
}

// ExampleConfig_tls connects over HTTPS with the cluster's CA and a client
// certificate (docs/client.md, "TLS"). The server here is a fake of the
// API: see startExampleTLSServer.
func ExampleConfig_tls() {
	url, files, otherCA, stop := startExampleTLSServer()
	defer stop()

	cfg := client.DefaultConfig()
	cfg.Endpoints = []string{url} // https://127.0.0.1:PORT
	cfg.CAFile = files.CAFile     // the CA that signs the members' certificates
	cfg.CertFile = files.CertFile // a client certificate, for members that require one
	cfg.KeyFile = files.KeyFile
	c, err := client.New(cfg) // ErrInvalidConfig if a file does not load
	if err != nil {
		panic(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := c.Put(ctx, "greeting", []byte("hello over TLS")); err != nil {
		panic(err)
	}
	kv, err := c.Get(ctx, "greeting")
	if err != nil {
		panic(err)
	}
	fmt.Println(string(kv.Value))

	// A client that does not trust the server's CA fails at once with
	// ErrTLS, well before ctx ends.
	cfg.CAFile = otherCA
	untrusting, err := client.New(cfg)
	if err != nil {
		panic(err)
	}
	defer untrusting.Close()
	_, err = untrusting.Get(ctx, "greeting")
	fmt.Println(errors.Is(err, client.ErrTLS), ctx.Err() == nil)
	// Output:
	// hello over TLS
	// true true
}
