//go:build !failpoints

package fsm

// failpoint is a storage fault-injection point; without -tags failpoints
// it does nothing (see failpoint.go).
func failpoint(string) {}
