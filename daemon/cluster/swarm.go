package cluster

import (
	"context"
	"fmt"
	"net/http"
	"strconv"

	"github.com/docker/docker/api/types/swarm"

	"github.com/openswarm/swarmd/api"
	"github.com/openswarm/swarmd/daemon/cluster/convert"
)

func (s *Server) postSwarmInit(w http.ResponseWriter, r *http.Request) error {
	var req swarm.InitRequest
	if err := decodeBody(r, &req); err != nil {
		return err
	}
	id, err := s.cluster.Init(r.Context(), req)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, id)
	return nil
}

func (s *Server) postSwarmJoin(w http.ResponseWriter, r *http.Request) error {
	var req swarm.JoinRequest
	if err := decodeBody(r, &req); err != nil {
		return err
	}
	if err := s.cluster.Join(r.Context(), req); err != nil {
		return err
	}
	w.WriteHeader(http.StatusOK)
	return nil
}

func (s *Server) postSwarmLeave(w http.ResponseWriter, r *http.Request) error {
	force, err := boolParam(r, "force")
	if err != nil {
		return err
	}
	if err := s.cluster.Leave(r.Context(), force); err != nil {
		return err
	}
	w.WriteHeader(http.StatusOK)
	return nil
}

func (s *Server) getSwarm(w http.ResponseWriter, r *http.Request) error {
	ctl, err := s.cluster.control()
	if err != nil {
		return err
	}
	cl, err := currentCluster(r.Context(), ctl)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, convert.SwarmFromCluster(cl))
	return nil
}

// currentCluster is the swarm's one cluster object.
func currentCluster(ctx context.Context, ctl api.ControlClient) (*api.Cluster, error) {
	resp, err := ctl.ListClusters(ctx, &api.ListClustersRequest{})
	if err != nil {
		return nil, err
	}
	if len(resp.GetClusters()) == 0 {
		return nil, unavailable("the swarm has no cluster object yet")
	}
	return resp.GetClusters()[0], nil
}

func (s *Server) postSwarmUpdate(w http.ResponseWriter, r *http.Request) error {
	ctl, err := s.cluster.control()
	if err != nil {
		return err
	}
	version, err := versionParam(r, "swarm")
	if err != nil {
		return err
	}
	var spec swarm.Spec
	if err := decodeBody(r, &spec); err != nil {
		return err
	}
	var rot api.KeyRotation
	for name, dst := range map[string]*bool{
		"rotateWorkerToken":      &rot.WorkerJoinToken,
		"rotateManagerToken":     &rot.ManagerJoinToken,
		"rotateManagerUnlockKey": &rot.ManagerUnlockKey,
	} {
		if *dst, err = boolParam(r, name); err != nil {
			return err
		}
	}
	if spec.EncryptionConfig.AutoLockManagers || rot.ManagerUnlockKey {
		return badRequest("EncryptionConfig.AutoLockManagers: autolock is not available in this version of swarmd")
	}
	cl, err := currentCluster(r.Context(), ctl)
	if err != nil {
		return err
	}
	merged, err := convert.MergeSwarmSpec(cl.GetSpec(), spec)
	if err != nil {
		return badRequest(err.Error())
	}
	_, err = ctl.UpdateCluster(r.Context(), &api.UpdateClusterRequest{
		ClusterId: cl.GetId(), ClusterVersion: &api.Version{Index: version}, Spec: merged, Rotation: &rot,
	})
	if err != nil {
		return err
	}
	w.WriteHeader(http.StatusOK)
	return nil
}

func (s *Server) getUnlockKey(w http.ResponseWriter, _ *http.Request) error {
	if _, err := s.cluster.control(); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, swarm.UnlockKeyResponse{})
	return nil
}

func (s *Server) postSwarmUnlock(_ http.ResponseWriter, r *http.Request) error {
	var req swarm.UnlockRequest
	if err := decodeBody(r, &req); err != nil {
		return err
	}
	if st, _ := s.cluster.State(); st == StateInactive {
		return errNoSwarm
	}
	return errNotLocked
}

// applyInitSpec applies the spec and availability of an init request to
// the new swarm.
func (c *Cluster) applyInitSpec(ctx context.Context, req swarm.InitRequest) error {
	ctl, err := c.control()
	if err != nil {
		return err
	}
	cl, err := currentCluster(ctx, ctl)
	if err != nil {
		return err
	}
	merged, err := convert.MergeSwarmSpec(cl.GetSpec(), req.Spec)
	if err != nil {
		return badRequest(err.Error())
	}
	if _, err := ctl.UpdateCluster(ctx, &api.UpdateClusterRequest{
		ClusterId: cl.GetId(), ClusterVersion: cl.GetMeta().GetVersion(), Spec: merged,
	}); err != nil {
		return fmt.Errorf("apply the swarm spec: %w", err)
	}
	return c.applyAvailability(ctx, c.current(), req.Availability)
}

// applyAvailability sets this node's availability when an init or join
// asked for one other than active.
func (c *Cluster) applyAvailability(ctx context.Context, r *nodeRun, a swarm.NodeAvailability) error {
	if a == "" || a == swarm.NodeAvailabilityActive || r == nil {
		return nil
	}
	ctl, err := c.control()
	if err != nil {
		return fmt.Errorf("set availability %s: %w", a, err)
	}
	n, err := ctl.GetNode(ctx, &api.GetNodeRequest{NodeId: r.node.NodeID()})
	if err != nil {
		return err
	}
	spec := convert.NodeToDocker(n.GetNode()).Spec
	spec.Availability = a
	ns, err := convert.NodeSpecFromDocker(spec)
	if err != nil {
		return badRequest(err.Error())
	}
	_, err = ctl.UpdateNode(ctx, &api.UpdateNodeRequest{NodeId: n.GetNode().GetId(), NodeVersion: n.GetNode().GetMeta().GetVersion(), Spec: ns})
	return err
}

// boolParam reads a boolean query parameter as the engine does ("1",
// "true", ... ; absent is false).
func boolParam(r *http.Request, name string) (bool, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return false, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, badRequest(fmt.Sprintf("invalid value for %s: %q", name, v))
	}
	return b, nil
}

// versionParam reads the version query parameter of an update.
func versionParam(r *http.Request, kind string) (uint64, error) {
	v := r.URL.Query().Get("version")
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil {
		return 0, badRequest(fmt.Sprintf("invalid %s version '%s': %v", kind, v, err))
	}
	return n, nil
}
