package network_test

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	helpers "github.com/docker/go-plugins-helpers/network"
	"github.com/vishvananda/netns"

	"github.com/openswarm/swarmd/plugin/internal/nstest"
	"github.com/openswarm/swarmd/plugin/network"
	"github.com/openswarm/swarmd/plugin/overlay"
)

// driverHost is one simulated host running the driver.
type driverHost struct {
	ns       *nstest.NS
	vtep     netip.Addr
	stateDir string
	host     *overlay.Host
	drv      *network.Driver
	engineID string // the engine's ID of the network on this host
	obs      recorder
}

// recorder is a network.Observer that records what it is told.
type recorder struct {
	mu     sync.Mutex
	events []string
}

func (r *recorder) add(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, fmt.Sprintf(format, args...))
}

// take returns the events so far and forgets them.
func (r *recorder) take() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.events
	r.events = nil
	return out
}

func (r *recorder) NetworkUp(n overlay.Network, nsPath string) {
	r.add("up %s %s %s", n.ID, n.Gateway, filepath.Base(nsPath))
}
func (r *recorder) NetworkDown(id string) { r.add("down %s", id) }
func (r *recorder) EndpointUp(id, ep string, ip netip.Addr, key string) {
	r.add("join %s %s %s %s", id, ep[:4], ip, key)
}
func (r *recorder) EndpointDown(id, ep string) { r.add("leave %s %s", id, ep[:4]) }

func (h *driverHost) start(t *testing.T) {
	t.Helper()
	var err error
	h.host, err = overlay.New(overlay.Config{VTEP: h.vtep, NetNS: h.ns.Handle, NSPrefix: h.ns.Name + "-"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.host.Close() })
	h.drv, err = network.New(context.Background(), network.Config{Host: h.host, StateDir: h.stateDir, Observer: &h.obs})
	if err != nil {
		t.Fatalf("network.New: %v", err)
	}
}

// join runs the engine's endpoint path: CreateEndpoint, Join, then moves the
// interface into a new container namespace as eth0 with its address.
func (h *driverHost) join(t *testing.T, epID, cname string, ip netip.Prefix) *nstest.NS {
	t.Helper()
	res, err := h.drv.CreateEndpoint(&helpers.CreateEndpointRequest{
		NetworkID: h.engineID, EndpointID: epID, Interface: &helpers.EndpointInterface{Address: ip.String()},
	})
	if err != nil {
		t.Fatalf("CreateEndpoint: %v", err)
	}
	wantMAC := overlay.MACFromIP(ip.Addr()).String()
	if res.Interface == nil || res.Interface.MacAddress != wantMAC {
		t.Fatalf("CreateEndpoint = %+v, want MAC %s", res.Interface, wantMAC)
	}
	jr, err := h.drv.Join(&helpers.JoinRequest{NetworkID: h.engineID, EndpointID: epID, SandboxKey: "/var/run/docker/netns/x"})
	if err != nil {
		t.Fatalf("Join: %v", err)
	}
	if jr.Gateway != "" || len(jr.StaticRoutes) != 0 || jr.InterfaceName.DstPrefix != "eth" {
		t.Fatalf("Join = %+v, want no gateway, no routes, prefix eth", jr)
	}
	c := nstest.New(t, cname)
	h.ns.MoveTo(t, c, jr.InterfaceName.SrcName, "eth0", ip)
	return c
}

func randomHex(sfx string, n int) string {
	return (strings.Repeat(sfx, n/len(sfx)+1))[:n]
}

