package scheduler

import (
	"maps"
	"testing"

	"github.com/openswarm/swarmd/api"
)

// scheduleCase is one row of the pure-core harness: a cluster (nodes and
// tasks, pending or not) and what one pass must decide.
type scheduleCase struct {
	name  string
	nodes []*api.Node
	tasks []*api.Task

	// assigned: task -> node it must go to.
	assigned map[string]string
	// perNode: how many tasks the pass places on each node (nodes not
	// listed: none). Checked if not nil.
	perNode map[string]int
	// errs: task -> the error it must be left with.
	errs map[string]string
	// pendingErr: every task left pending must have this error, and there
	// must be pending of them.
	pendingErr string
	pending    int
	// none: the pass decides nothing at all.
	none bool
}

// result is what a pass decided, task by task.
type result struct {
	node map[string]string
	err  map[string]string
}

func runPass(t *testing.T, nodes []*api.Node, tasks []*api.Task) (*view, result) {
	t.Helper()
	v := newView()
	for _, n := range nodes {
		v.upsertNode(n)
	}
	for _, tk := range tasks {
		v.upsertTask(tk)
	}
	ds := v.schedule()
	res := result{node: map[string]string{}, err: map[string]string{}}
	for _, d := range ds {
		id := d.ref.t.GetId()
		if _, dup := res.node[id]; dup {
			t.Fatalf("task %s decided twice", id)
		}
		if _, dup := res.err[id]; dup {
			t.Fatalf("task %s decided twice", id)
		}
		if d.node != "" {
			res.node[id] = d.node
		} else {
			res.err[id] = d.err
		}
	}
	checkView(t, v)
	return v, res
}

func (c scheduleCase) check(t *testing.T, res result) {
	t.Helper()
	if c.none && (len(res.node) > 0 || len(res.err) > 0) {
		t.Fatalf("decided %v / %v, want nothing", res.node, res.err)
	}
	for task, node := range c.assigned {
		if got := res.node[task]; got != node {
			t.Errorf("task %s on %q, want %q (errors: %v)", task, got, node, res.err)
		}
	}
	if c.perNode != nil {
		got := map[string]int{}
		for _, n := range res.node {
			got[n]++
		}
		if !maps.Equal(got, c.perNode) {
			t.Errorf("tasks per node %v, want %v (errors: %v)", got, c.perNode, res.err)
		}
	}
	for task, e := range c.errs {
		if got := res.err[task]; got != e {
			t.Errorf("task %s error %q, want %q (node %q)", task, got, e, res.node[task])
		}
	}
	if c.pendingErr != "" {
		n := 0
		for task, e := range res.err {
			if e != c.pendingErr {
				t.Errorf("task %s error %q, want %q", task, e, c.pendingErr)
			}
			n++
		}
		if n != c.pending {
			t.Errorf("%d tasks left pending, want %d (errors %v)", n, c.pending, res.err)
		}
	}
}

