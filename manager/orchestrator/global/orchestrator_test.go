package global

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/openswarm/swarmd/api"
	"github.com/openswarm/swarmd/manager/orchestrator"
	"github.com/openswarm/swarmd/manager/orchestrator/orchestratortest"
	"github.com/openswarm/swarmd/manager/orchestrator/restart"
	"github.com/openswarm/swarmd/manager/state/store"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// fakeUpdater records what the orchestrator hands the update supervisor.
type fakeUpdater struct {
	mu      sync.Mutex
	updates map[string]int // dirty slots last handed, per service
	cancels map[string]int
}

func (u *fakeUpdater) Update(_ context.Context, _ *api.Cluster, s *api.Service, slots []orchestrator.Slot) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.updates[s.GetId()] = len(slots)
}

func (u *fakeUpdater) Cancel(id string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.cancels[id]++
}

type harness struct {
	t       *testing.T
	store   *store.MemoryStore
	clock   *clockwork.FakeClock
	updater *fakeUpdater
}

// start runs a global orchestrator and a restart supervisor on a local
// store holding objs, until the end of the test.
func start(t *testing.T, objs ...api.StoreObject) *harness {
	t.Helper()
	h := &harness{t: t, store: orchestratortest.NewStore(t), clock: clockwork.NewFakeClockAt(t0),
		updater: &fakeUpdater{updates: map[string]int{}, cancels: map[string]int{}}}
	orchestratortest.Create(t, h.store, objs...)
	r := restart.New(h.store, restart.WithClock(h.clock), restart.WithLogger(orchestratortest.Quiet()))
	o := New(h.store, h.updater, r, WithClock(h.clock), WithLogger(orchestratortest.Quiet()))
	orchestratortest.RunAll(t, o.Run, r.Run)
	return h
}

func (h *harness) write(cb func(tx store.Tx) error) {
	h.t.Helper()
	orchestratortest.Write(h.t, h.store, cb)
}

func (h *harness) updateNode(id string, change func(*api.Node)) {
	h.t.Helper()
	h.write(func(tx store.Tx) error {
		n := store.GetNode(tx, id)
		change(n)
		return tx.Update(n)
	})
}

// settle makes every task of the service meant to run run, and every task
// being stopped stop, as agents would.
func (h *harness) settle(serviceID string) {
	h.t.Helper()
	now := timestamppb.New(h.clock.Now())
	h.write(func(tx store.Tx) error {
		tasks, _ := store.FindTasks(tx, store.ByServiceID(serviceID))
		for _, t := range tasks {
			st := t.GetStatus().GetState()
			switch {
			case t.GetDesiredState() == stRunning && st < stRunning:
				t.Status = &api.TaskStatus{State: stRunning, Timestamp: now}
			case !orchestrator.IsRunnable(t) && st <= stRunning:
				t.Status = &api.TaskStatus{State: api.TaskState_TASK_STATE_SHUTDOWN, Timestamp: now}
			default:
				continue
			}
			if err := tx.Update(t); err != nil {
				return err
			}
		}
		return nil
	})
}

// perNode returns, for each node, the desired states of the service's
// tasks there that have not stopped (as the orchestrator left them), or
// are still meant to run.
func perNode(tx store.ReadTx, serviceID string) map[string][]api.TaskState {
	tasks, _ := store.FindTasks(tx, store.ByServiceID(serviceID))
	out := map[string][]api.TaskState{}
	for _, t := range tasks {
		if !orchestrator.HasStopped(t) {
			out[t.GetNodeId()] = append(out[t.GetNodeId()], t.GetDesiredState())
		}
	}
	return out
}

// waitNodes waits until the service's tasks per node are want.
func (h *harness) waitNodes(what, serviceID string, want map[string][]api.TaskState) {
	h.t.Helper()
	ch, cancel := h.store.Watch(func(e store.Event) bool { return e.Action == store.EventCommit })
	defer cancel()
	deadline := time.NewTimer(orchestratortest.WaitTimeout)
	defer deadline.Stop()
	var got map[string][]api.TaskState
	for {
		h.store.View(func(tx store.ReadTx) { got = perNode(tx, serviceID) })
		if equalStates(got, want) {
			return
		}
		select {
		case <-ch:
		case <-deadline.C:
			h.t.Fatalf("%s: tasks per node %v, want %v", what, got, want)
		}
	}
}

func equalStates(a, b map[string][]api.TaskState) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		w := b[k]
		if len(v) != len(w) {
			return false
		}
		for i := range v {
			if v[i] != w[i] {
				return false
			}
		}
	}
	return true
}

const (
	run    = api.TaskState_TASK_STATE_RUNNING
	shut   = api.TaskState_TASK_STATE_SHUTDOWN
	remove = api.TaskState_TASK_STATE_REMOVE
)

