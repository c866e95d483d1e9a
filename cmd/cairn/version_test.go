package main

import (
	"encoding/json"
	"runtime"
	"strings"
	"testing"
	"time"
)

// `cairn version` prints its own build and every member's; unreachable,
// the local version and a note, and still exit 0.
func TestVersion(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	down := "--cluster=http://" + freePort(t)
	out, errOut, code := runCLIWithin(t, 30*time.Second, nil, down, "version")
	if code != 0 || !strings.Contains(out, "cairn") || !strings.Contains(out, runtime.Version()) ||
		!strings.Contains(errOut, "no member's version") || !strings.Contains(errOut, "connection refused") {
		t.Fatalf("version, cluster down: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	out, _, code = runCLIWithin(t, 30*time.Second, nil, down, "version", "--json")
	var v versionOutput
	if err := json.Unmarshal([]byte(out), &v); code != 0 || err != nil || v.Client.GoVersion != runtime.Version() ||
		v.Unreachable == "" || len(v.Members) != 0 {
		t.Fatalf("version --json, cluster down: exit %d, %q (%v)", code, out, err)
	}

	c := startCluster(t)
	out, errOut, code = runCLIWithin(t, 30*time.Second, nil, clusterFlag(c), "version", "--json")
	v = versionOutput{}
	if err := json.Unmarshal([]byte(out), &v); code != 0 || err != nil || len(v.Members) != 3 || v.Unreachable != "" {
		t.Fatalf("version --json: exit %d, stdout %q, stderr %q (%v)", code, out, errOut, err)
	}
	for _, m := range v.Members {
		if m.VersionResponse == nil || m.Node == "" || m.GoVersion != runtime.Version() || m.Version != v.Client.Version {
			t.Errorf("member %+v: want its id and the same build as the tool's %+v", m, v.Client)
		}
	}
	for _, field := range []string{`"go_version"`, `"platform"`, `"endpoint"`, `"node"`} {
		if !strings.Contains(out, field) {
			t.Errorf("version --json %q has no %s", out, field)
		}
	}
	out, errOut, code = runCLIWithin(t, 30*time.Second, nil, clusterFlag(c), "version")
	if code != 0 || strings.Count(out, runtime.Version()) != 4 || errOut != "" {
		t.Fatalf("version: exit %d, stdout %q, stderr %q; want the tool and three members", code, out, errOut)
	}
}
