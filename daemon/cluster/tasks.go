package cluster

import (
	"context"
	"net/http"

	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/swarm"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/openswarm/swarmd/api"
	"github.com/openswarm/swarmd/daemon/cluster/convert"
)

func (s *Server) getTasks(w http.ResponseWriter, r *http.Request) error {
	ctl, err := s.cluster.control()
	if err != nil {
		return err
	}
	args, err := filterArgs(r)
	if err != nil {
		return err
	}
	lf, none, err := s.taskListFilters(r.Context(), ctl, args)
	if err != nil {
		return err
	}
	out := []swarm.Task{}
	if none {
		writeJSON(w, http.StatusOK, out)
		return nil
	}
	match, err := convert.TaskFilter(args)
	if err != nil {
		return badRequest(err.Error())
	}
	resp, err := ctl.ListTasks(r.Context(), &api.ListTasksRequest{Filters: lf})
	if err != nil {
		return err
	}
	for _, t := range resp.GetTasks() {
		if match(t) {
			out = append(out, convert.TaskToDocker(t))
		}
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// taskListFilters moves the filters the control API answers itself
// (service and node by ID or name, _up-to-date, which the docker CLI uses
// to follow a service's convergence) from args into a ListFilters. none
// reports that a named service or node does not exist: no task matches.
func (s *Server) taskListFilters(ctx context.Context, ctl api.ControlClient, args filters.Args) (lf *api.ListFilters, none bool, err error) {
	lf = &api.ListFilters{}
	for _, v := range args.Get("service") {
		resp, err := ctl.GetService(ctx, &api.GetServiceRequest{ServiceId: v})
		if status.Code(err) == codes.NotFound {
			continue
		}
		if err != nil {
			return nil, false, err
		}
		lf.ServiceIds = append(lf.ServiceIds, resp.GetService().GetId())
	}
	if len(args.Get("service")) > 0 && len(lf.ServiceIds) == 0 {
		return nil, true, nil
	}
	for _, v := range args.Get("node") {
		if v == "self" {
			v = s.cluster.NodeID()
		}
		resp, err := ctl.GetNode(ctx, &api.GetNodeRequest{NodeId: v})
		if status.Code(err) == codes.NotFound {
			continue
		}
		if err != nil {
			return nil, false, err
		}
		lf.NodeIds = append(lf.NodeIds, resp.GetNode().GetId())
	}
	if len(args.Get("node")) > 0 && len(lf.NodeIds) == 0 {
		return nil, true, nil
	}
	lf.UpToDate = args.Contains("_up-to-date")
	for _, k := range []string{"service", "node", "_up-to-date"} {
		for _, v := range args.Get(k) {
			args.Del(k, v)
		}
	}
	return lf, false, nil
}

func (s *Server) getTask(w http.ResponseWriter, r *http.Request) error {
	ctl, err := s.cluster.control()
	if err != nil {
		return err
	}
	resp, err := ctl.GetTask(r.Context(), &api.GetTaskRequest{TaskId: r.PathValue("id")})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, convert.TaskToDocker(resp.GetTask()))
	return nil
}
