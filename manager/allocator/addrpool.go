package allocator

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
	"net/netip"

	"github.com/openswarm/swarmd/api"
)

// maxPoolBits bounds the addresses a pool tracks: a larger subnet (an IPv6
// /64) hands out addresses from its first 2^32 only.
const maxPoolBits = 32

// errPoolFull is an addrPool's: the network names it in the error users
// see.
var errPoolFull = errors.New("address pool full")

// gatewayOwner holds a pool's gateway address.
const gatewayOwner = "gateway"

// addrPool is the addresses of one subnet, as a bitmap indexed by the
// offset of the address in the subnet. The network address, the gateway
// and (IPv4) the broadcast address are never handed out; with a range,
// only the addresses of the range are. allocate hands out the lowest free
// address.
type addrPool struct {
	subnet  netip.Prefix // masked
	gateway netip.Addr   // invalid when the subnet has no room for one
	lo, hi  uint64       // offsets allocate hands out; none if lo > hi
	size    uint64       // offsets the pool tracks
	used    []uint64     // bitmap of reserved offsets, grown on demand
	owners  map[uint64]string
	hint    uint64 // words of used below it have no free offset in [lo, hi]
}

// newAddrPool returns the pool of an IPAM configuration: its subnet, its
// gateway (the first address of the subnet unless given) and, if given,
// the range addresses are handed out from.
func newAddrPool(c *api.IPAMConfig) (*addrPool, error) {
	subnet, err := netip.ParsePrefix(c.GetSubnet())
	if err != nil {
		return nil, newError(ErrInvalidConfig, "invalid subnet %q: %v", c.GetSubnet(), err)
	}
	subnet = subnet.Masked()
	hostBits := subnet.Addr().BitLen() - subnet.Bits()
	p := &addrPool{
		subnet: subnet,
		size:   uint64(1) << min(hostBits, maxPoolBits),
		owners: make(map[uint64]string),
	}
	// Usable offsets: not the network address, not the IPv4 broadcast.
	p.lo, p.hi = 1, p.size-1
	if subnet.Addr().Is4() {
		p.hi = p.size - 2
	}
	if p.size <= 2 {
		p.lo, p.hi = 1, 0 // a /31 or /32 has no address to hand out
	}
	if r := c.GetRange(); r != "" {
		rp, err := netip.ParsePrefix(r)
		if err != nil {
			return nil, newError(ErrInvalidConfig, "invalid range %q: %v", r, err)
		}
		rp = rp.Masked()
		if rp.Bits() < subnet.Bits() || !subnet.Contains(rp.Addr()) {
			return nil, newError(ErrInvalidConfig, "range %s is not inside subnet %s", rp, subnet)
		}
		first, ok := p.offset(rp.Addr())
		if !ok {
			return nil, newError(ErrInvalidConfig, "range %s is beyond the first 2^%d addresses of subnet %s", rp, maxPoolBits, subnet)
		}
		n := uint64(1) << min(rp.Addr().BitLen()-rp.Bits(), maxPoolBits)
		p.lo, p.hi = max(p.lo, first), min(p.hi, first+n-1)
	}
	p.hint = p.lo / 64
	switch gw := c.GetGateway(); {
	case gw != "":
		a, err := netip.ParseAddr(gw)
		if err != nil {
			return nil, newError(ErrInvalidConfig, "invalid gateway %q: %v", gw, err)
		}
		if err := p.reserve(a, gatewayOwner); err != nil {
			return nil, newError(ErrInvalidConfig, "gateway %s: %v", gw, err)
		}
		p.gateway = a
	case p.size > 2:
		p.gateway = p.at(1)
		p.mark(1, gatewayOwner)
	}
	return p, nil
}

// config returns the pool's IPAM configuration as recorded: the subnet,
// the range as given, the gateway.
func (p *addrPool) config(c *api.IPAMConfig) *api.IPAMConfig {
	out := &api.IPAMConfig{Subnet: p.subnet.String(), Range: c.GetRange()}
	if p.gateway.IsValid() {
		out.Gateway = p.gateway.String()
	}
	return out
}

