package replicated

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/openswarm/swarmd/api"
	"github.com/openswarm/swarmd/manager/orchestrator"
	"github.com/openswarm/swarmd/manager/state/store"
)

func TestRunCreatesReplicas(t *testing.T) {
	h := newHarness(t, newService("web", 5))
	h.start()
	h.waitFor("slots 1..5", hasSlots("web", 5))
	for _, task := range h.tasks("web") {
		if want := fmt.Sprintf("web.%d", task.GetSlot()); task.GetAnnotations().GetName() != want ||
			task.GetDesiredState() != api.TaskState_TASK_STATE_RUNNING || task.GetNodeId() != "" {
			t.Errorf("task %s: name %q desired %v node %q", task.GetId(), task.GetAnnotations().GetName(), task.GetDesiredState(), task.GetNodeId())
		}
	}
}

func TestRunScales(t *testing.T) {
	h := newHarness(t, readyNode("n1"), readyNode("n2"), newService("web", 5))
	h.start()
	h.waitFor("slots 1..5", hasSlots("web", 5))
	h.settle("web", roundRobin("n1", "n2"))

	h.updateSpec("web", func(s *api.ServiceSpec) { s.GetReplicated().Replicas = 10 })
	h.waitFor("slots 1..10", hasSlots("web", 10))
	// Slots 6 and 7 run; 8..10 are not scheduled yet.
	h.settle("web", func(t *api.Task) string {
		if t.GetSlot() > 7 {
			return ""
		}
		return roundRobin("n1", "n2")(t)
	})

	h.updateSpec("web", func(s *api.ServiceSpec) { s.GetReplicated().Replicas = 1 })
	h.waitFor("one replica left", func(tx store.ReadTx) bool { return len(runnableSlots(tx, "web")) == 1 })
	h.store.View(func(tx store.ReadTx) {
		tasks, _ := store.FindTasks(tx, store.ByServiceID("web"))
		for _, task := range tasks {
			if orchestrator.IsRunnable(task) && task.GetStatus().GetState() != api.TaskState_TASK_STATE_RUNNING {
				t.Errorf("the replica left does not run: %v", task.GetStatus().GetState())
			}
			if !orchestrator.IsRunnable(task) && task.GetDesiredState() != api.TaskState_TASK_STATE_REMOVE {
				t.Errorf("scaled-down task desired %v, want REMOVE", task.GetDesiredState())
			}
		}
	})
}

func TestRunRemovedService(t *testing.T) {
	h := newHarness(t, readyNode("n1"), newService("web", 3))
	h.start()
	h.waitFor("slots 1..3", hasSlots("web", 3))
	h.settle("web", to("n1"))

	if err := h.store.Update(context.Background(), func(tx store.Tx) error { return store.DeleteService(tx, "web") }); err != nil {
		t.Fatal(err)
	}
	h.waitFor("every task REMOVE", func(tx store.ReadTx) bool {
		return count(tx, "web", func(t *api.Task) bool { return t.GetDesiredState() == api.TaskState_TASK_STATE_REMOVE }) == 3
	})
	h.updater.waitFor(t, "update cancelled", func(u *fakeUpdater) bool { return u.cancels["web"] > 0 })
}

func TestRunReplacesTasksOfLostNodes(t *testing.T) {
	tests := []struct {
		name string
		lose func(h *harness)
		// the replacements wait for the old tasks to stop
		wait bool
	}{
		{"node down", func(h *harness) {
			update(h, "n1", func(n *api.Node) { n.Status.State = api.NodeStatus_DOWN })
		}, false},
		{"node drained", func(h *harness) {
			update(h, "n1", func(n *api.Node) { n.Spec.Availability = api.NodeAvailability_NODE_AVAILABILITY_DRAIN })
		}, true},
		{"node removed", func(h *harness) {
			if err := h.store.Update(context.Background(), func(tx store.Tx) error { return store.DeleteNode(tx, "n1") }); err != nil {
				h.t.Fatal(err)
			}
		}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			svc := newService("web", 4)
			svc.Spec.Task.Restart = &api.RestartPolicy{Condition: api.RestartPolicy_NONE} // moves happen whatever the policy
			h := newHarness(t, readyNode("n1"), readyNode("n2"), svc)
			h.start()
			h.waitFor("slots 1..4", hasSlots("web", 4))
			h.settle("web", roundRobin("n1", "n2"))

			tt.lose(h)
			h.waitFor("replacements in the same slots", func(tx store.ReadTx) bool {
				moved := count(tx, "web", func(t *api.Task) bool {
					return t.GetNodeId() == "n1" && t.GetDesiredState() == api.TaskState_TASK_STATE_SHUTDOWN
				})
				return moved == 2 && hasSlots("web", 4)(tx)
			})
			if tt.wait {
				h.waitFor("replacements wait", func(tx store.ReadTx) bool {
					return count(tx, "web", func(t *api.Task) bool { return t.GetDesiredState() == api.TaskState_TASK_STATE_READY }) == 2
				})
				h.settle("web", to("n2")) // the old tasks stop
			}
			h.waitFor("replacements started", func(tx store.ReadTx) bool {
				return count(tx, "web", func(t *api.Task) bool {
					return t.GetNodeId() != "n1" && t.GetDesiredState() == api.TaskState_TASK_STATE_RUNNING
				}) == 4
			})
		})
	}
}

