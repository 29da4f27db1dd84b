package jobs

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
	stRunning  = api.TaskState_TASK_STATE_RUNNING
	stComplete = api.TaskState_TASK_STATE_COMPLETE
	stFailed   = api.TaskState_TASK_STATE_FAILED
	stShutdown = api.TaskState_TASK_STATE_SHUTDOWN
)

func replicatedJob(id string, maxConcurrent, total uint64, iteration uint64) *api.Service {
	return &api.Service{
		Id:          id,
		SpecVersion: &api.Version{},
		Spec: &api.ServiceSpec{
			Annotations: &api.Annotations{Name: id},
			Task: &api.TaskSpec{
				Container: &api.ContainerSpec{Image: "img:1"},
				Restart:   &api.RestartPolicy{Condition: api.RestartPolicy_ON_FAILURE, Delay: durationpb.New(0)},
			},
			Mode: &api.ServiceSpec_ReplicatedJob{ReplicatedJob: &api.ReplicatedJob{MaxConcurrent: maxConcurrent, TotalCompletions: total}},
		},
		JobStatus: &api.JobStatus{JobIteration: &api.Version{Index: iteration}},
	}
}

func globalJob(id string, iteration uint64, constraints ...string) *api.Service {
	s := replicatedJob(id, 0, 0, iteration)
	s.Spec.Mode = &api.ServiceSpec_GlobalJob{GlobalJob: &api.GlobalJob{}}
	s.Spec.Task.Placement = &api.Placement{Constraints: constraints}
	return s
}

// task returns a task of s (of its current iteration) in slot (replicated)
// or on node (global), observed in state.
func task(s *api.Service, slot uint64, node string, state api.TaskState) *api.Task {
	var t *api.Task
	if orchestrator.IsGlobalJob(s) {
		t = orchestrator.NewTask(s, 0, node, t0)
	} else {
		t = orchestrator.NewTask(s, slot, "", t0)
		t.NodeId = node
	}
	t.Id = fmt.Sprintf("%s.%d.%d.%s", s.GetId(), iteration(s), slot, node)
	t.Status = &api.TaskStatus{State: state, Timestamp: timestamppb.New(t0)}
	return t
}

func withDesired(t *api.Task, d api.TaskState) *api.Task {
	t.DesiredState = d
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

func ids(tasks []*api.Task) []string {
	var out []string
	for _, t := range tasks {
		out = append(out, t.GetId())
	}
	slices.Sort(out)
	return out
}

func TestConcurrency(t *testing.T) {
	tests := []struct{ maxC, total, wantMax, wantTotal uint64 }{
		{0, 0, 1, 1},
		{2, 0, 2, 2},
		{0, 5, 1, 5},
		{2, 5, 2, 5},
	}
	for _, tt := range tests {
		m, n := Concurrency(&api.ReplicatedJob{MaxConcurrent: tt.maxC, TotalCompletions: tt.total})
		if m != tt.wantMax || n != tt.wantTotal {
			t.Errorf("Concurrency(%d, %d) = %d, %d; want %d, %d", tt.maxC, tt.total, m, n, tt.wantMax, tt.wantTotal)
		}
	}
}

func TestReconcileReplicated(t *testing.T) {
	job := replicatedJob("batch", 2, 5, 1)
	old := replicatedJob("batch", 2, 5, 0)
	n1 := readyNode("n1")
	nodes := map[string]*api.Node{"n1": n1, "down": node("down", api.NodeStatus_DOWN, api.NodeAvailability_NODE_AVAILABILITY_ACTIVE)}
	gaveUp := withDesired(task(job, 2, "n1", stFailed), api.TaskState_TASK_STATE_SHUTDOWN)
	gaveUp.Spec.Restart.MaxAttempts = 1
	gaveUp.RestartHistory = []*timestamppb.Timestamp{timestamppb.New(t0.Add(-time.Second))}
	tests := []struct {
		name     string
		tasks    []*api.Task
		create   []uint64
		restart  []string
		shutdown []string
		remove   []string
	}{
		{name: "starts at most max concurrent", create: []uint64{1, 2}},
		{name: "running at the limit", tasks: []*api.Task{task(job, 1, "n1", stRunning), task(job, 2, "n1", stNew)}},
		{name: "a completion frees a place", tasks: []*api.Task{task(job, 1, "n1", stComplete), task(job, 2, "n1", stRunning)},
			create: []uint64{3}},
		{name: "the last ones", tasks: []*api.Task{
			task(job, 1, "n1", stComplete), task(job, 2, "n1", stComplete), task(job, 3, "n1", stComplete), task(job, 4, "n1", stRunning)},
			create: []uint64{5}},
		{name: "done", tasks: []*api.Task{
			task(job, 1, "n1", stComplete), task(job, 2, "n1", stComplete), task(job, 3, "n1", stComplete),
			task(job, 4, "n1", stComplete), task(job, 5, "n1", stComplete)}},
		{name: "a failed task is restarted in its slot", tasks: []*api.Task{task(job, 1, "n1", stFailed), task(job, 2, "n1", stRunning)},
			restart: []string{"batch.1.1.n1"}},
		{name: "a task whose node is down moves", tasks: []*api.Task{task(job, 1, "down", stRunning), task(job, 2, "down", stComplete)},
			restart: []string{"batch.1.1.down"}, create: []uint64{3}},
		{name: "a slot given up stays empty", tasks: []*api.Task{task(job, 1, "n1", stComplete), gaveUp},
			create: []uint64{3, 4}},
		{name: "a new iteration", tasks: []*api.Task{
			task(old, 1, "n1", stComplete), task(old, 2, "n1", stRunning),
			withDesired(task(old, 3, "n1", stRunning), api.TaskState_TASK_STATE_SHUTDOWN),
			withDesired(task(old, 4, "n1", stShutdown), api.TaskState_TASK_STATE_SHUTDOWN),
			withDesired(task(old, 5, "n1", stShutdown), api.TaskState_TASK_STATE_REMOVE),
			task(old, 6, "", stNew)},
			create: []uint64{1, 2}, shutdown: []string{"batch.0.2.n1"}, remove: []string{"batch.0.1.n1", "batch.0.4.n1", "batch.0.6."}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := reconcileReplicated(job, tt.tasks, nodes)
			check(t, p, tt.create, nil, tt.restart, tt.shutdown, tt.remove)
		})
	}
}

