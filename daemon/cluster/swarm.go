package cluster

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"

	"github.com/docker/docker/api/types/swarm"

	"github.com/openswarm/swarmd/api"
	"github.com/openswarm/swarmd/daemon/cluster/convert"
	"github.com/openswarm/swarmd/manager/state/store"
	"github.com/openswarm/swarmd/node"
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

// getUnlockKey answers the managers' unlock key in docker's form, or ""
// while autolock is off (as docker does; its CLI then says no unlock key
// is set).
func (s *Server) getUnlockKey(w http.ResponseWriter, _ *http.Request) error {
	key, err := s.cluster.UnlockKey()
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, swarm.UnlockKeyResponse{UnlockKey: key})
	return nil
}

func (s *Server) postSwarmUnlock(w http.ResponseWriter, r *http.Request) error {
	var req swarm.UnlockRequest
	if err := decodeBody(r, &req); err != nil {
		return err
	}
	if err := s.cluster.Unlock(r.Context(), req.UnlockKey); err != nil {
		return err
	}
	w.WriteHeader(http.StatusOK)
	return nil
}

// UnlockKey is the managers' unlock key of the swarm in docker's form
// ("SWMKEY-1-..."), "" while autolock is off. It is read from the local
// manager's store (the control API never returns unlock keys).
func (c *Cluster) UnlockKey() (string, error) {
	r, err := c.managerRun()
	if err != nil {
		return "", err
	}
	m := r.node.Manager()
	if m == nil {
		return "", errManagerNotReady
	}
	var key []byte
	var found bool
	m.Store().View(func(tx store.ReadTx) {
		cs, _ := store.FindClusters(tx, store.All)
		if len(cs) > 0 {
			key, found = node.ManagerUnlockKey(cs[0]), true
		}
	})
	if !found {
		return "", unavailable("the swarm has no cluster object yet")
	}
	if len(key) == 0 {
		return "", nil
	}
	return node.FormatUnlockKey(key), nil
}

// Unlock starts the node of a locked swarm with its unlock key, as docker
// swarm unlock does: a key that does not open the node's key material is
// refused and nothing changes.
func (c *Cluster) Unlock(ctx context.Context, unlockKey string) error {
	c.opMu.Lock()
	defer c.opMu.Unlock()
	c.mu.RLock()
	locked, running := c.locked, c.run != nil
	c.mu.RUnlock()
	if locked == nil {
		if !running {
			return errNoSwarm
		}
		if _, err := c.managerRun(); err != nil {
			return err // a worker, or a manager not ready yet (as docker)
		}
		return errNotLocked
	}
	key, err := node.ParseUnlockKey(unlockKey)
	if err != nil {
		return badRequest(err.Error())
	}
	switch err := node.CheckUnlockKey(c.cfg.StateDir, key); {
	case errors.Is(err, node.ErrInvalidUnlockKey) || errors.Is(err, node.ErrLocked):
		return errInvalidUnlockKey
	case err != nil:
		return err
	}
	ncfg := c.nodeConfig(*locked)
	ncfg.UnlockKey = key
	if _, err := c.startNode(ctx, ncfg, *locked); err != nil {
		return err
	}
	c.log.Info("cluster: swarm unlocked", "advertise_addr", locked.AdvertiseAddr)
	return nil
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
	spec := req.Spec
	spec.EncryptionConfig.AutoLockManagers = req.AutoLockManagers
	merged, err := convert.MergeSwarmSpec(cl.GetSpec(), spec)
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
