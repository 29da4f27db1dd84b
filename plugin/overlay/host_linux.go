package overlay

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// ErrClosed is returned by the methods of a closed Host.
var ErrClosed = errors.New("overlay: host closed")

// namedNSDir is where named network namespaces are bind-mounted.
const namedNSDir = "/var/run/netns"

// Config configures a Host.
type Config struct {
	// VTEP is this host's underlay address, the source of VXLAN packets.
	VTEP netip.Addr
	// Port is the VXLAN UDP port; 0 means DefaultPort.
	Port int
	// NetNS is the host namespace: where the VXLAN sockets live and where
	// the engine finds the endpoints' devices. 0 (or negative) means
	// the caller's current namespace. The Host does not close it.
	NetNS netns.NsHandle
	// NSPrefix starts the names of the per-network namespaces; empty means
	// "swov-<VTEP>-", which keeps several hosts sharing one /var/run/netns
	// (test beds) apart.
	NSPrefix string
	// Logger receives one line per device change; nil means slog.Default().
	Logger *slog.Logger
}

// Host programs overlay networks on one host. It is safe for concurrent use.
type Host struct {
	vtep   netip.Addr
	port   int
	prefix string
	hostNS netns.NsHandle  // host namespace, where endpoint devices go for the engine
	ownNS  bool            // hostNS was opened here (closed by Close)
	nl     *netlink.Handle // host namespace
	log    *slog.Logger
	mu     sync.Mutex
	closed bool
	nets   map[string]*netNS // open network namespaces by network ID
}

// netNS is an open per-network namespace.
type netNS struct {
	name string
	ns   netns.NsHandle
	nl   *netlink.Handle
}

func (n *netNS) close() {
	n.nl.Close()
	n.ns.Close()
}

// New returns a Host for cfg. It changes nothing on the host.
func New(cfg Config) (*Host, error) {
	if !cfg.VTEP.Is4() {
		return nil, fmt.Errorf("overlay: VTEP %v is not an IPv4 address", cfg.VTEP)
	}
	port := cfg.Port
	if port == 0 {
		port = DefaultPort
	}
	if port < 1 || port > 65535 {
		return nil, fmt.Errorf("overlay: VXLAN port %d out of range", port)
	}
	prefix := cfg.NSPrefix
	if prefix == "" {
		prefix = "swov-" + cfg.VTEP.String() + "-"
	}
	if filepath.Base(prefix+"x") != prefix+"x" {
		return nil, fmt.Errorf("overlay: namespace prefix %q is not a file name", prefix)
	}
	hostNS, own := cfg.NetNS, false
	if hostNS <= 0 {
		cur, err := netns.Get()
		if err != nil {
			return nil, fmt.Errorf("overlay: host namespace: %w", err)
		}
		hostNS, own = cur, true
	}
	h, err := netlink.NewHandleAt(hostNS)
	if err != nil {
		if own {
			hostNS.Close()
		}
		return nil, fmt.Errorf("overlay: netlink handle: %w", err)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	return &Host{
		vtep: cfg.VTEP, port: port, prefix: prefix, hostNS: hostNS, ownNS: own, nl: h,
		log: log.With("component", "overlay"), nets: make(map[string]*netNS),
	}, nil
}

// VTEP returns this host's underlay address.
func (h *Host) VTEP() netip.Addr { return h.vtep }

// NamespaceName is the name (in /var/run/netns) of the namespace holding
// network id's VXLAN device and gateway device.
func (h *Host) NamespaceName(networkID string) string { return h.prefix + nameID(networkID) }

// NamespacePath is the path of network networkID's namespace, for setns.
func (h *Host) NamespacePath(networkID string) string {
	return filepath.Join(namedNSDir, h.NamespaceName(networkID))
}

// Close releases the netlink handles; devices and namespaces stay.
func (h *Host) Close() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.closed {
		h.closed = true
		for id, n := range h.nets {
			n.close()
			delete(h.nets, id)
		}
		h.nl.Close()
		if h.ownNS {
			h.hostNS.Close()
		}
	}
	return nil
}

// lockOpen takes h.mu for an operation of ctx: an error, without the
// lock, when ctx is done or h is closed.
func (h *Host) lockOpen(ctx context.Context) (unlock func(), err error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return nil, ErrClosed
	}
	return h.mu.Unlock, nil
}

