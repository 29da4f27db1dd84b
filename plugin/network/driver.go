// Package network is swarmd's overlay network driver for the engine: a
// remote network driver whose data plane is plugin/overlay.
//
// The engine creates a network with
//
//	docker network create -d NAME --ipam-driver NAME --subnet S [--gateway G] -o swarmd.vni=V [-o swarmd.network.id=ID]
//
// and attaches containers to it with their allocator-chosen address (--ip).
// The driver reports local scope (the engine keeps no global datastore
// here: every host creates the network itself with the same VNI and
// subnet) and global connectivity scope (its endpoints span hosts); the
// engine lists such a network with scope "local".
// Remote endpoints are programmed by swarmd, not by the engine, through
// Driver.Peers.
//
// Joined containers get an eth interface on the overlay and no gateway from
// it (see package overlay): the engine provides external connectivity
// through its own default gateway network if the container has no other
// network.
//
// Network definitions and endpoints are kept in a state directory (one JSON
// file per network, written atomically) so a restarted driver knows the
// networks the engine created before, and recreates their devices after a
// reboot; existing devices are adopted as they are.
package network

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	helpers "github.com/docker/go-plugins-helpers/network"

	"github.com/openswarm/swarmd/plugin/overlay"
)

// opTimeout bounds one engine request's work on the data plane.
const opTimeout = 30 * time.Second

// Config configures a Driver.
type Config struct {
	// Host is the data plane (required).
	Host *overlay.Host
	// StateDir keeps the network definitions across restarts (required).
	StateDir string
	// Logger; nil means slog.Default().
	Logger *slog.Logger
	// Observer, if set, learns of networks and of endpoints joined to
	// containers (service discovery follows them).
	Observer Observer
}

// Observer learns which networks exist on this host and which container
// sandboxes their endpoints are in. Network IDs are swarm network IDs
// (overlay.Network.ID). Its methods are called with the driver's lock
// held, in order, and must not call the Driver.
type Observer interface {
	// NetworkUp: n's devices exist, in the namespace at nsPath.
	NetworkUp(n overlay.Network, nsPath string)
	// NetworkDown: networkID's devices are gone.
	NetworkDown(networkID string)
	// EndpointUp: endpoint endpointID with address ip joined the
	// container whose network namespace is (or will be) at sandboxKey.
	EndpointUp(networkID, endpointID string, ip netip.Addr, sandboxKey string)
	// EndpointDown: endpoint endpointID left its container.
	EndpointDown(networkID, endpointID string)
}

// nopObserver observes nothing.
type nopObserver struct{}

func (nopObserver) NetworkUp(overlay.Network, string)             {}
func (nopObserver) NetworkDown(string)                            {}
func (nopObserver) EndpointUp(string, string, netip.Addr, string) {}
func (nopObserver) EndpointDown(string, string)                   {}

// Driver implements the engine's remote network driver interface.
type Driver struct {
	host  *overlay.Host
	dir   string
	log   *slog.Logger
	obs   Observer
	mu    sync.Mutex
	nets  map[string]*netState // by engine network ID
	peers map[string][]overlay.Peer
}

var _ helpers.Driver = (*Driver)(nil)

// netState is what the driver remembers of one engine network.
type netState struct {
	EngineID  string                     `json:"engine_id"`
	Network   overlay.Network            `json:"network"`
	Endpoints map[string]*endpointRecord `json:"endpoints"`
}

type endpointRecord struct {
	IP  netip.Addr `json:"ip"`
	MAC string     `json:"mac"`
	// SandboxKey is the network namespace of the container the endpoint
	// joined; empty while it is not joined.
	SandboxKey string `json:"sandbox_key,omitempty"`
}

