package allocator

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/openswarm/swarmd/api"
	"google.golang.org/protobuf/proto"
)

// ledger is everything allocated in the cluster: ports, networks with
// their address pools and VNIs, and the allocation of every service and
// task as recorded in the store. It does no I/O.
//
// A network, service or task appears in it only once all the resources
// its recorded allocation holds are reserved in it; an allocation being
// written has its new resources reserved too, until commit (which releases
// what the old allocation held and the new one does not) or abort (which
// releases what the new one added).
type ledger struct {
	ports    *portSpace
	vnis     *vniSpace
	networks map[string]*netAlloc
	services map[string]*api.Endpoint
	tasks    map[string][]*api.NetworkAttachment
	// conflicted holds the services whose recorded endpoint has a
	// resource another object holds: they must be allocated again.
	conflicted map[string]bool
}

// netAlloc is an allocated network.
type netAlloc struct {
	obj   *api.Network // as recorded: Ipam (and Vni) set
	pools []*addrPool  // one per obj.Ipam entry
}

func newLedger(portLo, portHi uint32) *ledger {
	return &ledger{
		ports:    newPortSpace(portLo, portHi),
		vnis:     newVNISpace(),
		networks: make(map[string]*netAlloc),
		services: make(map[string]*api.Endpoint),
		tasks:    make(map[string][]*api.NetworkAttachment),

		conflicted: make(map[string]bool),
	}
}

// holding is one resource an object holds: a published port, or an
// address on a network.
type holding struct {
	port    portKey
	network string
	addr    netip.Addr
}

func (h holding) String() string {
	if h.network == "" {
		return "port " + h.port.String()
	}
	return fmt.Sprintf("address %s on network %s", h.addr, h.network)
}

// endpointHoldings returns what a service endpoint holds: its ingress
// ports and its virtual IPs.
func endpointHoldings(ep *api.Endpoint) []holding {
	var hs []holding
	for _, k := range ingressPorts(ep.GetPorts()) {
		hs = append(hs, holding{port: k})
	}
	for _, vip := range ep.GetVirtualIps() {
		if p, err := netip.ParsePrefix(vip.GetAddr()); err == nil {
			hs = append(hs, holding{network: vip.GetNetworkId(), addr: p.Addr()})
		}
	}
	return hs
}

// attachmentHoldings returns the addresses of a task's attachments.
func attachmentHoldings(atts []*api.NetworkAttachment) []holding {
	var hs []holding
	for _, att := range atts {
		for _, a := range att.GetAddresses() {
			if p, err := netip.ParsePrefix(a); err == nil {
				hs = append(hs, holding{network: att.GetNetwork().GetId(), addr: p.Addr()})
			}
		}
	}
	return hs
}

// pool returns the pool of network id holding a, or nil.
func (l *ledger) pool(id string, a netip.Addr) *addrPool {
	n := l.networks[id]
	if n == nil {
		return nil
	}
	for _, p := range n.pools {
		if p.subnet.Contains(a) {
			return p
		}
	}
	return nil
}

// acquire reserves h for o. An address on a network the ledger does not
// know (deleted) is nobody's to take: acquiring it succeeds.
func (l *ledger) acquire(o owner, h holding) error {
	if h.network == "" {
		return l.ports.reserve(h.port, o)
	}
	if l.networks[h.network] == nil {
		return nil
	}
	p := l.pool(h.network, h.addr)
	if p == nil {
		return fmt.Errorf("address %s is in no subnet of network %s", h.addr, h.network)
	}
	return p.reserve(h.addr, o.key())
}

// release frees h if o holds it.
func (l *ledger) release(o owner, h holding) {
	if h.network == "" {
		l.ports.release(h.port, o)
		return
	}
	if p := l.pool(h.network, h.addr); p != nil {
		p.release(h.addr, o.key())
	}
}

// acquireEach reserves each holding it can for o and returns why it could
// not reserve the others.
func (l *ledger) acquireEach(o owner, hs []holding) []error {
	var errs []error
	for _, h := range hs {
		if err := l.acquire(o, h); err != nil {
			errs = append(errs, fmt.Errorf("%s %s: %s: %w", o.kind, o.id, h, err))
		}
	}
	return errs
}

// holds reports whether o holds h.
func (l *ledger) holds(o owner, h holding) bool {
	if h.network == "" {
		return l.ports.holder(h.port) == o.id
	}
	p := l.pool(h.network, h.addr)
	if p == nil {
		return false
	}
	off, ok := p.offset(h.addr)
	return ok && p.isSet(off) && p.owners[off] == o.key()
}

// holdsAll reports whether o holds all of hs (and hs is not empty).
func (l *ledger) holdsAll(o owner, hs []holding) bool {
	return len(hs) > 0 && !slices.ContainsFunc(hs, func(h holding) bool { return !l.holds(o, h) })
}

// releaseExcept frees the holdings of hs that are not in keep.
func (l *ledger) releaseExcept(o owner, hs, keep []holding) {
	for _, h := range hs {
		if !slices.Contains(keep, h) {
			l.release(o, h)
		}
	}
}

