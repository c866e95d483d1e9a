package main

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cairn-db/cairn/client"
	"github.com/cairn-db/cairn/internal/bytesize"
)

// sectionExamples returns the command lines (comments dropped) of the sh
// blocks in the section of a docs page titled title.
func sectionExamples(t *testing.T, page, title string) []string {
	t.Helper()
	var lines []string
	for _, e := range shExamples(t, filepath.Join("docs", page)) {
		if e.section == title {
			lines = append(lines, e.text)
		}
	}
	if len(lines) == 0 {
		t.Fatalf("docs/%s, %s: no examples", page, title)
	}
	return lines
}

// TestDefragCLI runs `cairn defrag` on a three-process cluster whose
// stores hold free pages: every member, one after another with the leader
// last, shrinks; --member takes one; bad flags exit 2, an unknown member
// 4, and a member that cannot be reached makes it exit 1 after the others
// were done; `cairn node space` likewise, and it changes the members'
// quota and reserve live. It runs the examples of docs/operations.md's
// and docs/cli.md's "Disk space" sections as written.
func TestDefragCLI(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	c := startCluster(t)
	cluster := clusterFlag(c)

	// Values that the examples delete and compact away (logs/), then
	// small writes up to revision 599, so that the example's delete is
	// revision 600, as the example says. The client rides out leader
	// changes on a loaded machine.
	cfg := client.DefaultConfig()
	cfg.Endpoints = c.URLs()
	cl, err := client.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	value := []byte(strings.Repeat("cairn log line\n", 4096)) // 60 KiB
	const writers, puts = 4, 520
	errs := make(chan error, writers)
	for w := 0; w < writers; w++ {
		go func() {
			for i := w; i < puts; i += writers {
				if _, err := cl.Put(ctx, fmt.Sprintf("logs/%04d", i), value); err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	for w := 0; w < writers; w++ {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; ; i++ {
		res, err := cl.Put(ctx, fmt.Sprintf("pad/%04d", i), []byte("x"))
		if err != nil {
			t.Fatal(err)
		}
		if res.Revision >= 599 {
			if res.Revision != 599 {
				t.Fatalf("padding reached revision %d", res.Revision)
			}
			break
		}
	}
	c.WaitConverged(t)

	for _, page := range []string{"operations.md", "cli.md"} {
		for _, line := range sectionExamples(t, page, "Disk space") {
			words := strings.Fields(line)
			if words[0] != "cairn" || strings.ContainsAny(line, "'\"$|&;<>\\`*") {
				t.Fatalf("docs/%s example %q: not a plain cairn command", page, line)
			}
			if page == "operations.md" && line == "cairn defrag" {
				// Compaction frees the pages in the background.
				poll(t, "compaction freed the logs' pages on every member", 60*time.Second, func() error {
					for i := 0; i < 3; i++ {
						st, err := c.Status(i)
						if err != nil {
							return err
						}
						if st.StoreInUseBytes > 8<<20 {
							return fmt.Errorf("%s: %d bytes in use", st.ID, st.StoreInUseBytes)
						}
					}
					return nil
				})
			}
			out, errOut, code := runCLI(t, "", append([]string{cluster}, words[1:]...)...)
			if code != 0 {
				t.Fatalf("docs/%s: %s: exit %d\n%s%s", page, line, code, out, errOut)
			}
			if strings.HasPrefix(line, "cairn del ") && !strings.HasPrefix(out, "revision 600 (deleted ") {
				t.Fatalf("docs/%s: %s: %q, the example says revision 600", page, line, out)
			}
			if page == "operations.md" && line == "cairn defrag" {
				// The first defrag after the deletes and the compaction:
				// every member's file shrank.
				if strings.Count(out, " -> ") != 3 || !shrank(out) {
					t.Fatalf("docs/%s: %s: %s", page, line, out)
				}
			}
			t.Logf("%s\n%s", line, out)
		}
	}
	for _, help := range slices.Concat(helpExamples(defragCommand()), helpExamples(nodeSpaceCommand())) {
		if !slices.Contains(sectionExamples(t, "cli.md", "Disk space"), help) {
			t.Errorf("help example %q is not in docs/cli.md's Disk space section", help)
		}
	}
	// The node space examples raised every member's quota to 16 GiB and
	// lowered n2's reserve to 256 MiB, live.
	checkSpaceLimits(t, cluster, map[string][2]int64{
		"n1": {16 << 30, 512 << 20}, "n2": {16 << 30, 256 << 20}, "n3": {16 << 30, 512 << 20}})

	// The first run (the operations.md example, after the deletes and the
	// compaction) gave pages back; check a run's output in JSON: every
	// member once, the leader last.
	out, errOut, code := runCLI(t, "", cluster, "--json", "defrag")
	if code != 0 {
		t.Fatalf("defrag --json: exit %d: %s%s", code, out, errOut)
	}
	var rows []defragRow
	if err := json.Unmarshal([]byte(out), &rows); err != nil {
		t.Fatalf("defrag --json: %v: %s", err, out)
	}
	leader := c.Member(c.Leader(t)).ID()
	if len(rows) != 3 || rows[2].Member != leader {
		t.Fatalf("defrag --json: %+v, want 3 members with %s last", rows, leader)
	}
	for _, r := range rows {
		if !r.OK || r.BeforeBytes <= 0 || r.AfterBytes <= 0 || r.AfterBytes > r.BeforeBytes || r.Took == "" {
			t.Fatalf("defrag --json row %+v", r)
		}
	}
	// 520 values of 60 KiB (30 MiB, stored twice) were written, deleted
	// and compacted away before the docs' examples defragmented every
	// member: each store's file holds little more than the padding.
	for _, r := range rows {
		if r.AfterBytes > 16<<20 {
			t.Fatalf("%s's store is %d bytes after defrag", r.Member, r.AfterBytes)
		}
	}

	out, _, code = runCLI(t, "", cluster, "defrag", "--member", "n2")
	if code != 0 || !strings.HasPrefix(out, "n2: defragmenting...\nn2: ") || strings.Count(out, "\n") != 2 || !strings.Contains(out, " -> ") {
		t.Fatalf("defrag --member n2: exit %d: %q", code, out)
	}
	if _, errOut, code := runCLI(t, "", cluster, "defrag", "--member", "n9"); code != exitNotFound || !strings.Contains(errOut, "n9") {
		t.Fatalf("defrag --member n9: exit %d: %s", code, errOut)
	}
	if _, _, code := runCLI(t, "", cluster, "defrag", "--member", "n2", "--all"); code != exitUsage {
		t.Fatalf("defrag --member --all: exit %d, want %d", code, exitUsage)
	}
	if _, _, code := runCLI(t, "", cluster, "defrag", "n2"); code != exitUsage {
		t.Fatalf("defrag n2: exit %d, want %d", code, exitUsage)
	}
	// node space: usage errors exit 2 and change nothing, an unknown
	// member 4; only the flags given change.
	for _, args := range [][]string{
		{"node", "space", "n2"},
		{"node", "space", "--member", "n2", "--all"},
		{"node", "space", "--member", ""},
		{"node", "space", "--quota-backend-bytes", "12XB"},
		{"node", "space", "--quota-backend-bytes", "100"},
		{"node", "space", "--min-free-bytes", "-1"},
		{"node", "space", "--quota-backend-bytes", "1GiB", "--min-free-bytes", "512TiB"},
	} {
		if _, errOut, code := runCLI(t, "", append([]string{cluster}, args...)...); code != exitUsage {
			t.Fatalf("%v: exit %d, want %d: %s", args, code, exitUsage, errOut)
		}
	}
	if _, errOut, code := runCLI(t, "", cluster, "node", "space", "--member", "n9"); code != exitNotFound || !strings.Contains(errOut, "n9") {
		t.Fatalf("node space --member n9: exit %d: %s", code, errOut)
	}
	out, errOut, code = runCLI(t, "", cluster, "node", "space", "--member", "n3", "--quota-backend-bytes", "0")
	if code != 0 || out != "MEMBER  QUOTA  RESERVE\nn3      none   512MiB\n" {
		t.Fatalf("node space --member n3 --quota-backend-bytes 0: exit %d: %q %s", code, out, errOut)
	}
	checkSpaceLimits(t, cluster, map[string][2]int64{
		"n1": {16 << 30, 512 << 20}, "n2": {16 << 30, 256 << 20}, "n3": {0, 512 << 20}})

	// A stopped member fails; the others are still defragmented.
	stopped := (c.Leader(t) + 1) % 3
	c.Stop(t, stopped)
	id := c.Member(stopped).ID()
	out, errOut, code = runCLI(t, "", clusterFlag(c), "defrag")
	if code != exitError || !strings.Contains(out, id+": FAILED") || strings.Count(out, " -> ") != 2 ||
		!strings.Contains(errOut, "defrag failed on 1 of 3 member(s)") {
		t.Fatalf("defrag with %s stopped: exit %d: %s%s", id, code, out, errOut)
	}
	// node space likewise: the others are shown, or changed.
	for _, args := range [][]string{{"node", "space"}, {"node", "space", "--quota-backend-bytes", "32GiB"}} {
		out, errOut, code = runCLI(t, "", append([]string{clusterFlag(c)}, args...)...)
		if code != exitError || !strings.Contains(out, id+"      FAILED") || strings.Count(out, "\n") != 4 ||
			!strings.Contains(errOut, "node space failed on 1 of 3 member(s)") {
			t.Fatalf("%v with %s stopped: exit %d: %s%s", args, id, code, out, errOut)
		}
		if args[len(args)-1] == "32GiB" && strings.Count(out, "32GiB") != 2 {
			t.Fatalf("%v with %s stopped: %s", args, id, out)
		}
	}
}

// checkSpaceLimits checks each member's quota and reserve ([2]int64) in
// `cairn --json node space`, and the usage it shows.
func checkSpaceLimits(t *testing.T, cluster string, want map[string][2]int64) {
	t.Helper()
	out, errOut, code := runCLI(t, "", cluster, "--json", "node", "space")
	if code != 0 {
		t.Fatalf("--json node space: exit %d: %s%s", code, out, errOut)
	}
	var rows []spaceRow
	if err := json.Unmarshal([]byte(out), &rows); err != nil {
		t.Fatalf("--json node space: %v: %s", err, out)
	}
	if len(rows) != len(want) {
		t.Fatalf("--json node space: %d rows, want %d: %s", len(rows), len(want), out)
	}
	for _, r := range rows {
		w, ok := want[r.Member]
		if !ok || !r.OK || r.QuotaBackendBytes != w[0] || r.MinFreeBytes != w[1] ||
			r.StoreBytes <= 0 || r.StoreInUseBytes <= 0 || r.StoreInUseBytes > r.StoreBytes || r.FreeBytes <= 0 {
			t.Fatalf("--json node space: row %+v, want quota %d, reserve %d", r, w[0], w[1])
		}
	}
}

// shrank reports whether every "ID: BEFORE -> AFTER (took D)" line of
// defrag's output shows a smaller AFTER.
func shrank(out string) bool {
	for _, l := range strings.Split(out, "\n") {
		_, sizes, ok := strings.Cut(l, ": ")
		before, rest, ok2 := strings.Cut(sizes, " -> ")
		if !ok || !ok2 {
			continue
		}
		after, _, _ := strings.Cut(rest, " ")
		b, err1 := bytesize.Parse(before)
		a, err2 := bytesize.Parse(after)
		if err1 != nil || err2 != nil || a >= b {
			return false
		}
	}
	return true
}
