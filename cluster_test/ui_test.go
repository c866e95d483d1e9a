package cluster_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/cairn-db/cairn/api"
	"github.com/cairn-db/cairn/auth"
	"github.com/cairn-db/cairn/node"
)

// The status page (/ui/, docs/ui.md) in a real headless Chromium, driven
// by chromedp. Without a chromium binary these tests skip, saying so,
// unless CAIRN_REQUIRE_CHROMIUM=1 (CI sets it once
// scripts/install-chromium.sh has installed one), when they fail.
// Screenshots go to $CAIRN_ARTIFACTS (default: a new temporary
// directory, logged and kept).

// waitPage bounds how long the page may take to show a change: it
// refreshes every 2 s, and a member that lost its leader answers after an
// election.
const waitPage = 30 * time.Second

// chromiumPath finds the browser: $CAIRN_CHROMIUM, else chromium,
// chromium-browser or google-chrome on PATH.
func chromiumPath(t *testing.T) string {
	t.Helper()
	names := []string{"chromium", "chromium-browser", "google-chrome"}
	if env := os.Getenv("CAIRN_CHROMIUM"); env != "" {
		names = []string{env}
	}
	for _, n := range names {
		if p, err := exec.LookPath(n); err == nil {
			return p
		}
	}
	msg := fmt.Sprintf("no Chromium found (looked for %s): install it with `bash scripts/install-chromium.sh` (Debian's chromium) or set CAIRN_CHROMIUM to a Chromium or Chrome binary",
		strings.Join(names, ", "))
	if os.Getenv("CAIRN_REQUIRE_CHROMIUM") == "1" {
		t.Fatalf("CAIRN_REQUIRE_CHROMIUM=1 but %s", msg)
	}
	t.Skip("the status page's browser test did not run: " + msg)
	return ""
}

// artifactsDir is where screenshots go: $CAIRN_ARTIFACTS, or a new
// temporary directory that outlives the test.
func artifactsDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("CAIRN_ARTIFACTS")
	if dir == "" {
		d, err := os.MkdirTemp("", "cairn-ui-artifacts-")
		if err != nil {
			t.Fatal(err)
		}
		dir = d
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		t.Fatal(err)
	}
	return abs
}

// browser is one headless Chromium tab, with what the page wrote to its
// console.
type browser struct {
	t   *testing.T
	ctx context.Context
	dir string

	mu      sync.Mutex
	console []string
}

// newBrowser starts Chromium (with --no-sandbox when running as root,
// where its sandbox cannot start) and opens a tab; the test's cleanup
// closes both.
func newBrowser(t *testing.T) *browser {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromiumPath(t)),
		chromedp.WindowSize(1280, 1100),
		chromedp.UserDataDir(t.TempDir()),
	)
	if os.Geteuid() == 0 {
		opts = append(opts, chromedp.NoSandbox)
	}
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelTab := chromedp.NewContext(allocCtx, chromedp.WithLogf(t.Logf))
	b := &browser{t: t, ctx: ctx, dir: artifactsDir(t)}
	t.Logf("screenshots of %s go to %s", t.Name(), b.dir)
	// The first action starts the browser; it must not run under a
	// shorter context, which would end the browser with it.
	if err := chromedp.Do(ctx); err != nil {
		cancelTab()
		cancelAlloc()
		t.Fatalf("start chromium: %v", err)
	}
	messages := chromedp.Console(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for m, err := range messages {
			if err != nil {
				return
			}
			b.mu.Lock()
			b.console = append(b.console, m.String())
			b.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		cancelTab()
		cancelAlloc()
		<-done
	})
	return b
}

// do runs actions in the tab within a deadline.
func (b *browser) do(actions ...chromedp.Action[chromedp.Void]) error {
	ctx, cancel := context.WithTimeout(b.ctx, 20*time.Second)
	defer cancel()
	return chromedp.Do(ctx, actions...)
}

// eval evaluates a JavaScript expression in the page into out.
func (b *browser) eval(expr string, out any) error {
	ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
	defer cancel()
	raw, err := chromedp.Run(ctx, chromedp.Evaluate[json.RawMessage](expr))
	if err != nil {
		return err
	}
	return json.Unmarshal(raw, out)
}

