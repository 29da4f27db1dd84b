// Package dnstest holds what the tests of swarmd's DNS servers share.
package dnstest

import (
	"fmt"
	"net"
)

// ListenPair opens a UDP and a TCP socket on the same loopback port, as a
// DNS server serves both: a port whose TCP side another test took
// meanwhile is given up for another, up to 20 times.
func ListenPair() (net.PacketConn, net.Listener, error) {
	var lastErr error
	for range 20 {
		pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
		if err != nil {
			return nil, nil, fmt.Errorf("listen udp: %w", err)
		}
		l, err := net.Listen("tcp4", pc.LocalAddr().String())
		if err == nil {
			return pc, l, nil
		}
		_ = pc.Close()
		lastErr = err
	}
	return nil, nil, fmt.Errorf("no free UDP+TCP port pair: %w", lastErr)
}
