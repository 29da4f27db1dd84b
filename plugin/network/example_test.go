package network_test

import (
	"context"
	"log/slog"
	"net/netip"

	"github.com/openswarm/swarmd/plugin/ipam"
	"github.com/openswarm/swarmd/plugin/network"
	"github.com/openswarm/swarmd/plugin/overlay"
)

// Example shows how a node wires the plugins: one data plane, one driver
// served with the IPAM driver under one plugin name, and the peers of each
// swarm network programmed as the dispatcher reports them.
func Example() {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	host, err := overlay.New(overlay.Config{VTEP: netip.MustParseAddr("192.0.2.10")})
	if err != nil {
		slog.Error("overlay", "err", err)
		return
	}
	defer host.Close()
	drv, err := network.New(ctx, network.Config{Host: host, StateDir: "/var/lib/docker/swarm/overlay"})
	if err != nil {
		slog.Error("overlay driver", "err", err)
		return
	}
	go func() {
		if err := network.Serve(ctx, "swarmd-overlay", drv, ipam.New(nil)); err != nil {
			slog.Error("plugin", "err", err)
		}
	}()
	// docker network create -d swarmd-overlay --ipam-driver swarmd-overlay \
	//   --subnet 10.0.1.0/24 -o swarmd.vni=4097 -o swarmd.network.id=<swarm ID> <name>
	// then, whenever the endpoints of that network change:
	ip := netip.MustParseAddr("10.0.1.7")
	_ = drv.Peers(ctx, "<swarm network ID>", []overlay.Peer{
		{IP: ip, MAC: overlay.MACFromIP(ip), VTEP: netip.MustParseAddr("192.0.2.11")},
	})
}
