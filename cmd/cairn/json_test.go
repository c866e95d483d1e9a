package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/cairn-db/cairn/api"
	"github.com/cairn-db/cairn/internal/testnet"
	"github.com/cairn-db/cairn/node"
)

// One JSON shape (docs/cli.md, "JSON output"): every command's --json
// output uses the HTTP API's names (snake_case) and, where the command has
// an HTTP counterpart, is the body the API answers for the same request;
// with --json, errors are api.ErrorResponse on stderr with the API's code.

// jsonKey is what every key of the CLI's JSON objects must look like.
var jsonKey = regexp.MustCompile(`^[a-z0-9_]+$`)

// checkKeys fails for every object key under v (decoded JSON) that is not
// snake_case, except the keys of user maps (meta), which are the user's.
func checkKeys(t *testing.T, v any, path string) {
	t.Helper()
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			if !jsonKey.MatchString(k) {
				t.Errorf("%s: key %q is not the API's snake_case", path, k)
			}
			if k == "meta" {
				continue // the user's keys
			}
			checkKeys(t, e, path+"."+k)
		}
	case []any:
		for i, e := range x {
			checkKeys(t, e, fmt.Sprintf("%s[%d]", path, i))
		}
	}
}

// decodeAny decodes one JSON value, numbers as json.Number.
func decodeAny(t *testing.T, what string, b []byte) any {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("%s: not JSON: %v\n%s", what, err, b)
	}
	if dec.More() {
		t.Fatalf("%s: more than one JSON value:\n%s", what, b)
	}
	return v
}

// decodeStrict decodes b into a T, refusing fields T does not have.
func decodeStrict[T any](t *testing.T, what string, b string) T {
	t.Helper()
	var v T
	dec := json.NewDecoder(strings.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("%s: not a %T: %v\n%s", what, v, err, b)
	}
	return v
}

// runJSON runs the CLI in process as main does: it returns stdout, what
// main prints on stderr (the error included) and the exit status.
func runJSON(t *testing.T, in io.Reader, args ...string) (string, string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if in != nil { // standard input, also for --password-stdin
		oldReader, oldConsole := stdinReader, stdin
		stdinReader, stdin = in, &fakeConsole{in: in}
		defer func() { stdinReader, stdin = oldReader, oldConsole }()
	}
	var out, errOut bytes.Buffer
	err := Run(ctx, append([]string{"cairn"}, args...), &out, &errOut)
	if err != nil {
		printError(&errOut, err)
	}
	return out.String(), errOut.String(), exitCode(err)
}

// httpBody GETs url as JSON and returns its body; it must be 200.
func httpBody(t *testing.T, url string) []byte {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %v %s", url, resp.StatusCode, err, b)
	}
	return b
}

// sameJSON fails unless the CLI's output and the HTTP API's body are the
// same JSON value.
func sameJSON(t *testing.T, cliOut string, httpOut []byte) {
	t.Helper()
	c, h := decodeAny(t, "cli", []byte(cliOut)), decodeAny(t, "http", httpOut)
	if !reflect.DeepEqual(c, h) {
		t.Errorf("the CLI's JSON differs from the HTTP API's:\ncli:  %s\nhttp: %s", cliOut, httpOut)
	}
}

// watchLines reads the first n txn events of GET /v1/watch from revision 1.
func watchLines(t *testing.T, base string, n int) [][]byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/v1/watch?prefix=&from_revision=1", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var lines [][]byte
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	for len(lines) < n && sc.Scan() {
		var ev api.WatchEvent
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			t.Fatalf("watch line %q: %v", sc.Text(), err)
		}
		if ev.Type == api.WatchTxn {
			lines = append(lines, append([]byte(nil), sc.Bytes()...))
		}
	}
	if len(lines) < n {
		t.Fatalf("watch stream: %d txn events, want %d (%v)", len(lines), n, sc.Err())
	}
	return lines
}

