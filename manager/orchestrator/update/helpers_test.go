package update

import (
	"slices"
	"time"

	"github.com/openswarm/swarmd/api"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// Shorthands for task states.
const (
	stNew       = api.TaskState_TASK_STATE_NEW
	stPending   = api.TaskState_TASK_STATE_PENDING
	stAssigned  = api.TaskState_TASK_STATE_ASSIGNED
	stReady     = api.TaskState_TASK_STATE_READY
	stStarting  = api.TaskState_TASK_STATE_STARTING
	stRunning   = api.TaskState_TASK_STATE_RUNNING
	stComplete  = api.TaskState_TASK_STATE_COMPLETE
	stShutdown  = api.TaskState_TASK_STATE_SHUTDOWN
	stFailed    = api.TaskState_TASK_STATE_FAILED
	stRejected  = api.TaskState_TASK_STATE_REJECTED
	stRemove    = api.TaskState_TASK_STATE_REMOVE
	stOrphaned  = api.TaskState_TASK_STATE_ORPHANED
	testService = "svc1"
)

var t0 = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)

// newService returns a replicated service of replicas running image at
// spec version 10, updated as uc says.
func newService(image string, replicas uint64, uc *api.UpdateConfig) *api.Service {
	return &api.Service{
		Id:          testService,
		SpecVersion: &api.Version{Index: 10},
		Spec: &api.ServiceSpec{
			Annotations: &api.Annotations{Name: "web"},
			Task:        &api.TaskSpec{Container: &api.ContainerSpec{Image: image}},
			Mode:        &api.ServiceSpec_Replicated{Replicated: &api.ReplicatedService{Replicas: replicas}},
			Update:      uc,
		},
	}
}

// globalService returns a global service running image.
func globalService(image string) *api.Service {
	s := newService(image, 0, nil)
	s.Spec.Mode = &api.ServiceSpec_Global{Global: &api.GlobalService{}}
	return s
}

// updateConfig returns an update config.
func updateConfig(parallelism uint64, delay, monitor time.Duration, action api.UpdateConfig_FailureAction, ratio float32, order api.UpdateConfig_UpdateOrder) *api.UpdateConfig {
	return &api.UpdateConfig{
		Parallelism:     parallelism,
		Delay:           durationpb.New(delay),
		Monitor:         durationpb.New(monitor),
		FailureAction:   action,
		MaxFailureRatio: ratio,
		Order:           order,
	}
}

// mkTask returns a task of the test service in slot slot running image on
// node, with the given desired and observed states.
func mkTask(id string, slot uint64, image, node string, desired, observed api.TaskState) *api.Task {
	return &api.Task{
		Id:           id,
		ServiceId:    testService,
		Slot:         slot,
		NodeId:       node,
		Spec:         &api.TaskSpec{Container: &api.ContainerSpec{Image: image}},
		DesiredState: desired,
		Status:       &api.TaskStatus{State: observed, Timestamp: timestamppb.New(t0)},
		Meta:         &api.Meta{Version: &api.Version{Index: 1}, CreatedAt: timestamppb.New(t0)},
	}
}

// fakeView is a view over fixed tasks and nodes.
type fakeView struct {
	tasks []*api.Task
	down  map[string]bool // nodes DOWN or gone
}

func (v *fakeView) slotTasks(k slotKey) []*api.Task {
	var out []*api.Task
	for _, t := range v.tasks {
		if keyOf(k.node != "", t) == k {
			out = append(out, t)
		}
	}
	return out
}

func (v *fakeView) nodeUp(id string) bool { return id != "" && !v.down[id] }

// set replaces the task with t's ID by t, or adds it.
func (v *fakeView) set(t *api.Task) {
	i := slices.IndexFunc(v.tasks, func(o *api.Task) bool { return o.GetId() == t.GetId() })
	if i < 0 {
		v.tasks = append(v.tasks, t)
		return
	}
	v.tasks[i] = t
}

func (v *fakeView) get(id string) *api.Task {
	for _, t := range v.tasks {
		if t.GetId() == id {
			return t
		}
	}
	return nil
}