// RemoveStale deletes this host's network namespaces (those named with its
// prefix) whose network is not one of keep, with their devices: what a
// swarm this host left, or a crash, left behind. A VXLAN device left over
// would hold its VNI and port and refuse a new network the same VNI.
func (h *Host) RemoveStale(keep []string) error {
	kept := make(map[string]bool, len(keep))
	for _, id := range keep {
		kept[nameID(id)] = true
	}
	entries, err := os.ReadDir(namedNSDir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("overlay: list namespaces: %w", err)
	}
	unlock, err := h.lockOpen(context.Background())
	if err != nil {
		return err
	}
	defer unlock()
	var errs []error
	for _, e := range entries {
		suffix, ok := strings.CutPrefix(e.Name(), h.prefix)
		if !ok || kept[suffix] {
			continue
		}
		if ns, err := netns.GetFromName(e.Name()); err == nil {
			if nl, err := netlink.NewHandleAt(ns); err == nil {
				errs = append(errs, delLink(nl, vxlanPrefix+suffix), delLink(nl, gatewayPrefix+suffix))
				nl.Close()
			}
			ns.Close()
		}
		if err := netns.DeleteNamed(e.Name()); err != nil && !errors.Is(err, os.ErrNotExist) {
			// A file that is no namespace mount (or one this mount
			// namespace does not see): remove the file.
			if rerr := os.Remove(filepath.Join(namedNSDir, e.Name())); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
				errs = append(errs, fmt.Errorf("overlay: delete namespace %s: %w", e.Name(), err))
			}
		}
		errs = append(errs, delLink(h.nl, vxlanPrefix+suffix))
		h.log.Info("stale network namespace removed", "netns", e.Name())
	}
	return errors.Join(errs...)
}

// underlayMTU is the MTU of the link holding the VTEP address, or 0.
func (h *Host) underlayMTU() int {
	addrs, err := h.nl.AddrList(nil, netlink.FAMILY_V4)
	if err != nil && !errors.Is(err, netlink.ErrDumpInterrupted) {
		return 0
	}
	for _, a := range addrs {
		ip, ok := netip.AddrFromSlice(a.IP)
		if !ok || ip.Unmap() != h.vtep {
			continue
		}
		if l, err := h.nl.LinkByIndex(a.LinkIndex); err == nil {
			return l.Attrs().MTU
		}
	}
	return 0
}

func isNotFound(err error) bool {
	var nf netlink.LinkNotFoundError
	return errors.As(err, &nf) || errors.Is(err, unix.ENODEV)
}

// openNS returns network id's namespace, creating it when create is set.
// Callers hold h.mu.
func (h *Host) openNS(id string, create bool) (*netNS, error) {
	if n, ok := h.nets[id]; ok {
		return n, nil
	}
	name := h.NamespaceName(id)
	ns, err := netns.GetFromName(name)
	if err == nil {
		nl, herr := netlink.NewHandleAt(ns)
		if herr == nil {
			// Adopted (a restart).
			n := &netNS{name: name, ns: ns, nl: nl}
			h.nets[id] = n
			return n, nil
		}
		ns.Close()
		if !create {
			return nil, fmt.Errorf("namespace %s: %w", name, herr)
		}
		// A file that is no namespace mount: a crash between creating the
		// file and mounting it. Start again.
		h.log.Warn("removing stale namespace file", "netns", name, "err", herr)
		if err := os.Remove(filepath.Join(namedNSDir, name)); err != nil {
			return nil, fmt.Errorf("namespace %s: %w", name, err)
		}
	} else if !errors.Is(err, os.ErrNotExist) || !create {
		return nil, fmt.Errorf("namespace %s: %w", name, err)
	}
	ns, err = newNamedNS(name)
	if err != nil {
		return nil, fmt.Errorf("create namespace %s: %w", name, err)
	}
	nl, err := netlink.NewHandleAt(ns)
	if err != nil {
		ns.Close()
		return nil, fmt.Errorf("namespace %s: %w", name, err)
	}
	n := &netNS{name: name, ns: ns, nl: nl}
	if lo, err := nl.LinkByName("lo"); err == nil {
		_ = nl.LinkSetUp(lo)
	}
	h.nets[id] = n
	h.log.Info("namespace created", "netns", name, "network.id", id)
	return n, nil
}

