package scheduler

import (
	"testing"

	"github.com/openswarm/swarmd/api"
	"google.golang.org/protobuf/proto"
)

// at returns a copy of o at store version index.
func at[T interface {
	proto.Message
	SetMeta(*api.Meta)
}](o T, index uint64) T {
	c := proto.CloneOf(o)
	c.SetMeta(&api.Meta{Version: &api.Version{Index: index}})
	return c
}

func TestNodeInfoAccounting(t *testing.T) {
	ni := newNodeInfo("n1")
	a := mkTask("a", "s", running("n1"), reserve(cpu, gib), hostTCP(80), port(api.PortConfig_UDP, 80, api.PortConfig_HOST))
	b := mkTask("b", "s", running("n1"), reserve(2*cpu, 0), hostTCP(443))
	c := mkTask("c", "other", running("n1"))
	for _, tk := range []*api.Task{a, b, c} {
		ni.addTask(tk)
	}
	if ni.tasks != 3 || ni.services["s"] != 2 || ni.services["other"] != 1 ||
		ni.reservedCPU != 3*cpu || ni.reservedMemory != gib || len(ni.ports) != 3 {
		t.Fatalf("after adds: %d tasks, services %v, cpu %d, mem %d, ports %v", ni.tasks, ni.services, ni.reservedCPU, ni.reservedMemory, ni.ports)
	}
	ni.removeTask(a)
	ni.removeTask(c)
	if ni.tasks != 1 || ni.services["s"] != 1 || len(ni.services) != 1 ||
		ni.reservedCPU != 2*cpu || ni.reservedMemory != 0 || len(ni.ports) != 1 || ni.ports[hostPort{api.PortConfig_TCP, 443}] != 1 {
		t.Fatalf("after removes: %d tasks, services %v, cpu %d, mem %d, ports %v", ni.tasks, ni.services, ni.reservedCPU, ni.reservedMemory, ni.ports)
	}
}

// TestViewRetriesOnlyWhenSomethingChanged walks a view through the
// changes that must, and must not, have a pass look at a parked group
// again.
func TestViewRetriesOnlyWhenSomethingChanged(t *testing.T) {
	v := newView()
	v.upsertNode(at(mkNode("n1", nodeResources(cpu, gib)), 1))
	v.upsertTask(at(mkTask("big", "s", reserve(2*cpu, 0)), 2))
	if !v.needsPass() {
		t.Fatal("a new pending task needs a pass")
	}
	ds := v.schedule()
	if len(ds) != 1 || ds[0].err != "no suitable node (insufficient resources on 1 node)" {
		t.Fatalf("decisions %+v", ds)
	}
	if v.needsPass() {
		t.Fatal("nothing changed since the pass")
	}

	steps := []struct {
		name   string
		change func()
		want   bool
	}{
		{"an older version of the node", func() { v.upsertNode(at(mkNode("n1"), 1)) }, false},
		{"a node change that does not matter", func() {
			n := at(mkNode("n1", nodeResources(cpu, gib)), 3)
			n.Status.Message = "heartbeat"
			n.ManagerStatus = &api.ManagerStatus{Addr: "x"}
			v.upsertNode(n)
		}, false},
		{"our own error written back", func() {
			v.upsertTask(at(mkTask("big", "s", reserve(2*cpu, 0), statusErr("no suitable node (insufficient resources on 1 node)")), 4))
		}, false},
		{"a task placed on a node", func() { v.upsertTask(at(mkTask("r1", "x", running("n1")), 5)) }, false},
		{"a node's labels change", func() { v.upsertNode(at(mkNode("n1", nodeResources(cpu, gib), nodeLabels("a", "b")), 6)) }, true},
		{"a task leaves a node", func() {
			v.upsertTask(at(mkTask("r1", "x", running("n1"), observed(api.TaskState_TASK_STATE_FAILED)), 7))
		}, true},
		{"a task is deleted from a node", func() {
			v.upsertTask(at(mkTask("r2", "x", running("n1")), 8))
			v.schedule()
			v.removeTask("r2")
		}, true},
		{"a node joins", func() { v.upsertNode(at(mkNode("n2"), 9)) }, true},
	}
	for _, s := range steps {
		s.change()
		if got := v.needsPass(); got != s.want {
			t.Fatalf("%s: needsPass = %v, want %v", s.name, got, s.want)
		}
		checkView(t, v)
		ds := v.schedule()
		if s.name == "a node joins" {
			if len(ds) != 1 || ds[0].node != "n2" {
				t.Fatalf("after %s: decisions %+v", s.name, ds)
			}
		} else if len(ds) != 0 {
			t.Fatalf("after %s: decisions %+v, want none (the error is unchanged)", s.name, ds)
		}
	}
}

