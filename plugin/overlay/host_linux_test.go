package overlay_test

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/openswarm/swarmd/plugin/internal/nstest"
	"github.com/openswarm/swarmd/plugin/overlay"
)

// testHost is one simulated host: its namespace, its overlay Host and its
// underlay address.
type testHost struct {
	ns   *nstest.NS
	ov   *overlay.Host
	vtep netip.Addr
}

func newTestHost(t testing.TB, ns *nstest.NS, vtep netip.Addr) *testHost {
	t.Helper()
	prefix := ns.Name + "-"
	nstest.CleanupPrefix(t, prefix)
	ov, err := overlay.New(overlay.Config{VTEP: vtep, NetNS: ns.Handle, NSPrefix: prefix})
	if err != nil {
		t.Fatalf("overlay.New: %v", err)
	}
	t.Cleanup(func() { ov.Close() })
	return &testHost{ns: ns, ov: ov, vtep: vtep}
}

// netNS opens the namespace of network id on h.
func (h *testHost) netNS(t testing.TB, id string) *nstest.NS {
	t.Helper()
	return nstest.Open(t, h.ov.NamespaceName(id))
}

// attach creates endpoint id with ip on network, moves it into a new
// container namespace as eth0 and returns that namespace.
func (h *testHost) attach(t testing.TB, netID, id, cname string, ip netip.Prefix) *nstest.NS {
	t.Helper()
	link, err := h.ov.AddEndpoint(context.Background(), netID, overlay.Endpoint{ID: id, IP: ip.Addr()})
	if err != nil {
		t.Fatalf("AddEndpoint: %v", err)
	}
	c := nstest.New(t, cname)
	h.ns.MoveTo(t, c, link.ContainerName, "eth0", ip)
	l, err := c.NL.LinkByName("eth0")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := l.Attrs().HardwareAddr.String(), overlay.MACFromIP(ip.Addr()).String(); got != want {
		t.Fatalf("container MAC = %s, want %s", got, want)
	}
	return c
}

func peerOf(ip, vtep netip.Addr) overlay.Peer {
	return overlay.Peer{IP: ip, MAC: overlay.MACFromIP(ip), VTEP: vtep}
}

type lab struct {
	a, b           *testHost
	net1, net2     overlay.Network
	cA, cB         *nstest.NS // net1 containers on A and B
	cA2, cB2       *nstest.NS // net2 containers on A and B
	ipA, ipB       netip.Prefix
	ipA2, ipB2     netip.Prefix
	peersA, peersB map[string][]overlay.Peer // by network ID
	epA1           string                    // endpoint of cA
}

// newLab builds hosts ptA and ptB on a veth underlay 10.98.0.0/24, overlay
// net1 (VNI 4242, 10.97.1.0/24) and net2 (VNI 4243, 10.97.2.0/24) on both,
// one container per host and network, peers programmed from both sides.
func newLab(t testing.TB) *lab {
	t.Helper()
	nstest.Require(t)
	sfx := nstest.Suffix()
	nsA := nstest.New(t, "ptA"+sfx)
	nsB := nstest.New(t, "ptB"+sfx)
	nstest.Underlay(t, nsA, nsB, "ptu0", netip.MustParsePrefix("10.98.0.1/24"), netip.MustParsePrefix("10.98.0.2/24"))
	l := &lab{
		a:    newTestHost(t, nsA, netip.MustParseAddr("10.98.0.1")),
		b:    newTestHost(t, nsB, netip.MustParseAddr("10.98.0.2")),
		net1: overlay.Network{ID: "ptnet1" + sfx + "aaaaaaaa", Name: "pt1", VNI: 4242, Subnet: netip.MustParsePrefix("10.97.1.0/24"), Gateway: netip.MustParseAddr("10.97.1.1")},
		net2: overlay.Network{ID: "ptnet2" + sfx + "bbbbbbbb", Name: "pt2", VNI: 4243, Subnet: netip.MustParsePrefix("10.97.2.0/24"), Gateway: netip.MustParseAddr("10.97.2.1")},
		ipA:  netip.MustParsePrefix("10.97.1.2/24"), ipB: netip.MustParsePrefix("10.97.1.3/24"),
		ipA2: netip.MustParsePrefix("10.97.2.2/24"), ipB2: netip.MustParsePrefix("10.97.2.3/24"),
	}
	ctx := context.Background()
	for _, h := range []*testHost{l.a, l.b} {
		for _, n := range []overlay.Network{l.net1, l.net2} {
			if err := h.ov.EnsureNetwork(ctx, n); err != nil {
				t.Fatalf("EnsureNetwork(%s): %v", n.Name, err)
			}
		}
	}
	l.epA1 = "ptepa1" + sfx + "000000"
	l.cA = l.a.attach(t, l.net1.ID, l.epA1, "ptcA"+sfx, l.ipA)
	l.cB = l.b.attach(t, l.net1.ID, "ptepb1"+sfx+"000000", "ptcB"+sfx, l.ipB)
	l.cA2 = l.a.attach(t, l.net2.ID, "ptepa2"+sfx+"000000", "ptcA2"+sfx, l.ipA2)
	l.cB2 = l.b.attach(t, l.net2.ID, "ptepb2"+sfx+"000000", "ptcB2"+sfx, l.ipB2)
	// Both hosts get the full set of endpoints: each ignores its own.
	all1 := []overlay.Peer{peerOf(l.ipA.Addr(), l.a.vtep), peerOf(l.ipB.Addr(), l.b.vtep)}
	all2 := []overlay.Peer{peerOf(l.ipA2.Addr(), l.a.vtep), peerOf(l.ipB2.Addr(), l.b.vtep)}
	l.peersA = map[string][]overlay.Peer{l.net1.ID: all1, l.net2.ID: all2}
	l.peersB = l.peersA
	l.program(t)
	return l
}

