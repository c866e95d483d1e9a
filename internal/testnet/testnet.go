// Package testnet gives tests network addresses that other tests on the
// same machine will not collide with.
//
// hashicorp/raft has no cluster identity: a member of one test's cluster
// that still dials a freed port will take over whatever node binds it next
// (a higher term wins). Tests therefore bind on a random loopback IP
// (127.x.y.z: the whole 127/8 range is loopback on Linux) as well as a
// free port, so a stale peer's address is almost never reused.
package testnet

import (
	"fmt"
	"math/rand/v2"
	"net"
)

// TB is the part of testing.TB FreeAddr uses.
type TB interface {
	Helper()
	Fatalf(format string, args ...any)
}

// FreeAddr returns host:port with a free port on a random loopback IP, or
// on 127.0.0.1 where other loopback IPs cannot be bound.
func FreeAddr(tb TB) string {
	tb.Helper()
	for range 8 {
		ip := fmt.Sprintf("127.%d.%d.%d", 1+rand.IntN(254), rand.IntN(256), 1+rand.IntN(254))
		if ln, err := net.Listen("tcp", net.JoinHostPort(ip, "0")); err == nil {
			addr := ln.Addr().String()
			ln.Close()
			return addr
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("testnet: no free loopback port: %v", err)
	}
	defer ln.Close()
	return ln.Addr().String()
}