func TestRunRestartPolicy(t *testing.T) {
	tests := []struct {
		name     string
		cond     api.RestartPolicy_Condition
		replaced bool
	}{
		{"any", api.RestartPolicy_ANY, true},
		{"on-failure", api.RestartPolicy_ON_FAILURE, true},
		{"none", api.RestartPolicy_NONE, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			svc := newService("web", 2)
			svc.Spec.Task.Restart.Condition = tt.cond
			h := newHarness(t, readyNode("n1"), svc)
			h.start()
			h.waitFor("slots 1..2", hasSlots("web", 2))
			h.settle("web", to("n1"))

			var failed string
			for _, task := range h.tasks("web") {
				if task.GetSlot() == 1 {
					failed = task.GetId()
				}
			}
			update(h, failed, func(t *api.Task) { t.Status.State = api.TaskState_TASK_STATE_FAILED })
			h.waitFor("failed task shut down", func(tx store.ReadTx) bool {
				return store.GetTask(tx, failed).GetDesiredState() == api.TaskState_TASK_STATE_SHUTDOWN
			})
			h.barrier("marker")
			h.store.View(func(tx store.ReadTx) {
				if got := runnableSlots(tx, "web")[1]; got != map[bool]int{true: 1, false: 0}[tt.replaced] {
					t.Errorf("slot 1 has %d runnable tasks; replaced: %v", got, tt.replaced)
				}
			})
			if tt.replaced {
				return
			}
			// A new spec starts afresh: the slot is filled again.
			h.updateSpec("web", func(s *api.ServiceSpec) { s.Task.ForceUpdate++ })
			h.waitFor("slot 1 refilled", hasSlots("web", 2))
		})
	}
}

func TestRunHandsDirtySlotsToTheUpdater(t *testing.T) {
	h := newHarness(t, readyNode("n1"), newService("web", 3))
	h.start()
	h.waitFor("slots 1..3", hasSlots("web", 3))
	h.settle("web", to("n1"))

	h.updateSpec("web", func(s *api.ServiceSpec) { s.Task.Container.Image = "img:2" })
	h.updater.waitFor(t, "three dirty slots", func(u *fakeUpdater) bool { return len(u.updates["web"]) == 3 })
}

func TestRunStartsFromTheStore(t *testing.T) {
	// What an earlier leader left: a service missing a replica, a task of
	// a removed service, a task on a node that went down.
	svc := newService("web", 3)
	gone := newService("gone", 1)
	h := newHarness(t, readyNode("n1"), node("n2", api.NodeStatus_DOWN, api.NodeAvailability_NODE_AVAILABILITY_ACTIVE), svc,
		task(svc, 1, "n1", stRunning), task(svc, 2, "n2", stRunning), task(gone, 1, "n1", stRunning))
	h.start()
	h.waitFor("reconciled", func(tx store.ReadTx) bool {
		return hasSlots("web", 3)(tx) &&
			store.GetTask(tx, "web.2.n2").GetDesiredState() == api.TaskState_TASK_STATE_SHUTDOWN &&
			store.GetTask(tx, "gone.1.n1").GetDesiredState() == api.TaskState_TASK_STATE_REMOVE
	})
	h.updater.waitFor(t, "update of the removed service cancelled", func(u *fakeUpdater) bool { return u.cancels["gone"] > 0 })
}

