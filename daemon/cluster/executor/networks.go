package executor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strconv"
	"sync"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/network"
	"github.com/openswarm/swarmd/api"
)

// LabelNetworkID labels the engine network of a swarm overlay network with
// the swarm network's ID.
const LabelNetworkID = "com.docker.swarm.network.id"

// Driver options of swarmd's network plugin (plugin/network).
const (
	optionVNI         = "swarmd.vni"
	optionNetworkID   = "swarmd.network.id"
	optionNetworkName = "swarmd.network.name"
)

// ErrNoNetworkPlugin is returned for a task attached to overlay networks on
// a node that serves no network plugin.
var ErrNoNetworkPlugin = errors.New("executor: this node runs no overlay network plugin (swarmd --network-plugin)")

// networkAPI is the part of the engine's API that attaches tasks to
// overlay networks.
type networkAPI interface {
	NetworkCreate(ctx context.Context, name string, options network.CreateOptions) (network.CreateResponse, error)
	NetworkInspect(ctx context.Context, networkID string, options network.InspectOptions) (network.Inspect, error)
	NetworkRemove(ctx context.Context, networkID string) error
	NetworkConnect(ctx context.Context, networkID, containerID string, config *network.EndpointSettings) error
}

// taskNetworks gives tasks their overlay networks: one engine network per
// swarm network, named after it and driven by the node's network plugin,
// created when a task first needs it and removed once no container uses
// it.
type taskNetworks struct {
	engine networkAPI // nil: the engine cannot do networks
	plugin string
	log    *slog.Logger
	// mu: attaching (create the network if missing, connect) holds it for
	// reading, removing an unused network for writing, so a network is
	// never removed between its creation and a container's connection.
	mu sync.RWMutex
	// create serialises looking up and creating engine networks: two
	// tasks starting at once must not both create one (an engine of API
	// < 1.44 accepts two networks of one name).
	create sync.Mutex
}

// attachment is one overlay network a task joins.
type attachment struct {
	id, name string
	vni      uint32
	subnet   netip.Prefix
	gateway  netip.Addr
	addr     netip.Addr
	aliases  []string
}

// taskAttachments are the overlay networks of t, ingress excepted, in
// order; an attachment the allocator has not completed is an error.
func taskAttachments(t *api.Task) ([]attachment, error) {
	var out []attachment
	for _, na := range t.GetNetworks() {
		nw := na.GetNetwork()
		if nw.GetSpec().GetIngress() {
			continue
		}
		a := attachment{id: nw.GetId(), name: nw.GetSpec().GetAnnotations().GetName(), vni: nw.GetVni()}
		if a.name == "" {
			a.name = a.id
		}
		if a.id == "" || a.vni == 0 || len(nw.GetIpam()) == 0 || len(na.GetAddresses()) == 0 {
			return nil, fmt.Errorf("executor: task %s: network %s is not allocated", t.GetId(), a.name)
		}
		var err error
		if a.subnet, err = netip.ParsePrefix(nw.GetIpam()[0].GetSubnet()); err != nil || !a.subnet.Addr().Is4() {
			return nil, fmt.Errorf("executor: task %s: network %s: subnet %q is not an IPv4 prefix", t.GetId(), a.name, nw.GetIpam()[0].GetSubnet())
		}
		if gw := nw.GetIpam()[0].GetGateway(); gw != "" {
			if a.gateway, err = netip.ParseAddr(gw); err != nil {
				return nil, fmt.Errorf("executor: task %s: network %s: gateway %q: %w", t.GetId(), a.name, gw, err)
			}
		}
		p, err := netip.ParsePrefix(na.GetAddresses()[0])
		if err != nil || !a.subnet.Contains(p.Addr()) {
			return nil, fmt.Errorf("executor: task %s: network %s: address %q is not in %s", t.GetId(), a.name, na.GetAddresses()[0], a.subnet)
		}
		a.addr = p.Addr()
		// The service's name is not an engine alias: swarmd's DNS
		// answers it (with the virtual IP, or all tasks across hosts).
		a.aliases = slices.Clone(na.GetAliases())
		out = append(out, a)
	}
	return out, nil
}

