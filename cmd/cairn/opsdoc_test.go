package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cairn-db/cairn/client"
)

// opsDocPage is the page TestOperationsDocWalkthrough runs.
const opsDocPage = "docs/operations.md"

// opsDocElsewhere are the sections of docs/operations.md whose sh
// examples another test runs, with that test; TestOperationsDocWalkthrough
// runs every other example of the page. Each section must still have
// examples on the page.
var opsDocElsewhere = map[string]string{
	"Disk space": "TestDefragCLI runs them on a cluster holding 600 revisions of values to delete, compact and defragment away",
}

// opsDocAddr matches the page's member addresses (10.0.0.1:7001, ...).
var opsDocAddr = regexp.MustCompile(`\b10\.0\.\d{1,3}\.\d{1,3}:\d+\b`)

// opsDocDataDir is the data directory the page gives every member, on
// its own host.
const opsDocDataDir = "/var/lib/cairn"

// opsDocWords splits an example of docs/operations.md into the words the
// walkthrough runs, before its rewrite: a cairn command or an export,
// with no shell syntax, and no absolute path but the members' data
// directory (given to a command that names its member with --id).
func opsDocWords(e shExample) ([]string, error) {
	words, _, err := shellWords(e.text)
	if err != nil {
		return nil, err
	}
	if words[0] != "cairn" && words[0] != "export" {
		return nil, fmt.Errorf("the walkthrough runs only cairn and export: a command of another program goes in a text block, with a sentence")
	}
	for _, w := range words {
		_, v, ok := strings.Cut(w, "=")
		if !ok {
			v = w
		}
		if !strings.HasPrefix(v, "/") {
			continue
		}
		if v != opsDocDataDir && !strings.HasPrefix(v, opsDocDataDir+"/") {
			return nil, fmt.Errorf("absolute path %s: the walkthrough maps only %s", v, opsDocDataDir)
		}
		if opsDocFlag(words, "--id") == "" {
			return nil, fmt.Errorf("%s without --id: whose data directory?", opsDocDataDir)
		}
	}
	return words, nil
}

// opsDocFlag returns the value of a command's flag (--id ID or --id=ID).
func opsDocFlag(words []string, name string) string {
	for i, w := range words {
		if w == name && i+1 < len(words) {
			return words[i+1]
		}
		if v, ok := strings.CutPrefix(w, name+"="); ok {
			return v
		}
	}
	return ""
}

// TestOperationsDocExamplesCovered fails when docs/operations.md has an
// example no test runs: a fenced block other than sh (run), text
// (synopses) or yaml (configuration), an example in a section of
// opsDocElsewhere that is gone, or an example TestOperationsDocWalkthrough
// could not run as written (another program than cairn, shell syntax, a
// path it does not map). It needs no cluster, so it runs with -short too.
func TestOperationsDocExamplesCovered(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("..", "..", opsDocPage))
	if err != nil {
		t.Fatal(err)
	}
	in := false
	for n, line := range strings.Split(string(data), "\n") {
		fence, ok := strings.CutPrefix(strings.TrimSpace(line), "```")
		if !ok {
			continue
		}
		if !in && !slices.Contains([]string{"sh", "text", "yaml"}, fence) {
			t.Errorf("%s:%d: a ```%s block: commands go in ```sh blocks (run by a test) or ```text (synopses)", opsDocPage, n+1, fence)
		}
		in = !in
	}
	sections := map[string]bool{}
	for _, e := range shExamples(t, opsDocPage) {
		sections[e.section] = true
		if _, ok := opsDocElsewhere[e.section]; ok {
			continue
		}
		if _, err := opsDocWords(e); err != nil {
			t.Errorf("%s: %v", e, err)
		}
	}
	for s := range opsDocElsewhere {
		if !sections[s] {
			t.Errorf("opsDocElsewhere: %s has no section %q with sh examples any more", opsDocPage, s)
		}
	}
}

// opsMember is a `cairn node run` the walkthrough started.
type opsMember struct {
	where   string
	url     string
	cmd     *exec.Cmd
	done    chan error
	out     *syncBuffer
	stopped bool
}

// stop ends the member with SIGTERM; it must exit 0.
func (m *opsMember) stop(t *testing.T) {
	t.Helper()
	if m.stopped {
		return
	}
	m.stopped = true
	_ = m.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-m.done:
		if err != nil {
			t.Errorf("%s: after SIGTERM: %v\n%s", m.where, err, m.out.String())
		}
	case <-time.After(30 * time.Second):
		_ = m.cmd.Process.Kill()
		<-m.done
		t.Errorf("%s: did not stop on SIGTERM\n%s", m.where, m.out.String())
	}
}

