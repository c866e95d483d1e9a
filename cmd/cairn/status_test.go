package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/cairn-db/cairn/api"
	"github.com/cairn-db/cairn/internal/cluster"
	"github.com/cairn-db/cairn/internal/testutil"
	"github.com/cairn-db/cairn/node"
)

// startInProc starts a three-member in-process cluster and waits for
// its leader.
func startInProc(t *testing.T) *cluster.Cluster {
	t.Helper()
	c := cluster.New(t, cluster.Options{Kind: cluster.InProc, Configure: func(cfg *node.Config) {
		cfg.CommitTimeout = 5 * time.Millisecond
	}})
	c.Start(t, 3)
	c.Leader(t)
	return c
}

// TestStatusCommand: `cairn status` prints a row per member, the leader
// first and marked, every one ready; --json is the API's answer exactly;
// --endpoint asks that member; a stopped member is a row saying why, and
// the exit status stays 0.
func TestStatusCommand(t *testing.T) {
	c := startInProc(t)
	flag := "--cluster=" + strings.Join(c.URLs(), ",")
	if _, errOut, code := runIn(t, nil, flag, "put", "k", "v"); code != 0 {
		t.Fatalf("put: %d %s", code, errOut)
	}
	leader := c.Member(c.Leader(t)).ID()
	poll(t, "a table of three ready members", 20*time.Second, func() error {
		out, errOut, code := runIn(t, nil, flag, "status")
		if code != 0 {
			return fmt.Errorf("exit %d: %s", code, errOut)
		}
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if len(lines) != 4 || !strings.HasPrefix(lines[0], "ID ") || !strings.Contains(lines[0], "HEALTH") || !strings.Contains(lines[0], "WATCHERS") {
			return fmt.Errorf("table:\n%s", out)
		}
		if f := strings.Fields(lines[1]); f[0] != leader || f[1] != "voter" || f[2] != "(leader)" {
			return fmt.Errorf("first row %q, want the leader %s", lines[1], leader)
		}
		ids := map[string]bool{}
		for _, l := range lines[1:] {
			f := strings.Fields(l)
			if f[len(f)-1] != "ready" {
				return fmt.Errorf("row %q not ready", l)
			}
			ids[f[0]] = true
		}
		for i := range 3 {
			if id := c.Member(i).ID(); !ids[id] {
				return fmt.Errorf("no row for %s:\n%s", id, out)
			}
		}
		if strings.Count(out, "(leader)") != 1 {
			return fmt.Errorf("not one leader:\n%s", out)
		}
		return nil
	})

	// --json decodes, with nothing unknown, into the API's answer.
	out, errOut, code := runIn(t, nil, flag, "status", "--json")
	if code != 0 {
		t.Fatalf("--json: exit %d: %s", code, errOut)
	}
	dec := json.NewDecoder(strings.NewReader(out))
	dec.DisallowUnknownFields()
	var cs api.ClusterStatusResponse
	if err := dec.Decode(&cs); err != nil {
		t.Fatalf("--json: %v\n%s", err, out)
	}
	if cs.Leader != leader || len(cs.Members) != 3 || cs.Term == 0 {
		t.Fatalf("--json: %+v", cs)
	}
	for _, m := range cs.Members {
		if !m.Reachable || m.Status == nil || m.Status.ID != m.ID || m.Status.Version == "" {
			t.Fatalf("--json member %+v", m)
		}
	}

	// --endpoint: that member gathers the answer.
	follower := c.Followers(t)[0]
	out, errOut, code = runIn(t, nil, flag, "--json", "status", "--endpoint", c.URL(follower))
	if err := json.Unmarshal([]byte(out), &cs); code != 0 || err != nil || cs.Node != c.Member(follower).ID() {
		t.Fatalf("--endpoint: exit %d, %v: %s %s", code, err, out, errOut)
	}

	// A stopped member: its row says unreachable and why; exit 0.
	c.Stop(t, follower)
	stopped := c.Member(follower).ID()
	poll(t, "the stopped member's row", 20*time.Second, func() error {
		out, errOut, code := runIn(t, nil, flag, "status")
		if code != 0 {
			return fmt.Errorf("exit %d: %s", code, errOut)
		}
		if lines := strings.Split(strings.TrimSpace(out), "\n"); len(lines) != 4 {
			return fmt.Errorf("table:\n%s", out)
		}
		if !testutil.HasLine(out, stopped+" ", " unreachable: ") {
			return fmt.Errorf("no unreachable row for %s:\n%s", stopped, out)
		}
		return nil
	})
}