// checkView verifies the view's bookkeeping against its tasks: every node
// counts exactly the tasks placed on it (number, services, reservations,
// host ports), and every group holds exactly its pending tasks.
func checkView(t *testing.T, v *view) {
	t.Helper()
	type counts struct {
		tasks    int
		services map[string]int
		cpu, mem int64
		ports    map[hostPort]int
	}
	want := map[string]*counts{}
	for id, ref := range v.tasks {
		if (ref.node == "") == (ref.group == nil) {
			t.Fatalf("task %s: node %q, group %v: want exactly one", id, ref.node, ref.group)
		}
		if ref.node != "" {
			w := want[ref.node]
			if w == nil {
				w = &counts{services: map[string]int{}, ports: map[hostPort]int{}}
				want[ref.node] = w
			}
			w.tasks++
			w.services[ref.t.GetServiceId()]++
			c, m := reservations(ref.t)
			w.cpu += c
			w.mem += m
			for _, hp := range taskHostPorts(ref.t) {
				w.ports[hp]++
			}
		}
		if ref.group != nil && ref.group.tasks[id] != ref {
			t.Fatalf("task %s missing from its group", id)
		}
	}
	for id, ni := range v.nodes {
		w := want[id]
		if w == nil {
			w = &counts{services: map[string]int{}, ports: map[hostPort]int{}}
		}
		if ni.tasks != w.tasks || !maps.Equal(w.services, ni.services) || w.cpu != ni.reservedCPU || w.mem != ni.reservedMemory || !maps.Equal(w.ports, ni.ports) {
			t.Fatalf("node %s: %d tasks, services %v cpu %d mem %d ports %v; want %d %v %d %d %v",
				id, ni.tasks, ni.services, ni.reservedCPU, ni.reservedMemory, ni.ports, w.tasks, w.services, w.cpu, w.mem, w.ports)
		}
		if ni.node == nil && ni.tasks == 0 {
			t.Fatalf("empty placeholder for node %s", id)
		}
	}
	for id := range want {
		if v.nodes[id] == nil {
			t.Fatalf("tasks on node %s, which the view does not track", id)
		}
	}
	for k, g := range v.groups {
		if len(g.tasks) == 0 {
			t.Fatalf("empty group %v", k)
		}
	}
}

