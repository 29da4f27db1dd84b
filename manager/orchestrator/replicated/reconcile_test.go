package replicated

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/openswarm/swarmd/api"
	"github.com/openswarm/swarmd/manager/orchestrator"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

var t0 = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)

const (
	stNew      = api.TaskState_TASK_STATE_NEW
	stPending  = api.TaskState_TASK_STATE_PENDING
	stAssigned = api.TaskState_TASK_STATE_ASSIGNED
	stRunning  = api.TaskState_TASK_STATE_RUNNING
	stFailed   = api.TaskState_TASK_STATE_FAILED
	stShutdown = api.TaskState_TASK_STATE_SHUTDOWN
)

func newService(id string, replicas uint64) *api.Service {
	return &api.Service{
		Id:          id,
		SpecVersion: &api.Version{}, // as the control API creates it
		Spec: &api.ServiceSpec{
			Annotations: &api.Annotations{Name: id},
			Task: &api.TaskSpec{
				Container: &api.ContainerSpec{Image: "img:1"},
				Restart:   &api.RestartPolicy{Condition: api.RestartPolicy_ANY, Delay: durationpb.New(0)},
			},
			Mode:   &api.ServiceSpec_Replicated{Replicated: &api.ReplicatedService{Replicas: replicas}},
			Update: &api.UpdateConfig{Parallelism: 1},
		},
	}
}

// task returns a task of s in slot, on node, observed in state.
func task(s *api.Service, slot uint64, node string, state api.TaskState) *api.Task {
	t := orchestrator.NewTask(s, slot, "", t0)
	t.Id = fmt.Sprintf("%s.%d.%s", s.GetId(), slot, node)
	t.NodeId = node
	t.Status = &api.TaskStatus{State: state, Timestamp: timestamppb.New(t0)}
	return t
}

func node(id string, state api.NodeStatus_State, avail api.NodeAvailability) *api.Node {
	return &api.Node{
		Id:     id,
		Spec:   &api.NodeSpec{Annotations: &api.Annotations{Name: id}, Availability: avail},
		Status: &api.NodeStatus{State: state},
	}
}

func readyNode(id string) *api.Node {
	return node(id, api.NodeStatus_READY, api.NodeAvailability_NODE_AVAILABILITY_ACTIVE)
}

func nodeMap(nodes ...*api.Node) map[string]*api.Node {
	m := make(map[string]*api.Node)
	for _, n := range nodes {
		m[n.GetId()] = n
	}
	return m
}

func slotsOf(tasks []*api.Task) []uint64 {
	var out []uint64
	for _, t := range tasks {
		out = append(out, t.GetSlot())
	}
	slices.Sort(out)
	return out
}

