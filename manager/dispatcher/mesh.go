package dispatcher

import (
	"cmp"
	"slices"

	"github.com/openswarm/swarmd/api"
	"github.com/openswarm/swarmd/manager/state/store"
	"google.golang.org/protobuf/proto"
)

// Mesh streams the routing mesh's table to the calling node: the complete
// table at once, then again each time it changes (changes within
// AssignmentBatchDelay of each other make one message). The stream ends
// with the session.
func (d *Dispatcher) Mesh(req *api.MeshRequest, stream api.Dispatcher_MeshServer) error {
	ctx := stream.Context()
	r, s, err := d.session(ctx, req.GetSessionId())
	if err != nil {
		return err
	}
	return streamTable(ctx, r, s, stream.Send, r.mesh.get)
}

// newMeshFeed holds the routing mesh's latest table.
func newMeshFeed() *feed[*api.MeshMessage] {
	return newFeed(&api.MeshMessage{}, func(a, b *api.MeshMessage) bool { return proto.Equal(a, b) })
}

// runMesh keeps r.mesh up to date with the store: it recomputes the table
// after changes to services, to the tasks of services that publish
// ingress ports, and to nodes (their state and tunnel addresses).
func (r *run) runMesh(events <-chan []store.Event, cancel func()) {
	var ingress map[string]bool
	r.followStore(events, cancel,
		func(ev store.Event) bool { return meshRelevant(ev, ingress) },
		func() { ingress = r.recomputeMesh() })
}

// recomputeMesh reads the store, publishes the table and returns the IDs
// of the services that publish ingress ports.
func (r *run) recomputeMesh() map[string]bool {
	var msg *api.MeshMessage
	ingress := map[string]bool{}
	// The stored objects are read in place (meshTable only reads them):
	// the table is recomputed after every service write, and copying
	// every service each time cost a copy of all of them per write.
	r.d.store.View(func(tx store.ReadTx) {
		var published []*api.Service
		tasks := map[string][]*api.Task{}
		_ = store.Each(tx, store.All, func(s *api.Service) bool {
			if len(ingressPorts(s)) > 0 {
				ingress[s.GetId()] = true
				published = append(published, s)
			}
			return true
		})
		for _, s := range published {
			_ = store.Each(tx, store.ByServiceID(s.GetId()), func(t *api.Task) bool {
				tasks[s.GetId()] = append(tasks[s.GetId()], t)
				return true
			})
		}
		nodes := map[string]*api.Node{}
		if len(published) > 0 {
			_ = store.Each(tx, store.All, func(n *api.Node) bool {
				nodes[n.GetId()] = n
				return true
			})
		}
		msg = meshTable(published, tasks, nodes)
	})
	if r.mesh.set(msg) {
		r.d.log.Debug("dispatcher: mesh table changed", "ports", len(msg.GetPorts()))
	}
	return ingress
}

// meshRelevant reports whether ev may change the mesh table, given the
// services that publish ingress ports now.
func meshRelevant(ev store.Event, ingress map[string]bool) bool {
	switch o := ev.Object.(type) {
	case *api.Service:
		return true
	case *api.Node:
		// Nodes matter only to ports: without any, the table stays empty
		// however nodes come and go (thousands join at once at scale).
		return len(ingress) > 0
	case *api.Task:
		return ingress[o.GetServiceId()]
	case nil:
		return ev.Action == store.EventRestore
	}
	return false
}

// ingressPorts are the service's allocated ports published in ingress mode.
func ingressPorts(s *api.Service) []*api.PortConfig {
	var out []*api.PortConfig
	for _, p := range s.GetEndpoint().GetPorts() {
		if p.GetPublishMode() == api.PortConfig_INGRESS && p.GetPublishedPort() != 0 {
			out = append(out, p)
		}
	}
	return out
}

// meshTable is the routing mesh's table: for every ingress-published port,
// the tasks that run and are meant to (a task being shut down leaves at
// once) on nodes that are READY and have a mesh tunnel. Ports are sorted
// by protocol and port, backends by task ID.
func meshTable(svcs []*api.Service, tasks map[string][]*api.Task, nodes map[string]*api.Node) *api.MeshMessage {
	msg := &api.MeshMessage{}
	for _, s := range svcs {
		var backends []*api.MeshBackend
		for _, t := range tasks[s.GetId()] {
			if t.GetStatus().GetState() != api.TaskState_TASK_STATE_RUNNING || t.GetDesiredState() != api.TaskState_TASK_STATE_RUNNING {
				continue
			}
			n := nodes[t.GetNodeId()]
			if n.GetStatus().GetState() != api.NodeStatus_READY || n.GetDescription().GetMeshTunnel() == "" {
				continue
			}
			backends = append(backends, &api.MeshBackend{TaskId: t.GetId(), NodeId: n.GetId(), Tunnel: n.GetDescription().GetMeshTunnel()})
		}
		slices.SortFunc(backends, func(a, b *api.MeshBackend) int { return cmp.Compare(a.GetTaskId(), b.GetTaskId()) })
		for _, p := range ingressPorts(s) {
			msg.Ports = append(msg.Ports, &api.MeshPort{
				Protocol: p.GetProtocol(), PublishedPort: p.GetPublishedPort(), TargetPort: p.GetTargetPort(),
				ServiceId: s.GetId(), Backends: backends,
			})
		}
	}
	slices.SortFunc(msg.Ports, func(a, b *api.MeshPort) int {
		return cmp.Or(cmp.Compare(a.GetProtocol(), b.GetProtocol()), cmp.Compare(a.GetPublishedPort(), b.GetPublishedPort()))
	})
	return msg
}