func TestScheduleFilters(t *testing.T) {
	const (
		notAvailable2 = "no suitable node (2 nodes not available for new tasks)"
	)
	cases := []scheduleCase{
		{
			name: "only the ready active node",
			nodes: []*api.Node{
				mkNode("n1", nodeState(api.NodeStatus_DOWN)),
				mkNode("n2", availability(api.NodeAvailability_NODE_AVAILABILITY_DRAIN)),
				mkNode("n3", availability(api.NodeAvailability_NODE_AVAILABILITY_PAUSE)),
				mkNode("n4", nodeState(api.NodeStatus_DISCONNECTED)),
				mkNode("n5"),
			},
			tasks:    []*api.Task{mkTask("t1", "s")},
			assigned: map[string]string{"t1": "n5"},
		},
		{
			name: "no node available",
			nodes: []*api.Node{
				mkNode("n1", nodeState(api.NodeStatus_DOWN)),
				mkNode("n2", availability(api.NodeAvailability_NODE_AVAILABILITY_DRAIN)),
			},
			tasks: []*api.Task{mkTask("t1", "s")},
			errs:  map[string]string{"t1": notAvailable2},
		},
		{
			name:  "one node unavailable",
			nodes: []*api.Node{mkNode("n1", nodeState(api.NodeStatus_UNKNOWN))},
			tasks: []*api.Task{mkTask("t1", "s")},
			errs:  map[string]string{"t1": "no suitable node (1 node not available for new tasks)"},
		},
		{
			name:  "no nodes at all",
			tasks: []*api.Task{mkTask("t1", "s")},
			errs:  map[string]string{"t1": "no suitable node"},
		},
		{
			name:  "insufficient cpu",
			nodes: []*api.Node{mkNode("n1", nodeResources(1*cpu, 8*gib))},
			tasks: []*api.Task{mkTask("t1", "s", reserve(2*cpu, 0))},
			errs:  map[string]string{"t1": "no suitable node (insufficient resources on 1 node)"},
		},
		{
			name:  "insufficient memory",
			nodes: []*api.Node{mkNode("n1"), mkNode("n2", nodeResources(8*cpu, 1*gib))},
			tasks: []*api.Task{mkTask("t1", "s", reserve(0, 9*gib)), mkTask("t2", "s2", reserve(0, 2*gib))},
			errs:  map[string]string{"t1": "no suitable node (insufficient resources on 2 nodes)"},
		},
		{
			name:  "node describing no resources",
			nodes: []*api.Node{mkNode("n1", noDescription)},
			tasks: []*api.Task{mkTask("t1", "s", reserve(1, 0)), mkTask("t2", "other")},
			errs:  map[string]string{"t1": "no suitable node (insufficient resources on 1 node)"},
		},
		{
			name:       "resources exhausted by the batch",
			nodes:      nodes3(nodeResources(2*cpu, 8*gib)),
			tasks:      mkTasks("t", "s", 8, reserve(1*cpu, 0)),
			perNode:    map[string]int{"n1": 2, "n2": 2, "n3": 2},
			pendingErr: "no suitable node (insufficient resources on 3 nodes)",
			pending:    2,
		},
		{
			name:  "reservations of running tasks count",
			nodes: []*api.Node{mkNode("n1"), mkNode("n2")},
			tasks: concat(
				[]*api.Task{mkTask("r1", "other", running("n1"), reserve(3*cpu, 0))},
				mkTasks("t", "s", 3, reserve(2*cpu, 0)),
			),
			perNode:    map[string]int{"n2": 2},
			pendingErr: "no suitable node (insufficient resources on 2 nodes)",
			pending:    1,
		},
		{
			name:  "stopped and shut down tasks free their resources",
			nodes: []*api.Node{mkNode("n1", nodeResources(1*cpu, gib))},
			tasks: []*api.Task{
				mkTask("done", "other", running("n1"), reserve(1*cpu, 0), observed(api.TaskState_TASK_STATE_COMPLETE)),
				mkTask("stopping", "other", running("n1"), reserve(1*cpu, 0), desired(api.TaskState_TASK_STATE_SHUTDOWN)),
				mkTask("t1", "s", reserve(1*cpu, 0)),
			},
			assigned: map[string]string{"t1": "n1"},
		},
		{
			name: "platform",
			nodes: []*api.Node{
				mkNode("n1", platform("linux", "aarch64")),
				mkNode("n2", platform("windows", "x86_64")),
				mkNode("n3", platform("Linux", "x86_64")),
			},
			tasks: []*api.Task{
				mkTask("t1", "s", platforms(&api.Platform{Os: "linux", Architecture: "amd64"})),
				mkTask("t2", "arm", platforms(&api.Platform{Architecture: "arm64"})),
				mkTask("t3", "mips", platforms(&api.Platform{Os: "linux", Architecture: "mips64"})),
			},
			assigned: map[string]string{"t1": "n3", "t2": "n1"},
			errs:     map[string]string{"t3": "no suitable node (unsupported platform on 3 nodes)"},
		},
		{
			name:  "node reporting no platform",
			nodes: []*api.Node{mkNode("n1", func(n *api.Node) { n.Description.Platform = nil })},
			tasks: []*api.Task{mkTask("t1", "s", platforms(&api.Platform{Os: "linux"}))},
			errs:  map[string]string{"t1": "no suitable node (unsupported platform on 1 node)"},
		},
		{
			name:  "host port in use",
			nodes: nodes3(),
			tasks: concat(
				[]*api.Task{mkTask("r1", "web", running("n1"), hostTCP(8080))},
				mkTasks("t", "web", 3, specVersion(2), hostTCP(8080)),
			),
			perNode:    map[string]int{"n2": 1, "n3": 1},
			pendingErr: "no suitable node (host-mode port already in use on 3 nodes)",
			pending:    1,
		},
		{
			name:  "other protocol, ingress and dynamic ports do not conflict",
			nodes: []*api.Node{mkNode("n1")},
			tasks: []*api.Task{
				mkTask("r1", "web", running("n1"), hostTCP(8080), port(api.PortConfig_TCP, 9090, api.PortConfig_INGRESS), port(api.PortConfig_TCP, 0, api.PortConfig_HOST)),
				mkTask("t1", "a", port(api.PortConfig_UDP, 8080, api.PortConfig_HOST)),
				mkTask("t2", "b", port(api.PortConfig_TCP, 9090, api.PortConfig_HOST)),
				mkTask("t3", "c", port(api.PortConfig_TCP, 0, api.PortConfig_HOST)),
				mkTask("t4", "d", port(api.PortConfig_TCP, 8080, api.PortConfig_INGRESS)),
			},
			assigned: map[string]string{"t1": "n1", "t2": "n1", "t3": "n1", "t4": "n1"},
		},
		{
			name:  "host ports from the endpoint spec before allocation",
			nodes: []*api.Node{mkNode("n1")},
			tasks: []*api.Task{
				mkTask("r1", "web", running("n1"), hostTCP(8080)),
				mkTask("t1", "web2", func(t *api.Task) {
					t.Endpoint = &api.Endpoint{Spec: &api.EndpointSpec{Ports: []*api.PortConfig{{PublishedPort: 8080, PublishMode: api.PortConfig_HOST}}}}
				}),
			},
			errs: map[string]string{"t1": "no suitable node (host-mode port already in use on 1 node)"},
		},
		{
			name:       "max replicas per node",
			nodes:      []*api.Node{mkNode("n1"), mkNode("n2")},
			tasks:      mkTasks("t", "s", 3, maxReplicas(1)),
			perNode:    map[string]int{"n1": 1, "n2": 1},
			pendingErr: "no suitable node (max replicas per node limit exceed)",
			pending:    1,
		},
		{
			name:  "max replicas counts running tasks",
			nodes: []*api.Node{mkNode("n1"), mkNode("n2")},
			tasks: []*api.Task{
				mkTask("r1", "s", running("n2"), maxReplicas(2)),
				mkTask("r2", "s", running("n2"), maxReplicas(2)),
				mkTask("t1", "s", specVersion(2), maxReplicas(2)),
				mkTask("t2", "s", specVersion(2), maxReplicas(2)),
				mkTask("t3", "s", specVersion(2), maxReplicas(2)),
			},
			perNode:    map[string]int{"n1": 2},
			pendingErr: "no suitable node (max replicas per node limit exceed)",
			pending:    1,
		},
		{
			name: "combined reasons in filter order",
			nodes: []*api.Node{
				mkNode("n1", nodeState(api.NodeStatus_DOWN)),
				mkNode("n2", nodeLabels("zone", "east"), nodeResources(1*cpu, gib)),
				mkNode("n3", nodeLabels("zone", "west")),
				mkNode("n4", nodeLabels("zone", "east"), platform("windows", "amd64")),
				mkNode("n5", nodeLabels("zone", "east")),
				mkNode("n6", nodeLabels("zone", "east")),
			},
			tasks: []*api.Task{
				mkTask("r1", "other", running("n5"), hostTCP(80)),
				mkTask("r2", "s", running("n6")),
				mkTask("t1", "s", specVersion(2), reserve(2*cpu, 0), constraints("node.labels.zone==east"),
					platforms(&api.Platform{Os: "linux"}), hostTCP(80), maxReplicas(1)),
			},
			errs: map[string]string{"t1": "no suitable node (1 node not available for new tasks; insufficient resources on 1 node; " +
				"scheduling constraints not satisfied on 1 node; unsupported platform on 1 node; " +
				"host-mode port already in use on 1 node; max replicas per node limit exceed)"},
		},
		{
			name:  "tasks past their desired state or not pending are left alone",
			nodes: []*api.Node{mkNode("n1")},
			tasks: []*api.Task{
				mkTask("t1", "s", desired(api.TaskState_TASK_STATE_SHUTDOWN)),
				mkTask("t2", "s", desired(api.TaskState_TASK_STATE_REMOVE)),
				mkTask("t3", "s", observed(api.TaskState_TASK_STATE_NEW)),
				mkTask("t4", "s", running("n1")),
			},
			none: true,
		},
		{
			name:  "jobs and delayed restarts are scheduled",
			nodes: []*api.Node{mkNode("n1")},
			tasks: []*api.Task{
				mkTask("t1", "job", desired(api.TaskState_TASK_STATE_COMPLETE)),
				mkTask("t2", "s", desired(api.TaskState_TASK_STATE_READY)),
			},
			assigned: map[string]string{"t1": "n1", "t2": "n1"},
		},
		{
			name:  "an unchanged error is not written again",
			nodes: []*api.Node{mkNode("n1", nodeState(api.NodeStatus_DOWN))},
			tasks: []*api.Task{
				mkTask("t1", "s", statusErr("no suitable node (1 node not available for new tasks)")),
				mkTask("t2", "s", statusErr("no suitable node")),
			},
			errs: map[string]string{"t2": "no suitable node (1 node not available for new tasks)"},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, res := runPass(t, c.nodes, c.tasks)
			c.check(t, res)
		})
	}
}

