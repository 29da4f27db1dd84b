package controlapi

import (
	"context"
	"slices"
	"testing"

	"github.com/openswarm/swarmd/api"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
)

func TestTasks(t *testing.T) {
	s, st := newTestServer(t, nil)
	ctx := context.Background()
	web := createService(t, s, serviceSpec("web"))
	other := createService(t, s, serviceSpec("db"))
	running, shutdown := api.TaskState_TASK_STATE_RUNNING, api.TaskState_TASK_STATE_SHUTDOWN
	task := func(id string, svc *api.Service, slot uint64, node string, desired api.TaskState, spec *api.TaskSpec) *api.Task {
		return &api.Task{
			Id: id, ServiceId: svc.GetId(), Slot: slot, NodeId: node, DesiredState: desired,
			ServiceAnnotations: svc.GetSpec().GetAnnotations(), Spec: spec,
			Status: &api.TaskStatus{State: running},
		}
	}
	oldSpec := proto.CloneOf(web.GetSpec().GetTask())
	oldSpec.Container.Image = "busybox:old"
	put(t, st,
		task("t1aaaaaaaaaaaaaaaaaaaaaaa", web, 1, "n1", running, web.GetSpec().GetTask()),
		task("t2bbbbbbbbbbbbbbbbbbbbbbb", web, 2, "n2", running, oldSpec),
		task("t3ccccccccccccccccccccccc", web, 1, "n1", shutdown, oldSpec),
		task("t4ddddddddddddddddddddddd", other, 1, "n2", running, other.GetSpec().GetTask()),
	)

	for _, input := range []string{"t1aaaaaaaaaaaaaaaaaaaaaaa", "web.1.t1aaaaaaaaaaaaaaaaaaaaaaa", "t1"} {
		resp, err := s.GetTask(ctx, &api.GetTaskRequest{TaskId: input})
		mustOK(t, err)
		if resp.GetTask().GetId() != "t1aaaaaaaaaaaaaaaaaaaaaaa" {
			t.Fatalf("GetTask(%q) = %s", input, resp.GetTask().GetId())
		}
	}
	_, err := s.GetTask(ctx, &api.GetTaskRequest{TaskId: "t"})
	wantErr(t, err, codes.InvalidArgument, "task t is ambiguous (4 matches found)")
	_, err = s.GetTask(ctx, &api.GetTaskRequest{TaskId: "x"})
	wantErr(t, err, codes.NotFound, "task x not found")

	tests := []struct {
		name string
		f    *api.ListFilters
		want []string
	}{
		{"all", nil, []string{"t1", "t2", "t3", "t4"}},
		{"service", &api.ListFilters{ServiceIds: []string{web.GetId()}}, []string{"t1", "t2", "t3"}},
		{"node", &api.ListFilters{NodeIds: []string{"n2"}}, []string{"t2", "t4"}},
		{"desired", &api.ListFilters{DesiredStates: []api.TaskState{running}}, []string{"t1", "t2", "t4"}},
		{"service and desired", &api.ListFilters{ServiceIds: []string{web.GetId()}, DesiredStates: []api.TaskState{shutdown}}, []string{"t3"}},
		{"names", &api.ListFilters{Names: []string{"web.2.t2bbbbbbbbbbbbbbbbbbbbbbb"}}, []string{"t2"}},
		{"name prefix", &api.ListFilters{NamePrefixes: []string{"db."}}, []string{"t4"}},
		{"id prefix", &api.ListFilters{IdPrefixes: []string{"t1", "t3"}}, []string{"t1", "t3"}},
		{"service label", &api.ListFilters{Labels: map[string]string{"x": ""}}, nil},
		{"up to date", &api.ListFilters{ServiceIds: []string{web.GetId()}, UpToDate: true}, []string{"t1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := s.ListTasks(ctx, &api.ListTasksRequest{Filters: tt.f})
			mustOK(t, err)
			var got []string
			for _, task := range resp.GetTasks() {
				got = append(got, task.GetId()[:2])
			}
			slices.Sort(got)
			if !slices.Equal(got, tt.want) {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
		})
	}

	_, err = s.RemoveTask(ctx, &api.RemoveTaskRequest{TaskId: "t3"})
	mustOK(t, err)
	_, err = s.RemoveTask(ctx, &api.RemoveTaskRequest{TaskId: "t3"})
	wantErr(t, err, codes.NotFound, "task t3 not found")
}
