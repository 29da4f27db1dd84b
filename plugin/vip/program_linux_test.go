package vip

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/openswarm/swarmd/plugin/internal/nstest"
	"github.com/vishvananda/netlink"
)

// lab is a client namespace and two server namespaces on a bridge held by a
// fourth namespace, all in 10.96.0.0/24.
type lab struct {
	client, s1, s2 *nstest.NS
	clientPath     string
}

const (
	vipAddr = "10.96.0.200"
	s1Addr  = "10.96.0.11"
	s2Addr  = "10.96.0.12"
)

func newLab(t *testing.T) *lab {
	t.Helper()
	nstest.Require(t)
	if _, err := exec.LookPath("nft"); err != nil {
		t.Skip("nft binary not installed")
	}
	sfx := nstest.Suffix()
	br := nstest.New(t, "rvB"+sfx)
	l := &lab{
		client: nstest.New(t, "rvC"+sfx),
		s1:     nstest.New(t, "rvS1"+sfx),
		s2:     nstest.New(t, "rvS2"+sfx),
	}
	l.clientPath = "/var/run/netns/" + l.client.Name
	bridge := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "rvbr0"}}
	if err := br.NL.LinkAdd(bridge); err != nil {
		t.Fatalf("bridge: %v", err)
	}
	br.SetUp(t, "rvbr0", "rvbr0", netip.Prefix{})
	for _, h := range []struct {
		ns   *nstest.NS
		link string
		addr string
	}{
		{l.client, "rvc", "10.96.0.10/24"},
		{l.s1, "rvs1", s1Addr + "/24"},
		{l.s2, "rvs2", s2Addr + "/24"},
	} {
		nstest.Underlay(t, h.ns, br, h.link, netip.MustParsePrefix(h.addr), netip.Prefix{})
		port, err := br.NL.LinkByName(h.link)
		if err != nil {
			t.Fatal(err)
		}
		if err := br.NL.LinkSetMaster(port, bridge); err != nil {
			t.Fatalf("attach %s to bridge: %v", h.link, err)
		}
	}
	serveTCP(t, l.s1, "s1")
	serveTCP(t, l.s2, "s2")
	serveUDP(t, l.s1, "s1")
	serveUDP(t, l.s2, "s2")
	return l
}

// serveTCP listens on :8080 in ns; each connection first gets "<id>\n",
// then an echo of what it sends.
func serveTCP(t *testing.T, ns *nstest.NS, id string) {
	t.Helper()
	ln := ns.Listen(t, "0.0.0.0:8080")
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				if _, err := io.WriteString(c, id+"\n"); err != nil {
					return
				}
				_, _ = io.Copy(c, c)
			}()
		}
	}()
}

// serveUDP answers every datagram on :5353 in ns with "<id>".
func serveUDP(t *testing.T, ns *nstest.NS, id string) {
	t.Helper()
	var pc net.PacketConn
	if err := ns.Do(func() error {
		var err error
		pc, err = net.ListenPacket("udp4", "0.0.0.0:5353")
		return err
	}); err != nil {
		t.Fatalf("udp listen in %s: %v", ns.Name, err)
	}
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 64)
		for {
			_, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			_, _ = pc.WriteTo([]byte(id), from)
		}
	}()
}

// hello dials addr from the client and returns the open connection and the
// server's id.
func (l *lab) hello(t *testing.T, addr string) (net.Conn, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := l.client.Dial(ctx, addr)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	if err := c.SetDeadline(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	id, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		c.Close()
		t.Fatalf("hello from %s: %v", addr, err)
	}
	return c, strings.TrimSpace(id)
}

func (l *lab) spread(t *testing.T, n int) map[string]int {
	t.Helper()
	got := map[string]int{}
	for range n {
		c, id := l.hello(t, vipAddr+":8080")
		c.Close()
		got[id]++
	}
	return got
}

