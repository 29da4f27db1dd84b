package controlapi

import (
	"bytes"
	"context"
	"crypto/rand"

	"github.com/openswarm/swarmd/api"
	"github.com/openswarm/swarmd/manager/state/store"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
)

const (
	// managerUnlockSubsystem names the managers' unlock key among a
	// cluster's unlock keys (the managers' certificate role, as swarmkit
	// names it).
	managerUnlockSubsystem = "swarm-manager"
	// unlockKeyBytes is the size of a generated unlock key.
	unlockKeyBytes = 32
)

// redactCluster drops what the control API never returns: the root CA
// key, the signing CA material of the spec, the unlock keys and the
// network bootstrap keys. Join tokens stay (docker swarm join-token shows
// them).
func redactCluster(c *api.Cluster) *api.Cluster {
	c = proto.CloneOf(c)
	if c.RootCa != nil {
		c.RootCa.CaKey = nil
	}
	if cc := c.GetSpec().GetCaConfig(); cc != nil {
		cc.SigningCaKey = nil
		cc.SigningCaCert = nil
	}
	c.UnlockKeys = nil
	c.NetworkBootstrapKeys = nil
	return c
}

// GetCluster returns a cluster, redacted, by ID, name or unique ID prefix.
func (s *Server) GetCluster(_ context.Context, req *api.GetClusterRequest) (*api.GetClusterResponse, error) {
	var (
		c   *api.Cluster
		err error
	)
	s.store.View(func(tx store.ReadTx) { c, err = lookupCluster(tx, req.GetClusterId()) })
	if err != nil {
		return nil, err
	}
	return &api.GetClusterResponse{Cluster: redactCluster(c)}, nil
}

// ListClusters returns the clusters the filters select (names, name and
// ID prefixes, labels), redacted.
func (s *Server) ListClusters(_ context.Context, req *api.ListClustersRequest) (*api.ListClustersResponse, error) {
	f := req.GetFilters()
	clusters, err := list(s, indexedBy(f), func(_ store.ReadTx, o *api.Cluster) bool {
		return f == nil || matchCommon(f, o.GetId(), o.GetSpec().GetAnnotations().GetName(), o.GetSpec().GetAnnotations().GetLabels())
	})
	if err != nil {
		return nil, err
	}
	for i, c := range clusters {
		clusters[i] = redactCluster(c)
	}
	return &api.ListClustersResponse{Clusters: clusters}, nil
}

// UpdateCluster replaces a cluster's spec at the version it was read at
// (the name cannot change; zero heartbeat period and certificate expiry
// mean the defaults), rotates join tokens through the TokenGenerator, and
// creates, rotates or drops the managers' unlock key as autolock and the
// rotation request say. Root CA rotation (signing CA material, force
// rotate) is not supported.
func (s *Server) UpdateCluster(ctx context.Context, req *api.UpdateClusterRequest) (*api.UpdateClusterResponse, error) {
	if req.GetClusterId() == "" || req.GetClusterVersion() == nil || req.GetSpec() == nil {
		return nil, invalidArgument()
	}
	rot := req.GetRotation()
	if (rot.GetWorkerJoinToken() || rot.GetManagerJoinToken()) && s.tokens == nil {
		return nil, errorf(codes.Unimplemented, "join token rotation is not available")
	}
	var c *api.Cluster
	err := s.store.Update(ctx, func(tx store.Tx) error {
		var err error
		if c, err = lookupCluster(tx, req.GetClusterId()); err != nil {
			return err
		}
		if err := validateClusterSpec(req.GetSpec(), c.GetSpec().GetAnnotations().GetName()); err != nil {
			return err
		}
		spec := proto.CloneOf(req.GetSpec())
		if err := keepSigningCA(spec, c.GetSpec()); err != nil {
			return err
		}
		applyClusterDefaults(spec, c.GetSpec())
		c.Spec = spec
		setVersion(c, req.GetClusterVersion())
		if err := s.rotateTokens(c, rot); err != nil {
			return err
		}
		updateUnlockKeys(c, rot.GetManagerUnlockKey())
		return tx.Update(c)
	})
	if err != nil {
		return nil, storeErr(err)
	}
	s.log.Info("controlapi: cluster updated", "cluster.id", c.GetId(),
		"rotate.worker_token", rot.GetWorkerJoinToken(), "rotate.manager_token", rot.GetManagerJoinToken(),
		"rotate.unlock_key", rot.GetManagerUnlockKey())
	return &api.UpdateClusterResponse{Cluster: redactCluster(reread(s, c))}, nil
}