// newNamedNS creates a named namespace without moving the caller into it.
func newNamedNS(name string) (netns.NsHandle, error) {
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		return netns.None(), err
	}
	defer orig.Close()
	ns, err := netns.NewNamed(name)
	if serr := netns.Set(orig); serr != nil {
		// The thread stays locked so that it ends with its goroutine
		// instead of serving others in the wrong namespace.
		if err == nil {
			ns.Close()
		}
		return netns.None(), errors.Join(err, fmt.Errorf("restore namespace: %w", serr))
	}
	runtime.UnlockOSThread()
	if err != nil {
		_ = os.Remove(filepath.Join(namedNSDir, name))
		return netns.None(), err
	}
	return ns, nil
}

// EnsureNetwork creates, or adopts, the namespace, VXLAN device and
// gateway device of n.
func (h *Host) EnsureNetwork(ctx context.Context, n Network) error {
	if err := n.Validate(); err != nil {
		return err
	}
	unlock, err := h.lockOpen(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	o, err := h.openNS(n.ID, true)
	if err != nil {
		return fmt.Errorf("overlay: network %s: %w", n.ID, err)
	}
	mtu := mtuFor(n, h.underlayMTU())
	vx, err := h.ensureVXLAN(o, n, mtu)
	if err != nil {
		return fmt.Errorf("overlay: network %s: %w", n.ID, err)
	}
	if err := h.ensureGatewayDevice(o, n, vx, mtu); err != nil {
		return fmt.Errorf("overlay: network %s: %w", n.ID, err)
	}
	return nil
}

// macvlanOf is a macvlan device in bridge mode on parent: endpoints of one
// network on one host reach each other through it, and everything else
// through the VXLAN device, without a bridge or veth pair in the way.
func macvlanOf(name string, parent netlink.Link, mac net.HardwareAddr, mtu int) *netlink.Macvlan {
	return &netlink.Macvlan{
		LinkAttrs: netlink.LinkAttrs{Name: name, MTU: mtu, HardwareAddr: mac, ParentIndex: parent.Attrs().Index},
		Mode:      netlink.MACVLAN_MODE_BRIDGE,
	}
}

// ensureGatewayDevice gives network n's namespace a device on the VXLAN
// device holding exactly n's gateway address (the network's DNS server
// listens there), or none when n has no gateway.
func (h *Host) ensureGatewayDevice(o *netNS, n Network, vx netlink.Link, mtu int) error {
	name := GatewayName(n.ID)
	l, err := o.nl.LinkByName(name)
	switch {
	case err == nil:
		if _, ok := l.(*netlink.Macvlan); !ok || l.Attrs().ParentIndex != vx.Attrs().Index {
			if err := o.nl.LinkDel(l); err != nil {
				return fmt.Errorf("delete stale gateway device %s: %w", name, err)
			}
			l = nil
		}
	case !isNotFound(err):
		return fmt.Errorf("gateway device %s: %w", name, err)
	default:
		l = nil
	}
	if !n.Gateway.IsValid() {
		if l != nil {
			return o.nl.LinkDel(l)
		}
		return nil
	}
	if l == nil {
		if err := o.nl.LinkAdd(macvlanOf(name, vx, MACFromIP(n.Gateway), mtu)); err != nil {
			return fmt.Errorf("create gateway device %s: %w", name, err)
		}
		h.log.Info("gateway device created", "device", name, "netns", o.name, "gateway", n.Gateway.String(), "mtu", mtu)
		if l, err = o.nl.LinkByName(name); err != nil {
			return fmt.Errorf("gateway device %s: %w", name, err)
		}
	} else if l.Attrs().MTU != mtu {
		if err := o.nl.LinkSetMTU(l, mtu); err != nil {
			return fmt.Errorf("gateway device %s mtu: %w", name, err)
		}
	}
	if err := ensureGateway(o.nl, l, n); err != nil {
		return err
	}
	if err := o.nl.LinkSetUp(l); err != nil {
		return fmt.Errorf("gateway device %s up: %w", name, err)
	}
	return nil
}

// ensureGateway gives device l exactly the gateway address of n.
func ensureGateway(nl *netlink.Handle, l netlink.Link, n Network) error {
	have, err := nl.AddrList(l, netlink.FAMILY_V4)
	if err != nil {
		return fmt.Errorf("%s addresses: %w", l.Attrs().Name, err)
	}
	want := &netlink.Addr{IPNet: &net.IPNet{IP: n.Gateway.AsSlice(), Mask: net.CIDRMask(n.Subnet.Bits(), 32)}}
	found := false
	for _, a := range have {
		if a.IPNet.String() == want.IPNet.String() {
			found = true
			continue
		}
		if err := nl.AddrDel(l, &a); err != nil {
			return fmt.Errorf("%s: remove address %s: %w", l.Attrs().Name, a.IPNet, err)
		}
	}
	if found {
		return nil
	}
	if err := nl.AddrAdd(l, want); err != nil {
		return fmt.Errorf("%s: gateway %s: %w", l.Attrs().Name, want.IPNet, err)
	}
	return nil
}

func (h *Host) vxlanMatches(v *netlink.Vxlan, n Network) bool {
	src, _ := netip.AddrFromSlice(v.SrcAddr)
	return v.VxlanId == int(n.VNI) && v.Port == h.port && src.Unmap() == h.vtep &&
		!v.Learning && v.Proxy && !v.FlowBased
}

// ensureVXLAN adopts or creates network n's VXLAN device, up. It is
// created in the host namespace, so that its UDP socket lives there, and
// then moved into the network's namespace.
func (h *Host) ensureVXLAN(o *netNS, n Network, mtu int) (netlink.Link, error) {
	name := VXLANName(n.ID)
	l, err := o.nl.LinkByName(name)
	switch {
	case err == nil:
		v, ok := l.(*netlink.Vxlan)
		if ok && h.vxlanMatches(v, n) {
			if v.MTU != mtu {
				if err := o.nl.LinkSetMTU(v, mtu); err != nil {
					return nil, fmt.Errorf("vxlan %s mtu: %w", name, err)
				}
			}
			return v, up(o.nl, v)
		}
		h.log.Warn("vxlan device does not match network, recreating", "device", name, "network.id", n.ID, "vni", n.VNI)
		if err := o.nl.LinkDel(l); err != nil {
			return nil, fmt.Errorf("delete stale vxlan %s: %w", name, err)
		}
	case !isNotFound(err):
		return nil, fmt.Errorf("vxlan %s: %w", name, err)
	}
	// A device left in the host namespace by an interrupted creation.
	if err := delLink(h.nl, name); err != nil {
		return nil, err
	}
	v := &netlink.Vxlan{
		LinkAttrs: netlink.LinkAttrs{Name: name, MTU: mtu},
		VxlanId:   int(n.VNI),
		SrcAddr:   net.IP(h.vtep.AsSlice()),
		Port:      h.port,
		Learning:  false,
		Proxy:     true,
	}
	if err := h.nl.LinkAdd(v); err != nil {
		return nil, fmt.Errorf("create vxlan %s (vni %d): %w", name, n.VNI, err)
	}
	created, err := h.nl.LinkByName(name)
	if err != nil {
		return nil, fmt.Errorf("vxlan %s: %w", name, err)
	}
	if err := h.nl.LinkSetNsFd(created, int(o.ns)); err != nil {
		_ = h.nl.LinkDel(created)
		return nil, fmt.Errorf("move vxlan %s into %s: %w", name, o.name, err)
	}
	h.log.Info("vxlan created", "device", name, "netns", o.name, "network.id", n.ID, "vni", n.VNI, "port", h.port, "vtep", h.vtep.String())
	if created, err = o.nl.LinkByName(name); err != nil {
		return nil, fmt.Errorf("vxlan %s: %w", name, err)
	}
	return created, up(o.nl, created)
}

func up(nl *netlink.Handle, l netlink.Link) error {
	if err := nl.LinkSetUp(l); err != nil {
		return fmt.Errorf("%s up: %w", l.Attrs().Name, err)
	}
	return nil
}

// DeleteNetwork removes network id: its devices (the endpoint devices
// still on its VXLAN device go with it) and its namespace. A missing
// network is not an error.
func (h *Host) DeleteNetwork(ctx context.Context, networkID string) error {
	unlock, err := h.lockOpen(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	o, err := h.openNS(networkID, false)
	if err == nil {
		// Delete the VXLAN device first and synchronously: namespace
		// teardown is asynchronous and its VNI must be free at once.
		for _, name := range []string{GatewayName(networkID), VXLANName(networkID)} {
			if err := delLink(o.nl, name); err != nil {
				return fmt.Errorf("overlay: network %s: %w", networkID, err)
			}
		}
		o.close()
		delete(h.nets, networkID)
		if err := netns.DeleteNamed(o.name); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("overlay: network %s: delete namespace %s: %w", networkID, o.name, err)
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("overlay: network %s: %w", networkID, err)
	}
	if err := delLink(h.nl, VXLANName(networkID)); err != nil {
		return fmt.Errorf("overlay: network %s: %w", networkID, err)
	}
	h.log.Info("network deleted", "network.id", networkID)
	return nil
}

func delLink(nl *netlink.Handle, name string) error {
	l, err := nl.LinkByName(name)
	if isNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	if err := nl.LinkDel(l); err != nil && !isNotFound(err) {
		return fmt.Errorf("delete %s: %w", name, err)
	}
	return nil
}

// AddEndpoint creates (or adopts) the device of ep: a macvlan device on
// network id's VXLAN device, carrying ep's MAC, created in the network's
// namespace and moved to the host namespace, down, for the engine to move
// into the container. An endpoint whose device is already in a container
// (its MAC is taken on the VXLAN device) is left as it is.
func (h *Host) AddEndpoint(ctx context.Context, networkID string, ep Endpoint) (EndpointLink, error) {
	if ep.ID == "" {
		return EndpointLink{}, errors.New("overlay: endpoint ID is empty")
	}
	mac := ep.MAC
	if mac == nil {
		mac = MACFromIP(ep.IP)
	}
	if len(mac) != 6 {
		return EndpointLink{}, fmt.Errorf("overlay: endpoint %s: no MAC (IP %v)", ep.ID, ep.IP)
	}
	name := EndpointName(ep.ID)
	res := EndpointLink{ContainerName: name, MAC: mac}
	unlock, err := h.lockOpen(ctx)
	if err != nil {
		return res, err
	}
	defer unlock()
	o, vx, err := h.vxlanOf(networkID)
	if err != nil {
		return res, fmt.Errorf("overlay: endpoint %s: network %s: %w", ep.ID, networkID, err)
	}
	if err := h.forgetRemote(o, networkID, ep.IP, mac); err != nil {
		return res, fmt.Errorf("overlay: endpoint %s: %w", ep.ID, err)
	}
	if l, err := h.nl.LinkByName(name); err == nil {
		if m, ok := l.(*netlink.Macvlan); ok && slices.Equal(m.HardwareAddr, mac) {
			return res, nil // made before a restart, not joined yet
		}
		if err := h.nl.LinkDel(l); err != nil {
			return res, fmt.Errorf("overlay: endpoint %s: delete stale %s: %w", ep.ID, name, err)
		}
	} else if !isNotFound(err) {
		return res, fmt.Errorf("overlay: endpoint %s: %w", ep.ID, err)
	}
	// One left in the network's namespace by an interrupted creation.
	if err := delLink(o.nl, name); err != nil {
		return res, fmt.Errorf("overlay: endpoint %s: %w", ep.ID, err)
	}
	err = o.nl.LinkAdd(macvlanOf(name, vx, mac, vx.Attrs().MTU))
	if errors.Is(err, unix.EADDRINUSE) {
		return res, nil // the endpoint's device is in its container already
	}
	if err != nil {
		return res, fmt.Errorf("overlay: endpoint %s: create %s: %w", ep.ID, name, err)
	}
	l, err := o.nl.LinkByName(name)
	if err == nil {
		err = o.nl.LinkSetNsFd(l, int(h.hostNS))
	}
	if err != nil {
		_ = delLink(o.nl, name)
		return res, fmt.Errorf("overlay: endpoint %s: move %s to the host namespace: %w", ep.ID, name, err)
	}
	h.log.Info("endpoint created", "network.id", networkID, "endpoint.id", ep.ID, "device", name, "ip", ep.IP.String(), "mac", mac.String())
	return res, nil
}

// forgetRemote removes peer entries for an address or MAC that is now a
// local endpoint (it moved here): otherwise the VXLAN device would keep
// answering for it and sending its frames into the tunnel until the next
// Peers call.
func (h *Host) forgetRemote(o *netNS, networkID string, ip netip.Addr, mac net.HardwareAddr) error {
	vx, err := o.nl.LinkByName(VXLANName(networkID))
	if isNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	idx := vx.Attrs().Index
	current, stray, err := programmed(o.nl, idx)
	if err != nil {
		return err
	}
	for _, p := range current {
		if p.IP == ip || slices.Equal(p.MAC, mac) {
			if err := unprogram(o.nl, idx, p, true); err != nil {
				return fmt.Errorf("remove peer %s: %w", p, err)
			}
			h.log.Info("peer now local, entry removed", "network.id", networkID, "ip", p.IP.String(), "mac", p.MAC.String())
		}
	}
	for _, f := range stray {
		if slices.Equal(f.MAC, mac) {
			if err := delFDB(o.nl, idx, f.MAC, f.VTEP); err != nil {
				return err
			}
		}
	}
	return nil
}

// DeleteEndpoint removes the device of endpoint id on network networkID
// (the engine gives it back to the host namespace when the container
// leaves); a missing one is not an error.
func (h *Host) DeleteEndpoint(ctx context.Context, networkID, endpointID string) error {
	unlock, err := h.lockOpen(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	name := EndpointName(endpointID)
	if o, err := h.openNS(networkID, false); err == nil {
		if err := delLink(o.nl, name); err != nil {
			return fmt.Errorf("overlay: endpoint %s: %w", endpointID, err)
		}
	}
	if err := delLink(h.nl, name); err != nil {
		return fmt.Errorf("overlay: endpoint %s: %w", endpointID, err)
	}
	return nil
}

// vxlanOf returns network id's namespace and VXLAN device; callers hold h.mu.
func (h *Host) vxlanOf(networkID string) (*netNS, netlink.Link, error) {
	o, err := h.openNS(networkID, false)
	if err != nil {
		return nil, nil, err
	}
	vx, err := o.nl.LinkByName(VXLANName(networkID))
	if err != nil {
		return nil, nil, err
	}
	return o, vx, nil
}

// Peers makes the remote endpoints programmed for network id exactly peers:
// entries for new peers are added, changed ones replaced, gone ones removed.
// Peers on this host's own VTEP are ignored. Calling it twice with the same
// set changes nothing.
func (h *Host) Peers(ctx context.Context, networkID string, peers []Peer) error {
	unlock, err := h.lockOpen(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	o, vx, err := h.vxlanOf(networkID)
	if err != nil {
		return fmt.Errorf("overlay: peers of network %s: %w", networkID, err)
	}
	idx := vx.Attrs().Index
	current, strayFDB, err := programmed(o.nl, idx)
	if err != nil {
		return fmt.Errorf("overlay: peers of network %s: %w", networkID, err)
	}
	remove, add := DiffPeers(current, peers, h.vtep)
	keep := make(map[string]bool, len(peers))
	for _, p := range peers {
		if p.VTEP != h.vtep {
			keep[p.MAC.String()] = true
		}
	}
	for _, p := range remove {
		if err := unprogram(o.nl, idx, p, !keep[p.MAC.String()]); err != nil {
			return fmt.Errorf("overlay: network %s: remove peer %s: %w", networkID, p, err)
		}
	}
	for _, f := range strayFDB {
		if !keep[f.MAC.String()] {
			if err := delFDB(o.nl, idx, f.MAC, f.VTEP); err != nil {
				return fmt.Errorf("overlay: network %s: remove forwarding entry %s: %w", networkID, f.MAC, err)
			}
		}
	}
	for _, p := range add {
		if err := program(o.nl, idx, p); err != nil {
			return fmt.Errorf("overlay: network %s: add peer %s: %w", networkID, p, err)
		}
	}
	if len(remove)+len(add) > 0 {
		h.log.Info("peers programmed", "network.id", networkID, "added", len(add), "removed", len(remove), "total", len(current)-len(remove)+len(add))
	}
	return nil
}

// ListPeers returns the remote endpoints programmed for network id.
func (h *Host) ListPeers(ctx context.Context, networkID string) ([]Peer, error) {
	unlock, err := h.lockOpen(ctx)
	if err != nil {
		return nil, err
	}
	defer unlock()
	o, vx, err := h.vxlanOf(networkID)
	if err != nil {
		return nil, fmt.Errorf("overlay: peers of network %s: %w", networkID, err)
	}
	ps, _, err := programmed(o.nl, vx.Attrs().Index)
	if err != nil {
		return nil, fmt.Errorf("overlay: peers of network %s: %w", networkID, err)
	}
	sortPeers(ps)
	return ps, nil
}

// programmed reads back the peers programmed on the VXLAN device: permanent
// neighbour entries joined with the device's forwarding entries by MAC.
// Forwarding entries with no neighbour entry are returned as strays.
func programmed(nl *netlink.Handle, idx int) (peers, stray []Peer, err error) {
	neighs, err := nl.NeighList(idx, netlink.FAMILY_V4)
	if err != nil {
		return nil, nil, fmt.Errorf("list neighbours: %w", err)
	}
	fdb, err := nl.NeighList(idx, unix.AF_BRIDGE)
	if err != nil {
		return nil, nil, fmt.Errorf("list forwarding entries: %w", err)
	}
	vtepOf := make(map[string]netip.Addr)
	var selfFDB []Peer
	for _, f := range fdb {
		if f.LinkIndex != idx || f.Flags&netlink.NTF_SELF == 0 || f.IP == nil || len(f.HardwareAddr) != 6 || isZeroMAC(f.HardwareAddr) {
			continue
		}
		ip, _ := netip.AddrFromSlice(f.IP)
		vtepOf[f.HardwareAddr.String()] = ip.Unmap()
		selfFDB = append(selfFDB, Peer{MAC: f.HardwareAddr, VTEP: ip.Unmap()})
	}
	seen := make(map[string]bool)
	for _, n := range neighs {
		if n.LinkIndex != idx || n.State&netlink.NUD_PERMANENT == 0 || len(n.HardwareAddr) != 6 {
			continue
		}
		ip, ok := netip.AddrFromSlice(n.IP)
		if !ok {
			continue
		}
		key := n.HardwareAddr.String()
		seen[key] = true
		peers = append(peers, Peer{IP: ip.Unmap(), MAC: n.HardwareAddr, VTEP: vtepOf[key]})
	}
	for _, f := range selfFDB {
		if !seen[f.MAC.String()] {
			stray = append(stray, f)
		}
	}
	return peers, stray, nil
}

func isZeroMAC(m net.HardwareAddr) bool {
	for _, b := range m {
		if b != 0 {
			return false
		}
	}
	return true
}

func program(nl *netlink.Handle, idx int, p Peer) error {
	// The VXLAN device's own table: MAC -> remote VTEP.
	if err := nl.NeighSet(&netlink.Neigh{
		LinkIndex: idx, Family: unix.AF_BRIDGE, State: netlink.NUD_PERMANENT,
		Flags: netlink.NTF_SELF, HardwareAddr: p.MAC, IP: net.IP(p.VTEP.AsSlice()),
	}); err != nil {
		return fmt.Errorf("vxlan forwarding entry: %w", err)
	}
	// The neighbour entry the VXLAN device answers ARP requests from.
	if err := nl.NeighSet(&netlink.Neigh{
		LinkIndex: idx, Family: netlink.FAMILY_V4, State: netlink.NUD_PERMANENT,
		HardwareAddr: p.MAC, IP: net.IP(p.IP.AsSlice()),
	}); err != nil {
		return fmt.Errorf("neighbour entry: %w", err)
	}
	return nil
}

func unprogram(nl *netlink.Handle, idx int, p Peer, fdbToo bool) error {
	err := nl.NeighDel(&netlink.Neigh{
		LinkIndex: idx, Family: netlink.FAMILY_V4, IP: net.IP(p.IP.AsSlice()),
	})
	if err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("neighbour entry: %w", err)
	}
	if !fdbToo {
		return nil
	}
	return delFDB(nl, idx, p.MAC, p.VTEP)
}

// delFDB removes the VXLAN forwarding entry mac -> vtep (none when vtep is
// not valid).
func delFDB(nl *netlink.Handle, idx int, mac net.HardwareAddr, vtep netip.Addr) error {
	if !vtep.IsValid() {
		return nil
	}
	err := nl.NeighDel(&netlink.Neigh{
		LinkIndex: idx, Family: unix.AF_BRIDGE, Flags: netlink.NTF_SELF, HardwareAddr: mac, IP: net.IP(vtep.AsSlice()),
	})
	if err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("forwarding entry %s: %w", mac, err)
	}
	return nil
}