// TestJSONOutputShapes runs every command that prints JSON with --json (a
// row each) against a one-member cluster and checks that its output has
// only snake_case keys, is the API's type (or the command's own,
// documented one) with no other field, and, where the HTTP API answers
// the same request, is the same JSON as its body.
func TestJSONOutputShapes(t *testing.T) {
	cl := startOneNode(t)
	base := strings.TrimPrefix(cl, "--cluster=")
	dir := t.TempDir()
	backupFile := filepath.Join(dir, "full.bak")
	stopped := stoppedMember(t)
	peersFile := filepath.Join(dir, "peers.json")
	if err := os.WriteFile(peersFile, []byte(`[{"id":"s9","address":"127.0.0.1:7999"}]`), 0o600); err != nil {
		t.Fatal(err)
	}
	txn := `{"operations":[{"op":"put","key":"j/t","value":"AAEC/w=="}],"user":"ann","description":"d","meta":{"TicketID":"T-1"}}`

	rows := []struct {
		name  string
		stdin string
		args  []string
		// check compares the output with the HTTP API (or checks it).
		check func(t *testing.T, out string)
	}{
		{"put", "", []string{"put", "j/a", "one"}, func(t *testing.T, out string) {
			wr := decodeStrict[api.WriteResponse](t, "put", out)
			if wr.Revision == 0 || wr.Hash == "" || wr.Time.IsZero() || wr.Replayed {
				t.Errorf("put: %+v", wr)
			}
			kv := decodeStrict[api.KeyValueResponse](t, "http get", string(httpBody(t, base+"/v1/kv/j/a?format=json")))
			if kv.KV.ModRevision != wr.Revision {
				t.Errorf("put says revision %d, the key's mod_revision is %d", wr.Revision, kv.KV.ModRevision)
			}
		}},
		{"put idempotent", "", []string{"put", "--idempotency-key", "ik", "j/b", "two"}, nil},
		{"put replayed", "", []string{"put", "--idempotency-key", "ik", "j/b", "other"}, func(t *testing.T, out string) {
			if wr := decodeStrict[api.WriteResponse](t, "put", out); !wr.Replayed {
				t.Errorf("a replayed put without replayed: %s", out)
			}
		}},
		{"txn", txn, []string{"txn", "-"}, func(t *testing.T, out string) {
			decodeStrict[api.WriteResponse](t, "txn", out)
		}},
		{"get", "", []string{"get", "j/a"}, func(t *testing.T, out string) {
			sameJSON(t, out, httpBody(t, base+"/v1/kv/j/a?format=json"))
		}},
		{"get binary", "", []string{"get", "j/t"}, func(t *testing.T, out string) {
			// Binary values are base64, as in the API.
			if kv := decodeStrict[api.KeyValueResponse](t, "get", out); !bytes.Equal(kv.KV.Value, []byte{0, 1, 2, 255}) {
				t.Errorf("value %v", kv.KV.Value)
			}
			sameJSON(t, out, httpBody(t, base+"/v1/kv/j/t?format=json"))
		}},
		{"ls", "", []string{"ls", "j/"}, func(t *testing.T, out string) {
			sameJSON(t, out, httpBody(t, base+"/v1/kv?prefix=j/"))
		}},
		{"ls --limit", "", []string{"ls", "--limit", "1", "j/"}, func(t *testing.T, out string) {
			sameJSON(t, out, httpBody(t, base+"/v1/kv?prefix=j/&limit=1"))
		}},
		{"ls --keys-only", "", []string{"ls", "--keys-only", "j/"}, func(t *testing.T, out string) {
			sameJSON(t, out, httpBody(t, base+"/v1/kv?prefix=j/&keys_only=true"))
		}},
		{"history", "", []string{"history", "j/a"}, func(t *testing.T, out string) {
			sameJSON(t, out, httpBody(t, base+"/v1/history/j%2Fa"))
		}},
		{"log", "", []string{"log", "--from", "1", "--limit", "100"}, func(t *testing.T, out string) {
			sameJSON(t, out, httpBody(t, base+"/v1/log?from=1&limit=100"))
			if !strings.Contains(out, `"TicketID"`) {
				t.Errorf("log: the txn's meta is missing:\n%s", out)
			}
		}},
		{"watch", "", []string{"watch", "--from", "1", "", "--timeout", "2s"}, func(t *testing.T, out string) {
			lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
			want := watchLines(t, base, len(lines))
			for i, l := range lines {
				sameJSON(t, l, want[i])
			}
		}},
		{"del", "", []string{"del", "j/b"}, func(t *testing.T, out string) {
			decodeStrict[api.WriteResponse](t, "del", out)
		}},
		{"node list", "", []string{"node", "list"}, func(t *testing.T, out string) {
			mr := decodeStrict[api.MembersResponse](t, "node list", out)
			h := decodeStrict[api.MembersResponse](t, "http", string(httpBody(t, base+"/v1/cluster/members")))
			if mr.Leader != h.Leader || len(mr.Members) != 1 || mr.Members[0].ID != h.Members[0].ID || mr.Members[0].HTTPURL != base {
				t.Errorf("node list %+v, http %+v", mr, h)
			}
		}},
		{"node status", "", []string{"node", "status"}, func(t *testing.T, out string) {
			decodeStrict[api.StatusResponse](t, "node status", out)
		}},
		{"node health", "", []string{"node", "health", "--endpoint", base}, func(t *testing.T, out string) {
			if rows := decodeStrict[[]healthRow](t, "node health", out); len(rows) != 1 || !rows[0].Ready || rows[0].Endpoint != base {
				t.Errorf("node health %s", out)
			}
		}},
		{"status", "", []string{"status"}, func(t *testing.T, out string) {
			cs := decodeStrict[api.ClusterStatusResponse](t, "status", out)
			if len(cs.Members) != 1 || cs.Leader == "" || cs.Members[0].ID != cs.Leader || cs.Members[0].Status == nil {
				t.Errorf("status %s", out)
			}
		}},
		{"node space", "", []string{"node", "space"}, func(t *testing.T, out string) {
			decodeStrict[[]spaceRow](t, "node space", out)
		}},
		{"alarm list", "", []string{"alarm", "list"}, func(t *testing.T, out string) {
			sameJSON(t, out, httpBody(t, base+"/v1/alarms"))
		}},
		{"scrub", "", []string{"scrub"}, func(t *testing.T, out string) {
			if rs := decodeStrict[[]api.ScrubResponse](t, "scrub", out); len(rs) != 1 || !rs[0].OK {
				t.Errorf("scrub %s", out)
			}
		}},
		{"verify", "", []string{"verify", "--deep"}, func(t *testing.T, out string) {
			if rs := decodeStrict[[]verifyRow](t, "verify", out); len(rs) != 1 || !rs[0].OK || rs[0].Deep == nil {
				t.Errorf("verify %s", out)
			}
		}},
		{"defrag", "", []string{"defrag"}, func(t *testing.T, out string) {
			decodeStrict[[]defragRow](t, "defrag", out)
		}},
		{"backup", "", []string{"backup", "-o", backupFile}, func(t *testing.T, out string) {
			if b := decodeStrict[backupOutput](t, "backup", out); b.File != backupFile || b.Kind != "full" || b.Revision == 0 {
				t.Errorf("backup %s", out)
			}
		}},
		{"verify backup", "", []string{"verify", backupFile}, func(t *testing.T, out string) {
			decodeStrict[[]verifyRow](t, "verify", out)
		}},
		{"restore", "", []string{"restore", "--data-dir", filepath.Join(dir, "restored"), "--id", "r1", backupFile}, func(t *testing.T, out string) {
			if r := decodeStrict[restoreOutput](t, "restore", out); r.ID != "r1" || r.Revision == 0 {
				t.Errorf("restore %s", out)
			}
		}},
		{"compact", "", []string{"compact", "--before", "2"}, func(t *testing.T, out string) {
			if c := decodeStrict[compactOutput](t, "compact", out); c.Before != 2 {
				t.Errorf("compact %s", out)
			}
		}},
		{"bench", "", []string{"bench", "--fill", "only", "--keys", "5", "--clients", "1"}, func(t *testing.T, out string) {
			decodeStrict[benchResult](t, "bench", out)
		}},
		{"version", "", []string{"version"}, func(t *testing.T, out string) {
			decodeStrict[versionOutput](t, "version", out)
		}},
		{"auth status", "", []string{"auth", "status"}, func(t *testing.T, out string) {
			sameJSON(t, out, httpBody(t, base+"/v1/auth/status"))
		}},
		{"user add", "", []string{"user", "add", "agent", "--no-password"}, func(t *testing.T, out string) {
			decodeStrict[api.AuthChangeResponse](t, "user add", out)
		}},
		{"user list", "", []string{"user", "list"}, func(t *testing.T, out string) {
			sameJSON(t, out, httpBody(t, base+"/v1/auth/users"))
		}},
		{"user get", "", []string{"user", "get", "agent"}, func(t *testing.T, out string) {
			sameJSON(t, out, httpBody(t, base+"/v1/auth/users/agent"))
		}},
		{"role add", "", []string{"role", "add", "reader"}, nil},
		{"role grant", "", []string{"role", "grant", "reader", "--prefix", "j/", "--access", "read"}, nil},
		{"role list", "", []string{"role", "list"}, func(t *testing.T, out string) {
			sameJSON(t, out, httpBody(t, base+"/v1/auth/roles"))
		}},
		{"role get", "", []string{"role", "get", "reader"}, func(t *testing.T, out string) {
			sameJSON(t, out, httpBody(t, base+"/v1/auth/roles/reader"))
		}},
		{"cert ca create", "", []string{"cert", "ca", "create", "--dir", filepath.Join(dir, "certs")}, func(t *testing.T, out string) {
			if p := decodeStrict[certPair](t, "cert", out); p.CertFile != filepath.Join(dir, "certs", "ca.pem") || p.Kept {
				t.Errorf("cert ca create %s", out)
			}
		}},
		{"cert ca create kept", "", []string{"cert", "ca", "create", "--dir", filepath.Join(dir, "certs"), "--if-missing"}, func(t *testing.T, out string) {
			if p := decodeStrict[certPair](t, "cert", out); !p.Kept {
				t.Errorf("cert ca create --if-missing %s", out)
			}
		}},
		{"cert member create", "", []string{"cert", "member", "create", "--id", "n1", "--dir", filepath.Join(dir, "certs")}, func(t *testing.T, out string) {
			decodeStrict[certPair](t, "cert", out)
		}},
		{"cert client create", "", []string{"cert", "client", "create", "--name", "admin", "--dir", filepath.Join(dir, "certs")}, func(t *testing.T, out string) {
			decodeStrict[certPair](t, "cert", out)
		}},
		{"user passwd", "secret-one\n", []string{"user", "passwd", "agent", "--password-stdin"}, func(t *testing.T, out string) {
			decodeStrict[api.AuthChangeResponse](t, "user passwd", out)
		}},
		{"user grant", "", []string{"user", "grant", "agent", "reader"}, func(t *testing.T, out string) {
			decodeStrict[api.AuthChangeResponse](t, "user grant", out)
		}},
		{"user revoke", "", []string{"user", "revoke", "agent", "reader"}, func(t *testing.T, out string) {
			decodeStrict[api.AuthChangeResponse](t, "user revoke", out)
		}},
		{"role revoke", "", []string{"role", "revoke", "reader", "--prefix", "j/"}, func(t *testing.T, out string) {
			decodeStrict[api.AuthChangeResponse](t, "role revoke", out)
		}},
		{"role del", "", []string{"role", "del", "reader"}, func(t *testing.T, out string) {
			decodeStrict[api.AuthChangeResponse](t, "role del", out)
		}},
		{"user del", "", []string{"user", "del", "agent"}, func(t *testing.T, out string) {
			decodeStrict[api.AuthChangeResponse](t, "user del", out)
		}},
		// A non-voter that never runs: the one voter keeps its majority.
		{"node join", "", []string{"node", "join", "--id", "ghost", "--raft-addr", freePort(t), "--http-url", "http://" + freePort(t), "--non-voter"},
			func(t *testing.T, out string) {
				if mr := decodeStrict[api.MembersResponse](t, "node join", out); len(mr.Members) != 2 {
					t.Errorf("node join %s", out)
				}
			}},
		{"node remove", "", []string{"node", "remove", "ghost"}, func(t *testing.T, out string) {
			if mr := decodeStrict[api.MembersResponse](t, "node remove", out); len(mr.Members) != 1 {
				t.Errorf("node remove %s", out)
			}
		}},
		// A stopped member of another cluster: recover rewrites its
		// membership, repair moves its stores aside (s9 is not a member
		// of this cluster: nothing to remove).
		{"node recover", "", []string{"node", "recover", "--data-dir", stopped, "--id", "s9", "--peers", peersFile},
			func(t *testing.T, out string) {
				if r := decodeStrict[recoverOutput](t, "node recover", out); r.ID != "s9" || r.Servers != 1 {
					t.Errorf("node recover %s", out)
				}
			}},
		{"node repair", "", []string{"node", "repair", "--id", "s9", "--data-dir", stopped}, func(t *testing.T, out string) {
			if r := decodeStrict[repairOutput](t, "node repair", out); r.ID != "s9" || r.MovedTo == "" || len(r.Moved) == 0 {
				t.Errorf("node repair %s", out)
			}
		}},
	}
	// Every command with a --json flag has a row, or a reason here.
	elsewhere := map[string]string{
		"node promote":             "prints the members as node join and node list do (printMembers); promoting needs a second running member",
		"node transfer-leadership": "prints the members as node list does (printMembers); needs a second voter",
		"auth enable":              "prints the auth revision as user add does (printChange); access control on would refuse the other rows",
		"auth disable":             "as auth enable",
		"mirror start":             "prints api.MirrorStatus as mirror status does; needs a second cluster (TestMirrorCLI)",
		"mirror stop":              "as mirror start",
		"mirror promote":           "as mirror start",
		"mirror status":            "decoded strictly into api.MirrorStatus by TestMirrorCLI (two clusters)",
	}
	tested := map[string]bool{}
	for _, r := range rows {
		for n := len(r.args); n > 0; n-- {
			tested[strings.Join(r.args[:n], " ")] = true
		}
	}
	for _, path := range jsonCommands(commands(), "") {
		if !tested[path] && elsewhere[path] == "" {
			t.Errorf("%s has --json but no row in TestJSONOutputShapes", path)
		}
	}
	for _, r := range rows {
		// --json after the arguments (flags anywhere), as the issue tried.
		args := append(append([]string{cl}, r.args...), "--json")
		var stdin io.Reader
		if r.stdin != "" {
			stdin = strings.NewReader(r.stdin)
		}
		out, errOut, code := runJSON(t, stdin, args...)
		if code != 0 {
			t.Fatalf("%s: exit %d\nstdout %s\nstderr %s", r.name, code, out, errOut)
		}
		t.Run(r.name, func(t *testing.T) {
			lines := []string{out}
			if r.name == "watch" { // one event a line, as the HTTP stream
				lines = strings.Split(strings.TrimSuffix(out, "\n"), "\n")
			}
			for _, l := range lines {
				checkKeys(t, decodeAny(t, r.name, []byte(l)), r.name)
			}
			if r.check != nil {
				r.check(t, out)
			}
		})
	}
}

