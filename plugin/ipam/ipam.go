// Package ipam is swarmd's IPAM driver for the engine: it hands out exactly
// the subnets and addresses the swarm allocator chose and decides nothing
// itself.
//
// The subnet arrives as the network's IPAM pool (--subnet), the gateway as
// its gateway (--gateway, else the subnet's first address), and every
// endpoint's address as the endpoint's requested IPv4 address (--ip). A
// request for an endpoint without an address is refused: only the allocator
// may pick addresses, since it alone sees the whole cluster.
//
// The driver is stateless: a pool ID encodes its subnet, so nothing is
// remembered between calls or across restarts, and no host can hand out an
// address another host also hands out unless the allocator said so.
// Exhaustion and double allocation are the allocator's business.
package ipam

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"

	helpers "github.com/docker/go-plugins-helpers/ipam"
)

// AddressSpace is the address space name the driver reports for both
// scopes.
const AddressSpace = "swarmd"

// poolIDPrefix starts every pool ID; the subnet follows.
const poolIDPrefix = "swarmd:"

// Engine request option naming the kind of address requested.
const (
	optRequestAddressType = "RequestAddressType"
	gatewayAddressType    = "com.docker.network.gateway"
)

// ErrNoPreferredAddress is returned for an endpoint address request that
// does not name the address the allocator chose.
var ErrNoPreferredAddress = errors.New("swarmd ipam: addresses of swarm overlay networks are chosen by the swarm allocator; " +
	"the request must carry the endpoint's IPv4 address")

// ErrNoPool is returned for a pool request without a subnet.
var ErrNoPool = errors.New("swarmd ipam: the subnet of a swarm overlay network is chosen by the swarm allocator; " +
	"the request must carry it (--subnet)")

// Driver implements the engine's IPAM plugin interface.
type Driver struct {
	log *slog.Logger
}

var _ helpers.Ipam = (*Driver)(nil)

// New returns a Driver; a nil logger means slog.Default().
func New(log *slog.Logger) *Driver {
	if log == nil {
		log = slog.Default()
	}
	return &Driver{log: log.With("component", "ipam")}
}

// PoolID is the pool ID of subnet p.
func PoolID(p netip.Prefix) string { return poolIDPrefix + p.Masked().String() }

// ParsePoolID returns the subnet a pool ID stands for.
func ParsePoolID(id string) (netip.Prefix, error) {
	s, ok := strings.CutPrefix(id, poolIDPrefix)
	if !ok {
		return netip.Prefix{}, fmt.Errorf("swarmd ipam: unknown pool %q", id)
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("swarmd ipam: pool %q: %w", id, err)
	}
	return p, nil
}

// GetCapabilities implements helpers.Ipam.
func (d *Driver) GetCapabilities() (*helpers.CapabilitiesResponse, error) {
	return &helpers.CapabilitiesResponse{RequiresMACAddress: false}, nil
}

// GetDefaultAddressSpaces implements helpers.Ipam.
func (d *Driver) GetDefaultAddressSpaces() (*helpers.AddressSpacesResponse, error) {
	return &helpers.AddressSpacesResponse{LocalDefaultAddressSpace: AddressSpace, GlobalDefaultAddressSpace: AddressSpace}, nil
}

// RequestPool implements helpers.Ipam: it accepts exactly the requested
// IPv4 subnet.
func (d *Driver) RequestPool(req *helpers.RequestPoolRequest) (*helpers.RequestPoolResponse, error) {
	if req.V6 {
		return nil, errors.New("swarmd ipam: IPv6 is not supported on swarm overlay networks")
	}
	if req.Pool == "" {
		return nil, ErrNoPool
	}
	p, err := netip.ParsePrefix(req.Pool)
	if err != nil {
		return nil, fmt.Errorf("swarmd ipam: pool %q: %w", req.Pool, err)
	}
	if !p.Addr().Is4() || p.Bits() > 30 {
		return nil, fmt.Errorf("swarmd ipam: pool %s: need an IPv4 subnet of at least 4 addresses", p)
	}
	if p != p.Masked() {
		return nil, fmt.Errorf("swarmd ipam: pool %s has host bits set (subnet is %s)", p, p.Masked())
	}
	if req.SubPool != "" {
		return nil, errors.New("swarmd ipam: sub-pools (--ip-range) are not supported: the swarm allocator picks addresses")
	}
	id := PoolID(p)
	d.log.Debug("pool requested", "pool", id)
	return &helpers.RequestPoolResponse{PoolID: id, Pool: p.String()}, nil
}

// ReleasePool implements helpers.Ipam; there is nothing to release.
func (d *Driver) ReleasePool(req *helpers.ReleasePoolRequest) error {
	_, err := ParsePoolID(req.PoolID)
	return err
}

// RequestAddress implements helpers.Ipam: it returns the requested address
// as CIDR in the pool's subnet. Only the gateway may be requested without an
// address; it then defaults to the subnet's first host address.
func (d *Driver) RequestAddress(req *helpers.RequestAddressRequest) (*helpers.RequestAddressResponse, error) {
	p, err := ParsePoolID(req.PoolID)
	if err != nil {
		return nil, err
	}
	gateway := req.Options[optRequestAddressType] == gatewayAddressType
	var a netip.Addr
	switch {
	case req.Address != "":
		a, err = netip.ParseAddr(req.Address)
		if err != nil {
			return nil, fmt.Errorf("swarmd ipam: address %q: %w", req.Address, err)
		}
	case gateway:
		a = p.Addr().Next()
	default:
		return nil, fmt.Errorf("pool %s: %w", p, ErrNoPreferredAddress)
	}
	if err := checkHost(p, a); err != nil {
		return nil, err
	}
	return &helpers.RequestAddressResponse{Address: netip.PrefixFrom(a, p.Bits()).String()}, nil
}

// checkHost reports whether a is a host address of subnet p.
func checkHost(p netip.Prefix, a netip.Addr) error {
	if !p.Contains(a) {
		return fmt.Errorf("swarmd ipam: address %s is outside subnet %s", a, p)
	}
	if a == p.Addr() {
		return fmt.Errorf("swarmd ipam: address %s is the network address of %s", a, p)
	}
	last := p.Addr().As4()
	host := uint32(1)<<(32-p.Bits()) - 1
	for i := range 4 {
		last[3-i] |= byte(host >> (8 * i))
	}
	if a == netip.AddrFrom4(last) {
		return fmt.Errorf("swarmd ipam: address %s is the broadcast address of %s", a, p)
	}
	return nil
}

// ReleaseAddress implements helpers.Ipam; there is nothing to release.
func (d *Driver) ReleaseAddress(req *helpers.ReleaseAddressRequest) error {
	_, err := ParsePoolID(req.PoolID)
	return err
}