func (l *lab) program(t testing.TB) {
	t.Helper()
	for _, h := range []struct {
		h     *testHost
		peers map[string][]overlay.Peer
	}{{l.a, l.peersA}, {l.b, l.peersB}} {
		for id, ps := range h.peers {
			if err := h.h.ov.Peers(context.Background(), id, ps); err != nil {
				t.Fatalf("Peers: %v", err)
			}
		}
	}
}

const (
	okTimeout   = 5 * time.Second
	failTimeout = 1500 * time.Millisecond
)

func TestOverlayTwoHosts(t *testing.T) {
	l := newLab(t)
	top := t
	ctx := context.Background()

	// The host namespace holds no overlay device; the gateway device holds
	// only the gateway address, in the network's namespace, on the VXLAN
	// device.
	for _, n := range []overlay.Network{l.net1, l.net2} {
		ons := l.a.netNS(t, n.ID)
		gw, err := ons.NL.LinkByName(overlay.GatewayName(n.ID))
		if err != nil {
			t.Fatal(err)
		}
		vx, err := ons.NL.LinkByName(overlay.VXLANName(n.ID))
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := gw.(*netlink.Macvlan); !ok || gw.Attrs().ParentIndex != vx.Attrs().Index {
			t.Errorf("gateway device %s is a %s on %d, want a macvlan on the VXLAN device %d", gw.Attrs().Name, gw.Type(), gw.Attrs().ParentIndex, vx.Attrs().Index)
		}
		if _, err := l.a.ns.NL.LinkByName(overlay.GatewayName(n.ID)); err == nil {
			t.Errorf("gateway device %s is in the host namespace", gw.Attrs().Name)
		}
		addrs, err := ons.NL.AddrList(gw, netlink.FAMILY_V4)
		want := netip.PrefixFrom(n.Gateway, n.Subnet.Bits()).String()
		if err != nil || len(addrs) != 1 || addrs[0].IPNet.String() != want {
			t.Fatalf("gateway device %s addresses = %v, %v; want %s", gw.Attrs().Name, addrs, err, want)
		}
		for _, l := range []netlink.Link{gw, vx} {
			if l.Attrs().MTU != 1450 {
				t.Errorf("%s MTU = %d, want 1450 (underlay 1500 - 50)", l.Attrs().Name, l.Attrs().MTU)
			}
		}
	}

	nstest.Echo(l.cB.Listen(t, l.ipB.Addr().String()+":7000"))
	nstest.Echo(l.cB2.Listen(t, l.ipB2.Addr().String()+":7000"))
	addrB := l.ipB.Addr().String() + ":7000"
	addrB2 := l.ipB2.Addr().String() + ":7000"

	t.Run("same network across hosts", func(t *testing.T) {
		if err := l.cA.RoundTrip(addrB, okTimeout); err != nil {
			t.Fatalf("A -> B on net1: %v", err)
		}
		if err := l.cA2.RoundTrip(addrB2, okTimeout); err != nil {
			t.Fatalf("A -> B on net2: %v", err)
		}
	})

	t.Run("networks are isolated", func(t *testing.T) {
		// Give the net2 container every chance: an on-link route to net1's
		// subnet and a static neighbour entry with the right MAC.
		eth0, err := l.cA2.NL.LinkByName("eth0")
		if err != nil {
			t.Fatal(err)
		}
		if err := l.cA2.NL.RouteAdd(&netlink.Route{LinkIndex: eth0.Attrs().Index, Dst: prefixNet(l.net1.Subnet), Scope: netlink.SCOPE_LINK}); err != nil {
			t.Fatalf("route: %v", err)
		}
		if err := l.cA2.NL.NeighSet(&netlink.Neigh{LinkIndex: eth0.Attrs().Index, Family: netlink.FAMILY_V4, State: netlink.NUD_PERMANENT,
			IP: l.ipB.Addr().AsSlice(), HardwareAddr: overlay.MACFromIP(l.ipB.Addr())}); err != nil {
			t.Fatalf("neighbour: %v", err)
		}
		if err := l.cA2.RoundTrip(addrB, failTimeout); err == nil {
			t.Fatal("net2 container reached net1 container across hosts")
		}
		// Same host: cA (net1) from cA2 (net2) is isolated too.
		nstest.Echo(l.cA.Listen(t, l.ipA.Addr().String()+":7001"))
		if err := l.cA2.NL.NeighSet(&netlink.Neigh{LinkIndex: eth0.Attrs().Index, Family: netlink.FAMILY_V4, State: netlink.NUD_PERMANENT,
			IP: l.ipA.Addr().AsSlice(), HardwareAddr: overlay.MACFromIP(l.ipA.Addr())}); err != nil {
			t.Fatalf("neighbour: %v", err)
		}
		if err := l.cA2.RoundTrip(l.ipA.Addr().String()+":7001", failTimeout); err == nil {
			t.Fatal("net2 container reached net1 container on the same host")
		}
	})

	t.Run("peers are idempotent and read back", func(t *testing.T) {
		l.program(t)
		got, err := l.a.ov.ListPeers(ctx, l.net1.ID)
		if err != nil {
			t.Fatal(err)
		}
		want := []overlay.Peer{peerOf(l.ipB.Addr(), l.b.vtep)}
		if len(got) != 1 || got[0].String() != want[0].String() {
			t.Fatalf("ListPeers = %v, want %v", got, want)
		}
	})

	t.Run("removing a peer stops traffic", func(t *testing.T) {
		if err := l.a.ov.Peers(ctx, l.net1.ID, nil); err != nil {
			t.Fatal(err)
		}
		if err := l.cA.RoundTrip(addrB, failTimeout); err == nil {
			t.Fatal("A reached B after B's peer entry was removed on A")
		}
		if got, _ := l.a.ov.ListPeers(ctx, l.net1.ID); len(got) != 0 {
			t.Fatalf("ListPeers after removal = %v", got)
		}
		l.program(t)
		if err := l.cA.RoundTrip(addrB, okTimeout); err != nil {
			t.Fatalf("A -> B after re-adding the peer: %v", err)
		}
	})

	t.Run("endpoint moving here replaces its peer entry", func(t *testing.T) {
		// B's peer set on net2 names 10.97.2.9 as remote on A; then an
		// endpoint with that address appears on B itself.
		moved := netip.MustParsePrefix("10.97.2.9/24")
		ps := append(append([]overlay.Peer(nil), l.peersB[l.net2.ID]...), peerOf(moved.Addr(), l.a.vtep))
		if err := l.b.ov.Peers(ctx, l.net2.ID, ps); err != nil {
			t.Fatal(err)
		}
		cMoved := l.b.attach(t, l.net2.ID, "ptmoved"+l.epA1[6:], "ptcM"+l.epA1[6:10], moved)
		got, err := l.b.ov.ListPeers(ctx, l.net2.ID)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range got {
			if p.IP == moved.Addr() {
				t.Fatalf("peer entry for local endpoint %s still programmed: %v", moved.Addr(), got)
			}
		}
		nstest.Echo(cMoved.Listen(t, moved.Addr().String()+":7002"))
		if err := l.cB2.RoundTrip(moved.Addr().String()+":7002", okTimeout); err != nil {
			t.Fatalf("local traffic to the moved endpoint: %v", err)
		}
	})

	t.Run("restart adopts devices", func(t *testing.T) {
		// A connection open across the restart must keep working.
		cctx, cancel := context.WithTimeout(ctx, okTimeout)
		defer cancel()
		conn, err := l.cA.Dial(cctx, addrB)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		if err := nstest.Exchange(conn, okTimeout); err != nil {
			t.Fatal(err)
		}
		ons := l.a.netNS(t, l.net1.ID)
		vx, err := ons.NL.LinkByName(overlay.VXLANName(l.net1.ID))
		if err != nil {
			t.Fatal(err)
		}
		l.a.ov.Close()
		l.a = newTestHost(top, l.a.ns, l.a.vtep)
		for _, n := range []overlay.Network{l.net1, l.net2} {
			if err := l.a.ov.EnsureNetwork(ctx, n); err != nil {
				t.Fatalf("EnsureNetwork after restart: %v", err)
			}
		}
		if _, err := l.a.ov.AddEndpoint(ctx, l.net1.ID, overlay.Endpoint{ID: l.epA1, IP: l.ipA.Addr()}); err != nil {
			t.Fatalf("AddEndpoint after restart: %v", err)
		}
		l.program(t)
		vx2, err := ons.NL.LinkByName(overlay.VXLANName(l.net1.ID))
		if err != nil {
			t.Fatal(err)
		}
		if vx2.Attrs().Index != vx.Attrs().Index {
			t.Fatalf("vxlan device was recreated (index %d -> %d), want adopted", vx.Attrs().Index, vx2.Attrs().Index)
		}
		if err := nstest.Exchange(conn, okTimeout); err != nil {
			t.Fatalf("connection across restart: %v", err)
		}
		if err := l.cA.RoundTrip(addrB, okTimeout); err != nil {
			t.Fatalf("new connection after restart: %v", err)
		}
	})

	t.Run("changed VNI recreates the vxlan device", func(t *testing.T) {
		n := l.net2
		n.VNI = 4244
		if err := l.a.ov.EnsureNetwork(ctx, n); err != nil {
			t.Fatal(err)
		}
		vx, err := l.a.netNS(t, n.ID).NL.LinkByName(overlay.VXLANName(n.ID))
		if err != nil {
			t.Fatal(err)
		}
		if v, ok := vx.(*netlink.Vxlan); !ok || v.VxlanId != 4244 || v.Learning || !v.Proxy {
			t.Fatalf("vxlan after VNI change = %+v", vx)
		}
	})

	t.Run("delete network removes devices", func(t *testing.T) {
		if err := l.a.ov.DeleteNetwork(ctx, l.net2.ID); err != nil {
			t.Fatal(err)
		}
		if err := l.a.ov.DeleteNetwork(ctx, l.net2.ID); err != nil {
			t.Fatalf("second DeleteNetwork: %v", err)
		}
		if _, err := os.Stat("/var/run/netns/" + l.a.ov.NamespaceName(l.net2.ID)); err == nil {
			t.Errorf("namespace %s still exists", l.a.ov.NamespaceName(l.net2.ID))
		}
		if _, err := l.a.ns.NL.LinkByName(overlay.VXLANName(l.net2.ID)); err == nil {
			t.Errorf("vxlan device left in the host namespace")
		}
	})
}

