package resolver

import (
	"context"
	"net/netip"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/openswarm/swarmd/plugin/internal/nstest"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

func TestListenInNetns(t *testing.T) {
	nstest.Require(t)
	ns := nstest.New(t, "rvA"+nstest.Suffix())
	// The resolver address is added to an interface only after the sockets
	// are bound, as the caller may do with the overlay bridge.
	const addr = "10.96.53.1:53"
	pc, l, err := ListenInNetns("/var/run/netns/"+ns.Name, addr)
	if err != nil {
		t.Fatalf("ListenInNetns: %v", err)
	}
	if err := ns.NL.LinkAdd(&netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "rvdns0"}}); err != nil {
		t.Fatalf("bridge: %v", err)
	}
	ns.SetUp(t, "rvdns0", "rvdns0", netip.MustParsePrefix("10.96.53.1/24"))

	r := newResolver(t, Config{Upstreams: []string{blackhole(t)}, ForwardTimeout: 200 * time.Millisecond})
	r.SetNetwork("n", testRecords)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Serve(ctx, pc, l, "n") }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})

	for _, netw := range []string{"udp", "tcp"} {
		var conn *dns.Conn
		c := &dns.Client{Net: netw, Timeout: 5 * time.Second}
		if err := ns.Do(func() error {
			var err error
			conn, err = c.Dial(addr)
			return err
		}); err != nil {
			t.Fatalf("dial %s %s inside %s: %v", netw, addr, ns.Name, err)
		}
		m := new(dns.Msg)
		m.SetQuestion("tasks.web.", dns.TypeA)
		resp, _, err := c.ExchangeWithConn(m, conn)
		conn.Close()
		if err != nil {
			t.Fatalf("query over %s inside %s: %v", netw, ns.Name, err)
		}
		if got := answers(resp); !slices.Equal(got, []string{"10.96.1.10", "10.96.1.11"}) {
			t.Errorf("%s answers = %v", netw, got)
		}
	}

	// Both sockets live in the namespace, whichever thread created them.
	var want unix.Stat_t
	if err := unix.Fstat(int(ns.Handle), &want); err != nil {
		t.Fatal(err)
	}
	for name, sc := range map[string]syscall.Conn{"udp": pc.(syscall.Conn), "tcp": l.(syscall.Conn)} {
		if got := socketNetns(t, sc); got != want.Ino {
			t.Errorf("%s socket in namespace inode %d, want %d", name, got, want.Ino)
		}
	}
	if _, _, err := ListenInNetns("/var/run/netns/rv-does-not-exist", addr); err == nil {
		t.Error("ListenInNetns on a missing namespace: want error")
	}
}

// socketNetns returns the inode of the network namespace sc belongs to.
func socketNetns(t *testing.T, sc syscall.Conn) uint64 {
	t.Helper()
	rc, err := sc.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var st unix.Stat_t
	var ierr error
	if err := rc.Control(func(fd uintptr) {
		nsfd, err := unix.IoctlRetInt(int(fd), unix.SIOCGSKNS)
		if err != nil {
			ierr = err
			return
		}
		defer unix.Close(nsfd)
		ierr = unix.Fstat(nsfd, &st)
	}); err != nil {
		t.Fatal(err)
	}
	if ierr != nil {
		t.Fatalf("namespace of socket: %v", ierr)
	}
	return st.Ino
}