func (l *lab) udpConn(t *testing.T) net.Conn {
	t.Helper()
	var c net.Conn
	if err := l.client.Do(func() error {
		var err error
		c, err = net.Dial("udp4", vipAddr+":5353")
		return err
	}); err != nil {
		t.Fatalf("udp dial: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func udpAsk(c net.Conn) (string, error) {
	if err := c.SetDeadline(time.Now().Add(2 * time.Second)); err != nil {
		return "", err
	}
	if _, err := c.Write([]byte("?")); err != nil {
		return "", err
	}
	buf := make([]byte, 64)
	n, err := c.Read(buf)
	return string(buf[:n]), err
}

func (l *lab) ruleset(t *testing.T) string {
	t.Helper()
	var out []byte
	if err := inNetns(l.clientPath, func() error {
		var err error
		out, err = exec.Command("nft", "list", "ruleset").CombinedOutput()
		return err
	}); err != nil {
		t.Fatalf("nft list ruleset: %v: %s", err, out)
	}
	return string(out)
}

func TestProgrammerVIP(t *testing.T) {
	l := newLab(t)
	p, err := NewProgrammer(Config{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	vip, s1, s2 := netip.MustParseAddr(vipAddr), netip.MustParseAddr(s1Addr), netip.MustParseAddr(s2Addr)
	both := Rules{vip: {s1, s2}}

	if err := p.Apply(ctx, l.clientPath, both); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	first := l.ruleset(t)
	if err := p.Apply(ctx, l.clientPath, both); err != nil {
		t.Fatalf("Apply again: %v", err)
	}
	if again := l.ruleset(t); again != first {
		t.Errorf("ruleset changed on re-apply:\n%s\nwas:\n%s", again, first)
	}

	// 100 connections are balanced over both servers.
	if got := l.spread(t, 100); got["s1"] == 0 || got["s2"] == 0 || got["s1"]+got["s2"] != 100 {
		t.Errorf("100 connections to the VIP answered by %v, want both servers", got)
	}
	// Keep a TCP connection to s1, and a UDP flow to each server.
	var held net.Conn
	for held == nil {
		c, id := l.hello(t, vipAddr+":8080")
		if id == "s1" {
			held = c
			defer c.Close()
		} else {
			c.Close()
		}
	}
	udpByID := map[string]net.Conn{}
	for len(udpByID) < 2 {
		c := l.udpConn(t)
		id, err := udpAsk(c)
		if err != nil {
			t.Fatalf("udp through the VIP: %v", err)
		}
		udpByID[id] = c
	}

	// Remove s1: new connections go to s2 only; the held one still works.
	if err := p.Apply(ctx, l.clientPath, Rules{vip: {s2}}); err != nil {
		t.Fatalf("Apply without s1: %v", err)
	}
	if got := l.spread(t, 50); got["s2"] != 50 {
		t.Errorf("after removing s1, 50 connections answered by %v, want all s2", got)
	}
	if err := nstest.Exchange(held, 2*time.Second); err != nil {
		t.Errorf("established connection to s1 after removal: %v", err)
	}
	for id, c := range udpByID {
		if got, err := udpAsk(c); err != nil || got != "s2" {
			t.Errorf("udp flow that went to %s, after removing s1: %q %v, want s2", id, got, err)
		}
	}

	// No backends: connections are refused at once, UDP gets an error.
	if err := p.Apply(ctx, l.clientPath, Rules{vip: nil}); err != nil {
		t.Fatalf("Apply empty: %v", err)
	}
	start := time.Now()
	dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	c, err := l.client.Dial(dctx, vipAddr+":8080")
	if err == nil {
		c.Close()
	}
	if took := time.Since(start); !errors.Is(err, syscall.ECONNREFUSED) || took > time.Second {
		t.Errorf("dial with no backends: %v after %v, want connection refused at once", err, took)
	}
	uc := l.udpConn(t)
	// The reject in the output hook fails the send itself (EPERM) or, once
	// the ICMP error is queued, the next call (ECONNREFUSED); never a wait.
	start = time.Now()
	_, err = udpAsk(uc)
	if took := time.Since(start); !errors.Is(err, syscall.EPERM) && !errors.Is(err, syscall.ECONNREFUSED) || took > time.Second {
		t.Errorf("udp with no backends: %v after %v, want an immediate error", err, took)
	}

	// Clear removes the table; clearing twice is fine.
	for range 2 {
		if err := p.Clear(ctx, l.clientPath); err != nil {
			t.Fatalf("Clear: %v", err)
		}
	}
	if rs := l.ruleset(t); strings.Contains(rs, DefaultTable) {
		t.Errorf("table left after Clear:\n%s", rs)
	}
	if err := p.Apply(ctx, "/var/run/netns/rv-does-not-exist", both); err == nil {
		t.Error("Apply in a missing namespace: want error")
	}
}

// TestConnectionRate prints the rate of new TCP connections (dial, read the
// greeting, close) through the VIP and directly to a server, in one run.
func TestConnectionRate(t *testing.T) {
	if testing.Short() {
		t.Skip("measurement")
	}
	l := newLab(t)
	p, err := NewProgrammer(Config{})
	if err != nil {
		t.Fatal(err)
	}
	vip := netip.MustParseAddr(vipAddr)
	if err := p.Apply(context.Background(), l.clientPath, Rules{vip: {netip.MustParseAddr(s1Addr), netip.MustParseAddr(s2Addr)}}); err != nil {
		t.Fatal(err)
	}
	// Interleaved rounds, best of each, so that load from elsewhere on the
	// machine hits both paths alike.
	const rounds, n = 6, 400
	rate := func(addr string) float64 {
		start := time.Now()
		for range n {
			c, _ := l.hello(t, addr)
			c.Close()
		}
		return n / time.Since(start).Seconds()
	}
	var direct, viaVIP float64
	for range rounds {
		direct = max(direct, rate(s1Addr+":8080"))
		viaVIP = max(viaVIP, rate(vipAddr+":8080"))
	}
	t.Logf("connections/s: direct %.0f, via VIP %.0f (%.0f%%)", direct, viaVIP, 100*viaVIP/direct)
}

// BenchmarkApply measures replacing the table of one namespace with 100
// VIPs of 10 backends each (what a container on busy networks gets on every
// task change).
func BenchmarkApply(b *testing.B) {
	nstest.Require(b)
	ns := nstest.New(b, "rvC"+nstest.Suffix())
	p, err := NewProgrammer(Config{})
	if err != nil {
		b.Fatal(err)
	}
	rules := Rules{}
	for v := range 100 {
		vip := netip.AddrFrom4([4]byte{10, 96, 200, byte(v)})
		for t := range 10 {
			rules[vip] = append(rules[vip], netip.AddrFrom4([4]byte{10, 96, byte(v), byte(t + 1)}))
		}
	}
	path := "/var/run/netns/" + ns.Name
	ctx := context.Background()
	for b.Loop() {
		if err := p.Apply(ctx, path, rules); err != nil {
			b.Fatal(err)
		}
	}
}