// screenshot writes the whole page to name.png in the artifacts
// directory.
func (b *browser) screenshot(name string) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 20*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		b.t.Fatalf("screenshot %s: %v", name, err)
	}
	p := filepath.Join(b.dir, strings.NewReplacer("/", "-", " ", "_").Replace(b.t.Name())+"-"+name+".png")
	if err := os.WriteFile(p, png, 0o644); err != nil {
		b.t.Fatal(err)
	}
	b.t.Logf("screenshot: %s", p)
}

// problems are the page's console errors and warnings: a script error, a
// refused resource or a Content-Security-Policy violation. The console's
// report of a failed request (the API refusing, a member going away) is
// not one.
func (b *browser) problems() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []string
	for _, m := range b.console {
		if !strings.HasPrefix(m, "error: ") && !strings.HasPrefix(m, "warning: ") && !strings.HasPrefix(m, "exception: ") {
			continue
		}
		if strings.Contains(m, "Failed to load resource") {
			continue
		}
		out = append(out, m)
	}
	return out
}

// pageState is what the status page shows, read from its DOM.
type pageState struct {
	Leader  string `json:"leader"`
	Status  string `json:"status"`
	SignIn  bool   `json:"signin"`
	Cluster bool   `json:"cluster"`
	Error   string `json:"error"`
	Members []struct {
		ID     string `json:"id"`
		State  string `json:"state"`
		Health string `json:"health"`
	} `json:"members"`
	RatePlot string `json:"rate"`
}

const pageStateJS = `(() => {
  const q = (s) => document.querySelector(s);
  return {
    leader: q('#leader').textContent,
    status: q('#status').textContent,
    signin: !q('#signin').hidden,
    cluster: !q('#cluster').hidden,
    error: q('#signin-error').textContent,
    members: [...document.querySelectorAll('#members tbody tr')].map((r) => ({
      id: r.dataset.member, state: r.cells[2].textContent, health: r.cells[3].textContent })),
    rate: (q('#plot-rate .plot-summary') || {}).textContent || '',
  };
})()`

// state reads the page's state.
func (b *browser) state() (pageState, error) {
	var s pageState
	err := b.eval(pageStateJS, &s)
	return s, err
}

// waitState polls the page until cond accepts its state.
func (b *browser) waitState(what string, cond func(pageState) error) pageState {
	b.t.Helper()
	var last pageState
	waitFor(b.t, what, waitPage, func() error {
		s, err := b.state()
		if err != nil {
			return err
		}
		last = s
		return cond(s)
	})
	return last
}

// memberIDs returns the ids of the cluster's members, sorted.
func memberIDs(c *Cluster) []string {
	var ids []string
	for i := range c.N() {
		ids = append(ids, c.Member(i).ID())
	}
	slices.Sort(ids)
	return ids
}

