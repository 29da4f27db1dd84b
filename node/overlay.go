package node

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/openswarm/swarmd/api"
	"github.com/openswarm/swarmd/plugin/discovery"
	"github.com/openswarm/swarmd/plugin/ipam"
	"github.com/openswarm/swarmd/plugin/network"
	"github.com/openswarm/swarmd/plugin/overlay"
	"github.com/openswarm/swarmd/plugin/pluginsock"
	"github.com/openswarm/swarmd/plugin/vip"
)

// applyTimeout bounds the programming of one set of endpoints.
const applyTimeout = time.Minute

// peerSetter programs the remote endpoints of one swarm network
// (network.Driver.Peers).
type peerSetter interface {
	Peers(ctx context.Context, networkID string, peers []overlay.Peer) error
}

// nodeOverlay is the node's overlay networking: the data plane, the
// engine's network and IPAM plugin serving it, and the endpoints of the
// overlay networks the dispatcher streams.
type nodeOverlay struct {
	log   *slog.Logger
	peers peerSetter
	disc  *discovery.Discovery // nil: no service discovery

	mu   sync.Mutex
	sent map[string]bool // networks given a non-empty set last time
}

// overlayVTEP is the node's underlay address: the host of its advertised
// remote API address, which must be an IPv4 literal.
func overlayVTEP(advertise string) (netip.Addr, error) {
	host, _, err := net.SplitHostPort(advertise)
	if err != nil {
		host = advertise
	}
	a, err := netip.ParseAddr(host)
	if err != nil || !a.Is4() || a.IsUnspecified() {
		return netip.Addr{}, fmt.Errorf("node: overlay: advertise address %q has no IPv4 host for VXLAN", advertise)
	}
	return a, nil
}

// validPluginName reports whether name can name a plugin socket.
func validPluginName(name string) error {
	if !pluginsock.ValidName(name) {
		return fmt.Errorf("node: overlay: invalid network plugin name %q", name)
	}
	return nil
}

// startOverlay starts the overlay data plane and serves its network and
// IPAM plugin as n.cfg.NetworkPlugin until ctx ends; wg tracks it. It
// returns nil (and logs why) when the node runs no overlay.
func (n *Node) startOverlay(ctx context.Context, wg *sync.WaitGroup) *nodeOverlay {
	name := n.cfg.NetworkPlugin
	if name == "" {
		return nil
	}
	log := n.cfg.Logger.With("module", "overlay", "plugin", name)
	ov, err := n.serveOverlay(ctx, wg, name, log)
	if err != nil {
		log.Warn("node: no overlay networks on this node", "error", err)
		return nil
	}
	return ov
}

func (n *Node) serveOverlay(ctx context.Context, wg *sync.WaitGroup, name string, log *slog.Logger) (*nodeOverlay, error) {
	if err := validPluginName(name); err != nil {
		return nil, err
	}
	vtep, err := overlayVTEP(n.cfg.AdvertiseRemoteAPI)
	if err != nil {
		return nil, err
	}
	host, err := overlay.New(overlay.Config{VTEP: vtep, Logger: log})
	if err != nil {
		return nil, fmt.Errorf("node: overlay: %w", err)
	}
	disc := newDiscovery(log)
	ncfg := network.Config{Host: host, StateDir: filepath.Join(n.cfg.StateDir, "overlay"), Logger: log}
	if disc != nil {
		ncfg.Observer = disc
	}
	drv, err := network.New(ctx, ncfg)
	if err != nil {
		_ = host.Close()
		return nil, fmt.Errorf("node: overlay: %w", err)
	}
	lis, path, err := listenPlugin(name)
	if err != nil {
		_ = host.Close()
		return nil, err
	}
	if disc != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			disc.Run(ctx)
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer host.Close()
		defer os.Remove(path)
		if err := network.ServeListener(ctx, lis, drv, ipam.New(log)); err != nil && ctx.Err() == nil {
			log.Error("node: network plugin stopped", "error", err)
		}
	}()
	log.Info("network plugin serving", "socket", path, "vtep", vtep.String())
	return &nodeOverlay{log: log, peers: drv, disc: disc, sent: map[string]bool{}}, nil
}

// newDiscovery returns the service discovery of the node's overlay
// networks, or nil (logged) when it cannot run here. Without nft, names
// still resolve, to task addresses instead of virtual IPs.
func newDiscovery(log *slog.Logger) *discovery.Discovery {
	var vips discovery.Applier
	prog, err := vip.NewProgrammer(vip.Config{Logger: log})
	if err != nil {
		log.Warn("node: no virtual IPs on overlay networks (service names resolve to task addresses)", "error", err)
	} else {
		vips = prog
	}
	disc, err := discovery.New(discovery.Config{VIPs: vips, Logger: log})
	if err != nil {
		log.Warn("node: no service discovery on overlay networks", "error", err)
		return nil
	}
	return disc
}

// listenPlugin binds the plugin's socket where the engine discovers it,
// replacing a stale one.
func listenPlugin(name string) (net.Listener, string, error) {
	path := pluginsock.Path(name)
	lis, err := pluginsock.Listen(path)
	if err != nil {
		return nil, "", fmt.Errorf("node: overlay: plugin socket: %w", err)
	}
	return lis, path, nil
}

// apply programs the endpoints of every overlay network the dispatcher
// sent (the complete set): networks it no longer lists get none. The
// driver keeps each set for networks this host creates later.
func (o *nodeOverlay) apply(ctx context.Context, nets []*api.NetworkPeers) {
	ctx, cancel := context.WithTimeout(ctx, applyTimeout)
	defer cancel()
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.disc != nil {
		o.disc.Update(nets)
	}
	now := make(map[string]bool, len(nets))
	for _, np := range nets {
		id := np.GetNetworkId()
		peers := overlayPeers(np.GetPeers())
		if id == "" {
			continue
		}
		now[id] = len(peers) > 0
		if err := o.peers.Peers(ctx, id, peers); err != nil {
			o.log.Warn("node: overlay peers not programmed", "network.id", id, "peers", len(peers), "error", err)
		}
	}
	for id := range o.sent {
		if _, listed := now[id]; listed {
			continue
		}
		if err := o.peers.Peers(ctx, id, nil); err != nil {
			o.log.Warn("node: overlay peers not removed", "network.id", id, "error", err)
		}
	}
	o.sent = now
}

// overlayPeers converts the dispatcher's endpoints, skipping any that do
// not parse.
func overlayPeers(in []*api.NetworkPeer) []overlay.Peer {
	out := make([]overlay.Peer, 0, len(in))
	for _, p := range in {
		ip, err := netip.ParseAddr(p.GetIp())
		if err != nil || !ip.Is4() {
			continue
		}
		vtep, err := netip.ParseAddr(p.GetVtep())
		if err != nil || !vtep.Is4() {
			continue
		}
		out = append(out, overlay.Peer{IP: ip, MAC: overlay.MACFromIP(ip), VTEP: vtep})
	}
	return out
}
