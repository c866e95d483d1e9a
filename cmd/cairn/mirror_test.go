package main

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/cairn-db/cairn/api"
	"github.com/cairn-db/cairn/internal/cluster"
)

// TestMirrorCLI runs a standby as an operator would, through the binary:
// a three-process source, a one-process standby; writes on the source
// while `cairn mirror start` follows it; the source's leader killed
// mid-stream; the standby refuses writes (exit 3, read_only) and proves
// itself identical (chain and state hash at the source's head); `mirror
// status --caught-up`; the source lists the mirror's checkpoint; and
// `mirror promote` makes the standby writable with the promotion in its
// chain.
func TestMirrorCLI(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	src := startCluster(t)
	dst := cluster.New(t, cluster.Options{Kind: cluster.Proc})
	dst.Start(t, 1)
	srcFlag, dstFlag := clusterFlag(src), clusterFlag(dst)
	run := runWant(t)
	for i := range 20 {
		run(0, srcFlag, "put", fmt.Sprintf("k/%02d", i), fmt.Sprintf("v%d", i))
	}
	run(2, dstFlag, "mirror", "start")                           // no --source
	run(2, dstFlag, "mirror", "start", "--source", "x", "extra") // an argument
	out := run(0, dstFlag, "mirror", "start", "--source", strings.Join(src.URLs(), ","))
	if !strings.Contains(out, "following") {
		t.Fatalf("mirror start: %s", out)
	}
	run(3, dstFlag, "mirror", "start", "--source", src.URLs()[0]) // already following: mirror_state

	// Writes go on at the source; its leader is killed in the middle.
	for i := 20; i < 40; i++ {
		if i == 30 {
			src.Kill(t, src.Leader(t))
		}
		run(0, srcFlag, "--timeout=30s", "put", fmt.Sprintf("k/%02d", i), fmt.Sprintf("v%d", i))
	}
	// --caught-up asks the source cluster for its committed head (a
	// linearizable read there), so it returns only once the standby has
	// the last acknowledged write, whichever source member it streams
	// from.
	srcHead := statusOf(t, srcFlag, src.URL(src.Leader(t)))
	out = run(0, dstFlag, "--timeout=60s", "--json", "mirror", "status", "--caught-up")
	var st api.MirrorStatus
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("mirror status --json: %v\n%s", err, out)
	}
	if st.State != api.MirrorFollowing || st.LagRevisions != 0 || !st.SourceHeadFresh || st.SourceHead != srcHead.Revision || st.Head != srcHead.Revision {
		t.Fatalf("mirror status --caught-up answered %+v, the source's head is %d", st, srcHead.Revision)
	}
	// Identical: chain and state hash at the source's head.
	a, b := chainAt(t, src.URL(src.Leader(t)), srcHead.Revision), chainAt(t, dst.URL(0), srcHead.Revision)
	if a.Hash != b.Hash || a.StateHash != b.StateHash || a.StateHash == "" {
		t.Fatalf("standby differs from its source at %d: %+v vs %+v", srcHead.Revision, b, a)
	}
	// The same, with one command.
	if out := run(0, dstFlag, "verify", "--source", strings.Join(src.URLs(), ",")); !strings.Contains(out, "identical to this cluster") {
		t.Fatalf("verify --source: %s", out)
	}
	if got := run(0, dstFlag, "get", "k/39"); got != "v39" {
		t.Fatalf("read on the standby: %q", got)
	}
	// A standby refuses writes, and nothing is written.
	if out := run(3, dstFlag, "--json", "put", "x", "y"); !strings.Contains(out, api.CodeReadOnly) {
		t.Fatalf("put on the standby: %s", out)
	}
	run(4, dstFlag, "get", "x")
	// The source lists the standby's checkpoint; cairn status shows both
	// sides under its table.
	if out := run(0, srcFlag, "mirror", "status"); !strings.Contains(out, "mirror ") {
		t.Fatalf("source status lists no mirror:\n%s", out)
	}
	if out := run(0, srcFlag, "status"); !strings.Contains(out, "mirror of this cluster: ") {
		t.Fatalf("cairn status of the source shows no mirror:\n%s", out)
	}
	if out := run(0, dstFlag, "status"); !strings.Contains(out, "mirror: following ") || !strings.Contains(out, "lag 0 revisions") {
		t.Fatalf("cairn status of the standby:\n%s", out)
	}
	run(1, srcFlag, "mirror", "status", "--caught-up") // a primary is not following

	// A filtered mirror of the same source: its own history, checked
	// record by record against the source's by verify --source.
	flt := cluster.New(t, cluster.Options{Kind: cluster.Proc})
	flt.Start(t, 1)
	fltFlag := clusterFlag(flt)
	run(2, fltFlag, "mirror", "start", "--source", strings.Join(src.URLs(), ","), "--max-rate", "fast") // not a size
	run(2, fltFlag, "mirror", "start", "--source", strings.Join(src.URLs(), ","), "--max-rate", "-1MiB")
	// With a rate limit: the mirror keeps it, and status shows it.
	run(0, fltFlag, "mirror", "start", "--source", strings.Join(src.URLs(), ","), "--include", "k/1", "--exclude", "k/15", "--max-rate", "1MiB")
	if out := run(0, fltFlag, "--timeout=60s", "mirror", "status", "--caught-up"); !strings.Contains(out, "max rate") || !strings.Contains(out, "1MiB/s") {
		t.Fatalf("mirror status of a mirror started with --max-rate 1MiB:\n%s", out)
	}
	if out := run(0, fltFlag, "--json", "mirror", "status"); !strings.Contains(out, `"max_rate": 1048576`) {
		t.Fatalf("mirror status --json:\n%s", out)
	}
	if out := run(0, fltFlag, "verify", "--source", strings.Join(src.URLs(), ",")); !strings.Contains(out, "each of its 9 records matches") {
		t.Fatalf("verify --source of a filtered mirror: %s", out)
	}
	run(4, fltFlag, "get", "k/15")       // excluded: not mirrored
	run(3, fltFlag, "mirror", "promote") // a filtered mirror is not a copy

	// Promotion: writable, recorded in the chain.
	out = run(0, dstFlag, "mirror", "promote")
	if !strings.Contains(out, "primary") || !strings.Contains(out, "promoted") {
		t.Fatalf("mirror promote: %s", out)
	}
	run(0, dstFlag, "put", "x", "y")
	if out := run(0, dstFlag, "--json", "log", "--from", fmt.Sprint(srcHead.Revision+1)); !strings.Contains(out, "mirror promoted") {
		t.Fatalf("no promotion record after %d: %s", srcHead.Revision, out)
	}
	run(3, dstFlag, "mirror", "promote") // a primary: mirror_state
	// The old primary, not fenced, takes a write: the two histories part
	// at the promotion, and verify says so.
	run(0, srcFlag, "--timeout=30s", "put", "split", "brain")
	if out := run(1, dstFlag, "verify", "--source", strings.Join(src.URLs(), ",")); !strings.Contains(out, "chain differs") {
		t.Fatalf("verify --source after a split: %s", out)
	}

	// The standby's checkpoint on the source (24 h window) holds the
	// history it would resume from: compact stops there and says so.
	for i := range 3 {
		run(0, srcFlag, "--timeout=30s", "put", fmt.Sprintf("z/%d", i), "v")
	}
	asked := statusOf(t, srcFlag, src.URL(src.Leader(t))).Revision
	var co compactOutput
	out = run(0, srcFlag, "--json", "compact", "--before", fmt.Sprint(asked))
	if err := json.Unmarshal([]byte(out), &co); err != nil || co.Requested != asked || co.Before >= asked || co.Before == 0 {
		t.Fatalf("compact --json past a mirror's checkpoint: %v %s (asked %d)", err, out, asked)
	}
	want := fmt.Sprintf("compacted before revision %d, not %d: a mirror's checkpoint holds the history from %d on", co.Before, asked, co.Before)
	if out := run(0, srcFlag, "compact", "--before", fmt.Sprint(asked)); !strings.Contains(out, want) {
		t.Fatalf("compact past a mirror's checkpoint: %q, want %q", out, want)
	}
	run(0, srcFlag, "get", "--revision", fmt.Sprint(co.Before), "k/00") // still there
	if co.Before > 1 {
		run(1, srcFlag, "get", "--revision", fmt.Sprint(co.Before-1), "k/00") // compacted
	}
}