// New loads the state directory and makes sure the devices of every known
// network exist (adopting those that do). A network whose devices cannot be
// restored is logged, not fatal.
func New(ctx context.Context, cfg Config) (*Driver, error) {
	if cfg.Host == nil {
		return nil, errors.New("swarmd overlay: no data plane host")
	}
	if cfg.StateDir == "" {
		return nil, errors.New("swarmd overlay: no state directory")
	}
	if err := os.MkdirAll(cfg.StateDir, 0o700); err != nil {
		return nil, fmt.Errorf("swarmd overlay: state directory: %w", err)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	d := &Driver{
		host: cfg.Host, dir: cfg.StateDir, log: log.With("component", "overlay-driver"),
		nets: make(map[string]*netState), peers: make(map[string][]overlay.Peer),
		obs: cfg.Observer,
	}
	if d.obs == nil {
		d.obs = nopObserver{}
	}
	files, err := filepath.Glob(filepath.Join(cfg.StateDir, "*.json"))
	if err != nil {
		return nil, fmt.Errorf("swarmd overlay: state directory: %w", err)
	}
	var states []*netState
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("swarmd overlay: read state: %w", err)
		}
		var st netState
		if err := json.Unmarshal(b, &st); err != nil || st.EngineID == "" {
			d.log.Warn("ignoring unreadable network state", "file", f, "err", err)
			continue
		}
		states = append(states, &st)
	}
	// Namespaces and devices of networks this state does not know (a
	// swarm the node left, a crash before the state was written) go.
	keep := make([]string, 0, len(states))
	for _, st := range states {
		keep = append(keep, st.Network.ID)
	}
	if err := d.host.RemoveStale(keep); err != nil {
		d.log.Warn("removing stale networks", "err", err)
	}
	for _, st := range states {
		if st.Endpoints == nil {
			st.Endpoints = make(map[string]*endpointRecord)
		}
		// A network that cannot be restored stays known, so the engine can
		// still delete it; its endpoints fail until it is recreated.
		d.nets[st.EngineID] = st
		if err := d.host.EnsureNetwork(ctx, st.Network); err != nil {
			d.log.Error("network not restored", "network.id", st.Network.ID, "engine.network.id", st.EngineID, "err", err)
			continue
		}
		d.obs.NetworkUp(st.Network, d.host.NamespacePath(st.Network.ID))
		for epID, ep := range st.Endpoints {
			if ep.SandboxKey != "" {
				d.obs.EndpointUp(st.Network.ID, epID, ep.IP, ep.SandboxKey)
			}
		}
		d.log.Info("network restored", "network.id", st.Network.ID, "engine.network.id", st.EngineID, "vni", st.Network.VNI, "endpoints", len(st.Endpoints))
	}
	return d, nil
}

// op starts one engine request's work: it takes d.mu and gives the
// request opTimeout on the data plane; done releases both.
func (d *Driver) op() (ctx context.Context, done func()) {
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	d.mu.Lock()
	return ctx, func() {
		d.mu.Unlock()
		cancel()
	}
}

