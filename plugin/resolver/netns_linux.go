package resolver

import (
	"context"
	"errors"
	"fmt"
	"net"
	"runtime"
	"syscall"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// ListenInNetns opens a UDP and a TCP socket on addr ("ip:port") inside the
// network namespace at nsPath (such as /var/run/netns/NAME or
// /proc/PID/ns/net). The sockets stay in that namespace and may be used from
// any goroutine. They bind even before addr is assigned to an interface
// there (IP_FREEBIND), so the caller may add the address afterwards.
func ListenInNetns(nsPath, addr string) (net.PacketConn, net.Listener, error) {
	type result struct {
		pc  net.PacketConn
		l   net.Listener
		err error
	}
	done := make(chan result, 1)
	// A fresh goroutine owns the thread that changes namespace: if
	// switching back fails, it exits still locked and the runtime discards
	// the thread instead of reusing it in the wrong namespace.
	go func() {
		runtime.LockOSThread()
		pc, l, err := listenIn(nsPath, addr)
		var rerr *restoreError
		if errors.As(err, &rerr) {
			done <- result{err: err}
			return // thread stays locked and dies with this goroutine
		}
		runtime.UnlockOSThread()
		done <- result{pc, l, err}
	}()
	r := <-done
	return r.pc, r.l, r.err
}

type restoreError struct{ err error }

func (e *restoreError) Error() string { return "restore network namespace: " + e.err.Error() }
func (e *restoreError) Unwrap() error { return e.err }

// listenIn must run on a locked OS thread.
func listenIn(nsPath, addr string) (pc net.PacketConn, l net.Listener, err error) {
	target, err := netns.GetFromPath(nsPath)
	if err != nil {
		return nil, nil, fmt.Errorf("open network namespace %s: %w", nsPath, err)
	}
	defer target.Close()
	orig, err := netns.Get()
	if err != nil {
		return nil, nil, fmt.Errorf("current network namespace: %w", err)
	}
	defer orig.Close()
	if err := netns.Set(target); err != nil {
		return nil, nil, fmt.Errorf("enter network namespace %s: %w", nsPath, err)
	}
	defer func() {
		if serr := netns.Set(orig); serr != nil {
			if pc != nil {
				pc.Close()
			}
			if l != nil {
				l.Close()
			}
			pc, l, err = nil, nil, &restoreError{serr}
		}
	}()
	lc := net.ListenConfig{Control: freebind}
	// The calling thread is locked, so no context switch to another
	// thread can happen between setns and socket creation.
	pc, err = lc.ListenPacket(context.Background(), "udp4", addr)
	if err != nil {
		return nil, nil, fmt.Errorf("listen udp %s in %s: %w", addr, nsPath, err)
	}
	l, err = lc.Listen(context.Background(), "tcp4", addr)
	if err != nil {
		pc.Close()
		return nil, nil, fmt.Errorf("listen tcp %s in %s: %w", addr, nsPath, err)
	}
	return pc, l, nil
}

func freebind(_, _ string, c syscall.RawConn) error {
	var serr error
	if err := c.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_FREEBIND, 1)
	}); err != nil {
		return err
	}
	return serr
}