// offset returns a's offset in the subnet, if it is tracked.
func (p *addrPool) offset(a netip.Addr) (uint64, bool) {
	if !p.subnet.Contains(a) {
		return 0, false
	}
	base, x := p.subnet.Addr().As16(), a.As16()
	if binary.BigEndian.Uint64(base[:8]) != binary.BigEndian.Uint64(x[:8]) {
		return 0, false
	}
	off := binary.BigEndian.Uint64(x[8:]) - binary.BigEndian.Uint64(base[8:])
	return off, off < p.size
}

// at returns the address at offset off.
func (p *addrPool) at(off uint64) netip.Addr {
	b := p.subnet.Addr().As16()
	lo, carry := bits.Add64(binary.BigEndian.Uint64(b[8:]), off, 0)
	binary.BigEndian.PutUint64(b[8:], lo)
	binary.BigEndian.PutUint64(b[:8], binary.BigEndian.Uint64(b[:8])+carry)
	a := netip.AddrFrom16(b)
	if p.subnet.Addr().Is4() {
		a = a.Unmap()
	}
	return a
}

func (p *addrPool) isSet(off uint64) bool {
	w := off / 64
	return w < uint64(len(p.used)) && p.used[w]&(1<<(off%64)) != 0
}

func (p *addrPool) mark(off uint64, o string) {
	w := off / 64
	for uint64(len(p.used)) <= w {
		p.used = append(p.used, 0)
	}
	p.used[w] |= 1 << (off % 64)
	p.owners[off] = o
}

// allocate hands out the lowest free address to o.
func (p *addrPool) allocate(o string) (netip.Addr, error) {
	if p.lo > p.hi {
		return netip.Addr{}, errPoolFull
	}
	for w := max(p.hint, p.lo/64); w <= p.hi/64; w++ {
		var free uint64 = ^uint64(0)
		if w < uint64(len(p.used)) {
			free = ^p.used[w]
		}
		if w == p.lo/64 {
			free &^= (uint64(1) << (p.lo % 64)) - 1
		}
		if free == 0 {
			p.hint = w + 1
			continue
		}
		p.hint = w
		off := w*64 + uint64(bits.TrailingZeros64(free))
		if off > p.hi {
			break
		}
		p.mark(off, o)
		return p.at(off), nil
	}
	return netip.Addr{}, errPoolFull
}

// reserve records a as o's. It fails if a is outside the pool, is the
// subnet's network or broadcast address, or is held by another owner.
func (p *addrPool) reserve(a netip.Addr, o string) error {
	off, ok := p.offset(a)
	if !ok {
		return fmt.Errorf("address %s is not in subnet %s", a, p.subnet)
	}
	if off == 0 || (p.subnet.Addr().Is4() && off == p.size-1 && p.size > 2) {
		return fmt.Errorf("address %s is reserved in subnet %s", a, p.subnet)
	}
	if p.isSet(off) {
		if cur := p.owners[off]; cur != o {
			return fmt.Errorf("address %s is already in use by %s", a, cur)
		}
		return nil
	}
	p.mark(off, o)
	return nil
}

// release frees a if o holds it.
func (p *addrPool) release(a netip.Addr, o string) {
	off, ok := p.offset(a)
	if !ok || !p.isSet(off) || p.owners[off] != o {
		return
	}
	p.used[off/64] &^= 1 << (off % 64)
	delete(p.owners, off)
	p.hint = min(p.hint, off/64)
}

// inUse returns how many addresses are reserved, the gateway included.
func (p *addrPool) inUse() int { return len(p.owners) }

// cidr writes a as the address with the subnet's prefix length.
func (p *addrPool) cidr(a netip.Addr) string {
	return netip.PrefixFrom(a, p.subnet.Bits()).String()
}
