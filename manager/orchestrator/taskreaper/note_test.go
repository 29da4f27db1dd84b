package taskreaper

import (
	"testing"

	"github.com/openswarm/swarmd/api"
	"github.com/openswarm/swarmd/manager/state/store"
)

// TestNoteTasks: a task event notes the task's group only if it may make
// something deletable: a task created not meant to run, or an update of
// its desired state or of its having stopped. The creation of a task
// meant to run (the bulk of a scale-up) costs the reaper nothing.
func TestNoteTasks(t *testing.T) {
	task := func(desired, state api.TaskState) *api.Task {
		return &api.Task{Id: "t1", ServiceId: "svc", Slot: 1, DesiredState: desired, Status: &api.TaskStatus{State: state}}
	}
	running, shutdown := api.TaskState_TASK_STATE_RUNNING, api.TaskState_TASK_STATE_SHUTDOWN
	tests := []struct {
		name string
		ev   store.Event
		want bool
	}{
		{"create, meant to run", store.Event{Action: store.EventCreate, Object: task(running, api.TaskState_TASK_STATE_PENDING)}, false},
		{"create, not meant to run", store.Event{Action: store.EventCreate, Object: task(shutdown, api.TaskState_TASK_STATE_PENDING)}, true},
		{"update, assigned", store.Event{Action: store.EventUpdate, Old: task(running, api.TaskState_TASK_STATE_PENDING),
			Object: task(running, api.TaskState_TASK_STATE_ASSIGNED)}, false},
		{"update, shut down", store.Event{Action: store.EventUpdate, Old: task(running, running), Object: task(shutdown, running)}, true},
		{"update, stopped", store.Event{Action: store.EventUpdate, Old: task(running, running), Object: task(running, api.TaskState_TASK_STATE_FAILED)}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rs := &runState{groups: make(map[groupKey]bool), services: make(map[string]bool)}
			rs.note(tc.ev)
			if got := rs.groups[groupKey{service: "svc", slot: 1}]; got != tc.want {
				t.Errorf("group noted = %v, want %v", got, tc.want)
			}
		})
	}
}
