package allocator

import (
	"slices"

	"github.com/openswarm/swarmd/api"
	"google.golang.org/protobuf/proto"
)

// publishesIngress reports whether ports has a port published in ingress
// mode.
func publishesIngress(ports []*api.PortConfig) bool {
	return slices.ContainsFunc(ports, func(p *api.PortConfig) bool {
		return p.GetPublishMode() == api.PortConfig_INGRESS
	})
}

// taskNetworks returns the networks a task spec attaches to, each once,
// in order.
func taskNetworks(spec *api.TaskSpec) []*api.NetworkAttachmentConfig {
	var out []*api.NetworkAttachmentConfig
	for _, n := range spec.GetNetworks() {
		if !slices.ContainsFunc(out, func(o *api.NetworkAttachmentConfig) bool { return o.GetTarget() == n.GetTarget() }) {
			out = append(out, n)
		}
	}
	return out
}

// vipNetworks returns the networks a service needs a virtual IP on: none
// in DNSRR mode; else the ingress network (ingressID, "" if there is none)
// when it publishes ingress ports, then the networks its tasks attach to.
func vipNetworks(spec *api.ServiceSpec, ingressID string) []string {
	ep := spec.GetEndpoint()
	if ep.GetMode() != api.EndpointSpec_VIP {
		return nil
	}
	var out []string
	if ingressID != "" && publishesIngress(ep.GetPorts()) {
		out = append(out, ingressID)
	}
	for _, n := range taskNetworks(spec.GetTask()) {
		out = append(out, n.GetTarget())
	}
	return out
}

// serviceAllocated reports whether s's recorded endpoint is the one the
// ledger holds and fits s's spec: made from the current endpoint spec,
// with a virtual IP on exactly the networks it needs.
func (l *ledger) serviceAllocated(s *api.Service, ingressID string) bool {
	rec, ok := l.services[s.GetId()]
	if !ok || l.conflicted[s.GetId()] || !proto.Equal(rec, s.GetEndpoint()) || !proto.Equal(rec.GetSpec(), s.GetSpec().GetEndpoint()) {
		return false
	}
	want := vipNetworks(s.GetSpec(), ingressID)
	return slices.EqualFunc(rec.GetVirtualIps(), want, func(v *api.Endpoint_VirtualIP, id string) bool {
		return v.GetNetworkId() == id
	})
}

// allocateService computes s's endpoint for its current spec, reserving
// what it holds that s's recorded endpoint does not: ports (see
// portSpace.assign) and a virtual IP on each network vipNetworks names,
// kept where the recorded endpoint has one the service holds. On error nothing new is
// reserved. The caller commits or aborts the result.
func (l *ledger) allocateService(s *api.Service, ingressID string) (*api.Endpoint, error) {
	o := serviceOwner(s)
	prev := l.services[s.GetId()]
	spec := s.GetSpec().GetEndpoint()
	ports, err := l.ports.assign(o, spec.GetPorts(), prev.GetPorts())
	if err != nil {
		return nil, err
	}
	ep := &api.Endpoint{Spec: proto.CloneOf(spec), Ports: ports}
	for _, id := range vipNetworks(s.GetSpec(), ingressID) {
		i := slices.IndexFunc(prev.GetVirtualIps(), func(v *api.Endpoint_VirtualIP) bool { return v.GetNetworkId() == id })
		if i >= 0 && l.holdsAll(o, endpointHoldings(&api.Endpoint{VirtualIps: prev.GetVirtualIps()[i : i+1]})) {
			ep.VirtualIps = append(ep.VirtualIps, proto.CloneOf(prev.GetVirtualIps()[i]))
			continue
		}
		addr, err := l.allocAddr(id, o)
		if err != nil {
			l.abortService(o, ep)
			return nil, err
		}
		ep.VirtualIps = append(ep.VirtualIps, &api.Endpoint_VirtualIP{NetworkId: id, Addr: addr})
	}
	return ep, nil
}

// commitService records that the store holds ep as o's endpoint.
func (l *ledger) commitService(o owner, ep *api.Endpoint) {
	l.releaseExcept(o, endpointHoldings(l.services[o.id]), endpointHoldings(ep))
	l.services[o.id] = proto.CloneOf(ep)
	delete(l.conflicted, o.id)
}

// abortService drops an endpoint the store did not take.
func (l *ledger) abortService(o owner, ep *api.Endpoint) {
	l.releaseExcept(o, endpointHoldings(ep), endpointHoldings(l.services[o.id]))
}

// releaseService frees everything a deleted service held.
func (l *ledger) releaseService(id string) {
	o := owner{kind: "service", id: id}
	for _, h := range endpointHoldings(l.services[id]) {
		l.release(o, h)
	}
	delete(l.services, id)
	delete(l.conflicted, id)
}