func TestScheduleConstraints(t *testing.T) {
	nodes := []*api.Node{
		mkNode("n1", manager, nodeLabels("zone", "east", "tier", "front"), engineLabels("disk", "ssd")),
		mkNode("n2", nodeLabels("zone", "west"), engineLabels("disk", "hdd"), platform("linux", "aarch64")),
		mkNode("n3", nodeLabels("zone", "east"), platform("windows", "x86_64")),
	}
	const unsatisfied = "no suitable node (scheduling constraints not satisfied on 3 nodes)"
	cases := []struct {
		exprs []string
		want  string // node, or the error
	}{
		{[]string{"node.role==manager"}, "n1"},
		{[]string{"node.role!=manager", "node.platform.os==linux"}, "n2"},
		{[]string{"node.id==n3"}, "n3"},
		{[]string{"node.hostname==host-n2"}, "n2"},
		{[]string{"node.labels.zone==west"}, "n2"},
		{[]string{"node.labels.zone == east", "node.labels.tier != front"}, "n3"},
		{[]string{"node.labels.tier==front"}, "n1"},
		{[]string{"engine.labels.disk==hdd"}, "n2"},
		{[]string{"engine.labels.disk!=ssd", "engine.labels.disk!=hdd"}, "n3"},
		{[]string{"node.platform.os==windows"}, "n3"},
		{[]string{"node.platform.arch==aarch64"}, "n2"},
		{[]string{"node.labels.zone==north"}, unsatisfied},
		{[]string{"node.labels.zone=east"}, unsatisfied},
		{[]string{"node.role==manager", "node.role==worker"}, unsatisfied},
	}
	for _, c := range cases {
		t.Run(c.exprs[0], func(t *testing.T) {
			_, res := runPass(t, nodes, []*api.Task{mkTask("t1", "s", constraints(c.exprs...))})
			got := res.node["t1"]
			if got == "" {
				got = res.err["t1"]
			}
			if got != c.want {
				t.Fatalf("constraints %q: got %q, want %q", c.exprs, got, c.want)
			}
		})
	}
}

