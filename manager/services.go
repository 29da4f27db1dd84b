package manager

import (
	"context"
	"errors"

	"github.com/openswarm/swarmd/api"
	"github.com/openswarm/swarmd/ca"
	"github.com/openswarm/swarmd/manager/controlapi"
	"github.com/openswarm/swarmd/manager/dispatcher"
	"github.com/openswarm/swarmd/manager/logbroker"
	"github.com/openswarm/swarmd/manager/state/store"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// registerServices registers the services every manager serves besides
// raft and the CA: the control API, on the local socket (local admin) and
// on the remote API (managers only, by certificate).
func (m *Manager) registerServices() {
	control := controlapi.NewServer(m.store, m.raft,
		controlapi.WithTokenGenerator(m.newJoinToken),
		controlapi.WithLogger(m.cfg.Logger))
	api.RegisterControlServer(m.local, control)
	api.RegisterControlServer(m.remote, control)
	m.dispatcher = dispatcher.New(m.store, dispatcher.Config{
		Logger:       m.cfg.Logger,
		NodeIdentity: nodeIdentity,
		Managers:     m.managers,
		LeaderAddr:   func() string { addr, _ := m.raft.LeaderAddr(); return addr },
		Metrics:      m.cfg.DispatcherMetrics,
	})
	api.RegisterDispatcherServer(m.remote, m.dispatcher)

	// The log broker serves on the leader only (agents and other managers
	// reach it on the remote API); the local socket relays to the leader.
	m.logs = logbroker.New(m.store, logbroker.Config{
		Logger:       m.cfg.Logger,
		NodeIdentity: nodeIdentity,
		LeaderAddr:   func() string { addr, _ := m.raft.LeaderAddr(); return addr },
	})
	api.RegisterLogBrokerServer(m.remote, m.logs)
	api.RegisterLogsServer(m.remote, m.logs)
	api.RegisterLogsServer(m.local, logbroker.Forward(m.logs, m.leaderLogs))
}

// nodeIdentity is the caller's node ID, from its verified certificate.
func nodeIdentity(ctx context.Context) (string, error) {
	p, ok := ca.PeerFromContext(ctx)
	if !ok || !p.Authenticated() {
		return "", errors.New("no verified node certificate")
	}
	return p.NodeID, nil
}

// leaderLogs is the leader's Logs client, nil on the leader itself.
func (m *Manager) leaderLogs(ctx context.Context) (api.LogsClient, error) {
	if err := m.raft.WaitForLeader(ctx); err != nil {
		return nil, status.Errorf(codes.Unavailable, "no leader: %v", err)
	}
	if m.raft.IsLeader() {
		return nil, nil
	}
	conn, err := m.fwd.leaderConn()
	if err != nil {
		return nil, err
	}
	return api.NewLogsClient(conn), nil
}

// managers lists the raft members for agents, the leader weighted highest.
func (m *Manager) managers() []*api.WeightedPeer {
	lead := m.raft.Leader()
	var out []*api.WeightedPeer
	for _, mem := range m.raft.Members() {
		w := int64(1)
		if mem.GetRaftId() == lead {
			w = 10
		}
		out = append(out, &api.WeightedPeer{NodeId: mem.GetNodeId(), Addr: mem.GetAddr(), Weight: w})
	}
	return out
}

// newJoinToken makes a join token for the cluster's current root CA.
func (m *Manager) newJoinToken(api.NodeRole) (string, error) {
	var cert []byte
	m.store.View(func(tx store.ReadTx) {
		if c := store.GetCluster(tx, m.cfg.Security.Peer().Org); c != nil {
			cert = c.GetRootCa().GetCaCert()
		}
	})
	if cert == nil {
		return "", errors.New("manager: no cluster object")
	}
	root, err := ca.NewRootCA(cert, nil)
	if err != nil {
		return "", err
	}
	return ca.GenerateJoinToken(root)
}

// leaderDuties lists what runs only on the leader: the dispatcher, the log
// broker, role changes, and the control loop from services to running tasks
// (orchestration.go). Each starts from what the store says, so a new
// leader goes on where the last one stopped.
func (m *Manager) leaderDuties() []func(context.Context) error {
	return append([]func(context.Context) error{m.dispatcher.Run, m.logs.Run, m.reconcileRoles}, m.orchestration()...)
}