func (d *Driver) save(st *netState) error {
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	path := filepath.Join(d.dir, st.EngineID+".json")
	tmp, err := os.CreateTemp(d.dir, ".tmp-*")
	if err != nil {
		return fmt.Errorf("swarmd overlay: save state: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return fmt.Errorf("swarmd overlay: save state: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("swarmd overlay: save state: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("swarmd overlay: save state: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("swarmd overlay: save state: %w", err)
	}
	return nil
}

func validEngineID(id string) error {
	if id == "" || strings.ContainsAny(id, `/\.`) {
		return fmt.Errorf("swarmd overlay: invalid network ID %q", id)
	}
	return nil
}

// network returns the state of engine network id; callers hold d.mu.
func (d *Driver) network(id string) (*netState, error) {
	st, ok := d.nets[id]
	if !ok {
		return nil, fmt.Errorf("swarmd overlay: network %s not found", id)
	}
	return st, nil
}

// Peers programs the remote endpoints of a network: networkID is the swarm
// network ID (OptionNetworkID) or the engine's network ID. The set replaces
// the previous one; endpoints on this host's VTEP are ignored. It is
// remembered and applied again when the network is (re)created, until an
// empty set for a network this host does not have forgets it.
func (d *Driver) Peers(ctx context.Context, networkID string, peers []overlay.Peer) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	id := networkID
	if st, ok := d.nets[networkID]; ok {
		id = st.Network.ID
	}
	known := d.knownLocked(id)
	switch {
	case len(peers) == 0 && !known:
		delete(d.peers, id) // nothing to remember
	default:
		d.peers[id] = append([]overlay.Peer(nil), peers...)
	}
	if !known {
		return nil // applied by CreateNetwork
	}
	return d.host.Peers(ctx, id, peers)
}

func (d *Driver) knownLocked(overlayID string) bool {
	for _, st := range d.nets {
		if st.Network.ID == overlayID {
			return true
		}
	}
	return false
}

// Network returns the overlay definition of an engine or swarm network ID.
func (d *Driver) Network(id string) (overlay.Network, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, st := range d.nets {
		if st.EngineID == id || st.Network.ID == id {
			return st.Network, true
		}
	}
	return overlay.Network{}, false
}

// GetCapabilities implements helpers.Driver.
func (d *Driver) GetCapabilities() (*helpers.CapabilitiesResponse, error) {
	return &helpers.CapabilitiesResponse{Scope: helpers.LocalScope, ConnectivityScope: helpers.GlobalScope}, nil
}

// CreateNetwork implements helpers.Driver.
func (d *Driver) CreateNetwork(req *helpers.CreateNetworkRequest) error {
	if err := validEngineID(req.NetworkID); err != nil {
		return err
	}
	n, err := ParseNetwork(req)
	if err != nil {
		return err
	}
	ctx, done := d.op()
	defer done()
	for _, other := range d.nets {
		if other.EngineID != req.NetworkID && (other.Network.ID == n.ID || other.Network.VNI == n.VNI) {
			return fmt.Errorf("swarmd overlay: network %s (VNI %d) conflicts with engine network %s (%s, VNI %d)",
				n.ID, n.VNI, other.EngineID, other.Network.ID, other.Network.VNI)
		}
	}
	if st, ok := d.nets[req.NetworkID]; ok && st.Network.ID != n.ID {
		// The same engine network now stands for another swarm network.
		if err := d.host.DeleteNetwork(ctx, st.Network.ID); err != nil {
			return err
		}
		d.obs.NetworkDown(st.Network.ID)
	}
	if err := d.host.EnsureNetwork(ctx, n); err != nil {
		return err
	}
	d.obs.NetworkUp(n, d.host.NamespacePath(n.ID))
	st := d.nets[req.NetworkID]
	if st == nil {
		st = &netState{EngineID: req.NetworkID, Endpoints: make(map[string]*endpointRecord)}
	}
	st.Network = n
	if err := d.save(st); err != nil {
		return err
	}
	d.nets[req.NetworkID] = st
	d.log.Info("network created", "network.id", n.ID, "engine.network.id", req.NetworkID, "vni", n.VNI, "subnet", n.Subnet.String())
	if ps, ok := d.peers[n.ID]; ok {
		if err := d.host.Peers(ctx, n.ID, ps); err != nil {
			return err
		}
	}
	return nil
}

// DeleteNetwork implements helpers.Driver.
func (d *Driver) DeleteNetwork(req *helpers.DeleteNetworkRequest) error {
	ctx, done := d.op()
	defer done()
	st, ok := d.nets[req.NetworkID]
	if !ok {
		return nil
	}
	if err := d.host.DeleteNetwork(ctx, st.Network.ID); err != nil {
		return err
	}
	for epID, ep := range st.Endpoints {
		if ep.SandboxKey != "" {
			d.obs.EndpointDown(st.Network.ID, epID)
		}
	}
	d.obs.NetworkDown(st.Network.ID)
	if err := os.Remove(filepath.Join(d.dir, req.NetworkID+".json")); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("swarmd overlay: remove state: %w", err)
	}
	delete(d.nets, req.NetworkID)
	// The peers stay: the network may be created again (the last task
	// using it left, another arrives) before they change.
	d.log.Info("network deleted", "network.id", st.Network.ID, "engine.network.id", req.NetworkID)
	return nil
}

