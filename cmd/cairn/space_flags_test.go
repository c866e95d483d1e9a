package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cairn-db/cairn/internal/cluster"
)

// TestNodeRunSpaceFlags: --quota-backend-bytes and --min-free-bytes take
// bytes or sizes with units, from flags, CAIRN_* variables and the YAML
// file (where a plain number is an integer, not a string); bad values
// exit 2 before anything starts.
func TestNodeRunSpaceFlags(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	dir := t.TempDir()
	for _, c := range []struct{ args, want string }{
		{"--quota-backend-bytes=8XB", "--quota-backend-bytes"},
		{"--quota-backend-bytes=100", "quota backend bytes 100 not 0 (no quota) or in 1MiB..256TiB"},
		{"--min-free-bytes=-1", "--min-free-bytes"},
	} {
		_, errOut, code := runEnv(t, nil, "node", "run", "--id", "n0", "--data-dir", dir, "--raft-addr", freePort(t),
			"--http-addr", freePort(t), c.args)
		if code != exitUsage || !strings.Contains(errOut, c.want) {
			t.Errorf("node run %s: exit %d, stderr %q; want %d and %q", c.args, code, errOut, exitUsage, c.want)
		}
	}

	// The file gives the quota as a YAML integer and the reserve as a
	// size; the environment overrides the reserve with one no disk has,
	// so writes are refused naming it.
	httpAddr := freePort(t)
	yaml := "id: n1\ndata-dir: " + t.TempDir() + "\nraft-addr: " + freePort(t) + "\nhttp-addr: " + httpAddr +
		"\nbootstrap: true\nlog-level: warn\nquota-backend-bytes: 1073741824\nmin-free-bytes: 1GiB\n"
	path := filepath.Join(t.TempDir(), "cairn.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	p := startRaw(t, "n1", httpAddr, []string{"CAIRN_MIN_FREE_BYTES=256TiB"}, "node", "run", "--config", path)
	waitReady(t, p)
	h := cluster.NewHTTP(5 * time.Second)
	defer h.CloseIdleConnections()
	st, err := h.Status(p.url())
	if err != nil {
		t.Fatal(err)
	}
	if st.QuotaBytes != 1<<30 {
		t.Fatalf("quota from the file: %d, want 1 GiB", st.QuotaBytes)
	}
	out, errOut, code := runEnv(t, nil, "--cluster="+p.url(), "node", "status")
	if code != 0 || !strings.Contains(out, "quota 1GiB") || !strings.Contains(out, "free disk") {
		t.Fatalf("node status: exit %d: %s%s", code, out, errOut)
	}
	_, errOut, code = runEnv(t, nil, "--cluster="+p.url(), "put", "a", "b")
	if code != exitError || !strings.Contains(errOut, "no_space") || !strings.Contains(errOut, "256TiB") {
		t.Fatalf("put below the reserve: exit %d: %s", code, errOut)
	}
	if _, errOut, code = runEnv(t, nil, "--cluster="+p.url(), "del", "a"); code != 0 {
		t.Fatalf("delete below the reserve: exit %d: %s", code, errOut)
	}
}
