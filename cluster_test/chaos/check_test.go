package chaos

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/cairn-db/cairn/api"
	"github.com/cairn-db/cairn/internal/cluster"
)

// historyStats summarizes a resolved history.
type historyStats struct {
	ops, acked, conflicts, reads, unknown, unknownCommitted, incrs int
}

// resolve turns the recorded history into porcupine operations, checking
// it against the converged transaction log on the way:
//
//   - every acknowledged write is in the log, exactly once, at the
//     revision it was acknowledged with, writing what it asked;
//   - no write answered "conflict" is in the log;
//   - every record in the log is a write of the history (no phantom
//     writes) and no idempotency key appears twice (nothing applied twice);
//   - an ambiguous write in the log committed at that revision (its return
//     time becomes the end of the history); one not in the log never
//     happened and is dropped.
//
// Stale reads are checked here, not by porcupine: each must show a value
// some committed write put at that mod revision (or absent), at a revision
// no newer than the log's head.
func resolve(ops []record, logRecs []api.Record) ([]porcupine.Operation, historyStats, []string) {
	var errs []string
	fail := func(format string, args ...any) { errs = append(errs, fmt.Sprintf(format, args...)) }
	byIdem := map[string]api.Record{}
	byRev := map[uint64]api.Record{}
	var head uint64
	for i, r := range logRecs {
		if want := uint64(i + 1); r.Revision != want {
			fail("log: record %d has revision %d, want %d (gap)", i, r.Revision, want)
		}
		if r.IdempotencyKey == "" {
			fail("log: revision %d has no idempotency key (a write the workload did not send)", r.Revision)
		} else if prev, dup := byIdem[r.IdempotencyKey]; dup {
			fail("log: idempotency key %s applied twice (revisions %d and %d)", r.IdempotencyKey, prev.Revision, r.Revision)
		}
		byIdem[r.IdempotencyKey] = r
		byRev[r.Revision] = r
		head = r.Revision
	}
	var end int64
	for _, o := range ops {
		end = max(end, o.ret)
	}
	end++
	sent := map[string]bool{}
	var st historyStats
	var out []porcupine.Operation
	for _, o := range ops {
		st.ops++
		op := porcupine.Operation{ClientId: o.client, Input: o.in, Call: o.call, Output: o.out, Return: o.ret}
		switch o.in.Kind {
		case opStaleGet:
			st.reads++
			if o.out.Rev > head {
				fail("stale get %s answered at revision %d, beyond the log's head %d", describeOp(o.in, o.out), o.out.Rev, head)
			}
			if o.out.Found {
				r, ok := byRev[o.out.Mod]
				if !ok || !writes(r, modelKeys[o.in.Keys[0]], o.out.Val) {
					fail("stale get %s: no committed write put that value at that revision", describeOp(o.in, o.out))
				}
			}
			continue
		case opGet:
			st.reads++
			out = append(out, op)
			continue
		}
		sent[o.in.Idem] = true
		r, inLog := byIdem[o.in.Idem]
		if o.in.Name == "incr" && (o.out.OK || (o.out.Unknown && inLog)) {
			st.incrs++
		}
		switch {
		case o.out.OK:
			st.acked++
			if !inLog {
				fail("acknowledged write lost: %s (idempotency key %s not in the log)", describeOp(o.in, o.out), o.in.Idem)
			} else if r.Revision != o.out.Rev {
				fail("acknowledged write %s is at revision %d in the log", describeOp(o.in, o.out), r.Revision)
			} else if !sameOps(r, o.in) {
				fail("log revision %d does not write what %s asked", r.Revision, describeOp(o.in, o.out))
			}
		case o.out.Conflict:
			st.conflicts++
			if inLog {
				fail("write answered conflict but committed at revision %d: %s", r.Revision, describeOp(o.in, o.out))
			}
		default:
			st.unknown++
			if !inLog {
				continue // never happened
			}
			st.unknownCommitted++
			if !sameOps(r, o.in) {
				fail("log revision %d does not write what %s asked", r.Revision, describeOp(o.in, o.out))
			}
			op.Output = opOutput{OK: true, Rev: r.Revision}
			op.Return = end
		}
		out = append(out, op)
	}
	for _, r := range logRecs {
		if r.IdempotencyKey != "" && !sent[r.IdempotencyKey] {
			fail("log revision %d (idempotency key %s) was never sent (phantom write)", r.Revision, r.IdempotencyKey)
		}
	}
	// The counter: the i-th committed write to it writes i (each increment
	// is a compare-and-set on the previous one), and their number is the
	// number of increments that committed.
	n := 0
	for _, r := range logRecs {
		for _, o := range r.Operations {
			if o.Key == modelKeys[ctrKeyIdx] {
				n++
				if string(o.Value) != strconv.Itoa(n) {
					fail("counter: revision %d writes %q, want %d", r.Revision, o.Value, n)
				}
			}
		}
	}
	if n != st.incrs {
		fail("counter: %d increments in the log, %d committed in the history", n, st.incrs)
	}
	return out, st, errs
}

func writes(r api.Record, key, val string) bool {
	for _, o := range r.Operations {
		if o.Op == "put" && o.Key == key && string(o.Value) == val {
			return true
		}
	}
	return false
}

