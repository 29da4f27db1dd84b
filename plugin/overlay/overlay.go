// Package overlay is the data plane of swarmd's overlay networks on one host.
//
// Every overlay network has its own network namespace (NamespaceName, a
// named namespace in /var/run/netns) holding a VXLAN device named after the
// network ID (VXLANName), and, when the network has a gateway address, a
// gateway device holding it (GatewayName; the network's DNS server listens
// there). The VXLAN device is created in the host namespace and moved into
// the network's, so its UDP socket (port 4789 by default) is the host's.
// Containers attach through macvlan devices (bridge mode) on the VXLAN
// device, named after the endpoint ID (EndpointName): each is created in
// the network's namespace and moved to the host namespace for the engine to
// move into the container. Endpoints of one network on one host reach each
// other through the macvlan switch; frames to other hosts go straight into
// the VXLAN device, from this host's VTEP address to the peer's VTEP
// address: no bridge and no veth pair on the way, which costs a frame two
// device hops and a bridge less at each end.
//
// Keeping the VXLAN device out of the host namespace means the host's
// firewall (an engine's FORWARD policy, bridge netfilter) never sees overlay
// traffic, overlay addresses never enter the host's neighbour table, and
// networks may even use overlapping subnets.
//
// Control plane: there is no multicast and no learning. The VXLAN device is
// created with learning off and with ARP proxying on; for every REMOTE
// endpoint swarmd programs, on the VXLAN device,
//
//   - a forwarding entry MAC -> remote VTEP (the VXLAN device's own table),
//   - a permanent neighbour entry IP -> MAC, which the VXLAN device uses to
//     answer ARP requests from local containers itself.
//
// Broadcast and unknown-destination frames therefore never leave the host:
// the VXLAN device has no default destination.
//
// Endpoint MAC addresses are derived from the endpoint's IPv4 address
// (MACFromIP), so a host can program a remote endpoint knowing only its IP
// and its host's VTEP.
//
// Gateway: the gateway device holds the subnet's gateway address, in the
// network's own namespace, so that swarmd's DNS server for the network can
// listen there (package resolver); containers get no default route through
// it, only the connected route of the overlay subnet. Every host holds the
// same gateway address, and no host answers for another's: ARP requests
// from local containers reach the local gateway device through the macvlan
// switch, and the VXLAN device never forwards broadcasts. Nothing routes
// between two overlay networks or between an overlay and the outside (the
// namespace has no other interface): networks are isolated by construction
// (different namespaces, VXLAN devices and VNIs). External connectivity, when a container
// needs it, comes from the engine's own default gateway network (the engine
// attaches one when no network of the container provides a gateway).
//
// Restart safety: all state lives in the kernel. EnsureNetwork adopts an
// existing namespace, VXLAN device and gateway device when they match the
// definition (and only recreates a VXLAN device whose VNI, port or VTEP
// changed, which takes the endpoint devices on it along); AddEndpoint
// adopts an existing endpoint device; Peers reads the programmed entries
// back from the kernel and applies only the difference.
package overlay

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
)

// DefaultPort is the IANA VXLAN UDP port.
const DefaultPort = 4789

// vxlanOverhead is what VXLAN encapsulation adds to an inner frame over IPv4:
// outer IPv4 (20) + UDP (8) + VXLAN (8) + inner Ethernet (14).
const vxlanOverhead = 50

// MaxVNI is the largest VXLAN network identifier (24 bits).
const MaxVNI = 1<<24 - 1

// Device name prefixes. Interface names are at most 15 bytes.
const (
	gatewayPrefix  = "ovg"
	vxlanPrefix    = "ovx"
	endpointPrefix = "ovc"
	nameIDLen      = 12
)

// Network is the definition of one overlay network on this host.
type Network struct {
	// ID identifies the network across the cluster; device names derive from it.
	ID string
	// Name is informational only.
	Name string
	// VNI is the VXLAN network identifier, 1..MaxVNI, the same on every host.
	VNI uint32
	// Subnet is the network's IPv4 subnet.
	Subnet netip.Prefix
	// Gateway is the subnet's reserved gateway address, held by the
	// network's gateway device; none when invalid.
	Gateway netip.Addr
	// MTU of the VXLAN, gateway and endpoint devices; 0 means underlay
	// MTU - 50.
	MTU int
}