func TestViewTakesItsDecisionsAndEventsBack(t *testing.T) {
	v := newView()
	v.upsertNode(at(mkNode("n1", nodeResources(2*cpu, gib)), 1))
	pending := at(mkTask("t1", "s", reserve(2*cpu, 0)), 2)
	v.upsertTask(pending)
	ds := v.schedule()
	if len(ds) != 1 || ds[0].node != "n1" || ds[0].base != pending {
		t.Fatalf("decisions %+v", ds)
	}
	if v.nodes["n1"].reservedCPU != 2*cpu || v.tasks["t1"].group != nil {
		t.Fatal("the view did not take its own decision")
	}

	// The store sends back the assignment: nothing to do.
	assigned := at(pending, 3)
	assigned.NodeId = "n1"
	assigned.Status = &api.TaskStatus{State: api.TaskState_TASK_STATE_ASSIGNED}
	v.upsertTask(assigned)
	if v.needsPass() || v.nodes["n1"].reservedCPU != 2*cpu {
		t.Fatalf("own assignment: needsPass %v, reserved %d", v.needsPass(), v.nodes["n1"].reservedCPU)
	}
	checkView(t, v)

	// A write that failed: the task as re-read, at the version decided on,
	// goes back to pending.
	v2 := newView()
	v2.upsertNode(at(mkNode("n1", nodeResources(2*cpu, gib)), 1))
	v2.upsertTask(pending)
	v2.schedule()
	v2.refreshTask(pending)
	if !v2.needsPass() || v2.nodes["n1"].reservedCPU != 0 || v2.tasks["t1"].group == nil {
		t.Fatal("a failed write was not taken back")
	}
	checkView(t, v2)
	if ds := v2.schedule(); len(ds) != 1 || ds[0].node != "n1" {
		t.Fatalf("retry decisions %+v", ds)
	}
	// A failed error write is retried too.
	v3 := newView()
	v3.upsertNode(at(mkNode("n1", nodeState(api.NodeStatus_DOWN)), 1))
	v3.upsertTask(pending)
	if ds := v3.schedule(); len(ds) != 1 || ds[0].err == "" {
		t.Fatalf("decisions %+v", ds)
	}
	v3.refreshTask(pending)
	if ds := v3.schedule(); len(ds) != 1 || ds[0].err == "" {
		t.Fatalf("retry decisions %+v, want the error again", ds)
	}

	// An older copy changes nothing.
	v2.upsertTask(at(pending, 1))
	if v2.tasks["t1"].group != nil {
		t.Fatal("an older version replaced a newer decision")
	}
}

func TestViewNodeRemovedKeepsItsTasksCounted(t *testing.T) {
	v := newView()
	v.upsertTask(at(mkTask("r1", "s", running("n1"), reserve(cpu, 0)), 1))
	if ni := v.nodes["n1"]; ni == nil || ni.node != nil || ni.reservedCPU != cpu {
		t.Fatal("a task on an unknown node needs a placeholder")
	}
	v.upsertNode(at(mkNode("n1"), 2))
	v.removeNode("n1")
	if ni := v.nodes["n1"]; ni == nil || ni.node != nil {
		t.Fatal("the removed node's tasks must stay counted")
	}
	v.upsertTask(at(mkTask("t1", "s", preset("n1")), 3))
	if ds := v.schedule(); len(ds) != 1 || ds[0].err != "no suitable node" {
		t.Fatalf("decisions %+v", ds)
	}
	v.removeTask("r1")
	if v.nodes["n1"] != nil {
		t.Fatal("placeholder left behind")
	}
	checkView(t, v)
}

func TestSameLoad(t *testing.T) {
	base := mkTask("t", "s", running("n1"), reserve(cpu, gib), hostTCP(80))
	tests := []struct {
		name   string
		change func(*api.Task)
		want   bool
	}{
		{"a status report", func(t *api.Task) { t.Status = &api.TaskStatus{State: api.TaskState_TASK_STATE_RUNNING} }, true},
		{"an equal copy of the spec", func(t *api.Task) { t.Spec = proto.CloneOf(t.Spec) }, true},
		{"another service", func(t *api.Task) { t.ServiceId = "other" }, false},
		{"another reservation", func(t *api.Task) { reserve(2*cpu, gib)(t) }, false},
		{"another host port", func(t *api.Task) { t.Endpoint = nil; hostTCP(81)(t) }, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := proto.CloneOf(base)
			tc.change(b)
			if got := sameLoad(base, b); got != tc.want {
				t.Fatalf("sameLoad = %v, want %v", got, tc.want)
			}
		})
	}
}