func sameOps(r api.Record, in opInput) bool {
	if len(r.Operations) != len(in.Keys) {
		return false
	}
	for i, k := range in.Keys {
		o := r.Operations[i]
		if o.Op != "put" || o.Key != modelKeys[k] || string(o.Value) != in.Vals[i] {
			return false
		}
	}
	return true
}

// finalState replays the log into each key's (value, mod revision).
func finalState(logRecs []api.Record) map[string]api.KeyValue {
	st := map[string]api.KeyValue{}
	for _, r := range logRecs {
		for _, o := range r.Operations {
			st[o.Key] = api.KeyValue{Key: o.Key, Value: o.Value, ModRevision: r.Revision}
		}
	}
	return st
}

// verifyAll runs a deep verify (POST /v1/verify) on every member.
func (c *chaosCluster) verifyAll() []string {
	var errs []string
	for _, i := range c.members() {
		var vr api.VerifyResponse
		if err := c.HTTP.JSON(context.Background(), http.MethodPost, c.URL(i)+"/v1/verify", &vr); err != nil {
			errs = append(errs, fmt.Sprintf("%s verify: %v", c.id(i), err))
		} else if !vr.OK {
			errs = append(errs, fmt.Sprintf("%s verify: %s", c.id(i), vr.Error))
		}
	}
	return errs
}

// readBack reads every key from every member (stale) and compares it with
// the state the log produces: every acknowledged write that is still the
// key's latest is present on every node.
func (c *chaosCluster) readBack(want map[string]api.KeyValue) []string {
	var errs []string
	for _, i := range c.members() {
		for _, key := range modelKeys {
			var kv api.KeyValueResponse
			err := c.HTTP.GetJSON(c.URL(i)+"/v1/kv/"+url.PathEscape(key)+"?consistency=stale&format=json", 2*time.Second, &kv)
			w, ok := want[key]
			switch {
			case err != nil && !ok:
				// absent on both sides (a 404)
			case err != nil:
				errs = append(errs, fmt.Sprintf("%s: read back %s: %v", c.id(i), key, err))
			case !ok:
				errs = append(errs, fmt.Sprintf("%s: %s = %q, but the log never wrote it", c.id(i), key, kv.KV.Value))
			case !bytes.Equal(kv.KV.Value, w.Value) || kv.KV.ModRevision != w.ModRevision:
				errs = append(errs, fmt.Sprintf("%s: %s = %q@%d, log says %q@%d", c.id(i), key,
					kv.KV.Value, kv.KV.ModRevision, w.Value, w.ModRevision))
			}
		}
	}
	return errs
}

// leaderMonitor samples who leads, to count leader changes.
type leaderMonitor struct {
	stop    chan struct{}
	done    chan struct{}
	changes int
}

func (c *chaosCluster) monitorLeaders() *leaderMonitor {
	m := &leaderMonitor{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(m.done)
		var lastTerm uint64
		first := true
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			if l, term := c.LeaderNow(); l >= 0 && term != lastTerm {
				if !first {
					m.changes++
				}
				first, lastTerm = false, term
			}
			select {
			case <-m.stop:
				return
			case <-tick.C:
			}
		}
	}()
	return m
}

func (m *leaderMonitor) finish() int {
	close(m.stop)
	<-m.done
	return m.changes
}

// checkAll runs every after-scenario check on a healed cluster with the
// workload stopped, and returns the one-line summary.
func (c *chaosCluster) checkAll(t *testing.T, name string, ops []record) historyStats {
	t.Helper()
	for _, i := range c.members() {
		c.waitReady(i)
	}
	c.WaitConverged(t)
	var errs []string
	errs = append(errs, c.verifyAll()...)
	logRecs, err := c.HTTP.Log(c.URL(c.members()[0]))
	if err != nil {
		t.Fatalf("%s: reading the log: %v", name, err)
	}
	pops, st, rerrs := resolve(ops, logRecs)
	errs = append(errs, rerrs...)
	// Access control is on for the whole run: every transaction names
	// the user the member that authenticated it stamped, the workload's
	// (by its token) or the harness's own (by its certificate, for the
	// writes some scenarios make themselves).
	byWorkload := 0
	for _, r := range logRecs {
		switch r.AuthUser {
		case chaosUser:
			byWorkload++
		case cluster.HarnessClientName:
		default:
			errs = append(errs, fmt.Sprintf("revision %d was committed as %q, neither %q nor %q",
				r.Revision, r.AuthUser, chaosUser, cluster.HarnessClientName))
		}
	}
	if byWorkload == 0 && len(logRecs) > 0 {
		errs = append(errs, fmt.Sprintf("none of %d records names the workload's user %q", len(logRecs), chaosUser))
	}
	errs = append(errs, c.readBack(finalState(logRecs))...)
	errs = append(errs, c.Problems()...)
	for _, e := range errs {
		t.Error(name + ": " + e)
	}
	slices.SortFunc(pops, func(a, b porcupine.Operation) int { return int(a.Call - b.Call) })
	checkLinearizable(t, name, pops, 90*time.Second)
	return st
}
