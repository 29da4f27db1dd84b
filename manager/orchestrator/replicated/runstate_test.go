package replicated

import (
	"testing"

	"github.com/openswarm/swarmd/api"
	"github.com/openswarm/swarmd/manager/state/store"
)

// TestNoteAssignment: the scheduler's assignment of a task to a node that
// keeps its tasks does not make the service dirty, nor does the creation
// of a task by a pass of the orchestrator itself; any other change the
// reconciliation looks at, a creation by another, or a node that does not
// keep tasks, does.
func TestNoteAssignment(t *testing.T) {
	task := func(node string, state, desired api.TaskState) *api.Task {
		return &api.Task{Id: "t1", ServiceId: "s1", Slot: 1, NodeId: node, DesiredState: desired,
			Status: &api.TaskStatus{State: state}}
	}
	const (
		pending  = api.TaskState_TASK_STATE_PENDING
		assigned = api.TaskState_TASK_STATE_ASSIGNED
		running  = api.TaskState_TASK_STATE_RUNNING
		failed   = api.TaskState_TASK_STATE_FAILED
		shutdown = api.TaskState_TASK_STATE_SHUTDOWN
	)
	keeps := func(id string) bool { return id == "up" }
	tests := []struct {
		name      string
		action    store.EventAction
		old, t    *api.Task
		nodeKeeps func(string) bool
		own       []string // task IDs a pass of this orchestrator created
		rebalance bool     // the service is being rebalanced
		dirty     bool
	}{
		{name: "assigned to a node that keeps tasks", action: store.EventUpdate, old: task("", pending, running), t: task("up", assigned, running), nodeKeeps: keeps},
		{name: "assigned to a node that does not", action: store.EventUpdate, old: task("", pending, running), t: task("down", assigned, running), nodeKeeps: keeps, dirty: true},
		{name: "no node lookup", action: store.EventUpdate, old: task("", pending, running), t: task("up", assigned, running), dirty: true},
		{name: "moved between nodes", action: store.EventUpdate, old: task("other", assigned, running), t: task("up", assigned, running), nodeKeeps: keeps, dirty: true},
		{name: "assigned and desired state changed", action: store.EventUpdate, old: task("", pending, running), t: task("up", assigned, shutdown), nodeKeeps: keeps, dirty: true},
		{name: "assigned and stopped", action: store.EventUpdate, old: task("", pending, running), t: task("up", failed, running), nodeKeeps: keeps, dirty: true},
		{name: "created", action: store.EventCreate, t: task("", pending, running), nodeKeeps: keeps, dirty: true},
		{name: "created by a pass of its own", action: store.EventCreate, t: task("", pending, running), own: []string{"t0", "t1"}},
		{name: "created by another, beside its own", action: store.EventCreate, t: task("", pending, running), own: []string{"t0", "t2"}, dirty: true},
		{name: "updated after its own creation", action: store.EventUpdate, old: task("", pending, running), t: task("", pending, shutdown), own: []string{"t1"}, dirty: true},
		{name: "status only", action: store.EventUpdate, old: task("up", assigned, running), t: task("up", api.TaskState_TASK_STATE_ACCEPTED, running), nodeKeeps: keeps},
		{name: "running", action: store.EventUpdate, old: task("up", api.TaskState_TASK_STATE_STARTING, running), t: task("up", running, running), nodeKeeps: keeps},
		{name: "running, rebalancing", action: store.EventUpdate, old: task("up", api.TaskState_TASK_STATE_STARTING, running), t: task("up", running, running), nodeKeeps: keeps, rebalance: true, dirty: true},
		{name: "stopped running", action: store.EventUpdate, old: task("up", running, running), t: task("up", failed, running), nodeKeeps: keeps, dirty: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rs := newRunState(tc.nodeKeeps)
			rs.Take() // forget the start's "everything"
			rs.ownCreates(tc.own)
			if tc.rebalance {
				rs.rebalance["s1"] = 0
			}
			ev := store.Event{Action: tc.action, Object: tc.t, Index: 7}
			if tc.old != nil {
				ev.Old = tc.old
			}
			rs.note(ev)
			if got := rs.Services["s1"]; got != tc.dirty {
				t.Fatalf("service dirty = %v, want %v", got, tc.dirty)
			}
			// An own creation is forgotten once its event came.
			if _, kept := rs.created[tc.t.GetId()]; kept && tc.action == store.EventCreate {
				t.Fatalf("own creation of %s still remembered after its event", tc.t.GetId())
			}
		})
	}
}
