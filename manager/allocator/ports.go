package allocator

import (
	"fmt"
	"strings"

	"github.com/openswarm/swarmd/api"
	"google.golang.org/protobuf/proto"
)

// The range dynamic ingress ports come from, as docker's.
const (
	DynamicPortStart = 30000
	DynamicPortEnd   = 32767
)

// portKey is a published port of one protocol.
type portKey struct {
	proto api.PortConfig_Protocol
	port  uint32
}

func (k portKey) String() string { return fmt.Sprintf("%d/%s", k.port, protoName(k.proto)) }

func protoName(p api.PortConfig_Protocol) string {
	switch p {
	case api.PortConfig_TCP:
		return "tcp"
	case api.PortConfig_UDP:
		return "udp"
	case api.PortConfig_SCTP:
		return "sctp"
	}
	return strings.ToLower(p.String())
}

// owner is the object a resource is reserved for.
type owner struct {
	kind string // "service" or "task"
	id   string
	name string // for error messages
}

func serviceOwner(s *api.Service) owner {
	return owner{kind: "service", id: s.GetId(), name: s.GetSpec().GetAnnotations().GetName()}
}

func taskOwner(t *api.Task) owner {
	return owner{kind: "task", id: t.GetId(), name: t.GetAnnotations().GetName()}
}

// key identifies the owner among objects of every kind.
func (o owner) key() string { return o.kind + ":" + o.id }

// portSpace holds the cluster's ingress-published ports: each port of a
// protocol belongs to at most one service, on every node. Host-mode ports
// are not reserved here (the scheduler keeps them apart per node).
//
// Dynamic ports are handed out next-fit: the first free port after the
// one handed out last for that protocol, wrapping around at the end of the
// range, so that a port just freed is not reused at once (clients of the
// service that had it may still be connecting). The position is not
// recorded: a new leader starts again at the bottom of the range.
type portSpace struct {
	lo, hi uint32
	owners map[portKey]owner
	next   map[api.PortConfig_Protocol]uint32
}

func newPortSpace(lo, hi uint32) *portSpace {
	return &portSpace{
		lo:     lo,
		hi:     hi,
		owners: make(map[portKey]owner),
		next:   make(map[api.PortConfig_Protocol]uint32),
	}
}

// reserve records k as o's; it fails if another service holds it.
func (p *portSpace) reserve(k portKey, o owner) error {
	if cur, ok := p.owners[k]; ok && cur.id != o.id {
		return newError(ErrPortInUse, "port %s is already in use by service %s (%s)", k, cur.name, cur.id)
	}
	p.owners[k] = o
	return nil
}

// release frees k if o holds it.
func (p *portSpace) release(k portKey, o owner) {
	if cur, ok := p.owners[k]; ok && cur.id == o.id {
		delete(p.owners, k)
	}
}

// holder returns the ID of the service holding k, or "".
func (p *portSpace) holder(k portKey) string { return p.owners[k].id }

// dynamic reserves a free port of the dynamic range for o.
func (p *portSpace) dynamic(proto api.PortConfig_Protocol, o owner) (uint32, error) {
	n := p.hi - p.lo + 1
	start := p.next[proto]
	if start < p.lo || start > p.hi {
		start = p.lo
	}
	for i := range n {
		port := p.lo + (start-p.lo+i)%n
		k := portKey{proto, port}
		if _, taken := p.owners[k]; !taken {
			p.owners[k] = o
			p.next[proto] = port + 1
			return port, nil
		}
	}
	return 0, newError(ErrPortsExhausted, "no free port left in the dynamic range %d-%d for %s", p.lo, p.hi, protoName(proto))
}

// inRange reports whether port is one the dynamic range could have given.
func (p *portSpace) inRange(port uint32) bool { return port >= p.lo && port <= p.hi }

// assign returns the ports of o's endpoint for the ports its spec asks for,
// given the ports of o's current endpoint (prev): one port per spec entry,
// in the spec's order. Host-mode ports are copied. Ingress ports with a
// published port keep it, which must be free or o's; those without get a
// dynamic port. A dynamic request keeps the port prev has for the same
// target and protocol if that port lies in the dynamic range and no
// explicit request of the spec takes it, so that a service's dynamic ports
// stay stable across updates.
//
// assign reserves what the result holds and prev does not; it releases
// nothing (the caller releases what prev held and the result does not, once
// the result is recorded). On error it has reserved nothing.
func (p *portSpace) assign(o owner, spec, prev []*api.PortConfig) ([]*api.PortConfig, error) {
	out := make([]*api.PortConfig, len(spec))
	var acquired []portKey
	take := func(k portKey) error {
		if p.holder(k) == o.id {
			return nil
		}
		if err := p.reserve(k, o); err != nil {
			return err
		}
		acquired = append(acquired, k)
		return nil
	}
	fail := func(err error) ([]*api.PortConfig, error) {
		for _, k := range acquired {
			p.release(k, o)
		}
		return nil, err
	}

	// Explicit ports first, so that a dynamic one never takes a port the
	// spec asks for by number.
	explicit := make(map[portKey]bool)
	for i, sp := range spec {
		out[i] = proto.CloneOf(sp)
		if sp.GetPublishMode() != api.PortConfig_INGRESS || sp.GetPublishedPort() == 0 {
			continue
		}
		k := portKey{sp.GetProtocol(), sp.GetPublishedPort()}
		explicit[k] = true
		if err := take(k); err != nil {
			return fail(err)
		}
	}

	type target struct {
		proto  api.PortConfig_Protocol
		target uint32
	}
	reusable := make(map[target][]uint32)
	for _, pp := range prev {
		k := portKey{pp.GetProtocol(), pp.GetPublishedPort()}
		if pp.GetPublishMode() != api.PortConfig_INGRESS || !p.inRange(k.port) || explicit[k] || p.holder(k) != o.id {
			continue
		}
		t := target{pp.GetProtocol(), pp.GetTargetPort()}
		reusable[t] = append(reusable[t], k.port)
	}
	for i, sp := range spec {
		if sp.GetPublishMode() != api.PortConfig_INGRESS || sp.GetPublishedPort() != 0 {
			continue
		}
		t := target{sp.GetProtocol(), sp.GetTargetPort()}
		if ports := reusable[t]; len(ports) > 0 {
			out[i].PublishedPort = ports[0]
			reusable[t] = ports[1:]
			continue
		}
		port, err := p.dynamic(sp.GetProtocol(), o)
		if err != nil {
			return fail(err)
		}
		acquired = append(acquired, portKey{sp.GetProtocol(), port})
		out[i].PublishedPort = port
	}
	return out, nil
}

// ingressPorts returns the published ingress ports of allocated ports.
func ingressPorts(ports []*api.PortConfig) []portKey {
	var out []portKey
	for _, p := range ports {
		if p.GetPublishMode() == api.PortConfig_INGRESS && p.GetPublishedPort() != 0 {
			out = append(out, portKey{p.GetProtocol(), p.GetPublishedPort()})
		}
	}
	return out
}