func TestScheduleSpread(t *testing.T) {
	zoned := func(ids ...string) []*api.Node {
		var out []*api.Node
		for i := 0; i+1 < len(ids); i += 2 {
			if ids[i+1] == "" {
				out = append(out, mkNode(ids[i]))
			} else {
				out = append(out, mkNode(ids[i], nodeLabels("zone", ids[i+1])))
			}
		}
		return out
	}
	cases := []scheduleCase{
		{
			name:    "5 tasks on 3 empty nodes: 2/2/1",
			nodes:   nodes3(),
			tasks:   mkTasks("t", "s", 5),
			perNode: map[string]int{"n1": 2, "n2": 2, "n3": 1},
		},
		{
			name:    "tasks of the service already placed count",
			nodes:   nodes3(),
			tasks:   concat([]*api.Task{mkTask("r1", "s", running("n1")), mkTask("r2", "s", running("n1"))}, mkTasks("t", "s", 4, specVersion(2))),
			perNode: map[string]int{"n2": 2, "n3": 2},
		},
		{
			name:     "fewest tasks of the service before fewest in total",
			nodes:    []*api.Node{mkNode("n1"), mkNode("n2")},
			tasks:    []*api.Task{mkTask("r1", "other", running("n1")), mkTask("r2", "other", running("n1")), mkTask("r3", "s", running("n2")), mkTask("t1", "s", specVersion(2))},
			assigned: map[string]string{"t1": "n1"},
		},
		{
			name:  "then fewest tasks in total",
			nodes: nodes3(),
			tasks: concat(
				[]*api.Task{mkTask("r1", "other", running("n1")), mkTask("r2", "other", running("n2")), mkTask("r3", "other", running("n2"))},
				mkTasks("t", "s", 2),
			),
			perNode: map[string]int{"n1": 1, "n3": 1},
		},
		{
			name:     "then lowest node ID",
			nodes:    []*api.Node{mkNode("b"), mkNode("c"), mkNode("a")},
			tasks:    []*api.Task{mkTask("t1", "s")},
			assigned: map[string]string{"t1": "a"},
		},
		{
			name:    "two spec versions of one service spread together",
			nodes:   nodes3(),
			tasks:   concat(mkTasks("a", "s", 2), mkTasks("b", "s", 1, specVersion(2))),
			perNode: map[string]int{"n1": 1, "n2": 1, "n3": 1},
		},
		{
			name:    "spread over zones, not nodes",
			nodes:   zoned("n1", "east", "n2", "east", "n3", "west"),
			tasks:   mkTasks("t", "s", 4, spread("node.labels.zone")),
			perNode: map[string]int{"n1": 1, "n2": 1, "n3": 2},
		},
		{
			name:    "nodes without the label form their own group",
			nodes:   zoned("n1", "east", "n2", "east", "n3", "west", "n4", "", "n5", ""),
			tasks:   mkTasks("t", "s", 6, spread("node.labels.zone")),
			perNode: map[string]int{"n1": 1, "n2": 1, "n3": 2, "n4": 1, "n5": 1},
		},
		{
			name: "nested preferences",
			nodes: []*api.Node{
				mkNode("n1", nodeLabels("zone", "east", "rack", "r1")),
				mkNode("n2", nodeLabels("zone", "east", "rack", "r2")),
				mkNode("n3", nodeLabels("zone", "east", "rack", "r2")),
				mkNode("n4", nodeLabels("zone", "west", "rack", "r1")),
			},
			tasks:   mkTasks("t", "s", 8, spread("node.labels.zone", "node.labels.rack")),
			perNode: map[string]int{"n1": 2, "n2": 1, "n3": 1, "n4": 4},
		},
		{
			name:    "engine labels",
			nodes:   []*api.Node{mkNode("n1", engineLabels("dc", "a")), mkNode("n2", engineLabels("dc", "a")), mkNode("n3", engineLabels("dc", "b"))},
			tasks:   mkTasks("t", "s", 2, spread("engine.labels.dc")),
			perNode: map[string]int{"n1": 1, "n3": 1},
		},
		{
			name:  "tasks already in a zone count, even on nodes that cannot take more",
			nodes: []*api.Node{mkNode("n1", nodeLabels("zone", "east"), nodeResources(2*cpu, gib)), mkNode("n2", nodeLabels("zone", "east")), mkNode("n3", nodeLabels("zone", "west"))},
			tasks: concat(
				[]*api.Task{mkTask("r1", "s", running("n1"), reserve(1*cpu, 0), spread("node.labels.zone")), mkTask("r2", "s", running("n1"), reserve(1*cpu, 0), spread("node.labels.zone"))},
				mkTasks("t", "s", 3, specVersion(2), reserve(1*cpu, 0), spread("node.labels.zone")),
			),
			perNode: map[string]int{"n2": 1, "n3": 2},
		},
		{
			name:    "a zone that fills up leaves the spread",
			nodes:   []*api.Node{mkNode("n1", nodeLabels("zone", "east"), nodeResources(1*cpu, gib)), mkNode("n2", nodeLabels("zone", "west"))},
			tasks:   mkTasks("t", "s", 4, reserve(1*cpu, 0), spread("node.labels.zone")),
			perNode: map[string]int{"n1": 1, "n2": 3},
		},
		{
			name:    "an unknown descriptor changes nothing",
			nodes:   zoned("n1", "east", "n2", "east", "n3", "west"),
			tasks:   mkTasks("t", "s", 3, spread("node.hostname")),
			perNode: map[string]int{"n1": 1, "n2": 1, "n3": 1},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, res := runPass(t, c.nodes, c.tasks)
			c.check(t, res)
		})
	}
}