func TestReconcile(t *testing.T) {
	svc := newService("web", 5)
	scaled := func(n uint64) *api.Service {
		s := newService("web", n)
		return s
	}
	gaveUp := func(slot uint64) *api.Task {
		t := task(svc, slot, "n1", stFailed)
		t.Spec.Restart = &api.RestartPolicy{Condition: api.RestartPolicy_NONE}
		t.DesiredState = api.TaskState_TASK_STATE_SHUTDOWN
		return t
	}
	dirty := func(t *api.Task) *api.Task {
		t.Spec.Container.Image = "img:0"
		return t
	}
	n1, n2 := readyNode("n1"), readyNode("n2")
	tests := []struct {
		name    string
		svc     *api.Service
		tasks   []*api.Task
		nodes   map[string]*api.Node
		create  []uint64
		remove  []uint64
		restart []uint64
		dirty   []uint64
	}{
		{name: "new service", svc: svc, create: []uint64{1, 2, 3, 4, 5}},
		{name: "lowest free slots first", svc: svc, nodes: nodeMap(n1),
			tasks:  []*api.Task{task(svc, 1, "n1", stRunning), task(svc, 3, "n1", stRunning), task(svc, 7, "n1", stRunning)},
			create: []uint64{2, 4}},
		{name: "dead tasks free their slot", svc: scaled(1), nodes: nodeMap(n1),
			tasks: []*api.Task{func() *api.Task {
				t := task(svc, 1, "n1", stShutdown)
				t.DesiredState = api.TaskState_TASK_STATE_SHUTDOWN
				return t
			}()},
			create: []uint64{1}},
		{name: "a slot the restart policy gave up stays empty", svc: scaled(2), nodes: nodeMap(n1),
			tasks:  []*api.Task{gaveUp(1)},
			create: []uint64{2}},
		{name: "a new spec refills it", svc: func() *api.Service { s := scaled(2); s.SpecVersion.Index = 2; return s }(), nodes: nodeMap(n1),
			tasks:  []*api.Task{gaveUp(1)},
			create: []uint64{1, 2}},
		{name: "given-up slots beyond the count are cleared", svc: scaled(1), nodes: nodeMap(n1),
			tasks:  []*api.Task{task(svc, 1, "n1", stRunning), gaveUp(2)},
			remove: []uint64{2}},
		{name: "scale down: stopped, then least advanced, first", svc: scaled(2), nodes: nodeMap(n1),
			tasks: []*api.Task{
				task(svc, 1, "n1", stRunning), task(svc, 2, "n1", stRunning),
				task(svc, 3, "n1", stAssigned), task(svc, 4, "", stNew), task(svc, 5, "n1", stFailed),
			},
			remove: []uint64{3, 4, 5}},
		{name: "stopped and displaced tasks are restarted", svc: svc,
			nodes: nodeMap(n1, node("n2", api.NodeStatus_DOWN, api.NodeAvailability_NODE_AVAILABILITY_ACTIVE),
				node("n3", api.NodeStatus_READY, api.NodeAvailability_NODE_AVAILABILITY_DRAIN),
				node("n4", api.NodeStatus_READY, api.NodeAvailability_NODE_AVAILABILITY_PAUSE)),
			tasks: []*api.Task{
				task(svc, 1, "n1", stFailed), task(svc, 2, "n2", stRunning), task(svc, 3, "n3", stRunning),
				task(svc, 4, "n4", stRunning), task(svc, 5, "gone", stRunning),
			},
			restart: []uint64{1, 2, 3, 5}},
		{name: "dirty slots go to the updater", svc: svc, nodes: nodeMap(n1, n2),
			tasks: []*api.Task{
				dirty(task(svc, 1, "n1", stRunning)), task(svc, 2, "n1", stRunning), dirty(task(svc, 3, "n2", stFailed)),
				dirty(task(svc, 4, "n2", stRunning)), task(svc, 5, "n2", stRunning),
			},
			restart: []uint64{3}, dirty: []uint64{1, 4}},
		{name: "removed service", svc: nil, nodes: nodeMap(n1),
			tasks: []*api.Task{
				task(svc, 1, "n1", stRunning), task(svc, 2, "n1", stFailed),
				func() *api.Task {
					t := task(svc, 3, "n1", stShutdown)
					t.DesiredState = api.TaskState_TASK_STATE_SHUTDOWN
					return t
				}(),
			},
			remove: []uint64{1, 2}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := reconcile(tt.svc, tt.tasks, tt.nodes)
			if !slices.Equal(p.create, tt.create) {
				t.Errorf("create %v, want %v", p.create, tt.create)
			}
			if got := slotsOf(p.remove); !slices.Equal(got, tt.remove) {
				t.Errorf("remove %v, want %v", got, tt.remove)
			}
			if got := slotsOf(p.restart); !slices.Equal(got, tt.restart) {
				t.Errorf("restart %v, want %v", got, tt.restart)
			}
			var dirty []uint64
			for _, s := range p.dirty {
				dirty = append(dirty, s[0].GetSlot())
			}
			if !slices.Equal(dirty, tt.dirty) {
				t.Errorf("dirty %v, want %v", dirty, tt.dirty)
			}
		})
	}
}

func TestScaleDownKeepsRunningAndSpread(t *testing.T) {
	svc := newService("web", 10)
	// n1 holds slots 1-4, n2 slots 5-7, n3 slots 8-9; slot 10 is pending.
	var tasks []*api.Task
	for slot := uint64(1); slot <= 9; slot++ {
		n := "n1"
		switch {
		case slot > 7:
			n = "n3"
		case slot > 4:
			n = "n2"
		}
		tasks = append(tasks, task(svc, slot, n, stRunning))
	}
	tasks = append(tasks, task(svc, 10, "", stPending))
	nodes := nodeMap(readyNode("n1"), readyNode("n2"), readyNode("n3"))

	tests := []struct {
		replicas uint64
		perNode  map[string]int
	}{
		{1, map[string]int{"n3": 1}},
		{3, map[string]int{"n1": 1, "n2": 1, "n3": 1}},
		{6, map[string]int{"n1": 2, "n2": 2, "n3": 2}},
		{8, map[string]int{"n1": 3, "n2": 3, "n3": 2}},
		{9, map[string]int{"n1": 4, "n2": 3, "n3": 2}},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.replicas), func(t *testing.T) {
			s := newService("web", tt.replicas)
			p := reconcile(s, tasks, nodes)
			removed := make(map[string]bool)
			for _, r := range p.remove {
				removed[r.GetId()] = true
			}
			kept := make(map[string]int)
			for _, task := range tasks {
				if !removed[task.GetId()] {
					if task.GetStatus().GetState() != stRunning {
						t.Errorf("kept slot %d, which does not run", task.GetSlot())
					}
					kept[task.GetNodeId()]++
				}
			}
			if len(p.remove) != 10-int(tt.replicas) {
				t.Errorf("removed %d, want %d", len(p.remove), 10-tt.replicas)
			}
			for n, want := range tt.perNode {
				if kept[n] != want {
					t.Errorf("kept %v per node, want %v", kept, tt.perNode)
					break
				}
			}
		})
	}
}
