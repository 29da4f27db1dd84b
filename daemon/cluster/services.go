package cluster

import (
	"context"
	"fmt"
	"net/http"

	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/swarm"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/openswarm/swarmd/api"
	"github.com/openswarm/swarmd/daemon/cluster/convert"
	"github.com/openswarm/swarmd/manager/controlapi"
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
	if err := s.resolveServiceNetworks(r, ctl, as); err != nil {
		return err
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
		if err := s.resolveServiceNetworks(r, ctl, req.Spec); err != nil {
			return err
		}
		unchanged, err := specUnchanged(r.Context(), ctl, req)
		if err != nil {
			return err
		}
		if unchanged {
			writeJSON(w, http.StatusOK, swarm.ServiceUpdateResponse{})
			return nil
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

// specUnchanged reports whether an update, at the service's current
// version, asks for the spec the service already has. swarmd then leaves
// the service as it is (version, previous spec): a `docker stack deploy`
// of an unchanged stack changes nothing. An update at another version goes
// to the control API, which refuses it as out of sequence.
func specUnchanged(ctx context.Context, ctl api.ControlClient, req *api.UpdateServiceRequest) (bool, error) {
	resp, err := ctl.GetService(ctx, &api.GetServiceRequest{ServiceId: req.GetServiceId()})
	if err != nil {
		return false, err
	}
	svc := resp.GetService()
	return svc.GetMeta().GetVersion().GetIndex() == req.GetServiceVersion().GetIndex() &&
		proto.Equal(svc.GetSpec(), controlapi.ServiceSpecWithDefaults(req.GetSpec())), nil
}

// resolveServiceNetworks rewrites the targets of spec's network
// attachments (IDs, names or ID prefixes) to swarm network IDs. A name
// that designates an engine network instead is refused in docker's words:
// services attach to swarm-scoped networks only.
func (s *Server) resolveServiceNetworks(r *http.Request, ctl api.ControlClient, spec *api.ServiceSpec) error {
	var local []network.Summary
	for _, att := range spec.GetTask().GetNetworks() {
		resp, err := ctl.GetNetwork(r.Context(), &api.GetNetworkRequest{NetworkId: att.GetTarget()})
		if err == nil {
			att.Target = resp.GetNetwork().GetId()
			continue
		}
		if status.Code(err) != codes.NotFound {
			return lookupError(err)
		}
		if local == nil {
			local = []network.Summary{}
			if err := s.engineJSON(r.Context(), r, http.MethodGet, "/networks", nil, &local); err != nil {
				return err
			}
		}
		if ref, err := pickNetwork(att.GetTarget(), local, nil, false, actionAmbiguity); err == nil && swarmCopyOf(ref.engine) == "" {
			return &httpError{code: http.StatusForbidden, msg: fmt.Sprintf("The network %s cannot be used with services. "+
				"Only networks scoped to the swarm can be used, such as those created with the overlay driver.", ref.engine.Name)}
		}
		return errNoSuchNetwork(att.GetTarget())
	}
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
