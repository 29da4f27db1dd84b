package allocator

import (
	"cmp"
	"encoding/binary"
	"net/netip"
	"slices"
	"strings"

	"github.com/openswarm/swarmd/api"
)

// The cluster's default address pool when it sets none, as docker's.
const (
	DefaultAddressPool     = "10.0.0.0/8"
	DefaultAddressPoolMask = 24
)

// addressPool is where subnets for networks that give none are carved
// from: the pool's prefixes, in order, cut into subnets of mask bits.
type addressPool struct {
	prefixes []netip.Prefix
	mask     int
}

// clusterAddressPool returns c's default address pool (docker's default
// where c sets none; c may be nil).
func clusterAddressPool(c *api.Cluster) (addressPool, error) {
	pool := addressPool{mask: int(c.GetDefaultAddressPoolMask())}
	if pool.mask == 0 {
		pool.mask = DefaultAddressPoolMask
	}
	specs := c.GetDefaultAddressPool()
	if len(specs) == 0 {
		specs = []string{DefaultAddressPool}
	}
	for _, s := range specs {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return addressPool{}, newError(ErrInvalidConfig, "default address pool: invalid prefix %q: %v", s, err)
		}
		if !p.Addr().Is4() {
			return addressPool{}, newError(ErrInvalidConfig, "default address pool: %s: only IPv4 pools are supported", s)
		}
		if pool.mask < p.Bits() || pool.mask > 30 {
			return addressPool{}, newError(ErrInvalidConfig, "default address pool: mask /%d does not fit in %s (it must be between /%d and /30)", pool.mask, s, p.Bits())
		}
		pool.prefixes = append(pool.prefixes, p.Masked())
	}
	return pool, nil
}

func (a addressPool) String() string {
	s := make([]string, len(a.prefixes))
	for i, p := range a.prefixes {
		s[i] = p.String()
	}
	return strings.Join(s, ", ")
}

// span is an inclusive range of IPv4 addresses as integers.
type span struct{ first, last uint64 }

func spanOf(p netip.Prefix) span {
	b := p.Masked().Addr().As4()
	first := uint64(binary.BigEndian.Uint32(b[:]))
	return span{first, first + uint64(1)<<(32-p.Bits()) - 1}
}

// carve returns the first subnet of the pool (in the order of its prefixes,
// then of addresses) that overlaps none of taken. IPv6 prefixes in taken
// are ignored: the pool is IPv4.
func (a addressPool) carve(taken []netip.Prefix) (netip.Prefix, error) {
	var used []span
	for _, p := range taken {
		if p.Addr().Is4() {
			used = append(used, spanOf(p))
		}
	}
	slices.SortFunc(used, func(x, y span) int { return cmp.Compare(x.first, y.first) })
	step := uint64(1) << (32 - a.mask)
	for _, pool := range a.prefixes {
		ps := spanOf(pool)
		i := 0 // used[:i] end before the candidate
		for cand := ps.first; cand+step-1 <= ps.last; {
			for i < len(used) && used[i].last < cand {
				i++
			}
			// The first used span ending at or after cand starts
			// after the candidate, or overlaps it.
			j := i
			for j < len(used) && used[j].first <= cand+step-1 {
				if used[j].last >= cand {
					break
				}
				j++
			}
			if j == len(used) || used[j].first > cand+step-1 {
				var b [4]byte
				binary.BigEndian.PutUint32(b[:], uint32(cand))
				return netip.PrefixFrom(netip.AddrFrom4(b), a.mask), nil
			}
			// Skip past the overlapping span, to the next aligned subnet.
			cand = (used[j].last/step + 1) * step
		}
	}
	return netip.Prefix{}, newError(ErrSubnetsExhausted, "no free /%d subnet left in the default address pool (%s)", a.mask, a)
}

// The VXLAN network identifiers overlay networks get: 4096 and up (lower
// ones are left to networks created outside swarm), at most 2^24-1.
const (
	minVNI = 4096
	maxVNI = 1<<24 - 1
)

// vniSpace holds the VXLAN identifiers of overlay networks.
type vniSpace struct {
	owners map[uint32]string // by VNI: network ID
	next   uint32            // VNIs below it are all taken
}

func newVNISpace() *vniSpace {
	return &vniSpace{owners: make(map[uint32]string), next: minVNI}
}

// allocate reserves the lowest free VNI for network id.
func (v *vniSpace) allocate(id string) (uint32, error) {
	for vni := v.next; vni <= maxVNI; vni++ {
		if _, taken := v.owners[vni]; !taken {
			v.owners[vni] = id
			v.next = vni + 1
			return vni, nil
		}
	}
	return 0, newError(ErrVNIsExhausted, "no free VXLAN identifier left (%d-%d)", minVNI, maxVNI)
}

// reserve records vni as network id's.
func (v *vniSpace) reserve(vni uint32, id string) error {
	if cur, ok := v.owners[vni]; ok && cur != id {
		return newError(ErrInvalidConfig, "VXLAN identifier %d is already in use by network %s", vni, cur)
	}
	v.owners[vni] = id
	return nil
}

// release frees vni if network id holds it.
func (v *vniSpace) release(vni uint32, id string) {
	if v.owners[vni] == id && vni != 0 {
		delete(v.owners, vni)
		v.next = min(v.next, max(vni, minVNI))
	}
}