func check(t *testing.T, p plan, slots []uint64, nodes, restart, shutdown, remove []string) {
	t.Helper()
	if !slices.Equal(p.createSlots, slots) {
		t.Errorf("create slots %v, want %v", p.createSlots, slots)
	}
	if !slices.Equal(p.createNodes, nodes) {
		t.Errorf("create nodes %v, want %v", p.createNodes, nodes)
	}
	for _, c := range []struct {
		what      string
		got, want []string
	}{{"restart", ids(p.restart), restart}, {"shutdown", ids(p.shutdown), shutdown}, {"remove", ids(p.remove), remove}} {
		if !slices.Equal(c.got, c.want) {
			t.Errorf("%s %v, want %v", c.what, c.got, c.want)
		}
	}
}

func TestReconcileGlobal(t *testing.T) {
	job := globalJob("sweep", 1)
	old := globalJob("sweep", 0)
	nodes := []*api.Node{
		readyNode("a"), readyNode("b"),
		node("down", api.NodeStatus_DOWN, api.NodeAvailability_NODE_AVAILABILITY_ACTIVE),
		node("drained", api.NodeStatus_READY, api.NodeAvailability_NODE_AVAILABILITY_DRAIN),
		node("paused", api.NodeStatus_READY, api.NodeAvailability_NODE_AVAILABILITY_PAUSE),
	}
	tests := []struct {
		name                      string
		svc                       *api.Service
		tasks                     []*api.Task
		create                    []string
		restart, shutdown, remove []string
	}{
		{name: "once per node that accepts tasks", svc: job, create: []string{"a", "b"}},
		{name: "never again where it completed", svc: job,
			tasks:  []*api.Task{task(job, 0, "a", stComplete), task(job, 0, "drained", stComplete)},
			create: []string{"b"}},
		{name: "failed: restarted; lost nodes: shut down", svc: job,
			tasks:   []*api.Task{task(job, 0, "a", stFailed), task(job, 0, "b", stRunning), task(job, 0, "down", stRunning), task(job, 0, "drained", stRunning), task(job, 0, "paused", stRunning)},
			restart: []string{"sweep.1.0.a"}, shutdown: []string{"sweep.1.0.down", "sweep.1.0.drained"}},
		{name: "constraints and gone nodes", svc: globalJob("sweep", 1, "node.id==b"),
			tasks:  []*api.Task{task(job, 0, "a", stRunning), task(job, 0, "gone", stRunning), task(job, 0, "gone2", stComplete)},
			create: []string{"b"}, remove: []string{"sweep.1.0.a", "sweep.1.0.gone"}},
		{name: "a new iteration runs everywhere again", svc: job,
			tasks:  []*api.Task{task(old, 0, "a", stComplete), task(old, 0, "b", stRunning)},
			create: []string{"a", "b"}, shutdown: []string{"sweep.0.0.b"}, remove: []string{"sweep.0.0.a"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := reconcileGlobal(tt.svc, tt.tasks, nodes)
			if err != nil {
				t.Fatal(err)
			}
			check(t, p, nil, tt.create, tt.restart, tt.shutdown, tt.remove)
		})
	}
}

func TestReconcileRemoved(t *testing.T) {
	job := replicatedJob("batch", 1, 1, 1)
	p := reconcileRemoved([]*api.Task{task(job, 1, "n1", stRunning), task(job, 2, "n1", stComplete),
		withDesired(task(job, 3, "n1", stFailed), api.TaskState_TASK_STATE_SHUTDOWN)})
	check(t, p, nil, nil, nil, nil, []string{"batch.1.1.n1", "batch.1.2.n1"})
}
