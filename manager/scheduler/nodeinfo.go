package scheduler

import "github.com/openswarm/swarmd/api"

// hostPort is a host-mode published port: only one task on a node may
// publish it.
type hostPort struct {
	protocol api.PortConfig_Protocol
	port     uint32
}

// nodeInfo is a node and what occupies it. node is nil for a placeholder:
// a node the view knows tasks of but not the node itself (not yet seen, or
// removed while tasks still name it); a placeholder is never a candidate.
type nodeInfo struct {
	id   string
	node *api.Node // read-only; set with setNode

	// isReady and totalCPU, totalMemory cache what the filters read of
	// node on every pass.
	isReady               bool
	totalCPU, totalMemory int64

	// tasks counts the tasks occupying the node (see occupies). The view
	// pairs each addTask with one removeTask of the same task (a taskRef's
	// node says whether it is counted here), so the node keeps no set of
	// its own: at 100,000 tasks that set was 9 MB of the manager's heap.
	tasks int
	// services counts tasks by service ID.
	services map[string]int
	// reservedCPU and reservedMemory sum the tasks' reservations.
	reservedCPU, reservedMemory int64
	// ports counts the tasks publishing each host-mode port.
	ports map[hostPort]int
}

func newNodeInfo(id string) *nodeInfo {
	return &nodeInfo{
		id:       id,
		services: make(map[string]int),
		ports:    make(map[hostPort]int),
	}
}

// addTask counts t on the node.
func (ni *nodeInfo) addTask(t *api.Task) {
	ni.tasks++
	ni.services[t.GetServiceId()]++
	cpu, mem := reservations(t)
	ni.reservedCPU += cpu
	ni.reservedMemory += mem
	for _, p := range endpointPorts(t) {
		if hp, ok := publishedHostPort(p); ok {
			ni.ports[hp]++
		}
	}
}

// removeTask undoes what addTask counted for t, the very task (version)
// it was given.
func (ni *nodeInfo) removeTask(t *api.Task) {
	ni.tasks--
	if n := ni.services[t.GetServiceId()] - 1; n > 0 {
		ni.services[t.GetServiceId()] = n
	} else {
		delete(ni.services, t.GetServiceId())
	}
	cpu, mem := reservations(t)
	ni.reservedCPU -= cpu
	ni.reservedMemory -= mem
	for _, p := range endpointPorts(t) {
		if hp, ok := publishedHostPort(p); ok {
			if n := ni.ports[hp] - 1; n > 0 {
				ni.ports[hp] = n
			} else {
				delete(ni.ports, hp)
			}
		}
	}
}

// setNode sets the node (nil: unknown).
func (ni *nodeInfo) setNode(n *api.Node) {
	ni.node = n
	ni.isReady = n != nil &&
		n.GetStatus().GetState() == api.NodeStatus_READY &&
		n.GetSpec().GetAvailability() == api.NodeAvailability_NODE_AVAILABILITY_ACTIVE
	r := n.GetDescription().GetResources()
	ni.totalCPU, ni.totalMemory = r.GetNanoCpus(), r.GetMemoryBytes()
}

// ready reports whether the node takes new tasks: it is known, its status
// is READY and its availability ACTIVE.
func (ni *nodeInfo) ready() bool { return ni.isReady }

// available returns the node's resources minus what its tasks reserve. A
// node that describes no resources has none.
func (ni *nodeInfo) available() (nanoCPUs, memoryBytes int64) {
	return ni.totalCPU - ni.reservedCPU, ni.totalMemory - ni.reservedMemory
}

// reservations returns what t's spec reserves.
func reservations(t *api.Task) (nanoCPUs, memoryBytes int64) {
	r := t.GetSpec().GetResources().GetReservations()
	return r.GetNanoCpus(), r.GetMemoryBytes()
}

// publishedHostPort returns p as a host port if it is one a node can
// publish once only: host mode with a fixed published port (a published
// port of 0 lets the engine pick a free one).
func publishedHostPort(p *api.PortConfig) (hostPort, bool) {
	if p.GetPublishMode() != api.PortConfig_HOST || p.GetPublishedPort() == 0 {
		return hostPort{}, false
	}
	return hostPort{protocol: p.GetProtocol(), port: p.GetPublishedPort()}, true
}

// endpointPorts returns the ports t's endpoint publishes: those the
// allocator filled in, or, before it did, those the endpoint spec asks for.
func endpointPorts(t *api.Task) []*api.PortConfig {
	if ports := t.GetEndpoint().GetPorts(); len(ports) > 0 {
		return ports
	}
	return t.GetEndpoint().GetSpec().GetPorts()
}

// taskHostPorts returns the host ports t publishes.
func taskHostPorts(t *api.Task) []hostPort {
	var out []hostPort
	for _, p := range endpointPorts(t) {
		if hp, ok := publishedHostPort(p); ok {
			out = append(out, hp)
		}
	}
	return out
}