func TestRunRebalance(t *testing.T) {
	for _, enabled := range []bool{false, true} {
		t.Run(fmt.Sprintf("rebalance=%v", enabled), func(t *testing.T) {
			cluster := &api.Cluster{Id: "c", Spec: &api.ClusterSpec{
				Annotations:   &api.Annotations{Name: "default"},
				Orchestration: &api.OrchestrationConfig{Rebalance: enabled},
			}}
			h := newHarness(t, cluster, readyNode("n1"), readyNode("n2"), newService("web", 6))
			h.start()
			h.waitFor("slots 1..6", hasSlots("web", 6))
			h.settle("web", roundRobin("n1", "n2"))

			h.create(readyNode("n3"))
			moving := func(tx store.ReadTx) int {
				return count(tx, "web", func(t *api.Task) bool {
					return t.GetDesiredState() == api.TaskState_TASK_STATE_SHUTDOWN && t.GetStatus().GetState() == api.TaskState_TASK_STATE_RUNNING
				})
			}
			if !enabled {
				h.barrier("marker")
				h.store.View(func(tx store.ReadTx) {
					if n := moving(tx); n != 0 {
						t.Errorf("%d tasks moved without rebalancing", n)
					}
				})
				return
			}
			// Two moves (3/3/0 -> 2/2/2), one at a time (parallelism 1).
			for wave := 1; wave <= 2; wave++ {
				h.waitFor(fmt.Sprintf("move %d", wave), func(tx store.ReadTx) bool { return moving(tx) == 1 })
				h.barrier(fmt.Sprintf("marker%d", wave))
				h.store.View(func(tx store.ReadTx) {
					if n := moving(tx); n != 1 {
						t.Fatalf("%d moves at once, want 1", n)
					}
				})
				h.settle("web", to("n3")) // the old task stops
				h.waitFor("replacement started", func(tx store.ReadTx) bool {
					return count(tx, "web", func(t *api.Task) bool {
						return t.GetDesiredState() == api.TaskState_TASK_STATE_RUNNING && t.GetStatus().GetState() != api.TaskState_TASK_STATE_RUNNING
					}) == 1
				})
				h.settle("web", to("n3")) // the replacement runs on the new node
			}
			h.barrier("marker-end")
			perNode := map[string]int{}
			h.store.View(func(tx store.ReadTx) {
				tasks, _ := store.FindTasks(tx, store.ByServiceID("web"))
				for _, task := range tasks {
					if orchestrator.IsRunnable(task) {
						perNode[task.GetNodeId()]++
					}
				}
			})
			if perNode["n1"] != 2 || perNode["n2"] != 2 || perNode["n3"] != 2 {
				t.Errorf("tasks per node %v, want 2 each", perNode)
			}
		})
	}
}

// evenPlacer places the tasks of even slots on one node and records
// how each placement was settled.
type evenPlacer struct {
	node    string
	mu      sync.Mutex
	settled []error
}

func (p *evenPlacer) Place(tasks []*api.Task) func(error) {
	for _, t := range tasks {
		if t.GetSlot()%2 == 0 {
			t.NodeId = p.node
			t.Status = &api.TaskStatus{State: api.TaskState_TASK_STATE_ASSIGNED}
		}
	}
	return func(err error) {
		p.mu.Lock()
		defer p.mu.Unlock()
		p.settled = append(p.settled, err)
	}
}

func TestRunCreatesTasksAsPlaced(t *testing.T) {
	h := newHarness(t, readyNode("n1"), newService("web", 4))
	p := &evenPlacer{node: "n1"}
	h.start(WithPlacer(p))
	h.waitFor("slots 1..4", hasSlots("web", 4))
	for _, task := range h.tasks("web") {
		even := task.GetSlot()%2 == 0
		placed := task.GetNodeId() == "n1" && task.GetStatus().GetState() == api.TaskState_TASK_STATE_ASSIGNED
		unplaced := task.GetNodeId() == "" && task.GetStatus().GetState() == api.TaskState_TASK_STATE_PENDING
		if even && !placed || !even && !unplaced {
			t.Errorf("slot %d: node %q, state %s", task.GetSlot(), task.GetNodeId(), task.GetStatus().GetState())
		}
	}
	h.barrier("later")
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.settled) != 2 || p.settled[0] != nil || p.settled[1] != nil {
		t.Fatalf("placements settled with %v, want nil once per created batch (web, then later)", p.settled)
	}
}

// TestRunWritesManyServicesAtOnce: a pass with many services to
// reconcile writes them in several batches at once; each service is
// reconciled once, fully.
func TestRunWritesManyServicesAtOnce(t *testing.T) {
	const n = 4 * writers * minPerWriter / 2 // enough for every writer
	objs := []api.StoreObject{readyNode("n1")}
	for i := range n {
		objs = append(objs, newService(fmt.Sprintf("svc%02d", i), 3))
	}
	h := newHarness(t, objs...)
	p := &evenPlacer{node: "n1"}
	h.start(WithPlacer(p))
	for i := range n {
		id := fmt.Sprintf("svc%02d", i)
		h.waitFor(id+" slots 1..3", hasSlots(id, 3))
	}
	h.barrier("later")
	h.store.View(func(tx store.ReadTx) {
		for i := range n {
			if tasks, _ := store.FindTasks(tx, store.ByServiceID(fmt.Sprintf("svc%02d", i))); len(tasks) != 3 {
				t.Errorf("service svc%02d has %d tasks, want 3", i, len(tasks))
			}
		}
	})
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.settled) != n+1 {
		t.Fatalf("%d placements settled, want %d (one per service)", len(p.settled), n+1)
	}
	for _, err := range p.settled {
		if err != nil {
			t.Fatalf("placement settled with %v", err)
		}
	}
}
