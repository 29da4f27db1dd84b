// Package nstest builds throw-away network namespaces for the plugin tests:
// "hosts" joined by a veth underlay and "containers", all with names that
// start with "pt" and a random suffix, all removed by t.Cleanup.
package nstest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// Require skips t unless it runs as root on a kernel with network namespaces.
func Require(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	if _, err := os.Stat("/proc/self/ns/net"); err != nil {
		t.Skip("no network namespace support")
	}
}

// Suffix returns a short random suffix for device and namespace names.
func Suffix() string { return fmt.Sprintf("%04x", rand.N(0x10000)) }

// NS is a named network namespace with a netlink handle inside it.
type NS struct {
	Name   string
	Handle netns.NsHandle
	NL     *netlink.Handle
}

// New creates namespace name (which should start with "pt") with lo up.
// It is deleted when the test ends.
func New(t testing.TB, name string) *NS {
	t.Helper()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		t.Skipf("no network namespace support: %v", err)
	}
	defer orig.Close()
	h, err := netns.NewNamed(name)
	if serr := netns.Set(orig); serr != nil {
		t.Fatalf("restore namespace: %v", serr)
	}
	if err != nil {
		t.Skipf("cannot create network namespace %s: %v", name, err)
	}
	ns := &NS{Name: name, Handle: h}
	t.Cleanup(func() {
		if ns.NL != nil {
			ns.NL.Close()
		}
		h.Close()
		if err := netns.DeleteNamed(name); err != nil {
			t.Logf("delete namespace %s: %v", name, err)
		}
	})
	ns.NL, err = netlink.NewHandleAt(h)
	if err != nil {
		t.Fatalf("netlink in %s: %v", name, err)
	}
	lo, err := ns.NL.LinkByName("lo")
	if err != nil {
		t.Fatalf("lo in %s: %v", name, err)
	}
	if err := ns.NL.LinkSetUp(lo); err != nil {
		t.Fatalf("lo up in %s: %v", name, err)
	}
	return ns
}

// Do runs fn with the calling goroutine's thread inside ns. Sockets created
// by fn stay in ns and may be used afterwards from anywhere.
func (ns *NS) Do(fn func() error) error {
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("current namespace: %w", err)
	}
	defer orig.Close()
	if err := netns.Set(ns.Handle); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("enter %s: %w", ns.Name, err)
	}
	ferr := fn()
	if err := netns.Set(orig); err != nil {
		// Leave the thread locked: it dies with the goroutine instead of
		// running other goroutines in the wrong namespace.
		return errors.Join(ferr, fmt.Errorf("leave %s: %w", ns.Name, err))
	}
	runtime.UnlockOSThread()
	return ferr
}

// Underlay joins a and b with a veth pair named link in both, addressed
// with pa and pb, both up.
func Underlay(t testing.TB, a, b *NS, link string, pa, pb netip.Prefix) {
	t.Helper()
	peer := link + "p"
	if err := a.NL.LinkAdd(&netlink.Veth{
		LinkAttrs:     netlink.LinkAttrs{Name: link},
		PeerName:      peer,
		PeerNamespace: netlink.NsFd(int(b.Handle)),
	}); err != nil {
		t.Fatalf("underlay veth: %v", err)
	}
	b.SetUp(t, peer, link, pb)
	a.SetUp(t, link, link, pa)
}

// SetUp renames link in ns to name, adds addr (if valid) and sets it up.
func (ns *NS) SetUp(t testing.TB, link, name string, addr netip.Prefix) {
	t.Helper()
	l, err := ns.NL.LinkByName(link)
	if err != nil {
		t.Fatalf("%s in %s: %v", link, ns.Name, err)
	}
	if name != link {
		if err := ns.NL.LinkSetName(l, name); err != nil {
			t.Fatalf("rename %s to %s in %s: %v", link, name, ns.Name, err)
		}
	}
	if addr.IsValid() {
		a := &netlink.Addr{IPNet: &net.IPNet{IP: addr.Addr().AsSlice(), Mask: net.CIDRMask(addr.Bits(), 32)}}
		if err := ns.NL.AddrAdd(l, a); err != nil {
			t.Fatalf("address %v on %s in %s: %v", addr, name, ns.Name, err)
		}
	}
	if err := ns.NL.LinkSetUp(l); err != nil {
		t.Fatalf("%s up in %s: %v", name, ns.Name, err)
	}
}

