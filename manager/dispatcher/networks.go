package dispatcher

import (
	"cmp"
	"net"
	"net/netip"
	"slices"

	"github.com/openswarm/swarmd/api"
	"github.com/openswarm/swarmd/manager/state/store"
	"google.golang.org/protobuf/proto"
)

// Networks streams to the calling node the endpoints of the overlay
// networks it has endpoints on itself (from the moment one of its tasks is
// assigned): the complete set at once, then again each time it changes
// (changes within AssignmentBatchDelay of each other make one message).
// The stream ends with the session.
func (d *Dispatcher) Networks(req *api.NetworksRequest, stream api.Dispatcher_NetworksServer) error {
	ctx := stream.Context()
	r, s, err := d.session(ctx, req.GetSessionId())
	if err != nil {
		return err
	}
	return streamTable(ctx, r, s, stream.Send, func() (*api.NetworksMessage, <-chan struct{}) {
		table, changed := r.networks.get()
		return table.forNode(s.node), changed
	})
}

// networksTable is the endpoints of every overlay network, and the
// networks each node has endpoints on.
type networksTable struct {
	all    *api.NetworksMessage
	byNode map[string][]*api.NetworkPeers
}

func newNetworksTable(all *api.NetworksMessage) *networksTable {
	t := &networksTable{all: all, byNode: map[string][]*api.NetworkPeers{}}
	for _, np := range all.GetNetworks() {
		var last string
		for _, p := range np.GetPeers() {
			// A node's endpoints are not adjacent (peers are sorted by
			// address): look back before adding.
			if n := p.GetNodeId(); n != last {
				last = n
				if l := t.byNode[n]; len(l) == 0 || l[len(l)-1] != np {
					t.byNode[n] = append(l, np)
				}
			}
		}
	}
	return t
}

// forNode is what node is sent: the networks it has endpoints on, in
// network order.
func (t *networksTable) forNode(node string) *api.NetworksMessage {
	return &api.NetworksMessage{Networks: t.byNode[node]}
}

// newNetworksFeed holds the latest endpoints of the overlay networks.
func newNetworksFeed() *feed[*networksTable] {
	return newFeed(newNetworksTable(&api.NetworksMessage{}), func(a, b *networksTable) bool { return proto.Equal(a.all, b.all) })
}

// runNetworks keeps r.networks up to date with the store: it recomputes
// the endpoints after changes to tasks attached to networks and, while
// there are endpoints, to the addresses of nodes.
func (r *run) runNetworks(events <-chan []store.Event, cancel func()) {
	var attached bool
	r.followStore(events, cancel,
		func(ev store.Event) bool { return networksRelevant(ev, attached) },
		func() { attached = r.recomputeNetworks() })
}

// recomputeNetworks reads the store, publishes the endpoints when they
// changed and reports whether there are any.
func (r *run) recomputeNetworks() bool {
	var msg *api.NetworksMessage
	r.d.store.View(func(tx store.ReadTx) {
		tasks, _ := store.FindTasks(tx, store.All)
		nodes := map[string]*api.Node{}
		services := map[string]*api.Service{}
		for _, t := range tasks {
			if len(t.GetNetworks()) > 0 && t.GetNodeId() != "" {
				nodes[t.GetNodeId()] = nil
				services[t.GetServiceId()] = nil
			}
		}
		for id := range nodes {
			nodes[id] = store.GetNode(tx, id)
		}
		for id := range services {
			services[id] = store.GetService(tx, id)
		}
		msg = networkPeers(tasks, nodes, services)
	})
	// Most relevant events (a task moving from PREPARING to STARTING)
	// change nothing here: index only what is new.
	if cur, _ := r.networks.get(); proto.Equal(cur.all, msg) {
		return len(msg.GetNetworks()) > 0
	}
	if r.networks.set(newNetworksTable(msg)) {
		r.d.log.Debug("dispatcher: network endpoints changed", "networks", len(msg.GetNetworks()))
	}
	return len(msg.GetNetworks()) > 0
}

// networksRelevant reports whether ev may change the network endpoints,
// given whether there are any now.
func networksRelevant(ev store.Event, attached bool) bool {
	switch o := ev.Object.(type) {
	case *api.Task:
		old, _ := ev.Old.(*api.Task)
		return len(o.GetNetworks()) > 0 || len(old.GetNetworks()) > 0
	case *api.Service:
		// Services matter through their names and virtual IPs, and
		// only while there are endpoints.
		return attached
	case *api.Node:
		// Nodes matter only through the address of their endpoints.
		if !attached {
			return false
		}
		old, ok := ev.Old.(*api.Node)
		return !ok || nodeVTEP(old) != nodeVTEP(o)
	case nil:
		return ev.Action == store.EventRestore
	}
	return false
}