// TestStatusPage opens the status page of a follower of a three-member
// cluster in Chromium: it shows the three members and the leader, and the
// writes made through that member in its rate plot. The leader is killed;
// the page, still served by the follower, shows the new leader and the
// old one unreachable. The page also keeps to the basics of accessibility
// (a main region, headings, a table with a caption and header cells, a
// live status region, plots with text alternatives, keyboard focus) and
// writes nothing to the console (no script error, no CSP violation).
func TestStatusPage(t *testing.T) {
	b := newBrowser(t)
	c := StartCluster(t, 3, nil)
	page := c.Followers(t)[0] // the page's member: not the leader, which is killed
	ids := memberIDs(c)
	var writes, failed uint64
	for i := range 20 {
		// Retried: just after the election a follower's write can meet
		// a leader that does not take forwarded writes yet.
		waitFor(t, "a write through "+c.Member(page).ID(), waitConverge, func() error {
			writes++
			if r := c.Put(t, page, fmt.Sprintf("ui/%d", i), "v", ""); r.Code != http.StatusOK {
				if r.Code >= 500 {
					failed++
				}
				return fmt.Errorf("put: %s", r)
			}
			return nil
		})
	}
	// The member counted each write, and nothing else, in its statistics.
	waitFor(t, "GET /v1/stats to count the writes", waitPage, func() error {
		var st api.StatsResponse
		r := c.Do(t, page, "GET", "/v1/stats", nil, nil)
		if err := json.Unmarshal(r.Body, &st); err != nil {
			return fmt.Errorf("%v: %s", err, r)
		}
		var got api.StatsPoint
		for _, p := range st.Points {
			got.Writes, got.Reads, got.Errors = got.Writes+p.Writes, got.Reads+p.Reads, got.Errors+p.Errors
		}
		if st.Node != c.Member(page).ID() || st.IntervalSeconds != 5 || got.Writes != writes || got.Reads != 0 || got.Errors != failed {
			return fmt.Errorf("stats of %s every %d s: %d writes, %d reads, %d errors; want %d writes, %d failed",
				st.Node, st.IntervalSeconds, got.Writes, got.Reads, got.Errors, writes, failed)
		}
		return nil
	})

	if err := b.do(chromedp.Navigate(c.URL(page) + "/ui/")); err != nil {
		t.Fatal(err)
	}
	// The page shows the leader of the moment: under load leadership can
	// move after the cluster started.
	var leaderID string
	b.waitState("the page to show three members and the leader", func(s pageState) error {
		var got []string
		for _, m := range s.Members {
			got = append(got, m.ID)
		}
		slices.Sort(got)
		now, _ := c.LeaderNow()
		if now < 0 || now == page {
			return fmt.Errorf("leader now: %d (the page is served by %d)", now, page)
		}
		leaderID = c.Member(now).ID()
		if !slices.Equal(got, ids) || s.Leader != leaderID {
			return fmt.Errorf("members %v, leader %q; want %v, leader %q (status %q)", got, s.Leader, ids, leaderID, s.Status)
		}
		for _, m := range s.Members {
			if want := map[bool]string{true: "Leader", false: "Follower"}[m.ID == leaderID]; m.Health != "ready" || m.State != want {
				return fmt.Errorf("member %+v", m)
			}
		}
		return nil
	})
	leader := c.Index(leaderID)
	// The writes above reach the plot once their 5-second interval ends.
	b.waitState("the rate plot to show the writes", func(s pageState) error {
		if !regexp.MustCompile(`^Writes: .*highest [0-9.]+ per second`).MatchString(s.RatePlot) {
			return fmt.Errorf("rate plot summary %q", s.RatePlot)
		}
		return nil
	})
	checkAccessibility(t, b)
	b.screenshot("three-members")

	c.Kill(t, leader)
	c.Leader(t) // an election among the two left
	b.waitState("the page to show the new leader and "+leaderID+" unreachable", func(s pageState) error {
		now, _ := c.LeaderNow()
		if now < 0 {
			return fmt.Errorf("no leader now (the page shows %q)", s.Leader)
		}
		newID := c.Member(now).ID()
		if newID == leaderID {
			return fmt.Errorf("the killed member %s leads", newID)
		}
		if s.Leader != newID {
			return fmt.Errorf("leader %q, want %q (status %q)", s.Leader, newID, s.Status)
		}
		for _, m := range s.Members {
			if m.ID == leaderID && !strings.HasPrefix(m.Health, "unreachable") {
				return fmt.Errorf("killed member %+v", m)
			}
		}
		if !strings.Contains(s.Status, "Leader "+newID) || !strings.Contains(s.Status, "2 of 3 members reachable") {
			return fmt.Errorf("status region %q", s.Status)
		}
		return nil
	})
	b.screenshot("after-leader-killed")
	if p := b.problems(); len(p) > 0 {
		t.Fatalf("the page wrote to the console:\n%s", strings.Join(p, "\n"))
	}
}

