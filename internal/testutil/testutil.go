// Package testutil holds small helpers shared by cairn's tests: waiting
// for a condition by polling with a deadline (tests never sleep a fixed
// time), and a buffer a child process can write while a test reads it.
package testutil

import (
	"bytes"
	"os"
	"strings"
	"sync"
	"time"
)

// PollEvery is how often WaitFor checks its condition.
const PollEvery = 10 * time.Millisecond

// TB is the part of testing.TB the helpers use (examples pass their own).
type TB interface {
	Helper()
	Fatalf(format string, args ...any)
}

// WaitFor polls cond every PollEvery until it returns nil, failing the
// test at the deadline with cond's last error.
func WaitFor(tb TB, what string, timeout time.Duration, cond func() error) {
	tb.Helper()
	WaitForEvery(tb, what, timeout, PollEvery, cond)
}

// WaitForEvery is WaitFor with its own polling interval, for conditions
// that are costly to check (a docker command, say).
func WaitForEvery(tb TB, what string, timeout, every time.Duration, cond func() error) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("timed out after %s waiting for %s: %v", timeout, what, err)
		}
		time.Sleep(every)
	}
}

// SyncBuffer is a bytes.Buffer safe for concurrent writers and readers.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p.
func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String returns what has been written so far.
func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// HasLine reports whether some line of s contains every one of the
// fragments.
func HasLine(s string, fragments ...string) bool {
	for _, line := range strings.Split(s, "\n") {
		ok := true
		for _, f := range fragments {
			if !strings.Contains(line, f) {
				ok = false
				break
			}
		}
		if ok {
			return true
		}
	}
	return false
}

// FlipBytes XORs mask into the middle byte of every occurrence of pattern
// in the (closed) file at path, as a damaged disk would, and returns how
// many occurrences it changed.
func FlipBytes(t TB, path string, pattern []byte, mask byte) int {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v", err)
	}
	n := 0
	for i := 0; ; {
		j := bytes.Index(b[i:], pattern)
		if j < 0 {
			break
		}
		b[i+j+len(pattern)/2] ^= mask
		i += j + len(pattern)
		n++
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatalf("%v", err)
	}
	return n
}
