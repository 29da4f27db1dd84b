package global

import (
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
	stRunning = api.TaskState_TASK_STATE_RUNNING
	stFailed  = api.TaskState_TASK_STATE_FAILED
)

func newService(id string, constraints ...string) *api.Service {
	return &api.Service{
		Id:          id,
		SpecVersion: &api.Version{},
		Spec: &api.ServiceSpec{
			Annotations: &api.Annotations{Name: id},
			Task: &api.TaskSpec{
				Container: &api.ContainerSpec{Image: "img:1"},
				Restart:   &api.RestartPolicy{Condition: api.RestartPolicy_ANY, Delay: durationpb.New(0)},
				Placement: &api.Placement{Constraints: constraints},
			},
			Mode: &api.ServiceSpec_Global{Global: &api.GlobalService{}},
		},
	}
}

// task returns a task of s on node, observed in state.
func task(s *api.Service, node string, state api.TaskState) *api.Task {
	t := orchestrator.NewTask(s, 0, node, t0)
	t.Id = s.GetId() + "." + node
	t.Status = &api.TaskStatus{State: state, Timestamp: timestamppb.New(t0)}
	return t
}

func node(id string, state api.NodeStatus_State, avail api.NodeAvailability, labels map[string]string) *api.Node {
	return &api.Node{
		Id:     id,
		Spec:   &api.NodeSpec{Annotations: &api.Annotations{Name: id, Labels: labels}, Availability: avail},
		Status: &api.NodeStatus{State: state},
	}
}

func readyNode(id string, labels map[string]string) *api.Node {
	return node(id, api.NodeStatus_READY, api.NodeAvailability_NODE_AVAILABILITY_ACTIVE, labels)
}

func nodesOf(tasks []*api.Task) []string {
	var out []string
	for _, t := range tasks {
		out = append(out, t.GetNodeId())
	}
	slices.Sort(out)
	return out
}

func TestReconcile(t *testing.T) {
	svc := newService("agent")
	east := newService("agent", "node.labels.zone==east")
	zone := map[string]string{"zone": "east"}
	nodes := []*api.Node{
		readyNode("ready", nil),
		readyNode("east", zone),
		node("down", api.NodeStatus_DOWN, api.NodeAvailability_NODE_AVAILABILITY_ACTIVE, nil),
		node("drained", api.NodeStatus_READY, api.NodeAvailability_NODE_AVAILABILITY_DRAIN, nil),
		node("paused", api.NodeStatus_READY, api.NodeAvailability_NODE_AVAILABILITY_PAUSE, nil),
	}
	gaveUp := func() *api.Task {
		t := task(svc, "ready", stFailed)
		t.Spec.Restart = &api.RestartPolicy{Condition: api.RestartPolicy_NONE}
		t.DesiredState = api.TaskState_TASK_STATE_SHUTDOWN
		return t
	}
	dirty := func(t *api.Task) *api.Task {
		t.Spec.Container.Image = "img:0"
		return t
	}
	tests := []struct {
		name                                      string
		svc                                       *api.Service
		tasks                                     []*api.Task
		create, remove, shutdown, restart, dirtyN []string
	}{
		{name: "one task per node that accepts tasks", svc: svc, create: []string{"east", "ready"}},
		{name: "paused, drained and down nodes keep or lose theirs", svc: svc,
			tasks:    []*api.Task{task(svc, "down", stRunning), task(svc, "drained", stRunning), task(svc, "paused", stRunning)},
			create:   []string{"east", "ready"},
			shutdown: []string{"down", "drained"}},
		{name: "constraints", svc: east,
			tasks:  []*api.Task{task(east, "ready", stRunning), task(east, "paused", stRunning)},
			create: []string{"east"}, remove: []string{"paused", "ready"}},
		{name: "gone node", svc: svc,
			tasks:  []*api.Task{task(svc, "ready", stRunning), task(svc, "east", stRunning), task(svc, "gone", stRunning)},
			remove: []string{"gone"}},
		{name: "stopped tasks restart, dirty ones update", svc: svc,
			tasks:   []*api.Task{dirty(task(svc, "ready", stFailed)), dirty(task(svc, "east", stRunning)), dirty(task(svc, "paused", stRunning))},
			restart: []string{"ready"}, dirtyN: []string{"east", "paused"}},
		{name: "a node the restart policy gave up stays empty", svc: svc,
			tasks:  []*api.Task{gaveUp()},
			create: []string{"east"}},
		{name: "removed service", svc: nil,
			tasks:  []*api.Task{task(svc, "ready", stRunning), task(svc, "gone", stFailed)},
			remove: []string{"gone", "ready"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := reconcile(tt.svc, tt.tasks, nodes)
			if err != nil {
				t.Fatal(err)
			}
			var dirtyNodes []string
			for _, s := range p.dirty {
				dirtyNodes = append(dirtyNodes, s[0].GetNodeId())
			}
			for _, c := range []struct {
				what      string
				got, want []string
			}{
				{"create", p.create, tt.create},
				{"remove", nodesOf(p.remove), tt.remove},
				{"shutdown", nodesOf(p.shutdown), tt.shutdown},
				{"restart", nodesOf(p.restart), tt.restart},
				{"dirty", dirtyNodes, tt.dirtyN},
			} {
				if !slices.Equal(c.got, c.want) {
					t.Errorf("%s %v, want %v", c.what, c.got, c.want)
				}
			}
		})
	}
	if _, err := reconcile(newService("bad", "node.labels.zone~east"), nil, nodes); err == nil {
		t.Errorf("no error for a bad constraint")
	}
}