// checkAccessibility checks the page's structure in the browser: a main
// region and headings, the members table with a caption and header cells
// for columns and rows, a polite live status region, plots as images with
// a text alternative, the skip link first in the tab order and a visible
// focus outline.
func checkAccessibility(t *testing.T, b *browser) {
	t.Helper()
	var a struct {
		Main, H1         int
		H2               []string
		Caption          string
		ColHeads, Cols   int
		RowHeads, Rows   int
		LiveRole, Live   string
		Plots            int
		PlotAlternatives []string
		Lang             string
	}
	err := b.eval(`(() => {
  const all = (s) => [...document.querySelectorAll(s)];
  const status = document.getElementById('status');
  return {
    Main: all('main').length,
    H1: all('h1').length,
    H2: all('h2').filter((h) => h.offsetParent !== null).map((h) => h.textContent),
    Caption: (document.querySelector('#members caption') || {}).textContent || '',
    ColHeads: all('#members thead th[scope="col"]').length,
    Cols: all('#members thead th').length,
    RowHeads: all('#members tbody tr > th[scope="row"]:first-child').length,
    Rows: all('#members tbody tr').length,
    LiveRole: status.getAttribute('role'),
    Live: status.getAttribute('aria-live'),
    Plots: all('svg.plot').length,
    PlotAlternatives: all('svg.plot[role="img"]').map((s) =>
      s.getAttribute('aria-labelledby').split(' ').map((id) => (document.getElementById(id) || {}).textContent || '').join(' | ')),
    Lang: document.documentElement.lang,
  };
})()`, &a)
	if err != nil {
		t.Fatal(err)
	}
	if a.Main != 1 || a.H1 != 1 || len(a.H2) < 3 || a.Lang == "" {
		t.Errorf("structure: %d main, %d h1, h2 %q, lang %q", a.Main, a.H1, a.H2, a.Lang)
	}
	if a.Caption == "" || a.Cols == 0 || a.ColHeads != a.Cols || a.Rows == 0 || a.RowHeads != a.Rows {
		t.Errorf("members table: caption %q, %d/%d column headers, %d/%d row headers", a.Caption, a.ColHeads, a.Cols, a.RowHeads, a.Rows)
	}
	if a.LiveRole != "status" || a.Live != "polite" {
		t.Errorf("status region: role %q aria-live %q", a.LiveRole, a.Live)
	}
	if a.Plots != 3 || len(a.PlotAlternatives) != a.Plots {
		t.Errorf("%d plots, %d with role img", a.Plots, len(a.PlotAlternatives))
	}
	for _, alt := range a.PlotAlternatives {
		title, desc, _ := strings.Cut(alt, " | ")
		if title == "" || !regexp.MustCompile(`latest [0-9.]+`).MatchString(desc) {
			t.Errorf("plot without a text alternative: %q", alt)
		}
	}

	// Keyboard: the first Tab reaches the skip link, the next the pause
	// button, and the focused element has an outline.
	var focus []struct{ ID, Text, Outline string }
	for range 2 {
		if err := b.do(chromedp.KeyEvent("\t")); err != nil {
			t.Fatal(err)
		}
		var f struct{ ID, Text, Outline string }
		if err := b.eval(`(() => { const e = document.activeElement; return {
  ID: e.id, Text: e.textContent, Outline: getComputedStyle(e).outlineStyle }; })()`, &f); err != nil {
			t.Fatal(err)
		}
		focus = append(focus, f)
	}
	if focus[0].Text != "Skip to the status" || focus[1].ID != "pause" {
		t.Errorf("tab order: %+v", focus)
	}
	for _, f := range focus {
		if f.Outline == "none" || f.Outline == "" {
			t.Errorf("no visible focus on %+v", f)
		}
	}

	// Enter on the focused pause button stops the updates, and again
	// starts them.
	for _, want := range []string{"true", "false"} {
		if err := b.do(chromedp.KeyEvent("\r")); err != nil {
			t.Fatal(err)
		}
		var pressed struct{ Pressed, Status string }
		if err := b.eval(`({Pressed: document.getElementById('pause').getAttribute('aria-pressed'),
  Status: document.getElementById('status').textContent})`, &pressed); err != nil {
			t.Fatal(err)
		}
		if pressed.Pressed != want || (want == "true" && pressed.Status != "Updates paused.") {
			t.Errorf("pause button: %+v, want aria-pressed %s", pressed, want)
		}
	}
}