// BenchmarkOverlayThroughput measures TCP throughput between two
// container namespaces on different hosts over the overlay, and between the
// hosts directly over the underlay veth, alternating one short run of each
// per iteration so that load from elsewhere hits both alike; it reports
// both and their ratio (go test -run '^$' -bench OverlayThroughput
// -benchtime 6x ./plugin/overlay/).
func BenchmarkOverlayThroughput(b *testing.B) {
	l := newLab(b)
	const d = time.Second
	var under, over float64
	n := 0
	for b.Loop() {
		under += nstest.Throughput(b, l.a.ns, l.b.ns, fmt.Sprintf("10.98.0.2:%d", 7100+n), d)
		over += nstest.Throughput(b, l.cA, l.cB, fmt.Sprintf("%s:%d", l.ipB.Addr(), 7100+n), d)
		n++
	}
	b.ReportMetric(under/float64(n), "underlay-MB/s")
	b.ReportMetric(over/float64(n), "overlay-MB/s")
	b.ReportMetric(over/under, "overlay/underlay")
}

func prefixNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), 32)}
}

// TestPeersScale programs 1000 remote endpoints on one network, re-applies
// the same set, then replaces half of it, and reports how long each took.
func TestPeersScale(t *testing.T) {
	nstest.Require(t)
	sfx := nstest.Suffix()
	ns := nstest.New(t, "ptS"+sfx)
	h := newTestHost(t, ns, netip.MustParseAddr("10.98.0.1"))
	n := overlay.Network{ID: "ptscale" + sfx + "00000000", VNI: 4250, Subnet: netip.MustParsePrefix("10.96.0.0/16")}
	ctx := context.Background()
	if err := h.ov.EnsureNetwork(ctx, n); err != nil {
		t.Fatal(err)
	}
	mk := func(first, count int) []overlay.Peer {
		ps := make([]overlay.Peer, 0, count)
		for i := first; i < first+count; i++ {
			ip := netip.AddrFrom4([4]byte{10, 96, byte(i >> 8), byte(i)})
			ps = append(ps, overlay.Peer{IP: ip, MAC: overlay.MACFromIP(ip), VTEP: netip.AddrFrom4([4]byte{10, 98, 1, byte(i % 50)})})
		}
		return ps
	}
	tests := []struct {
		name  string
		peers []overlay.Peer
	}{
		{"add 1000", mk(1, 1000)},
		{"same 1000 again", mk(1, 1000)},
		{"replace 500", mk(501, 1000)},
		{"remove all", nil},
	}
	for _, tt := range tests {
		start := time.Now()
		if err := h.ov.Peers(ctx, n.ID, tt.peers); err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		took := time.Since(start)
		got, err := h.ov.ListPeers(ctx, n.ID)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(tt.peers) {
			t.Fatalf("%s: %d peers programmed, want %d", tt.name, len(got), len(tt.peers))
		}
		for i, p := range got {
			if p.String() != tt.peers[i].String() {
				t.Fatalf("%s: peer %d = %s, want %s", tt.name, i, p, tt.peers[i])
			}
		}
		t.Logf("Peers(%s): %v", tt.name, took)
	}
}