// nodeVTEP is the underlay address of a node's overlay endpoints: the
// address its session comes from, else the host of its mesh tunnel.
func nodeVTEP(n *api.Node) string {
	if a, err := netip.ParseAddr(n.GetStatus().GetAddr()); err == nil && a.Is4() && !a.IsUnspecified() {
		return a.String()
	}
	if host, _, err := net.SplitHostPort(n.GetDescription().GetMeshTunnel()); err == nil {
		if a, err := netip.ParseAddr(host); err == nil && a.Is4() && !a.IsUnspecified() {
			return a.String()
		}
	}
	return ""
}

// endpointActive reports whether a task's endpoints belong on the overlay:
// it is assigned to a node, meant to run and has not stopped. A task being
// shut down leaves at once.
func endpointActive(t *api.Task) bool {
	return t.GetNodeId() != "" &&
		t.GetDesiredState() <= api.TaskState_TASK_STATE_RUNNING &&
		t.GetStatus().GetState() <= api.TaskState_TASK_STATE_RUNNING
}

// networkPeers is the endpoints of every overlay network: the IPv4
// addresses of the attachments of active tasks (ingress excepted) on nodes
// whose address is known, and the services they belong to. Networks
// without endpoints are left out; networks are sorted by ID, endpoints by
// address, services by name.
func networkPeers(tasks []*api.Task, nodes map[string]*api.Node, services map[string]*api.Service) *api.NetworksMessage {
	byNet := map[string][]*api.NetworkPeer{}
	svcByNet := map[string]map[string]*api.NetworkService{}
	for _, t := range tasks {
		if len(t.GetNetworks()) == 0 || !endpointActive(t) {
			continue
		}
		vtep := nodeVTEP(nodes[t.GetNodeId()])
		if vtep == "" {
			continue
		}
		svc := services[t.GetServiceId()]
		for _, att := range t.GetNetworks() {
			nw := att.GetNetwork()
			if nw.GetId() == "" || nw.GetSpec().GetIngress() {
				continue
			}
			for _, a := range att.GetAddresses() {
				p, err := netip.ParsePrefix(a)
				if err != nil || !p.Addr().Is4() {
					continue
				}
				byNet[nw.GetId()] = append(byNet[nw.GetId()], &api.NetworkPeer{
					Ip: p.Addr().String(), Vtep: vtep, TaskId: t.GetId(), NodeId: t.GetNodeId(),
					ServiceId: t.GetServiceId(), Name: store.TaskName(t), Aliases: slices.Clone(att.GetAliases()),
					Running: t.GetStatus().GetState() == api.TaskState_TASK_STATE_RUNNING,
				})
			}
			if ns := networkService(svc, nw.GetId()); ns != nil {
				if svcByNet[nw.GetId()] == nil {
					svcByNet[nw.GetId()] = map[string]*api.NetworkService{}
				}
				svcByNet[nw.GetId()][ns.GetServiceId()] = ns
			}
		}
	}
	msg := &api.NetworksMessage{}
	for id, peers := range byNet {
		slices.SortFunc(peers, func(a, b *api.NetworkPeer) int {
			return cmp.Or(netip.MustParseAddr(a.GetIp()).Compare(netip.MustParseAddr(b.GetIp())), cmp.Compare(a.GetTaskId(), b.GetTaskId()))
		})
		np := &api.NetworkPeers{NetworkId: id, Peers: peers}
		for _, ns := range svcByNet[id] {
			np.Services = append(np.Services, ns)
		}
		slices.SortFunc(np.Services, func(a, b *api.NetworkService) int {
			return cmp.Or(cmp.Compare(a.GetName(), b.GetName()), cmp.Compare(a.GetServiceId(), b.GetServiceId()))
		})
		msg.Networks = append(msg.Networks, np)
	}
	slices.SortFunc(msg.Networks, func(a, b *api.NetworkPeers) int { return cmp.Compare(a.GetNetworkId(), b.GetNetworkId()) })
	return msg
}

// networkService is what service s's name resolves to on network netID;
// nil for a service that is gone.
func networkService(s *api.Service, netID string) *api.NetworkService {
	if s == nil || s.GetSpec().GetAnnotations().GetName() == "" {
		return nil
	}
	ns := &api.NetworkService{ServiceId: s.GetId(), Name: s.GetSpec().GetAnnotations().GetName()}
	if s.GetSpec().GetEndpoint().GetMode() == api.EndpointSpec_DNSRR {
		ns.Dnsrr = true
		return ns
	}
	for _, v := range s.GetEndpoint().GetVirtualIps() {
		if v.GetNetworkId() != netID {
			continue
		}
		if p, err := netip.ParsePrefix(v.GetAddr()); err == nil && p.Addr().Is4() {
			ns.Vip = p.Addr().String()
		} else if a, err := netip.ParseAddr(v.GetAddr()); err == nil && a.Is4() {
			ns.Vip = a.String()
		}
	}
	return ns
}