// statusOf is `node status --json` of the member at endpoint.
func statusOf(t *testing.T, clusterFlag, endpoint string) api.StatusResponse {
	t.Helper()
	out, errOut, code := runCLI(t, "", clusterFlag, "--json", "node", "status", "--endpoint", endpoint)
	var st api.StatusResponse
	if code != 0 || json.Unmarshal([]byte(out), &st) != nil {
		t.Fatalf("node status: %d %s %s", code, out, errOut)
	}
	return st
}

// chainAt is GET /v1/chain?revision=R&state=true of the member at url:
// the chain and state hash at R.
func chainAt(t *testing.T, url string, rev uint64) api.ChainResponse {
	t.Helper()
	var ch api.ChainResponse
	if err := json.Unmarshal(httpBody(t, fmt.Sprintf("%s/v1/chain?revision=%d&state=true", url, rev)), &ch); err != nil {
		t.Fatal(err)
	}
	return ch
}

// TestMirrorCaughtUpSourceDown: `mirror status --caught-up` asks the
// source for its committed head; with the source down it cannot tell
// whether the standby is caught up, so it asks again until --timeout and
// then fails as unavailable (exit 5), naming the source it tried, never
// answering lag 0.
func TestMirrorCaughtUpSourceDown(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	src := cluster.New(t, cluster.Options{Kind: cluster.Proc})
	src.Start(t, 1)
	dst := cluster.New(t, cluster.Options{Kind: cluster.Proc})
	dst.Start(t, 1)
	srcFlag, dstFlag := clusterFlag(src), clusterFlag(dst)
	run := runWant(t)
	run(0, srcFlag, "put", "k", "v")
	run(0, dstFlag, "mirror", "start", "--source", src.URL(0))
	run(0, dstFlag, "--timeout=60s", "mirror", "status", "--caught-up")
	src.Stop(t, 0)
	out := run(5, dstFlag, "--timeout=3s", "mirror", "status", "--caught-up")
	if !strings.Contains(out, "unavailable") || !strings.Contains(out, src.URL(0)) {
		t.Fatalf("--caught-up with the source down: %s", out)
	}
	// The plain status still answers, from what the standby last heard.
	if out := run(0, dstFlag, "mirror", "status"); !strings.Contains(out, "following") {
		t.Fatalf("mirror status with the source down: %s", out)
	}
}