// stoppedMember starts a one-member cluster (member s9), stops it and
// returns its data directory.
func stoppedMember(t *testing.T) string {
	t.Helper()
	cfg := node.DefaultConfig()
	cfg.ID, cfg.DataDir, cfg.Bootstrap = "s9", t.TempDir(), true
	cfg.RaftAddr, cfg.HTTPAddr = testnet.FreeAddr(t), testnet.FreeAddr(t)
	cfg.HeartbeatTimeout, cfg.ElectionTimeout, cfg.LeaderLeaseTimeout = 200*time.Millisecond, 200*time.Millisecond, 100*time.Millisecond
	n, err := node.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	poll(t, "node ready", 10*time.Second, n.Ready)
	if err := n.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	return cfg.DataDir
}

// jsonCommands returns the paths ("node list") of the commands under cs
// that have a --json flag of their own.
func jsonCommands(cs []*cli.Command, parent string) []string {
	var out []string
	for _, c := range cs {
		path := strings.TrimSpace(parent + " " + c.Name)
		for _, f := range c.Flags {
			if slices.Contains(f.Names(), "json") {
				out = append(out, path)
			}
		}
		out = append(out, jsonCommands(c.Subcommands, path)...)
	}
	return out
}

// TestJSONErrors: with --json a failed command prints the API's error body
// on stderr, with the server's code when the server refused, else the
// CLI's (bad_request for a usage error, unavailable when no member
// answers), and exits as it does without --json; without --json the error
// stays text.
func TestJSONErrors(t *testing.T) {
	cl := startOneNode(t)
	nobody := "--cluster=http://" + freePort(t)
	if _, e, code := runJSON(t, nil, cl, "put", "k", "v"); code != 0 {
		t.Fatalf("put: %s", e)
	}
	if _, e, code := runJSON(t, nil, cl, "put", "old", "v"); code != 0 {
		t.Fatalf("put: %s", e)
	}
	if _, e, code := runJSON(t, nil, cl, "compact", "--before", "2"); code != 0 {
		t.Fatalf("compact: %s", e)
	}
	for _, tc := range []struct {
		name string
		args []string
		exit int
		code string
		// more checks the error beyond its code.
		more func(t *testing.T, e api.Error)
	}{
		{"missing key", []string{cl, "get", "nosuch", "--json"}, exitNotFound, api.CodeNotFound, func(t *testing.T, e api.Error) {
			if e.LeaderURL != "" { // the API names the leader for not_leader, unavailable and corrupt only
				t.Errorf("leader_url %q in a not_found error", e.LeaderURL)
			}
		}},
		{"global --json", []string{cl, "--json", "get", "nosuch"}, exitNotFound, api.CodeNotFound, nil},
		{"usage: arguments", []string{cl, "get", "a", "b", "--json"}, exitUsage, api.CodeBadRequest, nil},
		{"usage: unknown flag", []string{cl, "get", "--bogus", "a", "--json"}, exitUsage, api.CodeBadRequest, nil},
		{"usage: unknown command", []string{cl, "--json", "frobnicate"}, exitUsage, api.CodeBadRequest, nil},
		{"unreachable", []string{nobody, "--timeout", "1s", "get", "k", "--json"}, exitUnavailable, api.CodeUnavailable, nil},
		{"conflict", []string{cl, "put", "--if-absent", "k", "w", "--json"}, exitConflict, api.CodeConflict, func(t *testing.T, e api.Error) {
			if len(e.Conflicts) != 1 || e.Conflicts[0].Key != "k" || e.Conflicts[0].CurrentRevision == 0 {
				t.Errorf("conflicts %+v", e.Conflicts)
			}
		}},
		{"compacted", []string{cl, "watch", "--from", "1", "--json"}, exitError, api.CodeCompacted, func(t *testing.T, e api.Error) {
			if e.OldestRevision != 2 {
				t.Errorf("oldest_revision %d, want 2", e.OldestRevision)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, errOut, code := runJSON(t, nil, tc.args...)
			if code != tc.exit {
				t.Errorf("exit %d, want %d (stderr %s)", code, tc.exit, errOut)
			}
			if out != "" {
				t.Errorf("stdout %q, want nothing", out)
			}
			if strings.Count(errOut, "\n") != 1 {
				t.Errorf("stderr is not one line: %q", errOut)
			}
			checkKeys(t, decodeAny(t, "stderr", []byte(errOut)), "stderr")
			er := decodeStrict[api.ErrorResponse](t, "stderr", errOut)
			if er.Error.Code != tc.code || er.Error.Message == "" {
				t.Errorf("error %+v, want code %s", er.Error, tc.code)
			}
			if tc.more != nil {
				tc.more(t, er.Error)
			}
		})
	}
	// Without --json (or with --json=false) the error is text.
	for _, args := range [][]string{{cl, "get", "nosuch"}, {cl, "get", "nosuch", "--json=false"}} {
		_, errOut, code := runJSON(t, nil, args...)
		if code != exitNotFound || !strings.HasPrefix(errOut, "cairn: ") {
			t.Errorf("%v: exit %d, stderr %q", args, code, errOut)
		}
	}
}

// TestJSONRequested: --json counts where urfave takes it as the flag, not
// as another flag's value or a positional argument.
func TestJSONRequested(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want bool
	}{
		{[]string{"put", "onlykey", "--json"}, true},
		{[]string{"--json", "put", "onlykey"}, true},
		{[]string{"put", "--json=true", "onlykey"}, true},
		{[]string{"put", "--json=false", "onlykey"}, false},
		{[]string{"put", "--idempotency-key", "--json", "onlykey"}, false}, // the key's value
		{[]string{"put", "--", "--json"}, false},                           // a key
		{[]string{"node", "join", "--id", "--json"}, false},                // the id
		{[]string{"node", "join", "--id", "n4", "--json"}, true},
	} {
		// Each is a usage error, so Run returns at once without a cluster.
		err := Run(context.Background(), append([]string{"cairn"}, tc.args...), io.Discard, io.Discard)
		if exitCode(err) != exitUsage {
			t.Fatalf("%v: %v (exit %d), want a usage error", tc.args, err, exitCode(err))
		}
		var jm *jsonModeError
		if got := errors.As(err, &jm); got != tc.want {
			t.Errorf("%v: JSON error %v, want %v", tc.args, got, tc.want)
		}
	}
}

// TestJSONErrorBinary: the binary itself (main) prints the JSON error.
func TestJSONErrorBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	cl := startOneNode(t)
	out, errOut, code := runCLI(t, "", cl, "get", "nosuch", "--json")
	if code != exitNotFound || out != "" {
		t.Fatalf("exit %d, stdout %q", code, out)
	}
	if er := decodeStrict[api.ErrorResponse](t, "stderr", errOut); er.Error.Code != api.CodeNotFound {
		t.Errorf("stderr %s", errOut)
	}
	if _, errOut, _ := runCLI(t, "", cl, "get", "nosuch"); !strings.HasPrefix(errOut, "cairn: ") {
		t.Errorf("without --json: %q", errOut)
	}
}