// addNetwork records a network's recorded allocation: n.Ipam becomes its
// pools, n.Vni is reserved. Pools that cannot be made fail it (nothing is
// recorded); a VNI held by another network is left out (the network is
// recorded without one, to get a new one) and reported.
func (l *ledger) addNetwork(n *api.Network) error {
	pools := make([]*addrPool, 0, len(n.GetIpam()))
	for _, c := range n.GetIpam() {
		p, err := newAddrPool(c)
		if err != nil {
			return fmt.Errorf("network %s: %w", n.GetId(), err)
		}
		pools = append(pools, p)
	}
	rec := &netAlloc{obj: proto.CloneOf(n), pools: pools}
	l.networks[n.GetId()] = rec
	if n.GetVni() != 0 {
		if err := l.vnis.reserve(n.GetVni(), n.GetId()); err != nil {
			rec.obj.Vni = 0
			return fmt.Errorf("network %s: %w", n.GetId(), err)
		}
	}
	return nil
}

// removeNetwork forgets a network and frees its VNI and addresses.
func (l *ledger) removeNetwork(id string) {
	if n := l.networks[id]; n != nil {
		l.vnis.release(n.obj.GetVni(), id)
		delete(l.networks, id)
	}
}

// subnets returns the subnets of the networks the ledger knows.
func (l *ledger) subnets() []netip.Prefix {
	var out []netip.Prefix
	for _, n := range l.networks {
		for _, p := range n.pools {
			out = append(out, p.subnet)
		}
	}
	return out
}

// allocAddr hands out an address of network id to o, as CIDR.
func (l *ledger) allocAddr(id string, o owner) (string, error) {
	n := l.networks[id]
	if n == nil {
		return "", &notReadyError{network: id}
	}
	for _, p := range n.pools {
		a, err := p.allocate(o.key())
		if err == nil {
			return p.cidr(a), nil
		}
	}
	subnets := make([]string, len(n.pools))
	for i, p := range n.pools {
		subnets[i] = p.subnet.String()
	}
	return "", newError(ErrAddressesExhausted, "no free address in network %s (subnet %s)", n.obj.GetSpec().GetAnnotations().GetName(), strings.Join(subnets, ", "))
}

// byAge orders objects by creation time, then ID: when recorded
// allocations conflict, the oldest object keeps the resource.
func byAge[T api.StoreObject](objs []T) {
	slices.SortStableFunc(objs, func(a, b T) int {
		if c := a.GetMeta().GetCreatedAt().AsTime().Compare(b.GetMeta().GetCreatedAt().AsTime()); c != 0 {
			return c
		}
		return cmp.Compare(a.GetId(), b.GetId())
	})
}

// rebuild fills an empty ledger with the allocations the store records:
// networks with an IPAM configuration, the endpoints of services and the
// attachments of tasks that are not dead, oldest first. Where a recorded
// resource is already held (by an older object: the store should never
// record that), the older keeps it, the newer keeps what else it records,
// and the conflict is reported; a service in conflict is allocated again
// (a task past NEW cannot be).
func (l *ledger) rebuild(networks []*api.Network, services []*api.Service, tasks []*api.Task) []error {
	var problems []error
	byAge(networks)
	for _, n := range networks {
		if len(n.GetIpam()) == 0 {
			continue
		}
		if err := l.addNetwork(n); err != nil {
			problems = append(problems, err)
		}
	}
	byAge(services)
	for _, s := range services {
		if s.GetEndpoint() == nil {
			continue
		}
		if errs := l.acquireEach(serviceOwner(s), endpointHoldings(s.GetEndpoint())); len(errs) > 0 {
			problems = append(problems, errs...)
			l.conflicted[s.GetId()] = true
		}
		l.services[s.GetId()] = proto.CloneOf(s.GetEndpoint())
	}
	byAge(tasks)
	for _, t := range tasks {
		if len(t.GetNetworks()) == 0 || isDead(t) {
			continue
		}
		problems = append(problems, l.acquireEach(taskOwner(t), attachmentHoldings(t.GetNetworks()))...)
		l.tasks[t.GetId()] = cloneAttachments(t.GetNetworks())
	}
	return problems
}

func cloneAttachments(atts []*api.NetworkAttachment) []*api.NetworkAttachment {
	out := make([]*api.NetworkAttachment, len(atts))
	for i, a := range atts {
		out[i] = proto.CloneOf(a)
	}
	return out
}

// isDead reports whether what t holds can go: it will not run (desired
// state past COMPLETE) and either has stopped (observed past RUNNING) or
// was never assigned to a node (no container can have its addresses).
func isDead(t *api.Task) bool {
	if t.GetDesiredState() <= api.TaskState_TASK_STATE_COMPLETE {
		return false
	}
	st := t.GetStatus().GetState()
	return st > api.TaskState_TASK_STATE_RUNNING || st < api.TaskState_TASK_STATE_ASSIGNED
}
