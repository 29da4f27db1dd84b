package testbed

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"runtime"

	"golang.org/x/sys/unix"
)

// InNetns runs fn on an OS thread that has entered the host's network
// namespace: sockets fn creates belong to the host (its address, routes and
// iptables rules, so Partition and Netem apply to them). fn must not start
// goroutines that create sockets, and should use IP addresses rather than
// names (the Go resolver may run elsewhere).
func (h *Host) InNetns(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		// The thread returns to the scheduler only if it is back in its
		// own namespace; otherwise it ends with this goroutine.
		restored := false
		defer func() {
			if restored {
				runtime.UnlockOSThread()
			}
		}()
		self, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			errc <- fmt.Errorf("testbed: %s: own netns: %w", h.Name, err)
			return
		}
		defer self.Close()
		target, err := os.Open("/run/netns/" + h.Netns)
		if err != nil {
			restored = true
			errc <- fmt.Errorf("testbed: %s: netns: %w", h.Name, err)
			return
		}
		defer target.Close()
		if err := setns(target); err != nil {
			restored = true
			errc <- fmt.Errorf("testbed: %s: enter netns: %w", h.Name, err)
			return
		}
		ferr := fn()
		restored = setns(self) == nil
		errc <- ferr
	}()
	return <-errc
}

func setns(f *os.File) error {
	return unix.Setns(int(f.Fd()), unix.CLONE_NEWNET)
}

// DialContext connects from inside the host's network namespace (source
// address IP); network is "tcp", "udp" etc. as for net.Dial, addr should be
// an IP literal with port.
func (h *Host) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	var c net.Conn
	err := h.InNetns(func() error {
		var d net.Dialer
		var err error
		c, err = d.DialContext(ctx, network, addr)
		return err
	})
	return c, err
}

// ListenPacket opens a packet socket (e.g. "udp", ":9999") inside the host's
// network namespace.
func (h *Host) ListenPacket(network, addr string) (net.PacketConn, error) {
	var c net.PacketConn
	err := h.InNetns(func() error {
		var err error
		c, err = net.ListenPacket(network, addr)
		return err
	})
	return c, err
}

// Listen opens a stream listener (e.g. "tcp", ":8080") inside the host's
// network namespace.
func (h *Host) Listen(network, addr string) (net.Listener, error) {
	var l net.Listener
	err := h.InNetns(func() error {
		var err error
		l, err = net.Listen(network, addr)
		return err
	})
	return l, err
}

// HTTPClient returns a client whose connections are made from inside the
// host's network namespace (see DialContext), so they come from IP and are
// subject to Partition and Netem. Connections are not reused, so that each
// request sees the network as it is now. Use IP addresses in URLs.
func (h *Host) HTTPClient() *http.Client {
	return &http.Client{Transport: &http.Transport{
		DialContext:       h.DialContext,
		DisableKeepAlives: true,
		Proxy:             nil,
	}}
}

// Partition cuts every host in a off from every host in b, in both
// directions, with DROP rules in the hosts' namespaces (raw table, so
// published ports are cut too). Traffic from the root namespace (the test
// driver, 10.99.0.1) is not affected. Heal removes all partitions.
func (tb *Testbed) Partition(a, b []*Host) error {
	ctx := context.Background()
	var errs []error
	for _, x := range a {
		for _, y := range b {
			if x == y {
				continue
			}
			for _, pair := range [][2]*Host{{x, y}, {y, x}} {
				h, peer := pair[0], pair[1]
				for _, rule := range [][]string{
					{"-s", peer.IP, "-j", "DROP"},
					{"-d", peer.IP, "-j", "DROP"},
				} {
					args := append([]string{"netns", "exec", h.Netns, "iptables", "-w", "-t", "raw", "-A", partChain}, rule...)
					if _, err := run(ctx, "ip", args...); err != nil {
						errs = append(errs, fmt.Errorf("testbed: partition %s from %s: %w", h.Name, peer.Name, err))
					}
				}
			}
		}
	}
	return errors.Join(errs...)
}

// Heal removes every partition.
func (tb *Testbed) Heal() error {
	ctx := context.Background()
	var errs []error
	for _, h := range tb.hosts {
		if _, err := run(ctx, "ip", "netns", "exec", h.Netns, "iptables", "-w", "-t", "raw", "-F", partChain); err != nil {
			errs = append(errs, fmt.Errorf("testbed: heal %s: %w", h.Name, err))
		}
	}
	return errors.Join(errs...)
}