func TestRunFollowsNodes(t *testing.T) {
	east := map[string]string{"zone": "east"}
	tests := []struct {
		name    string
		svc     *api.Service
		initial map[string][]api.TaskState
		change  func(h *harness)
		want    map[string][]api.TaskState
	}{
		{name: "node joins", svc: newService("agent"),
			initial: map[string][]api.TaskState{"n1": {run}, "n2": {run}},
			change:  func(h *harness) { h.write(func(tx store.Tx) error { return tx.Create(readyNode("n3", nil)) }) },
			want:    map[string][]api.TaskState{"n1": {run}, "n2": {run}, "n3": {run}}},
		{name: "node drained", svc: newService("agent"),
			initial: map[string][]api.TaskState{"n1": {run}, "n2": {run}},
			change: func(h *harness) {
				h.updateNode("n2", func(n *api.Node) { n.Spec.Availability = api.NodeAvailability_NODE_AVAILABILITY_DRAIN })
			},
			want: map[string][]api.TaskState{"n1": {run}, "n2": {shut}}},
		{name: "node down", svc: newService("agent"),
			initial: map[string][]api.TaskState{"n1": {run}, "n2": {run}},
			change:  func(h *harness) { h.updateNode("n2", func(n *api.Node) { n.Status.State = api.NodeStatus_DOWN }) },
			want:    map[string][]api.TaskState{"n1": {run}, "n2": {shut}}},
		{name: "node paused keeps its task", svc: newService("agent"),
			initial: map[string][]api.TaskState{"n1": {run}, "n2": {run}},
			change: func(h *harness) {
				h.updateNode("n2", func(n *api.Node) { n.Spec.Availability = api.NodeAvailability_NODE_AVAILABILITY_PAUSE })
			},
			want: map[string][]api.TaskState{"n1": {run}, "n2": {run}}},
		{name: "node removed", svc: newService("agent"),
			initial: map[string][]api.TaskState{"n1": {run}, "n2": {run}},
			change:  func(h *harness) { h.write(func(tx store.Tx) error { return store.DeleteNode(tx, "n2") }) },
			want:    map[string][]api.TaskState{"n1": {run}, "n2": {remove}}},
		{name: "labels change", svc: newService("agent", "node.labels.zone==east"),
			initial: map[string][]api.TaskState{"n1": {run}},
			change: func(h *harness) {
				h.updateNode("n1", func(n *api.Node) { n.Spec.Annotations.Labels = nil })
				h.updateNode("n2", func(n *api.Node) { n.Spec.Annotations.Labels = east })
			},
			want: map[string][]api.TaskState{"n1": {remove}, "n2": {run}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := start(t, readyNode("n1", east), readyNode("n2", nil), tt.svc)
			h.waitNodes("initial tasks", "agent", tt.initial)
			h.settle("agent")
			tt.change(h)
			h.waitNodes("after the change", "agent", tt.want)
		})
	}
}

func TestRunNodeComesBack(t *testing.T) {
	h := start(t, readyNode("n1", nil), newService("agent"))
	h.waitNodes("initial task", "agent", map[string][]api.TaskState{"n1": {run}})
	h.settle("agent")
	h.updateNode("n1", func(n *api.Node) { n.Spec.Availability = api.NodeAvailability_NODE_AVAILABILITY_DRAIN })
	h.waitNodes("drained", "agent", map[string][]api.TaskState{"n1": {shut}})
	h.settle("agent") // the agent stops it

	h.updateNode("n1", func(n *api.Node) { n.Spec.Availability = api.NodeAvailability_NODE_AVAILABILITY_ACTIVE })
	h.waitNodes("a new task when the node is back", "agent", map[string][]api.TaskState{"n1": {run}})
}

func TestRunRestartsAndRemoves(t *testing.T) {
	h := start(t, readyNode("n1", nil), newService("agent"))
	h.waitNodes("initial task", "agent", map[string][]api.TaskState{"n1": {run}})
	h.settle("agent")

	// A failed task is replaced on its node (delay 0: started at once).
	h.write(func(tx store.Tx) error {
		t := store.GetTask(tx, firstTask(tx, "agent"))
		t.Status = &api.TaskStatus{State: stFailed, Timestamp: timestamppb.New(h.clock.Now())}
		return tx.Update(t)
	})
	h.waitNodes("replaced", "agent", map[string][]api.TaskState{"n1": {run}})
	h.store.View(func(tx store.ReadTx) {
		tasks, _ := store.FindTasks(tx, store.ByServiceID("agent"))
		if len(tasks) != 2 {
			t.Errorf("%d tasks, want the failed one and its replacement", len(tasks))
		}
	})

	// A removed service's tasks are removed and its update cancelled.
	h.write(func(tx store.Tx) error { return store.DeleteService(tx, "agent") })
	h.waitNodes("removed", "agent", map[string][]api.TaskState{"n1": {remove}})
	h.updater.mu.Lock()
	defer h.updater.mu.Unlock()
	if h.updater.cancels["agent"] == 0 {
		t.Errorf("update not cancelled")
	}
}

func firstTask(tx store.ReadTx, serviceID string) string {
	tasks, _ := store.FindTasks(tx, store.ByServiceID(serviceID))
	for _, t := range tasks {
		if orchestrator.IsRunnable(t) {
			return t.GetId()
		}
	}
	return ""
}