// TestOperationsDocWalkthrough runs the sh examples of docs/operations.md
// with the binary, in the order shown, in an empty directory, with no
// CAIRN_* variable but those the page exports; those of the sections of
// opsDocElsewhere are run by other tests. `cairn node run` starts a member
// in the background (stopped with SIGTERM at the end, or where the page
// says to stop it, and it must exit 0); any other command must exit 0 (or
// N, when its comment begins with "exit N") once the members started so
// far are ready. The page is written for members on hosts of their own;
// the rewrite, all that differs from what a reader types there:
//
//   - every 10.0.x.y:PORT (a member's raft or HTTP address) is a free
//     loopback address and port, the same one wherever the page repeats it;
//   - /var/lib/cairn, each member's data directory on its own host, is
//     a directory of its own, named by the command's --id.
//
// What an example assumes beyond what the examples before it did is made
// by the functions of before and after, named by the example they go with
// (each must still be on the page).
func TestOperationsDocWalkthrough(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	dir := t.TempDir()
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "CAIRN_") {
			env = append(env, kv)
		}
	}
	addrs := map[string]string{}
	rewrite := func(words []string) []string {
		id := opsDocFlag(words, "--id")
		out := make([]string, len(words))
		for i, w := range words {
			w = opsDocAddr.ReplaceAllStringFunc(w, func(m string) string {
				if _, ok := addrs[m]; !ok {
					addrs[m] = freePort(t)
				}
				return addrs[m]
			})
			k, v, ok := strings.Cut(w, "=")
			if !ok {
				k, v = "", w
			} else {
				k += "="
			}
			if rest, ok := strings.CutPrefix(v, opsDocDataDir); ok && (rest == "" || rest[0] == '/') {
				w = k + filepath.Join(dir, "hosts", id) + rest
			}
			out[i] = w
		}
		return out
	}

	members := map[string]*opsMember{} // by --id
	var all, starting []*opsMember     // in the order started; not yet waited for
	t.Cleanup(func() {
		for _, m := range slices.Backward(all) {
			m.stop(t)
		}
	})
	start := func(where string, args []string) {
		t.Helper()
		id, addr := opsDocFlag(args, "--id"), opsDocFlag(args, "--http-addr")
		if id == "" || addr == "" || members[id] != nil {
			t.Fatalf("%s: a member needs an --id of its own and an --http-addr", where)
		}
		m := &opsMember{where: where, url: "http://" + addr, done: make(chan error, 1), out: &syncBuffer{}}
		m.cmd = exec.Command(binary(t), args[1:]...)
		m.cmd.Dir, m.cmd.Env, m.cmd.Stdout, m.cmd.Stderr = dir, env, m.out, m.out
		if err := m.cmd.Start(); err != nil {
			t.Fatalf("%s: %v", where, err)
		}
		go func() { m.done <- m.cmd.Wait() }()
		members[id] = m
		all, starting = append(all, m), append(starting, m)
	}

	// put writes n keys through the cluster the page exported, and
	// returns the last revision.
	put := func(where string, prefix string, n int) uint64 {
		t.Helper()
		cfg := client.DefaultConfig()
		for _, kv := range env {
			if v, ok := strings.CutPrefix(kv, "CAIRN_CLUSTER="); ok {
				cfg.Endpoints = strings.Split(v, ",")
			}
		}
		if len(cfg.Endpoints) == 0 {
			t.Fatalf("%s: the page exported no CAIRN_CLUSTER", where)
		}
		cl, err := client.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		var rev uint64
		for i := 0; i < n; i++ {
			res, err := cl.Put(ctx, fmt.Sprintf("%s%04d", prefix, i), []byte("v"))
			if err != nil {
				t.Fatalf("%s: %v", where, err)
			}
			rev = res.Revision
		}
		return rev
	}

	// Before the example (its text as on the page).
	before := map[string]func(where string){
		// Something to back up: 100 transactions.
		"cairn backup -o full.bak": func(where string) {
			t.Logf("%s: the cluster is at revision %d", where, put(where, "orders/", 100))
		},
		// Transactions after full.bak's, past the revision the page's
		// next example starts from.
		"cairn backup --since-backup full.bak -o inc1.bak": func(where string) {
			if rev := put(where, "invoices/", 50); rev <= 120 {
				t.Fatalf("%s: the cluster is at revision %d, the page's --since 120 needs more", where, rev)
			}
		},
	}
	// After the example.
	after := map[string]func(where string){
		// "then stop its process".
		"cairn node remove n3": func(where string) {
			members["n3"].stop(t)
		},
	}
	used := map[string]bool{}
	sections := map[string]bool{}

	for _, e := range shExamples(t, opsDocPage) {
		if _, ok := opsDocElsewhere[e.section]; ok {
			sections[e.section] = true
			continue
		}
		where := e.String()
		words, err := opsDocWords(e)
		if err != nil {
			t.Fatalf("%s: %v", where, err)
		}
		if f := before[e.text]; f != nil {
			used[e.text] = true
			f(where)
		}
		args := rewrite(words)
		switch {
		case args[0] == "export":
			for _, kv := range args[1:] {
				if !strings.Contains(kv, "=") {
					t.Fatalf("%s: export of %q", where, kv)
				}
				env = append(env, kv)
			}
		case len(args) > 2 && args[1] == "node" && args[2] == "run":
			start(where, args)
		default:
			for _, m := range starting {
				waitDocMember(t, where, dir, env, m.url)
			}
			starting = nil
			want := 0
			if m := docExitStatus.FindStringSubmatch(e.comment); m != nil {
				want, _ = strconv.Atoi(m[1])
			}
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			cmd := exec.CommandContext(ctx, binary(t), args[1:]...)
			cmd.Dir, cmd.Env = dir, env
			out, err := cmd.CombinedOutput()
			cancel()
			if code := processExit(t, err, where); code != want {
				t.Fatalf("%s: exit %d, want %d\n%s", where, code, want, out)
			}
			t.Logf("%s\n%s", where, out)
		}
		if f := after[e.text]; f != nil {
			used["after "+e.text] = true
			f(where)
		}
	}
	for _, m := range starting {
		waitDocMember(t, "the page's last members", dir, env, m.url)
	}
	for k := range before {
		if !used[k] {
			t.Errorf("before: %q is not on %s any more", k, opsDocPage)
		}
	}
	for k := range after {
		if !used["after "+k] {
			t.Errorf("after: %q is not on %s any more", k, opsDocPage)
		}
	}
	for s := range opsDocElsewhere {
		if !sections[s] {
			t.Errorf("opsDocElsewhere: %s has no section %q with sh examples any more", opsDocPage, s)
		}
	}
}
