package cluster

import (
	"time"

	"github.com/cairn-db/cairn/internal/testutil"
)

// TB is the part of testing.TB the harness uses.
type TB interface {
	Helper()
	Cleanup(func())
	TempDir() string
	Errorf(format string, args ...any)
	Fatalf(format string, args ...any)
	Logf(format string, args ...any)
	Failed() bool
}

// Default deadlines of the harness's waits.
const (
	WaitLeaderTimeout   = 30 * time.Second
	WaitReadyTimeout    = 30 * time.Second
	WaitConvergeTimeout = 30 * time.Second
)

// WaitFor polls cond until it returns nil, failing tb at the deadline with
// cond's last error (internal/testutil.WaitFor).
func WaitFor(tb testutil.TB, what string, timeout time.Duration, cond func() error) {
	tb.Helper()
	testutil.WaitFor(tb, what, timeout, cond)
}

// Tail returns the last n bytes of s, marked as cut when it is longer.
func Tail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}