// TestNodeHealthEveryEndpoint: `cairn node health` asks every --cluster
// endpoint (or every --endpoint, repeated or comma separated), prints a
// line for each, and exits 5 when one is not ready.
func TestNodeHealthEveryEndpoint(t *testing.T) {
	c := startInProc(t)
	urls := c.URLs()
	flag := "--cluster=" + strings.Join(urls, ",")
	wantLines := func(out string, ready, notReady []string) error {
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if len(lines) != len(ready)+len(notReady) {
			return fmt.Errorf("%d lines, want %d:\n%s", len(lines), len(ready)+len(notReady), out)
		}
		for _, u := range ready {
			if !strings.Contains("\n"+out, "\n"+u+" ready\n") {
				return fmt.Errorf("no %q line:\n%s", u+" ready", out)
			}
		}
		for _, u := range notReady {
			if !strings.Contains("\n"+out, "\n"+u+" not ready: ") {
				return fmt.Errorf("no %q line:\n%s", u+" not ready: ...", out)
			}
		}
		return nil
	}
	// Every member ready: each form asks all three.
	for _, args := range [][]string{
		{flag, "node", "health"},
		{flag, "node", "health", "--endpoint", strings.Join(urls, ",")},
		{"--cluster=" + urls[0], "node", "health", "--endpoint", urls[0], "--endpoint", urls[1], "--endpoint", urls[2]},
	} {
		poll(t, "every member ready", 20*time.Second, func() error {
			out, errOut, code := runIn(t, nil, args...)
			if code != 0 {
				return fmt.Errorf("%v: exit %d: %s%s", args, code, out, errOut)
			}
			return wantLines(out, urls, nil)
		})
	}
	// One member down: a line for each, exit 5 naming it.
	c.Stop(t, 2)
	var out bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := Run(ctx, []string{"cairn", flag, "node", "health"}, &out, io.Discard)
	if code := exitCode(err); code != exitUnavailable {
		t.Fatalf("one member down: exit %d, want %d: %s %v", code, exitUnavailable, out.String(), err)
	}
	if err := wantLines(out.String(), urls[:2], urls[2:]); err != nil {
		t.Fatal(err)
	}
	if msg := err.Error(); !strings.Contains(msg, "1 of 3 endpoints not ready") || !strings.Contains(msg, urls[2]) {
		t.Fatalf("error %q", msg)
	}
	// The documented health check, one endpoint, still exits 0 on a ready member.
	if out, errOut, code := runIn(t, nil, "node", "health", "--endpoint", urls[0]); code != 0 || out != urls[0]+" ready\n" {
		t.Fatalf("one endpoint: exit %d: %q %s", code, out, errOut)
	}
}

// TestVerifyMemberDown: `cairn verify` with a member stopped names the
// member it could not reach, and does not say that copies differ; the
// members it reached are OK.
func TestVerifyMemberDown(t *testing.T) {
	c := startInProc(t)
	flag := "--cluster=" + strings.Join(c.URLs(), ",")
	if _, errOut, code := runIn(t, nil, flag, "put", "k", "v"); code != 0 {
		t.Fatalf("put: %d %s", code, errOut)
	}
	c.WaitConverged(t)
	down := c.Followers(t)[0]
	c.Stop(t, down)
	id := c.Member(down).ID()
	var out bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := Run(ctx, []string{"cairn", flag, "verify"}, &out, io.Discard)
	if code := exitCode(err); code != exitError {
		t.Fatalf("exit %d, want %d: %v\n%s", code, exitError, err, out.String())
	}
	if msg := err.Error(); msg != "could not reach "+id+" (the members reached agree)" {
		t.Fatalf("error %q, want one naming %s and no copies that differ", msg, id)
	}
	if !testutil.HasLine(out.String(), id+" ", "false", "unreachable") {
		t.Fatalf("no unreachable row for %s:\n%s", id, out.String())
	}
	for i := range 3 {
		if i != down && !testutil.HasLine(out.String(), c.Member(i).ID()+" ", " true ") {
			t.Fatalf("%s not OK:\n%s", c.Member(i).ID(), out.String())
		}
	}
}
