package allocator

import (
	"net/netip"
	"slices"

	"github.com/openswarm/swarmd/api"
	"google.golang.org/protobuf/proto"
)

// isOverlay reports whether n uses the overlay driver (the default), whose
// networks need a VNI.
func isOverlay(n *api.Network) bool {
	d := n.GetSpec().GetDriver()
	return d == "" || d == "overlay"
}

// networkAllocated reports whether n's recorded allocation is complete and
// is the one the ledger holds.
func (l *ledger) networkAllocated(n *api.Network) bool {
	rec := l.networks[n.GetId()]
	if rec == nil || len(n.GetIpam()) == 0 || (isOverlay(n) && n.GetVni() == 0) {
		return false
	}
	return rec.obj.GetVni() == n.GetVni() && ipamEqual(rec.obj.GetIpam(), n.GetIpam())
}

func ipamEqual(a, b []*api.IPAMConfig) bool {
	return slices.EqualFunc(a, b, func(x, y *api.IPAMConfig) bool { return proto.Equal(x, y) })
}

// netChange is a network allocation being written.
type netChange struct {
	id         string
	prev, next *netAlloc
}

// allocateNetwork completes n's allocation and records it in the ledger
// until commit or abort: its IPAM configuration (kept if recorded, else
// from its spec, else a subnet carved from pool that overlaps neither the
// networks the ledger knows nor taken) and, for an overlay network, a VNI.
// It returns the network to write.
func (l *ledger) allocateNetwork(n *api.Network, pool func() (addressPool, error), taken []netip.Prefix) (*api.Network, *netChange, error) {
	id := n.GetId()
	prev := l.networks[id]
	out := proto.CloneOf(n)
	next := &netAlloc{obj: out}
	switch {
	case prev != nil && len(n.GetIpam()) > 0 && ipamEqual(prev.obj.GetIpam(), n.GetIpam()):
		next.pools = prev.pools
	case len(n.GetIpam()) > 0:
		pools, _, err := poolsOf(n.GetIpam())
		if err != nil {
			return nil, nil, err
		}
		next.pools = pools
	case len(n.GetSpec().GetIpam()) > 0:
		pools, configs, err := poolsOf(n.GetSpec().GetIpam())
		if err != nil {
			return nil, nil, err
		}
		next.pools, out.Ipam = pools, configs
	default:
		p, err := pool()
		if err != nil {
			return nil, nil, err
		}
		subnet, err := p.carve(append(slices.Clip(taken), l.subnets()...))
		if err != nil {
			return nil, nil, err
		}
		pools, configs, err := poolsOf([]*api.IPAMConfig{{Subnet: subnet.String()}})
		if err != nil {
			return nil, nil, err
		}
		next.pools, out.Ipam = pools, configs
	}
	if isOverlay(n) {
		switch {
		case prev != nil && prev.obj.GetVni() != 0:
			out.Vni = prev.obj.GetVni()
		case n.GetVni() != 0 && l.vnis.reserve(n.GetVni(), id) == nil:
		default:
			vni, err := l.vnis.allocate(id)
			if err != nil {
				return nil, nil, err
			}
			out.Vni = vni
		}
	}
	l.networks[id] = next
	return out, &netChange{id: id, prev: prev, next: next}, nil
}

// poolsOf returns the pools of IPAM configurations and the configurations
// to record (gateways filled in).
func poolsOf(cs []*api.IPAMConfig) ([]*addrPool, []*api.IPAMConfig, error) {
	pools := make([]*addrPool, len(cs))
	configs := make([]*api.IPAMConfig, len(cs))
	for i, c := range cs {
		p, err := newAddrPool(c)
		if err != nil {
			return nil, nil, err
		}
		pools[i], configs[i] = p, p.config(c)
	}
	return pools, configs, nil
}

// commitNetwork records that the store holds the change, as stored.
func (l *ledger) commitNetwork(c *netChange, stored *api.Network) {
	if l.networks[c.id] == c.next {
		c.next.obj = proto.CloneOf(stored)
	}
}

// abortNetwork drops a change the store did not take.
func (l *ledger) abortNetwork(c *netChange) {
	if l.networks[c.id] != c.next {
		return
	}
	if vni := c.next.obj.GetVni(); vni != c.prev.recorded().GetVni() {
		l.vnis.release(vni, c.id)
	}
	if c.prev == nil {
		delete(l.networks, c.id)
		return
	}
	l.networks[c.id] = c.prev
}

// recorded returns the network of a possibly nil netAlloc.
func (n *netAlloc) recorded() *api.Network {
	if n == nil {
		return nil
	}
	return n.obj
}
