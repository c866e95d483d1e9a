//go:build linux

package testutil

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// MountTmpfs mounts a tmpfs of size bytes on a new directory and returns
// it: a real filesystem that a test can fill. It is unmounted at cleanup,
// registered before the caller's own, so it runs after them. The test is
// skipped when it cannot mount (not root, or no CAP_SYS_ADMIN in a
// container); CI runs the tests as root.
func MountTmpfs(t testing.TB, size int64) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount a small tmpfs (a real full filesystem); run go test as root to include it")
	}
	dir := filepath.Join(t.TempDir(), "disk")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, fmt.Sprintf("size=%d,mode=0700", size)); err != nil {
		t.Skipf("cannot mount a tmpfs on %s (%v): the test needs CAP_SYS_ADMIN", dir, err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, syscall.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	return dir
}

// FillDisk appends to path until its filesystem has no byte left (large
// writes, then single bytes), then checks with DiskIsFull.
func FillDisk(t testing.TB, path string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, chunk := range []int{1 << 16, 1} {
		buf := make([]byte, chunk)
		for {
			if _, err := f.Write(buf); err != nil {
				if !errors.Is(err, syscall.ENOSPC) {
					t.Fatalf("fill %s: %v", path, err)
				}
				break
			}
		}
	}
	DiskIsFull(t, filepath.Dir(path))
}

// DiskIsFull fails the test unless a one-byte file cannot be written in
// dir.
func DiskIsFull(t testing.TB, dir string) {
	t.Helper()
	probe := filepath.Join(dir, "probe")
	err := os.WriteFile(probe, []byte("x"), 0o600)
	_ = os.Remove(probe)
	if !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("%s is not full: a 1-byte file: %v", dir, err)
	}
}