// taskDNS is the DNS server of a task attached to overlay networks: the
// resolver of its first network, on that network's gateway address, which
// answers the names of all its networks and forwards the rest. (With the
// engine's embedded DNS in the container, the engine answers the names it
// knows locally and forwards the others there.) None without overlays.
func taskDNS(atts []attachment) []string {
	for _, a := range atts {
		if a.gateway.IsValid() {
			return []string{a.gateway.String()}
		}
	}
	return nil
}

// createOptions are the engine network options of a's swarm network.
func (n *taskNetworks) createOptions(a attachment) network.CreateOptions {
	cfg := network.IPAMConfig{Subnet: a.subnet.String()}
	if a.gateway.IsValid() {
		cfg.Gateway = a.gateway.String()
	}
	return network.CreateOptions{
		Driver: n.plugin,
		IPAM:   &network.IPAM{Driver: n.plugin, Config: []network.IPAMConfig{cfg}},
		Options: map[string]string{
			optionVNI: strconv.FormatUint(uint64(a.vni), 10), optionNetworkID: a.id, optionNetworkName: a.name,
		},
		Labels: map[string]string{LabelNetworkID: a.id},
	}
}

// attach connects container id to the overlay networks of its task,
// creating their engine networks where missing.
func (n *taskNetworks) attach(ctx context.Context, id string, atts []attachment) error {
	if len(atts) == 0 {
		return nil
	}
	if n.plugin == "" || n.engine == nil {
		return ErrNoNetworkPlugin
	}
	n.mu.RLock()
	defer n.mu.RUnlock()
	for _, a := range atts {
		netID, err := n.ensure(ctx, a)
		if err != nil {
			return err
		}
		err = n.engine.NetworkConnect(ctx, netID, id, &network.EndpointSettings{
			IPAMConfig: &network.EndpointIPAMConfig{IPv4Address: a.addr.String()},
			Aliases:    a.aliases,
		})
		if err != nil {
			return classify("connect to network "+a.name, err)
		}
	}
	return nil
}

// ensure returns the engine network of a's swarm network, creating it if
// missing; another creating it at the same time is no error. An engine
// network of that name that is not the swarm network's is an error.
func (n *taskNetworks) ensure(ctx context.Context, a attachment) (string, error) {
	n.create.Lock()
	defer n.create.Unlock()
	for range 3 {
		ni, err := n.engine.NetworkInspect(ctx, a.name, network.InspectOptions{})
		switch {
		case err == nil && ni.Labels[LabelNetworkID] == a.id:
			return ni.ID, nil
		case err == nil:
			return "", fmt.Errorf("executor: engine network %s (%s) exists and is not swarm network %s", a.name, ni.ID, a.id)
		case !cerrdefs.IsNotFound(err):
			return "", classify("inspect network "+a.name, err)
		}
		resp, err := n.engine.NetworkCreate(ctx, a.name, n.createOptions(a))
		switch {
		case err == nil:
			n.log.InfoContext(ctx, "network created", "network.id", a.id, "network.name", a.name, "engine.network.id", resp.ID)
			return resp.ID, nil
		case cerrdefs.IsConflict(err):
			continue // created meanwhile: inspect it
		default:
			return "", classify("create network "+a.name, err)
		}
	}
	return "", fmt.Errorf("executor: network %s: created and removed concurrently", a.name)
}

// release removes the engine networks of atts that no container uses any
// more. A network still in use, or gone, is left alone.
func (n *taskNetworks) release(ctx context.Context, atts []attachment) {
	if len(atts) == 0 || n.engine == nil {
		return
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, a := range atts {
		ni, err := n.engine.NetworkInspect(ctx, a.name, network.InspectOptions{})
		if err != nil || ni.Labels[LabelNetworkID] != a.id || len(ni.Containers) > 0 {
			continue
		}
		err = n.engine.NetworkRemove(ctx, ni.ID)
		switch {
		case err == nil:
			n.log.InfoContext(ctx, "network removed", "network.id", a.id, "network.name", a.name, "engine.network.id", ni.ID)
		case cerrdefs.IsNotFound(err), cerrdefs.IsConflict(err):
			// Gone already, or in use by a container that is not a task.
		default:
			n.log.WarnContext(ctx, "network not removed", "network.id", a.id, "network.name", a.name, "error", err)
		}
	}
}