// TestStatusPageSignIn: with access control on, the page asks to sign in
// (the API answers 401), refuses a wrong password, signs in as an admin
// (a bearer token kept in sessionStorage for the reloaded page), tells a
// user without the admin role that it may not see the cluster, and signs
// out.
func TestStatusPageSignIn(t *testing.T) {
	b := newBrowser(t)
	c := StartCluster(t, 1, func(cfg *node.Config) { cfg.BcryptCost = auth.MinBcryptCost })
	for _, step := range []struct{ method, path, body string }{
		{"PUT", "/v1/auth/users/root", `{"password":"root-pw-1"}`},
		{"PUT", "/v1/auth/users/root/roles/root", ""},
		{"PUT", "/v1/auth/users/alice", `{"password":"alice-pw-1"}`},
		{"POST", "/v1/auth/enable", ""},
	} {
		var body []byte
		if step.body != "" {
			body = []byte(step.body)
		}
		if r := c.Do(t, 0, step.method, step.path, body, nil); r.Code != http.StatusOK {
			t.Fatalf("%s %s: %s", step.method, step.path, r)
		}
	}
	expectError(t, c.Do(t, 0, "GET", "/v1/cluster/status", nil, nil), http.StatusUnauthorized, api.CodeUnauthenticated)

	if err := b.do(chromedp.Navigate(c.URL(0) + "/ui/")); err != nil {
		t.Fatal(err)
	}
	b.waitState("the sign-in form", func(s pageState) error {
		if !s.SignIn || s.Cluster {
			return fmt.Errorf("sign-in shown %v, cluster shown %v (status %q)", s.SignIn, s.Cluster, s.Status)
		}
		return nil
	})
	var focused string
	if err := b.eval(`document.activeElement.id`, &focused); err != nil || focused != "user" {
		t.Fatalf("focus on %q (%v), want the user field", focused, err)
	}
	b.screenshot("sign-in")

	signIn := func(user, password string) {
		t.Helper()
		var cleared bool
		if err := b.eval(`(() => { for (const id of ['user', 'password']) document.getElementById(id).value = ''; return true; })()`, &cleared); err != nil {
			t.Fatal(err)
		}
		if err := b.do(
			chromedp.SendKeys(chromedp.CSS("#user"), user),
			chromedp.SendKeys(chromedp.CSS("#password"), password+"\r"),
		); err != nil {
			t.Fatal(err)
		}
	}
	signIn("root", "wrong-password")
	b.waitState("the refusal", func(s pageState) error {
		if !s.SignIn || !strings.Contains(s.Error, "wrong user name or password") {
			return fmt.Errorf("sign-in shown %v, error %q", s.SignIn, s.Error)
		}
		return nil
	})

	signIn("root", "root-pw-1")
	wantCluster := func(what string) {
		t.Helper()
		b.waitState(what, func(s pageState) error {
			if s.SignIn || !s.Cluster || len(s.Members) != 1 || s.Leader != c.Member(0).ID() {
				return fmt.Errorf("sign-in shown %v (%q), cluster shown %v, members %+v, leader %q (status %q)", s.SignIn, s.Error, s.Cluster, s.Members, s.Leader, s.Status)
			}
			return nil
		})
	}
	wantCluster("the cluster once signed in")
	var stored string
	if err := b.eval(`sessionStorage.getItem('cairn-token') || ''`, &stored); err != nil || stored == "" {
		t.Fatalf("no token in sessionStorage (%v)", err)
	}
	if r := c.Do(t, 0, "GET", "/v1/cluster/status", nil, http.Header{"Authorization": {"Bearer " + stored}}); r.Code != http.StatusOK {
		t.Fatalf("the page's token: %s", r)
	}
	if err := b.do(chromedp.Reload()); err != nil {
		t.Fatal(err)
	}
	wantCluster("the cluster after a reload, with the kept token")
	b.screenshot("signed-in")

	if err := b.do(chromedp.Click(chromedp.CSS("#signout"))); err != nil {
		t.Fatal(err)
	}
	b.waitState("the sign-in form after signing out", func(s pageState) error {
		if !s.SignIn || s.Cluster {
			return fmt.Errorf("sign-in shown %v, cluster shown %v", s.SignIn, s.Cluster)
		}
		return nil
	})
	if err := b.eval(`sessionStorage.getItem('cairn-token') || ''`, &stored); err != nil || stored != "" {
		t.Fatalf("token %q kept after signing out (%v)", stored, err)
	}

	signIn("alice", "alice-pw-1")
	b.waitState("a user without the admin role told so", func(s pageState) error {
		if s.SignIn || s.Cluster || !strings.Contains(s.Status, "needs an admin role") {
			return fmt.Errorf("sign-in shown %v, cluster shown %v, status %q", s.SignIn, s.Cluster, s.Status)
		}
		return nil
	})
	if p := b.problems(); len(p) > 0 {
		t.Fatalf("the page wrote to the console:\n%s", strings.Join(p, "\n"))
	}
}