func TestSchedulePreset(t *testing.T) {
	cases := []scheduleCase{
		{
			name:     "assigned to its node only",
			nodes:    nodes3(),
			tasks:    []*api.Task{mkTask("t1", "g", preset("n2")), mkTask("t2", "g", preset("n3"))},
			assigned: map[string]string{"t1": "n2", "t2": "n3"},
			perNode:  map[string]int{"n2": 1, "n3": 1},
		},
		{
			name:  "its node not available",
			nodes: []*api.Node{mkNode("n1"), mkNode("n2", availability(api.NodeAvailability_NODE_AVAILABILITY_DRAIN))},
			tasks: []*api.Task{mkTask("t1", "g", preset("n2"))},
			errs:  map[string]string{"t1": "no suitable node (1 node not available for new tasks)"},
		},
		{
			name:  "its node unknown",
			nodes: []*api.Node{mkNode("n1")},
			tasks: []*api.Task{mkTask("t1", "g", preset("gone"))},
			errs:  map[string]string{"t1": "no suitable node"},
		},
		{
			name:  "filters apply, spreading does not",
			nodes: []*api.Node{mkNode("n1", nodeLabels("zone", "east")), mkNode("n2")},
			tasks: []*api.Task{
				mkTask("r1", "g", running("n1"), spread("node.labels.zone")),
				mkTask("t1", "g", preset("n1"), specVersion(2), spread("node.labels.zone")),
				mkTask("t2", "g2", preset("n2"), constraints("node.labels.zone==east")),
			},
			assigned: map[string]string{"t1": "n1"},
			errs:     map[string]string{"t2": "no suitable node (scheduling constraints not satisfied on 1 node)"},
		},
		{
			name:  "preset tasks go before the others",
			nodes: []*api.Node{mkNode("n1", nodeResources(1*cpu, gib))},
			tasks: []*api.Task{
				mkTask("a1", "a", reserve(1*cpu, 0)),
				mkTask("z1", "z", preset("n1"), reserve(1*cpu, 0)),
			},
			assigned: map[string]string{"z1": "n1"},
			errs:     map[string]string{"a1": "no suitable node (insufficient resources on 1 node)"},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, res := runPass(t, c.nodes, c.tasks)
			c.check(t, res)
		})
	}
}

// TestScheduleSpreadIsEven checks, over many shapes, that one batch ends
// as evenly spread as placing the tasks one pass at a time would: node
// counts of the service differ by at most one.
func TestScheduleSpreadIsEven(t *testing.T) {
	for nodes := 1; nodes <= 7; nodes++ {
		for tasks := 1; tasks <= 20; tasks++ {
			var ns []*api.Node
			for i := range nodes {
				ns = append(ns, mkNode("n"+itoa(i)))
			}
			_, res := runPass(t, ns, mkTasks("t", "s", tasks))
			counts := map[string]int{}
			for _, n := range res.node {
				counts[n]++
			}
			lo, hi := tasks, 0
			for _, n := range ns {
				lo, hi = min(lo, counts[n.Id]), max(hi, counts[n.Id])
			}
			if len(res.node) != tasks || hi-lo > 1 {
				t.Fatalf("%d tasks on %d nodes: %v", tasks, nodes, counts)
			}
		}
	}
}
