// Package nettest holds network helpers for tests.
package nettest

import (
	"net"
	"testing"
)

// FreeAddr returns a loopback address nothing listens on (yet): a server
// started there later is a service coming back.
func FreeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("free address: %v", err)
	}
	addr := ln.Addr().String()
	if err := ln.Close(); err != nil {
		t.Fatalf("free address: %v", err)
	}
	return addr
}
