package node

import (
	"crypto/tls"
	"fmt"
	"net"
	"strings"

	"github.com/openswarm/swarmd/agent/exec"
	"github.com/openswarm/swarmd/api"
	"github.com/openswarm/swarmd/ca"
	"github.com/openswarm/swarmd/mesh"
)

// newMesh makes the node's routing mesh, or nil when the node runs none
// (no MeshListen, or an executor that cannot resolve task addresses).
// Its tunnel is bound at once; it serves once Run is called.
func (n *Node) newMesh(sec *ca.SecurityConfig, executor exec.Executor) (*mesh.Mesh, error) {
	if n.cfg.MeshListen == "" {
		return nil, nil
	}
	resolver, ok := executor.(mesh.Resolver)
	if !ok {
		n.log.Warn("node: the executor cannot resolve task addresses; no routing mesh")
		return nil, nil
	}
	server := sec.ServerTLSConfig()
	server.ClientAuth = tls.RequireAndVerifyClientCert
	ms, err := mesh.New(mesh.Config{
		NodeID:       sec.NodeID(),
		BindAddr:     n.cfg.MeshBindAddr,
		TunnelListen: n.cfg.MeshListen,
		ServerTLS:    server,
		ClientTLS:    meshClientTLS(sec),
		Resolver:     resolver,
		FastPath:     n.cfg.MeshFastPath,
		Logger:       n.cfg.Logger.With("module", "mesh"),
	})
	if err != nil {
		return nil, fmt.Errorf("node: routing mesh: %w", err)
	}
	return ms, nil
}

// meshClientTLS dials node nodeID's tunnel: its certificate must name the
// node (every node certificate does) and chain to the swarm's root. One
// session cache for all of them spares a full handshake per connection.
func meshClientTLS(sec *ca.SecurityConfig) func(nodeID string) (*tls.Config, error) {
	cache := tls.NewLRUClientSessionCache(256)
	return func(nodeID string) (*tls.Config, error) {
		cfg, err := sec.ClientTLSConfig(nodeID)
		if err != nil {
			return nil, err
		}
		cfg.ClientSessionCache = cache
		return cfg, nil
	}
}

// meshAdvertise is the tunnel address other nodes use: the host of the
// node's advertised remote API address, the port the tunnel is bound to.
func meshAdvertise(advertiseRemote, tunnel string) string {
	host, _, err := net.SplitHostPort(advertiseRemote)
	if err != nil {
		host = advertiseRemote
	}
	_, port, err := net.SplitHostPort(tunnel)
	if err != nil {
		return tunnel
	}
	return net.JoinHostPort(host, port)
}

// meshPorts converts the dispatcher's mesh table.
func meshPorts(in []*api.MeshPort) []mesh.Port {
	out := make([]mesh.Port, 0, len(in))
	for _, p := range in {
		mp := mesh.Port{
			Protocol:  mesh.Protocol(strings.ToLower(p.GetProtocol().String())),
			Published: p.GetPublishedPort(),
			Target:    p.GetTargetPort(),
			ServiceID: p.GetServiceId(),
		}
		for _, b := range p.GetBackends() {
			mp.Backends = append(mp.Backends, mesh.Backend{TaskID: b.GetTaskId(), NodeID: b.GetNodeId(), Tunnel: b.GetTunnel()})
		}
		out = append(out, mp)
	}
	return out
}
