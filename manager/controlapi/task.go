package controlapi

import (
	"context"
	"slices"

	"github.com/openswarm/swarmd/api"
	"github.com/openswarm/swarmd/manager/state/store"
	"google.golang.org/protobuf/proto"
)

// GetTask returns the task with that ID, name or unique ID prefix.
func (s *Server) GetTask(_ context.Context, req *api.GetTaskRequest) (*api.GetTaskResponse, error) {
	var (
		t   *api.Task
		err error
	)
	s.store.View(func(tx store.ReadTx) { t, err = lookupTask(tx, req.GetTaskId()) })
	if err != nil {
		return nil, err
	}
	return &api.GetTaskResponse{Task: t}, nil
}

// ListTasks returns the tasks the filters select: names (docker's task
// names), name and ID prefixes, service labels, service IDs, node IDs,
// desired states, and, with up_to_date, only tasks that run their
// service's current spec.
func (s *Server) ListTasks(_ context.Context, req *api.ListTasksRequest) (*api.ListTasksResponse, error) {
	f := req.GetFilters()
	by := indexedBy(f)
	switch {
	case by != nil:
	case len(f.GetServiceIds()) > 0:
		by = orBy(f.GetServiceIds(), store.ByServiceID)
	case len(f.GetNodeIds()) > 0:
		by = orBy(f.GetNodeIds(), store.ByNodeID)
	case len(f.GetDesiredStates()) > 0:
		by = orBy(f.GetDesiredStates(), store.ByDesiredState)
	}
	// The response is only encoded: it carries the stored tasks.
	tasks, err := listShared(s, by, func(tx store.ReadTx, t *api.Task) bool { return taskMatches(tx, f, t) })
	if err != nil {
		return nil, err
	}
	return &api.ListTasksResponse{Tasks: tasks}, nil
}

func taskMatches(tx store.ReadTx, f *api.ListFilters, t *api.Task) bool {
	if f == nil {
		return true
	}
	if !matchCommon(f, t.GetId(), store.TaskName(t), t.GetServiceAnnotations().GetLabels()) ||
		!matchAny(t.GetServiceId(), f.GetServiceIds()) ||
		!matchAny(t.GetNodeId(), f.GetNodeIds()) ||
		(len(f.GetDesiredStates()) > 0 && !slices.Contains(f.GetDesiredStates(), t.GetDesiredState())) {
		return false
	}
	if f.GetUpToDate() {
		svc := store.GetService(tx, t.GetServiceId())
		return svc != nil && taskUpToDate(svc, t)
	}
	return true
}

// taskUpToDate reports whether t runs svc's current spec: the same task
// spec and, once the task has an endpoint, the same endpoint spec.
func taskUpToDate(svc *api.Service, t *api.Task) bool {
	if !proto.Equal(svc.GetSpec().GetTask(), t.GetSpec()) {
		return false
	}
	return t.GetEndpoint() == nil || proto.Equal(svc.GetSpec().GetEndpoint(), t.GetEndpoint().GetSpec())
}

// RemoveTask deletes a task from the store.
func (s *Server) RemoveTask(ctx context.Context, req *api.RemoveTaskRequest) (*api.RemoveTaskResponse, error) {
	err := s.store.Update(ctx, func(tx store.Tx) error {
		t, err := lookupTask(tx, req.GetTaskId())
		if err != nil {
			return err
		}
		return tx.Delete(store.KindTask, t.GetId())
	})
	if err != nil {
		return nil, storeErr(err)
	}
	return &api.RemoveTaskResponse{}, nil
}