// keepSigningCA carries the stored signing CA material over to spec, which
// was read redacted, and refuses requests that would rotate the root CA.
func keepSigningCA(spec, cur *api.ClusterSpec) error {
	want, have := spec.GetCaConfig(), cur.GetCaConfig()
	if (len(want.GetSigningCaCert()) > 0 && !bytes.Equal(want.GetSigningCaCert(), have.GetSigningCaCert())) ||
		(len(want.GetSigningCaKey()) > 0 && !bytes.Equal(want.GetSigningCaKey(), have.GetSigningCaKey())) ||
		want.GetForceRotate() != have.GetForceRotate() {
		return errorf(codes.Unimplemented, "root CA rotation is not supported")
	}
	if len(have.GetSigningCaCert()) == 0 && len(have.GetSigningCaKey()) == 0 {
		return nil
	}
	if spec.CaConfig == nil {
		spec.CaConfig = &api.CAConfig{}
	}
	spec.CaConfig.SigningCaCert = have.GetSigningCaCert()
	spec.CaConfig.SigningCaKey = have.GetSigningCaKey()
	return nil
}

// rotateTokens replaces the join tokens rot asks for.
func (s *Server) rotateTokens(c *api.Cluster, rot *api.KeyRotation) error {
	if !rot.GetWorkerJoinToken() && !rot.GetManagerJoinToken() {
		return nil
	}
	if c.RootCa == nil {
		c.RootCa = &api.RootCA{}
	}
	if c.RootCa.JoinTokens == nil {
		c.RootCa.JoinTokens = &api.JoinTokens{}
	}
	for _, r := range []struct {
		want bool
		role api.NodeRole
		dst  *string
	}{
		{rot.GetWorkerJoinToken(), api.NodeRole_NODE_ROLE_WORKER, &c.RootCa.JoinTokens.Worker},
		{rot.GetManagerJoinToken(), api.NodeRole_NODE_ROLE_MANAGER, &c.RootCa.JoinTokens.Manager},
	} {
		if !r.want {
			continue
		}
		tok, err := s.tokens(r.role)
		if err != nil {
			// The error is the generator's: it must not hold the token.
			return wrapf(err, codes.Internal, "could not generate a join token: %v", err)
		}
		*r.dst = tok
	}
	return nil
}

// updateUnlockKeys keeps the managers' unlock key in step with autolock:
// created when autolock is on and there is none, replaced when rotate is
// asked for, dropped when autolock is off.
func updateUnlockKeys(c *api.Cluster, rotate bool) {
	autolock := c.GetSpec().GetEncryptionConfig().GetAutoLockManagers()
	var keys []*api.EncryptionKey
	var manager *api.EncryptionKey
	for _, k := range c.GetUnlockKeys() {
		if k.GetSubsystem() == managerUnlockSubsystem {
			if !autolock {
				continue
			}
			manager = k
		}
		keys = append(keys, k)
	}
	if autolock && (manager == nil || rotate) {
		key := make([]byte, unlockKeyBytes)
		_, _ = rand.Read(key) // never fails (Go 1.24+)
		if manager == nil {
			keys = append(keys, &api.EncryptionKey{Subsystem: managerUnlockSubsystem, Key: key})
		} else {
			manager.Key = key
		}
	}
	c.UnlockKeys = keys
}
