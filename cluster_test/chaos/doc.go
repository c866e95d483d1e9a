// Package chaos is cairn's chaos suite (docs/testing.md, "The chaos
// suite"): named fault scenarios against a cluster of the shared harness
// (internal/cluster) whose raft links run through proxies, under a
// recorded concurrent workload, each followed by every check: porcupine
// linearizability, every acknowledged write present exactly once, chain
// heads equal, deep verify, read back. Every scenario runs against
// `cairn node run` processes (TestChaos<Name>) and against in-process
// nodes (TestChaosInProc/<name>); storage failpoints run with processes.
//
// The package has no non-test code; this file only documents it.
package chaos
