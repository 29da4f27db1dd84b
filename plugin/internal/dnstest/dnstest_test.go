package dnstest

import (
	"net"
	"testing"
)

// TestListenPair: both sockets are on one loopback port, and pairs taken
// one after the other do not collide.
func TestListenPair(t *testing.T) {
	seen := map[string]bool{}
	for range 5 {
		pc, l, err := ListenPair()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = pc.Close(); _ = l.Close() })
		u, tc := pc.LocalAddr().(*net.UDPAddr), l.Addr().(*net.TCPAddr)
		if u.Port != tc.Port || !u.IP.IsLoopback() || !tc.IP.IsLoopback() {
			t.Fatalf("udp %v, tcp %v: want one loopback port", u, tc)
		}
		if seen[l.Addr().String()] {
			t.Fatalf("port %v handed out twice", l.Addr())
		}
		seen[l.Addr().String()] = true
	}
}
