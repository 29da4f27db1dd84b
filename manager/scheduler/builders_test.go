package scheduler

import (
	"github.com/openswarm/swarmd/api"
)

const (
	cpu = int64(1e9)
	gib = int64(1 << 30)
)

type nodeOpt func(*api.Node)

// mkNode returns a READY, ACTIVE worker with 4 CPUs and 8 GiB, running
// linux/x86_64, with hostname "host-<id>".
func mkNode(id string, opts ...nodeOpt) *api.Node {
	n := &api.Node{
		Id:   id,
		Role: api.NodeRole_NODE_ROLE_WORKER,
		Spec: &api.NodeSpec{
			Annotations:  &api.Annotations{Labels: map[string]string{}},
			Availability: api.NodeAvailability_NODE_AVAILABILITY_ACTIVE,
			Membership:   api.NodeMembership_NODE_MEMBERSHIP_ACCEPTED,
		},
		Description: &api.NodeDescription{
			Hostname:  "host-" + id,
			Platform:  &api.Platform{Os: "linux", Architecture: "x86_64"},
			Resources: &api.Resources{NanoCpus: 4 * cpu, MemoryBytes: 8 * gib},
			Engine:    &api.EngineDescription{Labels: map[string]string{}},
		},
		Status: &api.NodeStatus{State: api.NodeStatus_READY},
	}
	for _, o := range opts {
		o(n)
	}
	return n
}

func nodeLabels(kv ...string) nodeOpt {
	return func(n *api.Node) {
		for i := 0; i+1 < len(kv); i += 2 {
			n.Spec.Annotations.Labels[kv[i]] = kv[i+1]
		}
	}
}

func engineLabels(kv ...string) nodeOpt {
	return func(n *api.Node) {
		for i := 0; i+1 < len(kv); i += 2 {
			n.Description.Engine.Labels[kv[i]] = kv[i+1]
		}
	}
}

func manager(n *api.Node) { n.Role = api.NodeRole_NODE_ROLE_MANAGER }

func nodeState(s api.NodeStatus_State) nodeOpt {
	return func(n *api.Node) { n.Status.State = s }
}

func availability(a api.NodeAvailability) nodeOpt {
	return func(n *api.Node) { n.Spec.Availability = a }
}

func nodeResources(nanoCPUs, memory int64) nodeOpt {
	return func(n *api.Node) { n.Description.Resources = &api.Resources{NanoCpus: nanoCPUs, MemoryBytes: memory} }
}

func platform(os, arch string) nodeOpt {
	return func(n *api.Node) { n.Description.Platform = &api.Platform{Os: os, Architecture: arch} }
}

func noDescription(n *api.Node) { n.Description = nil }

type taskOpt func(*api.Task)

// mkTask returns a PENDING task of service svc at spec version 1, desired
// RUNNING.
func mkTask(id, svc string, opts ...taskOpt) *api.Task {
	t := &api.Task{
		Id:           id,
		ServiceId:    svc,
		Slot:         1,
		SpecVersion:  &api.Version{Index: 1},
		Spec:         &api.TaskSpec{Container: &api.ContainerSpec{Image: "img"}},
		DesiredState: api.TaskState_TASK_STATE_RUNNING,
		Status:       &api.TaskStatus{State: api.TaskState_TASK_STATE_PENDING, Message: "pending task scheduling"},
	}
	for _, o := range opts {
		o(t)
	}
	return t
}

// mkTasks returns n tasks of svc, IDs prefix1..prefixN, slots 1..n.
func mkTasks(prefix, svc string, n int, opts ...taskOpt) []*api.Task {
	out := make([]*api.Task, n)
	for i := range n {
		out[i] = mkTask(prefix+itoa(i+1), svc, append([]taskOpt{slot(uint64(i + 1))}, opts...)...)
	}
	return out
}

func itoa(i int) string {
	if i < 10 {
		return string(rune('0' + i))
	}
	return itoa(i/10) + string(rune('0'+i%10))
}

func slot(s uint64) taskOpt { return func(t *api.Task) { t.Slot = s } }

func placement(t *api.Task) *api.Placement {
	if t.Spec.Placement == nil {
		t.Spec.Placement = &api.Placement{}
	}
	return t.Spec.Placement
}

func reserve(nanoCPUs, memory int64) taskOpt {
	return func(t *api.Task) {
		t.Spec.Resources = &api.ResourceRequirements{Reservations: &api.Resources{NanoCpus: nanoCPUs, MemoryBytes: memory}}
	}
}

func constraints(exprs ...string) taskOpt {
	return func(t *api.Task) { placement(t).Constraints = exprs }
}

func spread(descriptors ...string) taskOpt {
	return func(t *api.Task) {
		for _, d := range descriptors {
			placement(t).Preferences = append(placement(t).Preferences, &api.PlacementPreference{SpreadDescriptor: d})
		}
	}
}

func platforms(ps ...*api.Platform) taskOpt {
	return func(t *api.Task) { placement(t).Platforms = ps }
}

func maxReplicas(n uint64) taskOpt {
	return func(t *api.Task) { placement(t).MaxReplicas = n }
}

func port(proto api.PortConfig_Protocol, published uint32, mode api.PortConfig_PublishMode) taskOpt {
	return func(t *api.Task) {
		if t.Endpoint == nil {
			t.Endpoint = &api.Endpoint{}
		}
		t.Endpoint.Ports = append(t.Endpoint.Ports, &api.PortConfig{
			Protocol: proto, TargetPort: 80, PublishedPort: published, PublishMode: mode,
		})
	}
}

func hostTCP(p uint32) taskOpt { return port(api.PortConfig_TCP, p, api.PortConfig_HOST) }

// running puts the task on node, RUNNING.
func running(node string) taskOpt {
	return func(t *api.Task) {
		t.NodeId = node
		t.Status = &api.TaskStatus{State: api.TaskState_TASK_STATE_RUNNING}
	}
}

// preset names the task's node in advance, as for a global service.
func preset(node string) taskOpt { return func(t *api.Task) { t.NodeId = node } }

func observed(s api.TaskState) taskOpt { return func(t *api.Task) { t.Status.State = s } }

func desired(s api.TaskState) taskOpt { return func(t *api.Task) { t.DesiredState = s } }

func statusErr(e string) taskOpt { return func(t *api.Task) { t.Status.Err = e } }

func specVersion(v uint64) taskOpt {
	return func(t *api.Task) { t.SpecVersion = &api.Version{Index: v} }
}

func nodes3(opts ...nodeOpt) []*api.Node {
	return []*api.Node{mkNode("n1", opts...), mkNode("n2", opts...), mkNode("n3", opts...)}
}

func concat[T any](parts ...[]T) []T {
	var out []T
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}