// MoveTo moves link from ns into dst, where it is renamed to name,
// addressed with addr and set up (what the engine does on Join).
func (ns *NS) MoveTo(t testing.TB, dst *NS, link, name string, addr netip.Prefix) {
	t.Helper()
	l, err := ns.NL.LinkByName(link)
	if err != nil {
		t.Fatalf("%s in %s: %v", link, ns.Name, err)
	}
	if err := ns.NL.LinkSetNsFd(l, int(dst.Handle)); err != nil {
		t.Fatalf("move %s to %s: %v", link, dst.Name, err)
	}
	dst.SetUp(t, link, name, addr)
}

// Listen opens a TCP listener inside ns; it is closed when the test ends.
func (ns *NS) Listen(t testing.TB, addr string) net.Listener {
	t.Helper()
	var l net.Listener
	if err := ns.Do(func() error {
		var err error
		l, err = net.Listen("tcp4", addr)
		return err
	}); err != nil {
		t.Fatalf("listen %s in %s: %v", addr, ns.Name, err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// Dial opens a TCP connection from inside ns.
func (ns *NS) Dial(ctx context.Context, addr string) (net.Conn, error) {
	var c net.Conn
	err := ns.Do(func() error {
		var err error
		c, err = (&net.Dialer{}).DialContext(ctx, "tcp4", addr)
		return err
	})
	return c, err
}

// Echo serves l: every connection gets back what it sends.
func Echo(l net.Listener) {
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_, _ = io.Copy(c, c)
			}()
		}
	}()
}

// RoundTrip dials addr from ns, sends a line through an echo server and
// checks it comes back, all within timeout.
func (ns *NS) RoundTrip(addr string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	c, err := ns.Dial(ctx, addr)
	if err != nil {
		return err
	}
	defer c.Close()
	return Exchange(c, timeout)
}

// Exchange writes a message on c and reads the echo back within timeout.
func Exchange(c net.Conn, timeout time.Duration) error {
	if err := c.SetDeadline(time.Now().Add(timeout)); err != nil {
		return err
	}
	msg := []byte("swarmd overlay\n")
	if _, err := c.Write(msg); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(c, buf); err != nil {
		return fmt.Errorf("read echo: %w", err)
	}
	if string(buf) != string(msg) {
		return fmt.Errorf("echo mismatch: %q", buf)
	}
	return nil
}

// Throughput sends data from ns to a sink listening on addr in dst for d and
// returns the rate the sink received, in MB/s (10^6 bytes per second).
func Throughput(t testing.TB, ns, dst *NS, addr string, d time.Duration) float64 {
	t.Helper()
	l := dst.Listen(t, addr)
	type result struct {
		n   int64
		dur time.Duration
		err error
	}
	done := make(chan result, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			done <- result{err: err}
			return
		}
		defer c.Close()
		start := time.Now()
		n, err := io.Copy(io.Discard, c)
		done <- result{n: n, dur: time.Since(start), err: err}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := ns.Dial(ctx, addr)
	if err != nil {
		t.Fatalf("dial %s from %s: %v", addr, ns.Name, err)
	}
	buf := make([]byte, 128<<10)
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if _, err := c.Write(buf); err != nil {
			t.Fatalf("write to %s: %v", addr, err)
		}
	}
	c.Close()
	r := <-done
	if r.err != nil {
		t.Fatalf("sink %s: %v", addr, r.err)
	}
	return float64(r.n) / r.dur.Seconds() / 1e6
}

// Open attaches to the existing named namespace name; the handles are
// closed (the namespace is not deleted) when the test ends.
func Open(t testing.TB, name string) *NS {
	t.Helper()
	h, err := netns.GetFromName(name)
	if err != nil {
		t.Fatalf("namespace %s: %v", name, err)
	}
	ns := &NS{Name: name, Handle: h}
	t.Cleanup(func() {
		if ns.NL != nil {
			ns.NL.Close()
		}
		h.Close()
	})
	if ns.NL, err = netlink.NewHandleAt(h); err != nil {
		t.Fatalf("netlink in %s: %v", name, err)
	}
	return ns
}

// CleanupPrefix deletes, when the test ends, every named namespace whose
// name starts with prefix (what code under test created and left behind).
func CleanupPrefix(t testing.TB, prefix string) {
	t.Helper()
	t.Cleanup(func() {
		names, _ := filepath.Glob(filepath.Join("/var/run/netns", prefix+"*"))
		for _, p := range names {
			if err := netns.DeleteNamed(filepath.Base(p)); err != nil {
				t.Logf("delete namespace %s: %v", p, err)
			}
		}
	})
}
