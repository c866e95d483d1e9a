//go:build !linux

package stablestore

import "os"

func fdatasync(f *os.File) error { return f.Sync() }
