package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"

	"github.com/docker/docker/api/types/swarm"

	"github.com/openswarm/swarmd/api"
	"github.com/openswarm/swarmd/daemon/cluster/convert"
)

// getInfo answers /info with the engine's own info and the Swarm section
// filled in by swarmd. Fields of the engine's answer swarmd does not know
// pass through untouched.
func (s *Server) getInfo(w http.ResponseWriter, r *http.Request) error {
	req, err := http.NewRequestWithContext(r.Context(), http.MethodGet, s.base.String()+r.URL.RequestURI(), nil)
	if err != nil {
		return err
	}
	req.URL.Path = prefixVersion(r, "/info")
	resp, err := s.engine.RoundTrip(req)
	if err != nil {
		return &httpError{code: http.StatusBadGateway, msg: "Cannot connect to the Docker daemon behind swarmd: " + err.Error()}
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("engine info: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		w.Header().Set("Content-Type", resp.Header.Get("Content-Type"))
		w.WriteHeader(resp.StatusCode)
		_, _ = w.Write(body)
		return nil
	}
	var info map[string]json.RawMessage
	if err := json.Unmarshal(body, &info); err != nil {
		return fmt.Errorf("engine info: %w", err)
	}
	sw, err := json.Marshal(s.cluster.Info(r.Context()))
	if err != nil {
		return err
	}
	info["Swarm"] = sw
	writeJSON(w, http.StatusOK, info)
	return nil
}

// prefixVersion puts the request's API version back in front of path.
func prefixVersion(r *http.Request, path string) string {
	if v := apiVersion(r); v != "" {
		return "/v" + v + path
	}
	return path
}

// Info is the Swarm section of /info.
func (c *Cluster) Info(ctx context.Context) swarm.Info {
	st, stErr := c.State()
	info := swarm.Info{LocalNodeState: swarm.LocalNodeState(st)}
	if stErr != nil {
		info.Error = stErr.Error()
	}
	r := c.current()
	if r == nil {
		return info
	}
	info.NodeID = r.node.NodeID()
	if host, _, err := net.SplitHostPort(r.addrs.AdvertiseAddr); err == nil {
		info.NodeAddr = host
	}
	for _, m := range r.node.RemoteManagers() {
		info.RemoteManagers = append(info.RemoteManagers, swarm.Peer{Addr: m})
	}
	ctl, err := c.control()
	if err != nil {
		return info
	}
	if cl, err := currentCluster(ctx, ctl); err == nil {
		ci := convert.SwarmFromCluster(cl).ClusterInfo
		info.Cluster = &ci
	} else {
		info.Error = err.Error()
		return info
	}
	info.ControlAvailable = true
	nodes, err := ctl.ListNodes(ctx, &api.ListNodesRequest{})
	if err != nil {
		return info
	}
	info.Nodes = len(nodes.GetNodes())
	info.RemoteManagers = nil
	for _, n := range nodes.GetNodes() {
		if ms := n.GetManagerStatus(); ms != nil {
			info.Managers++
			info.RemoteManagers = append(info.RemoteManagers, swarm.Peer{NodeID: n.GetId(), Addr: ms.GetAddr()})
		}
	}
	return info
}
