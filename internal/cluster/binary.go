package cluster

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
)

// The cairn binaries built for this test binary, by build tags.
var (
	binMu  sync.Mutex
	binDir string
	bins   = map[string]*build{}
)

type build struct {
	once sync.Once
	path string
	err  error
}

// Binary builds cmd/cairn with the given build tags once per test binary
// (on first use) and returns its path. Main removes what it built.
func Binary(tb interface {
	Helper()
	Fatalf(string, ...any)
}, tags ...string) string {
	tb.Helper()
	key := strings.Join(tags, ",")
	binMu.Lock()
	if binDir == "" {
		dir, err := os.MkdirTemp("", "cairn-bin-")
		if err != nil {
			binMu.Unlock()
			tb.Fatalf("cluster: %v", err)
		}
		binDir = dir
	}
	b := bins[key]
	if b == nil {
		b = &build{}
		bins[key] = b
	}
	dir := binDir
	binMu.Unlock()
	b.once.Do(func() {
		name := "cairn"
		if key != "" {
			name += "-" + strings.ReplaceAll(key, ",", "-")
		}
		b.path = filepath.Join(dir, name)
		args := []string{"build"}
		if key != "" {
			args = append(args, "-tags", key)
		}
		args = append(args, "-o", b.path, "github.com/cairn-db/cairn/cmd/cairn")
		cmd := exec.Command("go", args...)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Run(); err != nil {
			b.err = fmt.Errorf("building cairn (tags %q): %v\n%s", key, err, out.String())
		}
	})
	if b.err != nil {
		tb.Fatalf("%v", b.err)
	}
	return b.path
}

// RemoveBinaries removes every binary Binary built.
func RemoveBinaries() {
	binMu.Lock()
	defer binMu.Unlock()
	if binDir != "" {
		os.RemoveAll(binDir)
		binDir, bins = "", map[string]*build{}
	}
}

// Main runs a test binary's tests and removes the binaries they built:
// func TestMain(m *testing.M) { cluster.Main(m) }.
func Main(m interface{ Run() int }) {
	code := m.Run()
	RemoveBinaries()
	os.Exit(code)
}