// Validate reports whether n can be programmed.
func (n Network) Validate() error {
	switch {
	case n.ID == "":
		return errors.New("overlay: network ID is empty")
	case n.VNI == 0 || n.VNI > MaxVNI:
		return fmt.Errorf("overlay: network %s: VNI %d out of range 1..%d", n.ID, n.VNI, MaxVNI)
	case !n.Subnet.IsValid() || !n.Subnet.Addr().Is4():
		return fmt.Errorf("overlay: network %s: subnet %v is not an IPv4 prefix", n.ID, n.Subnet)
	case n.Gateway.IsValid() && !n.Subnet.Contains(n.Gateway):
		return fmt.Errorf("overlay: network %s: gateway %v outside subnet %v", n.ID, n.Gateway, n.Subnet)
	case n.MTU < 0 || (n.MTU > 0 && n.MTU < 68):
		return fmt.Errorf("overlay: network %s: MTU %d too small", n.ID, n.MTU)
	}
	return nil
}

// Endpoint is a local container attachment.
type Endpoint struct {
	// ID identifies the endpoint; its device's name derives from it.
	ID string
	// IP is the endpoint's IPv4 address in the network's subnet.
	IP netip.Addr
	// MAC is the container-side MAC; nil means MACFromIP(IP).
	MAC net.HardwareAddr
}

// EndpointLink is an endpoint's device.
type EndpointLink struct {
	// ContainerName is the device left in the host namespace for the
	// engine to move into the container's namespace.
	ContainerName string
	// MAC is the device's address.
	MAC net.HardwareAddr
}

// Peer is a remote endpoint: its overlay address, MAC and host VTEP.
type Peer struct {
	IP   netip.Addr
	MAC  net.HardwareAddr
	VTEP netip.Addr
}

func (p Peer) String() string {
	return fmt.Sprintf("%s/%s@%s", p.IP, p.MAC, p.VTEP)
}

func (p Peer) equal(q Peer) bool {
	return p.IP == q.IP && p.VTEP == q.VTEP && slices.Equal(p.MAC, q.MAC)
}

// MACFromIP derives the MAC of an overlay endpoint from its IPv4 address:
// 02:73 (locally administered, unicast) followed by the four address bytes.
// It returns nil for anything but an IPv4 address.
func MACFromIP(ip netip.Addr) net.HardwareAddr {
	if !ip.Is4() && !ip.Is4In6() {
		return nil
	}
	b := ip.Unmap().As4()
	return net.HardwareAddr{0x02, 0x73, b[0], b[1], b[2], b[3]}
}

// nameID turns an ID into the 12-character part of a device name: the ID's
// own prefix when it is lower-case alphanumeric, else a hash of it.
func nameID(id string) string {
	if len(id) >= nameIDLen && strings.IndexFunc(id[:nameIDLen], func(r rune) bool {
		return (r < 'a' || r > 'z') && (r < '0' || r > '9')
	}) < 0 {
		return id[:nameIDLen]
	}
	sum := sha256.Sum256([]byte(id))
	return hex.EncodeToString(sum[:])[:nameIDLen]
}

// GatewayName is the name of the gateway device of network id.
func GatewayName(networkID string) string { return gatewayPrefix + nameID(networkID) }

// VXLANName is the name of the VXLAN device of network id.
func VXLANName(networkID string) string { return vxlanPrefix + nameID(networkID) }

// EndpointName is the name of the device of endpoint id (until the engine
// renames it in the container).
func EndpointName(endpointID string) string { return endpointPrefix + nameID(endpointID) }

// DiffPeers compares the programmed peers with the desired ones and returns
// the peers to remove and the peers to add, both keyed by IP. A peer whose
// MAC or VTEP changed is removed and added again. Desired peers whose VTEP is
// local (the given address) are ignored, and so are invalid ones; for
// duplicate IPs the last one wins.
func DiffPeers(current, desired []Peer, local netip.Addr) (remove, add []Peer) {
	want := make(map[netip.Addr]Peer, len(desired))
	for _, p := range desired {
		if !p.IP.IsValid() || !p.VTEP.IsValid() || len(p.MAC) != 6 || p.VTEP == local {
			continue
		}
		want[p.IP] = p
	}
	have := make(map[netip.Addr]Peer, len(current))
	for _, p := range current {
		have[p.IP] = p
		if w, ok := want[p.IP]; !ok || !w.equal(p) {
			remove = append(remove, p)
		}
	}
	for ip, w := range want {
		if h, ok := have[ip]; !ok || !h.equal(w) {
			add = append(add, w)
		}
	}
	sortPeers(remove)
	sortPeers(add)
	return remove, add
}

func sortPeers(ps []Peer) {
	slices.SortFunc(ps, func(a, b Peer) int { return a.IP.Compare(b.IP) })
}

// mtuFor returns the MTU to use for n over an underlay of the given MTU.
func mtuFor(n Network, underlayMTU int) int {
	if n.MTU > 0 {
		return n.MTU
	}
	if underlayMTU <= 0 {
		underlayMTU = 1500
	}
	return underlayMTU - vxlanOverhead
}