func TestDriverTwoHosts(t *testing.T) {
	nstest.Require(t)
	sfx := nstest.Suffix()
	ctx := context.Background()
	swarmID := "ptswarm" + sfx + "0000000000000000"
	a := &driverHost{ns: nstest.New(t, "ptA"+sfx), vtep: netip.MustParseAddr("10.98.0.1"), stateDir: t.TempDir(), engineID: randomHex("a"+sfx, 64)}
	b := &driverHost{ns: nstest.New(t, "ptB"+sfx), vtep: netip.MustParseAddr("10.98.0.2"), stateDir: t.TempDir(), engineID: randomHex("b"+sfx, 64)}
	nstest.Underlay(t, a.ns, b.ns, "ptu0", netip.MustParsePrefix("10.98.0.1/24"), netip.MustParsePrefix("10.98.0.2/24"))
	for _, h := range []*driverHost{a, b} {
		nstest.CleanupPrefix(t, h.ns.Name+"-")
		h.start(t)
		caps, err := h.drv.GetCapabilities()
		if err != nil || caps.Scope != helpers.LocalScope {
			t.Fatalf("GetCapabilities = %+v, %v", caps, err)
		}
		err = h.drv.CreateNetwork(&helpers.CreateNetworkRequest{
			NetworkID: h.engineID,
			Options: map[string]any{"com.docker.network.generic": map[string]any{
				network.OptionVNI: "4242", network.OptionNetworkID: swarmID, network.OptionNetworkName: "ptnet",
			}},
			IPv4Data: []*helpers.IPAMData{{AddressSpace: "swarmd", Pool: "10.97.1.0/24", Gateway: "10.97.1.1/24"}},
		})
		if err != nil {
			t.Fatalf("CreateNetwork: %v", err)
		}
	}
	ipA, ipB := netip.MustParsePrefix("10.97.1.2/24"), netip.MustParsePrefix("10.97.1.3/24")
	epA, epB := randomHex("e"+sfx+"a", 64), randomHex("e"+sfx+"b", 64)
	cA := a.join(t, epA, "ptcA"+sfx, ipA)
	cB := b.join(t, epB, "ptcB"+sfx, ipB)
	peers := []overlay.Peer{
		{IP: ipA.Addr(), MAC: overlay.MACFromIP(ipA.Addr()), VTEP: a.vtep},
		{IP: ipB.Addr(), MAC: overlay.MACFromIP(ipB.Addr()), VTEP: b.vtep},
	}
	// Host A learns its peers by swarm ID, host B by its engine's ID.
	if err := a.drv.Peers(ctx, swarmID, peers); err != nil {
		t.Fatal(err)
	}
	if err := b.drv.Peers(ctx, b.engineID, peers); err != nil {
		t.Fatal(err)
	}
	nstest.Echo(cB.Listen(t, "10.97.1.3:7000"))
	if err := cA.RoundTrip("10.97.1.3:7000", 5*time.Second); err != nil {
		t.Fatalf("A -> B through the driver: %v", err)
	}
	nsA := a.host.NamespaceName(swarmID)
	wantEvents := func(t *testing.T, h *driverHost, want ...string) {
		t.Helper()
		if got := h.obs.take(); !slices.Equal(got, want) {
			t.Errorf("observed %q, want %q", got, want)
		}
	}
	wantEvents(t, a, "up "+swarmID+" 10.97.1.1 "+nsA, "join "+swarmID+" "+epA[:4]+" 10.97.1.2 /var/run/docker/netns/x")

	t.Run("endpoint info", func(t *testing.T) {
		info, err := a.drv.EndpointInfo(&helpers.InfoRequest{NetworkID: a.engineID, EndpointID: epA})
		if err != nil || info.Value["swarmd.ip"] != "10.97.1.2" || info.Value["swarmd.vni"] != "4242" {
			t.Fatalf("EndpointInfo = %+v, %v", info, err)
		}
	})

	t.Run("conflicting VNI refused", func(t *testing.T) {
		err := a.drv.CreateNetwork(&helpers.CreateNetworkRequest{
			NetworkID: "ptother" + sfx, Options: map[string]any{network.OptionVNI: "4242"},
			IPv4Data: []*helpers.IPAMData{{Pool: "10.97.5.0/24"}},
		})
		if err == nil || !strings.Contains(err.Error(), "conflicts") {
			t.Fatalf("CreateNetwork with a used VNI = %v", err)
		}
	})

	t.Run("restart restores networks and keeps traffic", func(t *testing.T) {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		conn, err := cA.Dial(cctx, "10.97.1.3:7000")
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		a.host.Close()
		a.start(t)
		if n, ok := a.drv.Network(swarmID); !ok || n.VNI != 4242 {
			t.Fatalf("restarted driver network = %+v, %v", n, ok)
		}
		if err := a.drv.Peers(ctx, swarmID, peers); err != nil {
			t.Fatal(err)
		}
		if err := nstest.Exchange(conn, 5*time.Second); err != nil {
			t.Fatalf("connection across restart: %v", err)
		}
		// The restarted driver tells its observer what it restored.
		wantEvents(t, a, "up "+swarmID+" 10.97.1.1 "+nsA, "join "+swarmID+" "+epA[:4]+" 10.97.1.2 /var/run/docker/netns/x")
		if err := cA.RoundTrip("10.97.1.3:7000", 5*time.Second); err != nil {
			t.Fatalf("new connection after restart: %v", err)
		}
	})

	t.Run("leave and delete endpoint remove the interface", func(t *testing.T) {
		// The engine hands the device back first: down, under its own
		// name, in the host namespace.
		dev := overlay.EndpointName(epB)
		eth0, err := cB.NL.LinkByName("eth0")
		if err == nil {
			err = errors.Join(cB.NL.LinkSetDown(eth0), cB.NL.LinkSetName(eth0, dev), cB.NL.LinkSetNsFd(eth0, int(b.ns.Handle)))
		}
		if err != nil {
			t.Fatalf("give eth0 back: %v", err)
		}
		if err := b.drv.Leave(&helpers.LeaveRequest{NetworkID: b.engineID, EndpointID: epB}); err != nil {
			t.Fatal(err)
		}
		if err := b.drv.DeleteEndpoint(&helpers.DeleteEndpointRequest{NetworkID: b.engineID, EndpointID: epB}); err != nil {
			t.Fatal(err)
		}
		nsB := b.host.NamespaceName(swarmID)
		wantEvents(t, b, "up "+swarmID+" 10.97.1.1 "+nsB, "join "+swarmID+" "+epB[:4]+" 10.97.1.3 /var/run/docker/netns/x", "leave "+swarmID+" "+epB[:4])
		if _, err := cB.NL.LinkByName("eth0"); err == nil {
			t.Fatal("container B still has eth0 after Leave")
		}
		if _, err := b.ns.NL.LinkByName(dev); err == nil {
			t.Fatalf("device %s still in the host namespace after Leave", dev)
		}
		if _, err := b.drv.EndpointInfo(&helpers.InfoRequest{NetworkID: b.engineID, EndpointID: epB}); err == nil {
			t.Fatal("endpoint still known after DeleteEndpoint")
		}
	})

	t.Run("delete network", func(t *testing.T) {
		if err := b.drv.DeleteNetwork(&helpers.DeleteNetworkRequest{NetworkID: b.engineID}); err != nil {
			t.Fatal(err)
		}
		wantEvents(t, b, "down "+swarmID)
		if _, err := os.Stat(filepath.Join("/var/run/netns", b.host.NamespaceName(swarmID))); err == nil {
			t.Error("network namespace left behind")
		}
		if files, _ := filepath.Glob(filepath.Join(b.stateDir, "*.json")); len(files) != 0 {
			t.Errorf("state left behind: %v", files)
		}
		if err := b.drv.DeleteNetwork(&helpers.DeleteNetworkRequest{NetworkID: b.engineID}); err != nil {
			t.Fatalf("second DeleteNetwork: %v", err)
		}
	})

	t.Run("devices lost (reboot) are recreated on start", func(t *testing.T) {
		nsName := a.host.NamespaceName(swarmID)
		ons := nstest.Open(t, nsName)
		for _, name := range []string{overlay.GatewayName(swarmID), overlay.VXLANName(swarmID)} {
			l, err := ons.NL.LinkByName(name)
			if err != nil {
				t.Fatal(err)
			}
			if err := ons.NL.LinkDel(l); err != nil {
				t.Fatal(err)
			}
		}
		a.host.Close()
		if err := netns.DeleteNamed(nsName); err != nil {
			t.Fatal(err)
		}
		a.start(t)
		if _, err := os.Stat(filepath.Join("/var/run/netns", nsName)); err != nil {
			t.Fatalf("namespace not recreated: %v", err)
		}
		if err := a.drv.Peers(ctx, swarmID, peers); err != nil {
			t.Fatalf("Peers after recreation: %v", err)
		}
		got, err := a.host.ListPeers(ctx, swarmID)
		if err != nil || len(got) != 1 || got[0].IP != ipB.Addr() {
			t.Fatalf("ListPeers after recreation = %v, %v", got, err)
		}
	})
}
