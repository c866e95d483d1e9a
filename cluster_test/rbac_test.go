package cluster_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cairn-db/cairn/api"
	"github.com/cairn-db/cairn/fsm"
	"github.com/cairn-db/cairn/httpapi"
)

// TestAccessControl enables access control over HTTP on a three-member
// cluster (every change sent to a follower, which forwards it typed to
// the leader), then checks allowed and refused requests on every member:
// followers forward writes with the user stamped; a permission revoked
// while writes are in flight is honoured at apply (a write stamped at
// the old auth revision is refused once the revocation has committed);
// the audit user is in /v1/log; disabling restores open access.
func TestAccessControl(t *testing.T) {
	c := StartCluster(t, 3, nil)
	leader := c.Leader(t)
	follower := c.Followers(t)[0]
	do := func(idx int, method, path, body, token string) Resp {
		t.Helper()
		hdr := http.Header{}
		if token != "" {
			hdr.Set("Authorization", "Bearer "+token)
		}
		var b []byte
		if body != "" {
			b = []byte(body)
		}
		return c.Do(t, idx, method, path, b, hdr)
	}
	ok := func(r Resp) Resp {
		t.Helper()
		if r.Code != http.StatusOK {
			t.Fatalf("want 200, got %s", r)
		}
		return r
	}

	// A write before access control: no user.
	ok(c.Put(t, follower, "a/pre", "v", ""))
	for _, step := range []struct{ method, path, body string }{
		{"PUT", "/v1/auth/users/root", `{"password":"root-pw-1"}`},
		{"PUT", "/v1/auth/users/root/roles/root", ""},
		{"PUT", "/v1/auth/roles/rw-a", ""},
		{"PUT", "/v1/auth/roles/rw-a/permissions", `{"key":"a/","prefix":true,"access":"readwrite"}`},
		{"PUT", "/v1/auth/users/alice", `{"password":"alice-pw-1"}`},
		{"PUT", "/v1/auth/users/alice/roles/rw-a", ""},
		{"PUT", "/v1/auth/roles/r-b", ""},
		{"PUT", "/v1/auth/roles/r-b/permissions", `{"key":"b/","prefix":true,"access":"read"}`},
		{"PUT", "/v1/auth/users/bob", `{"password":"bob-pw-1"}`},
		{"PUT", "/v1/auth/users/bob/roles/r-b", ""},
	} {
		ok(do(follower, step.method, step.path, step.body, ""))
	}
	expectError(t, do(follower, "POST", "/v1/auth/users/nobody/roles/root", "", ""), http.StatusMethodNotAllowed, api.CodeMethod)
	expectError(t, do(follower, "PUT", "/v1/auth/users/nobody/roles/root", "", ""), http.StatusNotFound, api.CodeNotFound)
	var enabled api.AuthChangeResponse
	decode(t, ok(do(follower, "POST", "/v1/auth/enable", "", "")), &enabled)

	// Every member applies the same state.
	for i := range c.N() {
		waitFor(t, fmt.Sprintf("auth enabled on member %d", i), waitConverge, func() error {
			var st api.AuthStatus
			r := do(i, "GET", "/v1/auth/status", "", "")
			if err := json.Unmarshal(r.Body, &st); err != nil || !st.Enabled || st.Revision != enabled.Revision {
				return fmt.Errorf("status %s", r)
			}
			return nil
		})
	}

	login := func(idx int, user, pw string) string {
		t.Helper()
		var ar api.AuthenticateResponse
		decode(t, ok(do(idx, "POST", "/v1/auth/authenticate", fmt.Sprintf(`{"user":%q,"password":%q}`, user, pw), "")), &ar)
		return ar.Token
	}
	expectError(t, do(follower, "POST", "/v1/auth/authenticate", `{"user":"alice","password":"wrong"}`, ""), http.StatusUnauthorized, api.CodeUnauthenticated)
	root := login(leader, "root", "root-pw-1")
	alice := login(follower, "alice", "alice-pw-1") // a token works on every member
	bob := login(c.Followers(t)[1], "bob", "bob-pw-1")

	for i := range c.N() {
		key := fmt.Sprintf("a/%d", i)
		r := expectError(t, do(i, "PUT", "/v1/kv/"+key, "v", ""), http.StatusUnauthorized, api.CodeUnauthenticated)
		_ = r
		expectError(t, do(i, "PUT", "/v1/kv/b/"+key, "v", alice), http.StatusForbidden, api.CodePermissionDenied)
		expectError(t, do(i, "PUT", "/v1/kv/b/x", "v", bob), http.StatusForbidden, api.CodePermissionDenied)
		expectError(t, do(i, "GET", "/v1/kv/a/pre", "", bob), http.StatusForbidden, api.CodePermissionDenied)
		expectError(t, do(i, "GET", "/v1/kv?prefix=a", "", alice), http.StatusForbidden, api.CodePermissionDenied)
		expectError(t, do(i, "GET", "/v1/log", "", alice), http.StatusForbidden, api.CodePermissionDenied)
		expectError(t, do(i, "POST", "/v1/compact", `{"revision":1}`, alice), http.StatusForbidden, api.CodePermissionDenied)
		expectError(t, do(i, "GET", "/v1/auth/users", "", bob), http.StatusForbidden, api.CodePermissionDenied)
		ok(do(i, "PUT", "/v1/kv/"+key, "v", alice))
		ok(do(i, "GET", "/v1/kv/"+key, "", alice))
		ok(do(i, "GET", "/v1/kv?prefix=a/", "", alice))
		if r := do(i, "GET", "/v1/kv/b/none", "", bob); r.Code != http.StatusNotFound {
			t.Fatalf("bob reads b/: %s", r)
		}
		ok(do(i, "GET", "/v1/status", "", ""))
		ok(do(i, "GET", "/v1/cluster/members", "", root))
	}

	// The audit user is in the log, apart from the client's free-form user.
	ok(do(follower, "POST", "/v1/txn", `{"operations":[{"op":"put","key":"a/txn","value":"eA=="}],"user":"claims-to-be-root"}`, alice))
	var lg api.LogResponse
	decode(t, ok(do(follower, "GET", "/v1/log", "", root)), &lg)
	users := map[string]string{}
	for _, rec := range lg.Records {
		for _, o := range rec.Operations {
			users[o.Key] = rec.AuthUser + "/" + rec.User
		}
	}
	for key, want := range map[string]string{"a/pre": "/", "a/0": "alice/", "a/1": "alice/", "a/2": "alice/", "a/txn": "alice/claims-to-be-root"} {
		if users[key] != want {
			t.Errorf("log: %s written by %q, want %q", key, users[key], want)
		}
	}

	// Writes in flight while alice's role is revoked: each is committed or
	// refused; none sent after the revocation returned is committed.
	oldRev := enabled.Revision
	var wg sync.WaitGroup
	var mu sync.Mutex
	var revoked bool
	var afterRevoke []string
	var before, after int // writes answered, sent before and after the revocation
	stop := make(chan struct{})
	for w := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				mu.Lock()
				sentAfter := revoked
				mu.Unlock()
				r, err := c.HTTP.Do(context.Background(), "PUT", c.URL(w%c.N())+fmt.Sprintf("/v1/kv/a/w%d-%d", w, i), []byte("v"),
					http.Header{"Authorization": {"Bearer " + alice}})
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				if sentAfter {
					after++
				} else {
					before++
				}
				mu.Unlock()
				switch {
				case r.Code == http.StatusOK && sentAfter:
					mu.Lock()
					afterRevoke = append(afterRevoke, r.String())
					mu.Unlock()
				case r.Code == http.StatusOK, r.Code == http.StatusForbidden:
				default:
					t.Errorf("write in flight: %s", r)
					return
				}
			}
		}()
	}
	count := func(n *int, want int) func() error {
		return func() error {
			mu.Lock()
			defer mu.Unlock()
			if *n < want {
				return fmt.Errorf("%d writes answered, want %d", *n, want)
			}
			return nil
		}
	}
	waitFor(t, "writes in flight before the revocation", 30*time.Second, count(&before, 30))
	var rv api.AuthChangeResponse
	decode(t, ok(do(follower, "DELETE", "/v1/auth/users/alice/roles/rw-a", "", root)), &rv)
	mu.Lock()
	revoked = true
	mu.Unlock()
	waitFor(t, "writes sent after the revocation", 30*time.Second, count(&after, 30))
	close(stop)
	wg.Wait()
	if len(afterRevoke) > 0 {
		t.Fatalf("writes sent after the revocation were committed: %v", afterRevoke)
	}

	// A write stamped at the old revision, as a member checked it before
	// the revocation, reaches the leader after it: refused at apply.
	leader = c.Leader(t)
	peer := httpapi.NewPeer(c.Node(follower).ID(), c.HTTP.Client())
	out, err := peer.ForwardWrites(context.Background(), c.URL(leader),
		[]fsm.Txn{{Ops: []fsm.Op{{Kind: fsm.OpPut, Key: "a/stale", Value: []byte("v")}}, AuthUser: "alice", AuthRevision: oldRev}})
	if err != nil || len(out) != 1 || out[0].Err != nil || httpapi.RemoteCode(out[0].Result.Err) != api.CodePermissionDenied {
		t.Fatalf("stale stamped write: %+v %v", out, err)
	}
	// The same write stamped as root at the old revision is re-checked and allowed.
	out, err = peer.ForwardWrites(context.Background(), c.URL(leader),
		[]fsm.Txn{{Ops: []fsm.Op{{Kind: fsm.OpPut, Key: "a/stale", Value: []byte("v")}}, AuthUser: "root", AuthRevision: oldRev}})
	if err != nil || len(out) != 1 || out[0].Err != nil || out[0].Result.Err != nil {
		t.Fatalf("root's stale stamped write: %+v %v", out, err)
	}
	// Nor can a write without a user get in.
	out, err = peer.ForwardWrites(context.Background(), c.URL(leader),
		[]fsm.Txn{{Ops: []fsm.Op{{Kind: fsm.OpPut, Key: "a/nouser", Value: []byte("v")}}, AuthRevision: rv.Revision}})
	if err != nil || len(out) != 1 || httpapi.RemoteCode(out[0].Result.Err) != api.CodePermissionDenied {
		t.Fatalf("write without a user: %+v %v", out, err)
	}
	for i := range c.N() {
		waitFor(t, "the revocation everywhere", waitConverge, func() error {
			if r := do(i, "PUT", "/v1/kv/a/late", "v", alice); r.Code != http.StatusForbidden {
				return fmt.Errorf("alice's write after the revocation: %s", r)
			}
			return nil
		})
	}

	// Failures are counted.
	if r := ok(do(follower, "GET", "/metrics", "", "")); !strings.Contains(string(r.Body), `cairn_auth_failures_total{reason="denied"}`) {
		t.Fatalf("metrics without auth failures")
	}

	// Disabling restores open access on every member.
	ok(do(follower, "POST", "/v1/auth/disable", "", root))
	for i := range c.N() {
		waitFor(t, "open access", waitConverge, func() error {
			if r := c.Put(t, i, "b/open", "v", ""); r.Code != http.StatusOK {
				return fmt.Errorf("anonymous write: %s", r)
			}
			return nil
		})
	}
	c.WaitConverged(t)
}
