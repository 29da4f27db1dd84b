package taskreaper

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/openswarm/swarmd/api"
	"google.golang.org/protobuf/types/known/timestamppb"
)

var t0 = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)

const (
	dRunning  = api.TaskState_TASK_STATE_RUNNING
	dShutdown = api.TaskState_TASK_STATE_SHUTDOWN
	dRemove   = api.TaskState_TASK_STATE_REMOVE

	sNew      = api.TaskState_TASK_STATE_NEW
	sAssigned = api.TaskState_TASK_STATE_ASSIGNED
	sRunning  = api.TaskState_TASK_STATE_RUNNING
	sComplete = api.TaskState_TASK_STATE_COMPLETE
	sShutdown = api.TaskState_TASK_STATE_SHUTDOWN
	sFailed   = api.TaskState_TASK_STATE_FAILED
)

// tk returns task id of service web, slot 1, on node, desired d, observed
// s, created age seconds after t0.
func tk(id, node string, d, s api.TaskState, age int) *api.Task {
	return &api.Task{
		Id:           id,
		ServiceId:    "web",
		Slot:         1,
		NodeId:       node,
		SpecVersion:  &api.Version{},
		Spec:         &api.TaskSpec{},
		DesiredState: d,
		Status:       &api.TaskStatus{State: s, Timestamp: timestamppb.New(t0)},
		Meta:         &api.Meta{CreatedAt: timestamppb.New(t0.Add(time.Duration(age) * time.Second))},
	}
}

func TestReap(t *testing.T) {
	web := &api.Service{Id: "web", SpecVersion: &api.Version{}}
	gaveUp := tk("gave-up", "n1", dShutdown, sFailed, 9)
	gaveUp.Spec.Restart = &api.RestartPolicy{Condition: api.RestartPolicy_NONE}
	dead := func(n int) []*api.Task {
		var out []*api.Task
		for i := range n {
			out = append(out, tk(fmt.Sprintf("dead%d", i), "n1", dShutdown, sShutdown, i))
		}
		return out
	}
	tests := []struct {
		name    string
		service *api.Service
		limit   int64
		tasks   []*api.Task
		want    []string
	}{
		{name: "removed tasks once they stop", service: web, limit: 5, tasks: []*api.Task{
			tk("stopped", "n1", dRemove, sShutdown, 0), tk("completed", "n1", dRemove, sComplete, 0),
			tk("still-running", "n1", dRemove, sRunning, 0), tk("never-assigned", "", dRemove, sNew, 0),
			tk("assigned", "n1", dRemove, sAssigned, 0), tk("node-gone", "gone", dRemove, sRunning, 0),
		}, want: []string{"completed", "never-assigned", "node-gone", "stopped"}},
		{name: "service gone: dead tasks", service: nil, limit: 5, tasks: []*api.Task{
			tk("dead", "n1", dShutdown, sShutdown, 0), tk("stopping", "n1", dShutdown, sRunning, 0),
			tk("lost", "gone", dShutdown, sRunning, 0), tk("runnable", "n1", dRunning, sRunning, 0),
		}, want: []string{"dead", "lost"}},
		{name: "history within the limit", service: web, limit: 5, tasks: append(dead(5), tk("run", "n1", dRunning, sRunning, 9))},
		{name: "oldest beyond the limit", service: web, limit: 2, tasks: append(dead(5), tk("run", "n1", dRunning, sRunning, 9)),
			want: []string{"dead0", "dead1", "dead2"}},
		{name: "negative limit keeps all", service: web, limit: -1, tasks: dead(10)},
		{name: "the task that emptied the slot stays", service: web, limit: 0, tasks: append(dead(2), gaveUp),
			want: []string{"dead0", "dead1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := world{
				service:  func(string) *api.Service { return tt.service },
				nodeGone: func(id string) bool { return id == "gone" },
				limit:    tt.limit,
			}
			var got []string
			for _, d := range reap(w, tt.tasks) {
				got = append(got, d.GetId())
			}
			slices.Sort(got)
			if !slices.Equal(got, tt.want) {
				t.Errorf("reaped %v, want %v", got, tt.want)
			}
		})
	}
}
