//go:build failpoints

package fsm

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
)

// Storage failpoints (docs/testing.md, "Storage failpoints"). Built only
// with -tags failpoints. CAIRN_FAILPOINT="name[:n]" (read once) makes the
// n-th hit (default 1) of the named point crash the process: it prints
// "cairn: failpoint NAME" to stderr and exits with status 86 at once, no
// deferred functions, no closing, no fsync beyond what already happened.
//
// Points: apply-before-commit, apply-after-commit, persist-mid,
// restore-before-rename, restore-after-rename.

// FailpointExitCode is the exit status of a process stopped by a failpoint.
const FailpointExitCode = 86

var (
	fpOnce sync.Once
	fpName string
	fpAt   int64 = 1
	fpHits atomic.Int64
)

func failpoint(name string) {
	fpOnce.Do(func() {
		spec := os.Getenv("CAIRN_FAILPOINT")
		fpName = spec
		if i := strings.LastIndexByte(spec, ':'); i >= 0 {
			n, err := strconv.ParseInt(spec[i+1:], 10, 64)
			if err != nil || n < 1 {
				fmt.Fprintf(os.Stderr, "cairn: bad CAIRN_FAILPOINT %q\n", spec)
				os.Exit(2)
			}
			fpName, fpAt = spec[:i], n
		}
	})
	if fpName == "" || name != fpName {
		return
	}
	if fpHits.Add(1) != fpAt {
		return
	}
	fmt.Fprintf(os.Stderr, "cairn: failpoint %s\n", name)
	os.Exit(FailpointExitCode)
}
