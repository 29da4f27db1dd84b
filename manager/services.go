package manager

import (
	"context"
	"errors"

	"github.com/openswarm/swarmd/api"
	"github.com/openswarm/swarmd/ca"
	"github.com/openswarm/swarmd/manager/controlapi"
	"github.com/openswarm/swarmd/manager/state/store"
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

// leaderDuties lists what runs only on the leader.
func (m *Manager) leaderDuties() []func(context.Context) error { return nil }
