package stablestore

import (
	"os"
	"syscall"
)

// fdatasync flushes the file's data (and the metadata needed to read it,
// none for an in-place overwrite), not its times.
func fdatasync(f *os.File) error { return syscall.Fdatasync(int(f.Fd())) }
