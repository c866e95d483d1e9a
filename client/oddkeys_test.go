package client_test

import (
	"testing"
)

// TestOddKeys writes, reads, lists the history of and deletes keys whose
// path form the server would refuse unescaped (empty, "." and ".."
// segments, docs/api.md "Request rules"): the client escapes them, so
// every key a transaction can write is reachable by its own routes.
func TestOddKeys(t *testing.T) {
	nodes := startCluster(t, 1)
	c := newClient(t, nil, nodes[0].HTTPURL())
	ctx := ctxT(t)
	for _, key := range []string{".", "..", "a//b", "/registry/x", "a/../b", "./a", "a/.", "a/", "%2F", "%2E%2E", "é/ü", "?x=1#y"} {
		if _, err := c.Put(ctx, key, []byte("v:"+key)); err != nil {
			t.Fatalf("put %q: %v", key, err)
		}
		kv, err := c.Get(ctx, key)
		if err != nil || kv.Key != key || string(kv.Value) != "v:"+key {
			t.Fatalf("get %q: %+v, %v", key, kv, err)
		}
		vs, err := c.History(ctx, key)
		if err != nil || len(vs) != 1 || vs[0].Key != key {
			t.Fatalf("history %q: %+v, %v", key, vs, err)
		}
		if _, err := c.Delete(ctx, key); err != nil {
			t.Fatalf("delete %q: %v", key, err)
		}
	}
}