// AllocateNetwork implements helpers.Driver; only swarm-scoped engine
// networks use it, and swarmd allocates networks itself.
func (d *Driver) AllocateNetwork(*helpers.AllocateNetworkRequest) (*helpers.AllocateNetworkResponse, error) {
	return &helpers.AllocateNetworkResponse{}, nil
}

// FreeNetwork implements helpers.Driver.
func (d *Driver) FreeNetwork(*helpers.FreeNetworkRequest) error { return nil }

// CreateEndpoint implements helpers.Driver: it records the endpoint and
// returns the MAC derived from its address unless the engine chose one.
func (d *Driver) CreateEndpoint(req *helpers.CreateEndpointRequest) (*helpers.CreateEndpointResponse, error) {
	if req.Interface == nil || req.Interface.Address == "" {
		return nil, errors.New("swarmd overlay: endpoint has no IPv4 address (the swarmd IPAM driver must provide it)")
	}
	if req.Interface.AddressIPv6 != "" {
		return nil, errors.New("swarmd overlay: IPv6 is not supported")
	}
	ip, err := parseEndpointAddress(req.Interface.Address)
	if err != nil {
		return nil, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	st, err := d.network(req.NetworkID)
	if err != nil {
		return nil, err
	}
	if !st.Network.Subnet.Contains(ip) {
		return nil, fmt.Errorf("swarmd overlay: endpoint address %s is outside subnet %s", ip, st.Network.Subnet)
	}
	res := &helpers.CreateEndpointResponse{}
	mac := overlay.MACFromIP(ip)
	if req.Interface.MacAddress != "" {
		if mac, err = net.ParseMAC(req.Interface.MacAddress); err != nil {
			return nil, fmt.Errorf("swarmd overlay: endpoint MAC %q: %w", req.Interface.MacAddress, err)
		}
	} else {
		res.Interface = &helpers.EndpointInterface{MacAddress: mac.String()}
	}
	st.Endpoints[req.EndpointID] = &endpointRecord{IP: ip, MAC: mac.String()}
	if err := d.save(st); err != nil {
		delete(st.Endpoints, req.EndpointID)
		return nil, err
	}
	d.log.Info("endpoint created", "network.id", st.Network.ID, "endpoint.id", req.EndpointID, "ip", ip.String(), "mac", mac.String())
	return res, nil
}

// DeleteEndpoint implements helpers.Driver.
func (d *Driver) DeleteEndpoint(req *helpers.DeleteEndpointRequest) error {
	ctx, done := d.op()
	defer done()
	st, ok := d.nets[req.NetworkID]
	if !ok {
		return nil
	}
	if err := d.host.DeleteEndpoint(ctx, st.Network.ID, req.EndpointID); err != nil {
		return err
	}
	ep, ok := st.Endpoints[req.EndpointID]
	if !ok {
		return nil
	}
	if ep.SandboxKey != "" { // deleted without a Leave
		d.obs.EndpointDown(st.Network.ID, req.EndpointID)
	}
	delete(st.Endpoints, req.EndpointID)
	return d.save(st)
}

// endpoint finds an endpoint of an engine network. Callers hold d.mu.
func (d *Driver) endpoint(netID, epID string) (*netState, *endpointRecord, error) {
	st, err := d.network(netID)
	if err != nil {
		return nil, nil, err
	}
	ep, ok := st.Endpoints[epID]
	if !ok {
		return nil, nil, fmt.Errorf("swarmd overlay: endpoint %s not found", epID)
	}
	return st, ep, nil
}

// EndpointInfo implements helpers.Driver.
func (d *Driver) EndpointInfo(req *helpers.InfoRequest) (*helpers.InfoResponse, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	st, ep, err := d.endpoint(req.NetworkID, req.EndpointID)
	if err != nil {
		return nil, err
	}
	return &helpers.InfoResponse{Value: map[string]string{
		"swarmd.ip": ep.IP.String(), "swarmd.mac": ep.MAC, "swarmd.device": overlay.EndpointName(req.EndpointID),
		"swarmd.vni": fmt.Sprint(st.Network.VNI),
	}}, nil
}

// Join implements helpers.Driver: it creates the endpoint's device on the
// network's VXLAN device and hands it to the engine. No gateway
// and no static routes: the subnet route comes with the address.
func (d *Driver) Join(req *helpers.JoinRequest) (*helpers.JoinResponse, error) {
	ctx, done := d.op()
	defer done()
	st, ep, err := d.endpoint(req.NetworkID, req.EndpointID)
	if err != nil {
		return nil, err
	}
	mac, err := net.ParseMAC(ep.MAC)
	if err != nil {
		return nil, fmt.Errorf("swarmd overlay: endpoint %s MAC: %w", req.EndpointID, err)
	}
	// Heal a network whose devices went away (or were never restored):
	// adopting existing devices is cheap, and so is re-applying peers.
	if err := d.host.EnsureNetwork(ctx, st.Network); err != nil {
		return nil, err
	}
	if ps, ok := d.peers[st.Network.ID]; ok {
		if err := d.host.Peers(ctx, st.Network.ID, ps); err != nil {
			return nil, err
		}
	}
	link, err := d.host.AddEndpoint(ctx, st.Network.ID, overlay.Endpoint{ID: req.EndpointID, IP: ep.IP, MAC: mac})
	if err != nil {
		return nil, err
	}
	if ep.SandboxKey != req.SandboxKey {
		ep.SandboxKey = req.SandboxKey
		if err := d.save(st); err != nil {
			return nil, err
		}
	}
	if req.SandboxKey != "" {
		d.obs.EndpointUp(st.Network.ID, req.EndpointID, ep.IP, req.SandboxKey)
	}
	return &helpers.JoinResponse{
		InterfaceName: helpers.InterfaceName{SrcName: link.ContainerName, DstPrefix: "eth"},
	}, nil
}

// Leave implements helpers.Driver: it removes the endpoint's device.
func (d *Driver) Leave(req *helpers.LeaveRequest) error {
	ctx, done := d.op()
	defer done()
	st, err := d.network(req.NetworkID)
	if err != nil {
		return err
	}
	if err := d.host.DeleteEndpoint(ctx, st.Network.ID, req.EndpointID); err != nil {
		return err
	}
	d.obs.EndpointDown(st.Network.ID, req.EndpointID)
	if ep, ok := st.Endpoints[req.EndpointID]; ok && ep.SandboxKey != "" {
		ep.SandboxKey = ""
		return d.save(st)
	}
	return nil
}

// DiscoverNew implements helpers.Driver; swarmd programs peers itself.
func (d *Driver) DiscoverNew(*helpers.DiscoveryNotification) error { return nil }

// DiscoverDelete implements helpers.Driver.
func (d *Driver) DiscoverDelete(*helpers.DiscoveryNotification) error { return nil }

// ProgramExternalConnectivity implements helpers.Driver: overlay endpoints
// publish no ports (the routing mesh does).
func (d *Driver) ProgramExternalConnectivity(*helpers.ProgramExternalConnectivityRequest) error {
	return nil
}

// RevokeExternalConnectivity implements helpers.Driver.
func (d *Driver) RevokeExternalConnectivity(*helpers.RevokeExternalConnectivityRequest) error {
	return nil
}
