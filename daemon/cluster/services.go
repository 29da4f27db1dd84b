package cluster

import (
	"context"
	"net/http"

	"github.com/docker/docker/api/types/swarm"

	"github.com/openswarm/swarmd/api"
	"github.com/openswarm/swarmd/daemon/cluster/convert"
)

func (s *Server) getServices(w http.ResponseWriter, r *http.Request) error {
	ctl, err := s.cluster.control()
	if err != nil {
		return err
	}
	args, err := filterArgs(r)
	if err != nil {
		return err
	}
	withStatus, err := boolParam(r, "status")
	if err != nil {
		return err
	}
	match, err := convert.ServiceFilter(args)
	if err != nil {
		return badRequest(err.Error())
	}
	resp, err := ctl.ListServices(r.Context(), &api.ListServicesRequest{})
	if err != nil {
		return err
	}
	out := []swarm.Service{}
	var picked []*api.Service
	for _, svc := range resp.GetServices() {
		if match(svc) {
			picked = append(picked, svc)
		}
	}
	var status map[string]*swarm.ServiceStatus
	if withStatus && len(picked) > 0 {
		if status, err = serviceStatus(r.Context(), ctl, picked); err != nil {
			return err
		}
	}
	for _, svc := range picked {
		d := convert.ServiceToDocker(svc)
		d.ServiceStatus = status[svc.GetId()]
		out = append(out, d)
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// serviceStatus counts the running, desired and completed tasks of
// services, as `docker service ls` shows them (REPLICAS). Tasks on nodes
// that are down do not count.
func serviceStatus(ctx context.Context, ctl api.ControlClient, svcs []*api.Service) (map[string]*swarm.ServiceStatus, error) {
	ids := make([]string, 0, len(svcs))
	for _, svc := range svcs {
		ids = append(ids, svc.GetId())
	}
	tasks, err := ctl.ListTasks(ctx, &api.ListTasksRequest{Filters: &api.ListFilters{ServiceIds: ids}})
	if err != nil {
		return nil, err
	}
	nodes, err := ctl.ListNodes(ctx, &api.ListNodesRequest{})
	if err != nil {
		return nil, err
	}
	down := map[string]bool{}
	for _, n := range nodes.GetNodes() {
		if n.GetStatus().GetState() == api.NodeStatus_DOWN {
			down[n.GetId()] = true
		}
	}
	return countTasks(svcs, tasks.GetTasks(), down), nil
}

// countTasks is the pure part of serviceStatus.
func countTasks(svcs []*api.Service, tasks []*api.Task, downNodes map[string]bool) map[string]*swarm.ServiceStatus {
	out := make(map[string]*swarm.ServiceStatus, len(svcs))
	byID := make(map[string]*api.Service, len(svcs))
	for _, svc := range svcs {
		byID[svc.GetId()] = svc
		st := &swarm.ServiceStatus{}
		if rep := svc.GetSpec().GetReplicated(); rep != nil {
			st.DesiredTasks = rep.GetReplicas()
		}
		out[svc.GetId()] = st
	}
	for _, t := range tasks {
		svc, st := byID[t.GetServiceId()], out[t.GetServiceId()]
		if svc == nil || downNodes[t.GetNodeId()] {
			continue
		}
		if t.GetStatus().GetState() == api.TaskState_TASK_STATE_RUNNING {
			st.RunningTasks++
		}
		spec := svc.GetSpec()
		switch {
		case spec.GetGlobal() != nil:
			if t.GetDesiredState() == api.TaskState_TASK_STATE_RUNNING {
				st.DesiredTasks++
			}
		case spec.GetReplicatedJob() != nil || spec.GetGlobalJob() != nil:
			if t.GetJobIteration().GetIndex() != svc.GetJobStatus().GetJobIteration().GetIndex() {
				continue
			}
			if t.GetDesiredState() == api.TaskState_TASK_STATE_COMPLETE && t.GetStatus().GetState() < api.TaskState_TASK_STATE_COMPLETE {
				st.DesiredTasks++
			}
			if t.GetStatus().GetState() == api.TaskState_TASK_STATE_COMPLETE {
				st.CompletedTasks++
			}
		}
	}
	return out
}

func (s *Server) postServiceCreate(w http.ResponseWriter, r *http.Request) error {
	ctl, err := s.cluster.control()
	if err != nil {
		return err
	}
	var spec swarm.ServiceSpec
	if err := decodeBody(r, &spec); err != nil {
		return err
	}
	as, err := convert.ServiceSpecFromDocker(spec)
	if err != nil {
		return badRequest(err.Error())
	}
	resp, err := ctl.CreateService(r.Context(), &api.CreateServiceRequest{Spec: as})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, swarm.ServiceCreateResponse{ID: resp.GetService().GetId()})
	return nil
}

func (s *Server) getService(w http.ResponseWriter, r *http.Request) error {
	ctl, err := s.cluster.control()
	if err != nil {
		return err
	}
	defaults, err := boolParam(r, "insertDefaults")
	if err != nil {
		return err
	}
	resp, err := ctl.GetService(r.Context(), &api.GetServiceRequest{ServiceId: r.PathValue("id"), InsertDefaults: defaults})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, convert.ServiceToDocker(resp.GetService()))
	return nil
}

func (s *Server) postServiceUpdate(w http.ResponseWriter, r *http.Request) error {
	ctl, err := s.cluster.control()
	if err != nil {
		return err
	}
	version, err := versionParam(r, "service")
	if err != nil {
		return err
	}
	var spec swarm.ServiceSpec
	if err := decodeBody(r, &spec); err != nil {
		return err
	}
	req := &api.UpdateServiceRequest{ServiceId: r.PathValue("id"), ServiceVersion: &api.Version{Index: version}}
	switch rb := r.URL.Query().Get("rollback"); rb {
	case "previous":
		// The previous spec replaces the current one; the body is the
		// current spec the client read, as docker's CLI sends it.
		req.Rollback = api.UpdateServiceRequest_PREVIOUS
	case "":
		if req.Spec, err = convert.ServiceSpecFromDocker(spec); err != nil {
			return badRequest(err.Error())
		}
	default:
		return badRequest("unrecognized rollback option " + rb)
	}
	if _, err := ctl.UpdateService(r.Context(), req); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, swarm.ServiceUpdateResponse{})
	return nil
}

func (s *Server) deleteService(w http.ResponseWriter, r *http.Request) error {
	ctl, err := s.cluster.control()
	if err != nil {
		return err
	}
	if _, err := ctl.RemoveService(r.Context(), &api.RemoveServiceRequest{ServiceId: r.PathValue("id")}); err != nil {
		return err
	}
	w.WriteHeader(http.StatusOK)
	return nil
}