// TestRemoveStale: a host's namespaces of networks it no longer knows go
// with their devices, so a new network may take the same VNI at once; the
// networks it keeps stay untouched.
func TestRemoveStale(t *testing.T) {
	nstest.Require(t)
	sfx := nstest.Suffix()
	ns := nstest.New(t, "ptS"+sfx)
	nsB := nstest.New(t, "ptT"+sfx)
	nstest.Underlay(t, ns, nsB, "ptu1", netip.MustParsePrefix("10.98.1.1/24"), netip.MustParsePrefix("10.98.1.2/24"))
	h := newTestHost(t, ns, netip.MustParseAddr("10.98.1.1"))
	ctx := context.Background()
	keep := overlay.Network{ID: "ptkeep" + sfx + "aaaaaaaa", Name: "keep", VNI: 4300, Subnet: netip.MustParsePrefix("10.97.3.0/24"), Gateway: netip.MustParseAddr("10.97.3.1")}
	stale := overlay.Network{ID: "ptstale" + sfx + "bbbbbbb", Name: "stale", VNI: 4301, Subnet: netip.MustParsePrefix("10.97.4.0/24"), Gateway: netip.MustParseAddr("10.97.4.1")}
	for _, n := range []overlay.Network{keep, stale} {
		if err := h.ov.EnsureNetwork(ctx, n); err != nil {
			t.Fatal(err)
		}
	}
	// Another host object (a restarted swarmd of a new swarm) that knows
	// only keep.
	h.ov.Close()
	again, err := overlay.New(overlay.Config{VTEP: h.vtep, NetNS: ns.Handle, NSPrefix: ns.Name + "-"})
	if err != nil {
		t.Fatal(err)
	}
	defer again.Close()
	if err := again.RemoveStale([]string{keep.ID}); err != nil {
		t.Fatal(err)
	}
	exists := func(name string) bool {
		_, err := os.Stat(filepath.Join("/var/run/netns", name))
		return err == nil
	}
	if !exists(again.NamespaceName(keep.ID)) {
		t.Fatal("the kept network's namespace was removed")
	}
	if exists(again.NamespaceName(stale.ID)) {
		t.Fatal("the stale network's namespace is still there")
	}
	// The stale network's VNI is free: a new network takes it.
	reuse := overlay.Network{ID: "ptreuse" + sfx + "ccccccc", Name: "reuse", VNI: stale.VNI, Subnet: stale.Subnet, Gateway: stale.Gateway}
	if err := again.EnsureNetwork(ctx, reuse); err != nil {
		t.Fatalf("a new network with the stale one's VNI: %v", err)
	}
	if err := again.EnsureNetwork(ctx, keep); err != nil {
		t.Fatalf("the kept network is still adoptable: %v", err)
	}
}