// TestStatusPageMirror opens the status page of a standby (a one-member
// cluster following a one-member source) in Chromium: its Mirror section
// shows the state following, the source streamed from, a lag of 0 once
// caught up and the mirror's max rate; the source's page lists the standby's checkpoint. After
// promotion the standby's page says primary and the promotion.
func TestStatusPageMirror(t *testing.T) {
	b := newBrowser(t)
	src := StartCluster(t, 1, mirrorConfig)
	standby := startStandby(t, 1, src)
	for i := range 5 {
		if r := src.Put(t, 0, fmt.Sprintf("m/%d", i), "v", ""); r.Code != http.StatusOK {
			t.Fatalf("put: %s", r)
		}
	}
	// With a rate limit of its own, which the page shows.
	if r := standby.PostJSON(t, standby.Leader(t), "/v1/mirror/start", api.MirrorStartRequest{Sources: []string{src.URL(0)}, MaxRate: 1 << 20}); r.Code != http.StatusOK {
		t.Fatalf("mirror start: %s", r)
	}
	waitMirrored(t, src, standby)
	const mirrorJS = `(() => {
  const q = (s) => document.querySelector(s);
  const dl = {};
  const terms = [...document.querySelectorAll('#mirror-summary dt')];
  for (const dt of terms) { dl[dt.textContent] = dt.nextElementSibling.textContent; }
  return { shown: !q('#mirror').hidden, summary: dl, status: q('#status').textContent,
    checkpoints: [...document.querySelectorAll('#checkpoints tbody tr')].map((r) => r.cells[0].textContent) };
})()`
	type mirrorPage struct {
		Shown       bool              `json:"shown"`
		Summary     map[string]string `json:"summary"`
		Status      string            `json:"status"`
		Checkpoints []string          `json:"checkpoints"`
	}
	waitMirror := func(what string, cond func(mirrorPage) error) {
		t.Helper()
		waitFor(t, what, waitPage, func() error {
			var p mirrorPage
			if err := b.eval(mirrorJS, &p); err != nil {
				return err
			}
			if !p.Shown {
				return fmt.Errorf("no Mirror section: %+v", p)
			}
			return cond(p)
		})
	}
	if err := b.do(chromedp.Navigate(standby.URL(0) + "/ui/")); err != nil {
		t.Fatal(err)
	}
	waitMirror("the standby's page to show it following, caught up", func(p mirrorPage) error {
		if p.Summary["State"] != "following" || !strings.Contains(p.Summary["Source"], src.URL(0)) ||
			!strings.HasPrefix(p.Summary["Lag"], "0 revisions") || !strings.Contains(p.Status, "standby following") ||
			p.Summary["Max rate"] != "1.0 MiB/s" {
			return fmt.Errorf("%+v", p)
		}
		return nil
	})
	b.screenshot("standby-following")
	sid := mirrorStatus(t, standby, 0)
	cid := ""
	if st, err := standby.Status(0); err == nil {
		cid = st.ClusterID
	}
	if err := b.do(chromedp.Navigate(src.URL(0) + "/ui/")); err != nil {
		t.Fatal(err)
	}
	waitMirror("the source's page to list the standby's checkpoint", func(p mirrorPage) error {
		if p.Summary["State"] != "primary" || len(p.Checkpoints) != 1 || p.Checkpoints[0] != cid {
			return fmt.Errorf("%+v (standby %s, %s)", p, cid, sid.State)
		}
		return nil
	})
	b.screenshot("source-checkpoints")
	if r := standby.PostJSON(t, 0, "/v1/mirror/promote", nil); r.Code != http.StatusOK {
		t.Fatalf("promote: %s", r)
	}
	if err := b.do(chromedp.Navigate(standby.URL(0) + "/ui/")); err != nil {
		t.Fatal(err)
	}
	waitMirror("the promoted standby's page to say so", func(p mirrorPage) error {
		if p.Summary["State"] != "primary" || !strings.Contains(p.Summary["Promoted"], "at revision") {
			return fmt.Errorf("%+v", p)
		}
		return nil
	})
	if probs := b.problems(); len(probs) > 0 {
		t.Fatalf("console: %v", probs)
	}
}
