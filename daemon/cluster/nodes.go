package cluster

import (
	"net/http"

	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/swarm"

	"github.com/openswarm/swarmd/api"
	"github.com/openswarm/swarmd/daemon/cluster/convert"
)

// filterArgs reads the filters query parameter (docker's JSON form).
func filterArgs(r *http.Request) (filters.Args, error) {
	args, err := filters.FromJSON(r.URL.Query().Get("filters"))
	if err != nil {
		return args, badRequest(err.Error())
	}
	return args, nil
}

func (s *Server) getNodes(w http.ResponseWriter, r *http.Request) error {
	ctl, err := s.cluster.control()
	if err != nil {
		return err
	}
	args, err := filterArgs(r)
	if err != nil {
		return err
	}
	match, err := convert.NodeFilter(args)
	if err != nil {
		return badRequest(err.Error())
	}
	resp, err := ctl.ListNodes(r.Context(), &api.ListNodesRequest{})
	if err != nil {
		return err
	}
	out := []swarm.Node{}
	for _, n := range resp.GetNodes() {
		if match(n) {
			out = append(out, convert.NodeToDocker(n))
		}
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) getNode(w http.ResponseWriter, r *http.Request) error {
	ctl, err := s.cluster.control()
	if err != nil {
		return err
	}
	resp, err := ctl.GetNode(r.Context(), &api.GetNodeRequest{NodeId: r.PathValue("id")})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, convert.NodeToDocker(resp.GetNode()))
	return nil
}

func (s *Server) postNodeUpdate(w http.ResponseWriter, r *http.Request) error {
	ctl, err := s.cluster.control()
	if err != nil {
		return err
	}
	version, err := versionParam(r, "node")
	if err != nil {
		return err
	}
	var spec swarm.NodeSpec
	if err := decodeBody(r, &spec); err != nil {
		return err
	}
	ns, err := convert.NodeSpecFromDocker(spec)
	if err != nil {
		return badRequest(err.Error())
	}
	if _, err := ctl.UpdateNode(r.Context(), &api.UpdateNodeRequest{
		NodeId: r.PathValue("id"), NodeVersion: &api.Version{Index: version}, Spec: ns,
	}); err != nil {
		return err
	}
	w.WriteHeader(http.StatusOK)
	return nil
}

func (s *Server) deleteNode(w http.ResponseWriter, r *http.Request) error {
	ctl, err := s.cluster.control()
	if err != nil {
		return err
	}
	force, err := boolParam(r, "force")
	if err != nil {
		return err
	}
	if _, err := ctl.RemoveNode(r.Context(), &api.RemoveNodeRequest{NodeId: r.PathValue("id"), Force: force}); err != nil {
		return err
	}
	w.WriteHeader(http.StatusOK)
	return nil
}
