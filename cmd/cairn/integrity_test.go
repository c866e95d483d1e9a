package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/cairn-db/cairn/api"
	clusterpkg "github.com/cairn-db/cairn/internal/cluster"
)

// TestIntegrityCLI drives the documented integrity flow through the
// binary against a three-process cluster: verify with state hashes, scrub
// and alarm list on a healthy cluster; a flipped byte in a stopped
// member's store found by its scrub (alarm corrupt, verify fails); then
// cairn node repair and a start with --join bring it back identical.
func TestIntegrityCLI(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	c := startCluster(t)
	cluster := clusterFlag(c)
	const value = "cli-integrity-value-8d2e41b7"
	if _, errOut, code := runCLI(t, "", cluster, "put", "victim", value); code != 0 {
		t.Fatalf("put: %d %s", code, errOut)
	}
	out, errOut, code := runCLI(t, "", cluster, "verify", "--deep")
	if code != 0 || !strings.Contains(out, "STATE HASH") || !strings.Contains(out, "versions checked") {
		t.Fatalf("verify of a healthy cluster: %d\n%s%s", code, out, errOut)
	}
	if out, errOut, code := runCLI(t, "", cluster, "alarm", "list"); code != 0 || strings.Count(out, "\n") != 1 {
		t.Fatalf("alarm list of a healthy cluster: %d\n%s%s", code, out, errOut)
	}
	out, errOut, code = runCLI(t, "", cluster, "scrub", "--json")
	var scrubs []api.ScrubResponse
	if code != 0 || json.Unmarshal([]byte(out), &scrubs) != nil || len(scrubs) != 3 {
		t.Fatalf("scrub of a healthy cluster: %d\n%s%s", code, out, errOut)
	}
	for _, s := range scrubs {
		if !s.OK || len(s.Agree) != 2 || s.StateHash == "" {
			t.Fatalf("scrub: %+v", s)
		}
	}
	// docs/cli.md's examples as written, but for the repair, run below
	// with this cluster's addresses.
	var repairDoc []string
	for _, line := range sectionExamples(t, "cli.md", "Integrity: alarms, scrub, repair") {
		words := strings.Fields(line)
		switch {
		case words[0] == "#":
			continue
		case slices.Contains(words, "repair"):
			repairDoc = words
			continue
		case len(words) > 2 && words[1] == "node" && words[2] == "run", words[0] == "--join":
			continue // the restart with --join: the harness restarts the process as documented
		}
		if out, errOut, code := runCLI(t, "", append([]string{cluster}, words[1:]...)...); code != 0 {
			t.Fatalf("docs/cli.md: %s: exit %d\n%s%s", line, code, out, errOut)
		}
	}
	if len(repairDoc) == 0 {
		t.Fatal("docs/cli.md's Integrity section shows no node repair")
	}

	v := c.Followers(t)[0]
	id := c.Config(v).ID
	var others []string
	for i := 0; i < c.N(); i++ {
		if i != v {
			others = append(others, c.URL(i))
		}
	}
	c.Member(v).Update(func(s *clusterpkg.Spec) { s.Config.Bootstrap, s.Config.Join = false, others })
	c.Stop(t, v)
	path := filepath.Join(c.Config(v).DataDir, "fsm.db")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	n := bytes.Count(b, []byte(value))
	if n == 0 {
		t.Fatal("the value is not in the store file")
	}
	if err := os.WriteFile(path, bytes.ReplaceAll(b, []byte(value), []byte(strings.Replace(value, "8d", "8e", 1))), 0o600); err != nil {
		t.Fatal(err)
	}
	c.Restart(t, v)
	c.WaitReady(t, v)
	out, _, code = runCLI(t, "", cluster, "scrub", "--member", id)
	// Every copy was changed, the log record's too: the chain or a
	// version checksum fails, whichever the scrub meets first.
	if code != 1 || !strings.Contains(out, id) || !strings.Contains(out, "false") {
		t.Fatalf("scrub of the damaged member: %d\n%s", code, out)
	}
	out, _, code = runCLI(t, "", cluster, "alarm", "list")
	if code != 1 || !strings.Contains(out, id) || !strings.Contains(out, "corrupt") {
		t.Fatalf("alarm list: %d\n%s", code, out)
	}
	out, _, code = runCLI(t, "", cluster, "node", "status", "--endpoint", c.URL(v))
	if code != 0 || !strings.Contains(out, "alarm") || !strings.Contains(out, "corrupt ") {
		t.Fatalf("node status of the damaged member: %d\n%s", code, out)
	}
	out, _, code = runCLI(t, "", cluster, "verify")
	if code != 1 || !strings.Contains(out, "corrupt") {
		t.Fatalf("verify with a damaged member: %d\n%s", code, out)
	}
	// The damaged member is never asked by a client read.
	if out, errOut, code := runCLI(t, "", cluster, "get", "--consistency", "stale", "victim"); code != 0 || strings.TrimSpace(out) != value {
		t.Fatalf("get: %d %q %s", code, out, errOut)
	}

	// Repair, as docs/cli.md says: a running member is refused.
	if out, errOut, code := runCLI(t, "", "--cluster="+strings.Join(others, ","), "node", "repair", "--id", id, "--data-dir", c.Config(v).DataDir); code == 0 ||
		!strings.Contains(errOut, "stop the member") {
		t.Fatalf("repair of a running member: %d\n%s%s", code, out, errOut)
	}
	c.Stop(t, v)
	// The documented command, with this cluster's member, addresses and
	// data directory in place of the example's.
	args := slices.Clone(repairDoc[1:])
	for i, w := range args {
		switch {
		case strings.HasPrefix(w, "http://127.0.0.1:800"):
			args[i] = strings.Join(others, ",")
		case w == "n3":
			args[i] = id
		case w == "data/n3":
			args[i] = c.Config(v).DataDir
		}
	}
	out, errOut, code = runCLI(t, "", args...)
	if code != 0 || !strings.Contains(out, "removed "+id) || !strings.Contains(out, "damaged-") {
		t.Fatalf("repair: %d\n%s%s", code, out, errOut)
	}
	c.Restart(t, v) // --join, from the spec
	c.WaitReady(t, v)
	poll(t, "verify after repair", 30e9, func() error {
		out, errOut, code := runCLI(t, "", cluster, "verify", "--deep")
		if code != 0 {
			return &cliErr{out + errOut}
		}
		return nil
	})
	if out, errOut, code := runCLI(t, "", cluster, "alarm", "list"); code != 0 {
		t.Fatalf("alarm list after repair: %d\n%s%s", code, out, errOut)
	}
}

type cliErr struct{ s string }

func (e *cliErr) Error() string { return e.s }
