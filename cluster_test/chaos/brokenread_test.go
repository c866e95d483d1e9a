package chaos

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/cairn-db/cairn/client"
	"github.com/cairn-db/cairn/internal/testnet"
)

// The checker must catch a broken read path. These tests feed it the
// history a server would produce if it answered linearizable reads from
// local (possibly stale) state, and require porcupine to reject it.

// TestCheckerRejectsStaleReadAsLinearizable: a constructed history. Two
// writes are acknowledged one after the other; a "linearizable" read that
// starts after the second returned shows the first.
func TestCheckerRejectsStaleReadAsLinearizable(t *testing.T) {
	w1 := opInput{Kind: opWrite, Name: "put", Keys: []int{0}, Vals: []string{"a"}, Idem: "1"}
	w2 := opInput{Kind: opWrite, Name: "put", Keys: []int{0}, Vals: []string{"b"}, Idem: "2"}
	get := opInput{Kind: opGet, Name: "get", Keys: []int{0}}
	good := []porcupine.Operation{
		{ClientId: 0, Input: w1, Call: 0, Output: opOutput{OK: true, Rev: 1}, Return: 10},
		{ClientId: 0, Input: w2, Call: 20, Output: opOutput{OK: true, Rev: 2}, Return: 30},
		{ClientId: 1, Input: get, Call: 25, Output: opOutput{Found: true, Val: "a", Mod: 1, Rev: 1}, Return: 35}, // concurrent with w2: fine
		{ClientId: 1, Input: get, Call: 40, Output: opOutput{Found: true, Val: "b", Mod: 2, Rev: 2}, Return: 50},
	}
	if res, _, _ := porcupineCheck(t, "constructed-good", good, 10*time.Second); res != porcupine.Ok {
		t.Fatalf("a linearizable history was rejected: %s", res)
	}
	stale := append(append([]porcupine.Operation(nil), good[:2]...),
		porcupine.Operation{ClientId: 1, Input: get, Call: 40, Output: opOutput{Found: true, Val: "a", Mod: 1, Rev: 1}, Return: 50})
	res, html, hist := porcupineCheck(t, "constructed-stale-read", stale, 10*time.Second)
	if res != porcupine.Illegal {
		t.Fatalf("stale read accepted as linearizable: porcupine says %s", res)
	}
	t.Logf("porcupine rejects the stale read; visualization %s, history %s", html, hist)
	removeArtifacts(t, html, hist)

	// A failed compare-and-set whose precondition held is caught too.
	cas := opInput{Kind: opWrite, Name: "cas", Keys: []int{0}, Vals: []string{"c"}, Conds: []cond{{Key: 0, Rev: 2}}, Idem: "3"}
	bad := append(append([]porcupine.Operation(nil), good...),
		porcupine.Operation{ClientId: 2, Input: cas, Call: 60, Output: opOutput{Conflict: true}, Return: 70})
	if res, html, hist := porcupineCheck(t, "constructed-bad-conflict", bad, 10*time.Second); res != porcupine.Illegal {
		t.Fatalf("spurious conflict accepted: %s", res)
	} else {
		removeArtifacts(t, html, hist)
	}
}

// TestChaosBrokenReadPathIsCaught: a real cluster. A follower is cut off
// from the others; writes go on through the majority; then reads served
// from that follower's local state (what a server that answered
// linearizable reads locally would return) are recorded as linearizable
// reads. The checker rejects the history. It runs in every mode
// CAIRN_CHAOS_MODE selects.
func TestChaosBrokenReadPathIsCaught(t *testing.T) {
	if testing.Short() {
		t.Skip("chaos: skipped with -short")
	}
	for _, mode := range chaosModes(t) {
		t.Run(mode, func(t *testing.T) { brokenReadPath(t, mode) })
	}
}

func brokenReadPath(t *testing.T, mode string) {
	c := newCluster(t, mode, nodeOpts{})
	c.startN(3)
	l := c.leader()
	f := c.others(l)[0]
	cl, err := client.New(c.tlsConfig([]string{c.URL(l)}, 5*time.Second, 100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	w := &workload{start: time.Now()}
	put := func(val string) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		in := opInput{Kind: opWrite, Name: "put", Keys: []int{0}, Vals: []string{val}, Idem: newIdem()}
		call := w.now()
		res, err := cl.Put(ctx, "k0", []byte(val), client.WithIdempotencyKey(in.Idem))
		if err != nil {
			t.Fatalf("put: %v", err)
		}
		w.add(record{client: 0, call: call, ret: w.now(), in: in, out: opOutput{OK: true, Rev: res.Revision}})
	}
	put("before")
	// Wait until the follower has it, then cut the follower off.
	pollUntil(t, "follower to apply the first write", 10*time.Second, func() error {
		_, err := cl.Get(context.Background(), "k0", client.Consistency("stale"), client.Endpoint(c.URL(f)))
		return err
	})
	c.Partition([]int{f}, c.others(f), testnet.Blackhole)
	put("after")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	call := w.now()
	kv, err := cl.Get(ctx, "k0", client.Consistency("stale"), client.Endpoint(c.URL(f)))
	if err != nil {
		t.Fatal(err)
	}
	w.add(record{client: 1, call: call, ret: w.now(), in: opInput{Kind: opGet, Name: "get", Keys: []int{0}},
		out: opOutput{Found: true, Val: string(kv.Value), Mod: kv.ModRevision, Rev: kv.Revision}})
	if string(kv.Value) != "before" {
		t.Fatalf("the cut-off follower answered %q; expected its stale %q", kv.Value, "before")
	}
	c.Heal()
	var ops []porcupine.Operation
	for _, o := range w.ops {
		ops = append(ops, porcupine.Operation{ClientId: o.client, Input: o.in, Call: o.call, Output: o.out, Return: o.ret})
	}
	res, html, hist := porcupineCheck(t, "broken-read-path", ops, 10*time.Second)
	if res != porcupine.Illegal {
		t.Fatalf("a locally served read was accepted as linearizable: porcupine says %s", res)
	}
	t.Logf("porcupine rejects the locally served read; visualization %s, history %s", html, hist)
	removeArtifacts(t, html, hist)
}

// removeArtifacts deletes the files an expected rejection wrote, unless
// CAIRN_CHAOS_KEEP is set (to look at the visualization).
func removeArtifacts(t *testing.T, files ...string) {
	if os.Getenv("CAIRN_CHAOS_KEEP") != "" {
		return
	}
	for _, f := range files {
		if f != "" {
			_ = os.Remove(f)
		}
	}
}
