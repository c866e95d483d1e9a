package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/module"
	modzip "golang.org/x/mod/zip"
)

// The README's install lines: `go install
// github.com/cairn-db/cairn/cmd/cairn@latest` and `make install`. Neither
// can fetch this checkout's work tree, so the first runs against a module
// proxy made of it (a GOPROXY directory holding it as a pseudo-version),
// and the second with
// GOBIN set to a temporary directory.

const modulePath = "github.com/cairn-db/cairn"

// repoRoot is the checkout's root, from cmd/cairn.
func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// gitOutput runs git in dir, skipping the test where there is no git
// checkout.
func gitOutput(t *testing.T, dir string, args ...string) string {
	t.Helper()
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git is not installed: the module is made from the checkout's files")
	}
	cmd := exec.Command("git", append([]string{"-C", dir}, args...)...)
	out, err := cmd.Output()
	if err != nil {
		t.Skipf("git %v: %v (not a git checkout?)", args, err)
	}
	return string(out)
}

// goEnv returns `go env NAME`.
func goEnv(t *testing.T, name string) string {
	t.Helper()
	out, err := exec.Command("go", "env", name).Output()
	if err != nil {
		t.Fatalf("go env %s: %v", name, err)
	}
	return strings.TrimSpace(string(out))
}

// checkoutFile is a file of the checkout for modzip.Create.
type checkoutFile struct{ root, path string }

func (f checkoutFile) Path() string                 { return f.path }
func (f checkoutFile) Lstat() (os.FileInfo, error)  { return os.Lstat(filepath.Join(f.root, f.path)) }
func (f checkoutFile) Open() (io.ReadCloser, error) { return os.Open(filepath.Join(f.root, f.path)) }

// moduleProxy writes a GOPROXY directory (the file:// protocol of `go help
// goproxy`) that serves the checkout's files, tracked and untracked but
// not ignored, as the module's only version, a pseudo-version of HEAD, and
// returns the directory and the version.
func moduleProxy(t *testing.T) (string, string) {
	t.Helper()
	root := repoRoot(t)
	head := strings.Fields(gitOutput(t, root, "log", "-1", "--format=%H %ct"))
	if len(head) != 2 {
		t.Fatalf("git log: %q", head)
	}
	sec, err := strconv.ParseInt(head[1], 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	version := module.PseudoVersion("", "", time.Unix(sec, 0), head[0][:12])
	var files []modzip.File
	for _, p := range strings.Split(gitOutput(t, root, "ls-files", "-z", "--cached", "--others", "--exclude-standard"), "\x00") {
		if p == "" {
			continue
		}
		if _, err := os.Lstat(filepath.Join(root, p)); err != nil {
			continue // deleted in the work tree
		}
		files = append(files, checkoutFile{root, filepath.ToSlash(p)})
	}
	dir := t.TempDir()
	at := filepath.Join(dir, modulePath, "@v")
	if err := os.MkdirAll(at, 0o755); err != nil {
		t.Fatal(err)
	}
	var zipped bytes.Buffer
	m := module.Version{Path: modulePath, Version: version}
	if err := modzip.Create(&zipped, m, files); err != nil {
		t.Fatalf("module zip: %v", err)
	}
	gomod, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	info, err := json.Marshal(map[string]string{"Version": version, "Time": time.Unix(sec, 0).UTC().Format(time.RFC3339)})
	if err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string][]byte{
		"@v/list":                 nil, // no tagged version: @latest answers
		"@latest":                 info,
		"@v/" + version + ".info": info,
		"@v/" + version + ".mod":  gomod,
		"@v/" + version + ".zip":  zipped.Bytes(),
	} {
		if err := os.WriteFile(filepath.Join(dir, modulePath, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir, version
}

// installedVersion runs the installed binary's `version --json` (its own
// build; no cluster answers) and returns the client's version and commit.
func installedVersion(t *testing.T, bin string) (string, string) {
	t.Helper()
	out, err := exec.Command(bin, "--cluster", "http://"+freePort(t), "--timeout", "1s", "version", "--json").Output()
	if err != nil {
		t.Fatalf("%s version: %v\n%s", bin, err, out)
	}
	var v struct {
		Client struct {
			Version string `json:"version"`
			Commit  string `json:"commit"`
		} `json:"client"`
	}
	if err := json.Unmarshal(out, &v); err != nil {
		t.Fatalf("%s version --json: %v\n%s", bin, err, out)
	}
	return v.Client.Version, v.Client.Commit
}

// TestGoInstallLatest runs the README's `go install
// github.com/cairn-db/cairn/cmd/cairn@latest` against a module proxy made
// of this checkout (its dependencies come from the local module cache or
// GOPROXY, their checksums from the checksum database through GOPROXY),
// and runs the installed binary's `version`, which must name the
// module version installed.
func TestGoInstallLatest(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the module")
	}
	proxy, version := moduleProxy(t)
	// The user's module cache, whose dependencies are compiled already
	// (a fresh cache makes this test build them all, minutes); the
	// checkout's version is removed from it afterwards.
	modcache := goEnv(t, "GOMODCACHE")
	t.Cleanup(func() {
		_ = os.RemoveAll(filepath.Join(modcache, modulePath+"@"+version))
		for _, name := range []string{version + ".info", version + ".mod", version + ".zip", version + ".ziphash", version + ".lock", "list"} {
			_ = os.Remove(filepath.Join(modcache, "cache", "download", modulePath, "@v", name))
		}
	})
	gobin := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "install", modulePath+"/cmd/cairn@latest")
	cmd.Dir = t.TempDir() // outside this module, as a user would be
	cmd.Env = append(os.Environ(),
		// The checkout, then the dependencies from the local module cache,
		// then the usual proxies: the checksum database is asked through
		// them (`go help module-auth`), as a user's go install asks it.
		"GOPROXY=file://"+filepath.ToSlash(proxy)+","+goEnv(t, "GOPROXY"),
		"GOFLAGS=-modcacherw",   // so that the cleanup can remove it
		"GONOSUMDB="+modulePath, // no checksum database knows this version
		"GOTOOLCHAIN=local",
		"GOBIN="+gobin,
	)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("go install %s/cmd/cairn@latest: %v\n%s", modulePath, err, out.String())
	}
	got, _ := installedVersion(t, filepath.Join(gobin, "cairn"))
	if got != version {
		t.Errorf("the installed cairn says version %q, want %q", got, version)
	}
}

// TestMakeInstall runs the README's `make install` with GOBIN set and
// checks that the installed binary is stamped as `make build` stamps it
// (the checkout's commit).
func TestMakeInstall(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	if _, err := exec.LookPath("make"); err != nil {
		t.Skip("make is not installed")
	}
	root := repoRoot(t)
	commit := strings.TrimSpace(gitOutput(t, root, "rev-parse", "HEAD"))
	gobin := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "make", "install")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "GOBIN="+gobin)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("make install: %v\n%s", err, out.String())
	}
	if _, got := installedVersion(t, filepath.Join(gobin, "cairn")); got != commit {
		t.Errorf("the installed cairn says commit %q, want %q\n%s", got, commit, out.String())
	}
	if !strings.Contains(out.String(), fmt.Sprintf("-X %s/internal/buildinfo.commit=%s", modulePath, commit)) {
		t.Errorf("make install did not stamp the commit as make build does:\n%s", out.String())
	}
}
