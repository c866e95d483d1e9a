// Package scale holds the scale soak (TestScale): one node loaded with a
// million objects, its heap, data directory, restart, new members
// catching up and write throughput. It runs only with CAIRN_SCALE=1
// (make scale).
//
// The package has no non-test code; this file only documents it.
package scale
