package controlapi

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/openswarm/swarmd/api"
	"github.com/openswarm/swarmd/manager/state/store"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
)

func testCluster() *api.Cluster {
	return &api.Cluster{
		Id: "clusteraaaaaaaaaaaaaaaaaa",
		Spec: &api.ClusterSpec{
			Annotations:   &api.Annotations{Name: "default"},
			Orchestration: &api.OrchestrationConfig{TaskHistoryRetentionLimit: 5},
			Raft:          &api.RaftConfig{SnapshotInterval: 10000, HeartbeatTick: 1, ElectionTick: 10},
			Dispatcher:    &api.DispatcherConfig{HeartbeatPeriod: dur(5 * time.Second)},
			CaConfig:      &api.CAConfig{NodeCertExpiry: dur(90 * 24 * time.Hour), SigningCaKey: []byte("signing key"), SigningCaCert: []byte("signing cert")},
		},
		RootCa: &api.RootCA{
			CaKey: []byte("root key"), CaCert: []byte("root cert"), CaCertHash: "hash",
			JoinTokens: &api.JoinTokens{Worker: "SWMTKN-1-w", Manager: "SWMTKN-1-m"},
		},
		UnlockKeys:           []*api.EncryptionKey{{Subsystem: "other", Key: []byte("k")}},
		NetworkBootstrapKeys: []*api.EncryptionKey{{Subsystem: "networking:gossip", Key: []byte("g")}},
	}
}

func checkRedacted(t *testing.T, c *api.Cluster) {
	t.Helper()
	if c.GetRootCa().GetCaKey() != nil || c.GetSpec().GetCaConfig().GetSigningCaKey() != nil ||
		c.GetSpec().GetCaConfig().GetSigningCaCert() != nil || c.GetUnlockKeys() != nil || c.GetNetworkBootstrapKeys() != nil {
		t.Fatalf("cluster not redacted: %v", c)
	}
	if c.GetRootCa().GetJoinTokens().GetWorker() == "" || c.GetRootCa().GetCaCert() == nil {
		t.Fatalf("redaction dropped public fields: %v", c)
	}
}

func TestGetAndListClusters(t *testing.T) {
	s, st := newTestServer(t, nil)
	put(t, st, testCluster())
	ctx := context.Background()
	for _, input := range []string{"clusteraaaaaaaaaaaaaaaaaa", "default", "clus"} {
		resp, err := s.GetCluster(ctx, &api.GetClusterRequest{ClusterId: input})
		mustOK(t, err)
		checkRedacted(t, resp.GetCluster())
	}
	_, err := s.GetCluster(ctx, &api.GetClusterRequest{ClusterId: "x"})
	wantErr(t, err, codes.NotFound, "cluster x not found")
	list, err := s.ListClusters(ctx, &api.ListClustersRequest{})
	mustOK(t, err)
	if len(list.GetClusters()) != 1 {
		t.Fatalf("listed %d clusters", len(list.GetClusters()))
	}
	checkRedacted(t, list.GetClusters()[0])
	// The stored cluster keeps its secrets.
	st.View(func(tx store.ReadTx) {
		if c := store.GetCluster(tx, "clusteraaaaaaaaaaaaaaaaaa"); c.GetRootCa().GetCaKey() == nil {
			t.Fatal("redaction reached the store")
		}
	})
}

func TestUpdateCluster(t *testing.T) {
	var roles []api.NodeRole
	gen := func(role api.NodeRole) (string, error) {
		roles = append(roles, role)
		if role == api.NodeRole_NODE_ROLE_MANAGER {
			return "SWMTKN-1-new-m", nil
		}
		return "SWMTKN-1-new-w", nil
	}
	s, st := newTestServer(t, nil, WithTokenGenerator(gen))
	put(t, st, testCluster())
	ctx := context.Background()
	get := func() *api.Cluster {
		resp, err := s.GetCluster(ctx, &api.GetClusterRequest{ClusterId: "default"})
		mustOK(t, err)
		return resp.GetCluster()
	}
	update := func(c *api.Cluster, mutate func(*api.ClusterSpec), rot *api.KeyRotation) (*api.Cluster, error) {
		spec := proto.CloneOf(c.GetSpec())
		mutate(spec)
		resp, err := s.UpdateCluster(ctx, &api.UpdateClusterRequest{ClusterId: c.GetId(), ClusterVersion: c.GetMeta().GetVersion(), Spec: spec, Rotation: rot})
		return resp.GetCluster(), err
	}

	c := get()
	c2, err := update(c, func(spec *api.ClusterSpec) {
		spec.Dispatcher.HeartbeatPeriod = dur(11 * time.Second)
		spec.CaConfig.NodeCertExpiry = dur(30 * time.Hour)
		spec.Orchestration.TaskHistoryRetentionLimit = 2
	}, nil)
	mustOK(t, err)
	checkRedacted(t, c2)
	if c2.GetSpec().GetDispatcher().GetHeartbeatPeriod().AsDuration() != 11*time.Second ||
		c2.GetSpec().GetCaConfig().GetNodeCertExpiry().AsDuration() != 30*time.Hour ||
		c2.GetSpec().GetOrchestration().GetTaskHistoryRetentionLimit() != 2 {
		t.Fatalf("spec not updated: %v", c2.GetSpec())
	}
	st.View(func(tx store.ReadTx) {
		stored := store.GetCluster(tx, c.GetId())
		if !bytes.Equal(stored.GetSpec().GetCaConfig().GetSigningCaKey(), []byte("signing key")) {
			t.Fatal("an update through the redacted spec lost the signing CA key")
		}
	})

	_, err = update(c, func(*api.ClusterSpec) {}, nil)
	wantErr(t, err, codes.Unknown, "update out of sequence")
	_, err = update(c2, func(spec *api.ClusterSpec) { spec.CaConfig.NodeCertExpiry = dur(30 * time.Minute) }, nil)
	wantErr(t, err, codes.InvalidArgument, "minimum certificate expiry time is: 1h0m0s")
	_, err = update(c2, func(spec *api.ClusterSpec) { spec.Annotations.Name = "mine" }, nil)
	wantErr(t, err, codes.InvalidArgument, "modification of cluster name is not allowed")
	_, err = update(c2, func(spec *api.ClusterSpec) { spec.CaConfig.ForceRotate++ }, nil)
	wantErr(t, err, codes.Unimplemented, "root CA rotation is not supported")
	if got := get().GetSpec().GetDispatcher().GetHeartbeatPeriod().AsDuration(); got != 11*time.Second {
		t.Fatalf("refused updates changed the heartbeat to %v", got)
	}

	// Zero values mean the defaults; an absent raft config is kept.
	c3, err := update(c2, func(spec *api.ClusterSpec) {
		spec.Dispatcher.HeartbeatPeriod = dur(0)
		spec.CaConfig = nil
		spec.Raft = nil
	}, nil)
	mustOK(t, err)
	if c3.GetSpec().GetDispatcher().GetHeartbeatPeriod().AsDuration() != 5*time.Second ||
		c3.GetSpec().GetCaConfig().GetNodeCertExpiry().AsDuration() != 2160*time.Hour ||
		c3.GetSpec().GetRaft().GetSnapshotInterval() != 10000 {
		t.Fatalf("defaults: %v", c3.GetSpec())
	}

	// Join tokens.
	c4, err := update(c3, func(*api.ClusterSpec) {}, &api.KeyRotation{WorkerJoinToken: true})
	mustOK(t, err)
	if tk := c4.GetRootCa().GetJoinTokens(); tk.GetWorker() != "SWMTKN-1-new-w" || tk.GetManager() != "SWMTKN-1-m" {
		t.Fatalf("tokens %v", tk)
	}
	c5, err := update(c4, func(*api.ClusterSpec) {}, &api.KeyRotation{ManagerJoinToken: true})
	mustOK(t, err)
	if tk := c5.GetRootCa().GetJoinTokens(); tk.GetManager() != "SWMTKN-1-new-m" {
		t.Fatalf("tokens %v", tk)
	}
	if len(roles) != 2 || roles[0] != api.NodeRole_NODE_ROLE_WORKER || roles[1] != api.NodeRole_NODE_ROLE_MANAGER {
		t.Fatalf("generator called for %v", roles)
	}

	// Autolock: a key appears, rotates, goes.
	unlockKey := func() []byte {
		var key []byte
		st.View(func(tx store.ReadTx) {
			for _, k := range store.GetCluster(tx, c.GetId()).GetUnlockKeys() {
				if k.GetSubsystem() == managerUnlockSubsystem {
					key = k.GetKey()
				}
			}
		})
		return key
	}
	c6, err := update(c5, func(spec *api.ClusterSpec) { spec.EncryptionConfig = &api.EncryptionConfig{AutoLockManagers: true} }, nil)
	mustOK(t, err)
	k1 := unlockKey()
	if len(k1) != unlockKeyBytes {
		t.Fatalf("unlock key %x", k1)
	}
	c7, err := update(c6, func(*api.ClusterSpec) {}, nil)
	mustOK(t, err)
	if !bytes.Equal(unlockKey(), k1) {
		t.Fatal("unlock key changed without rotation")
	}
	c8, err := update(c7, func(*api.ClusterSpec) {}, &api.KeyRotation{ManagerUnlockKey: true})
	mustOK(t, err)
	if k2 := unlockKey(); len(k2) != unlockKeyBytes || bytes.Equal(k2, k1) {
		t.Fatal("unlock key not rotated")
	}
	_, err = update(c8, func(spec *api.ClusterSpec) { spec.EncryptionConfig = nil }, nil)
	mustOK(t, err)
	if unlockKey() != nil {
		t.Fatal("unlock key kept with autolock off")
	}
	st.View(func(tx store.ReadTx) {
		if keys := store.GetCluster(tx, c.GetId()).GetUnlockKeys(); len(keys) != 1 || keys[0].GetSubsystem() != "other" {
			t.Fatalf("other unlock keys: %v", keys)
		}
	})
}

func TestUpdateClusterTokenErrors(t *testing.T) {
	ctx := context.Background()
	s, st := newTestServer(t, nil)
	put(t, st, testCluster())
	c := testCluster()
	_, err := s.UpdateCluster(ctx, &api.UpdateClusterRequest{ClusterId: c.GetId(), ClusterVersion: &api.Version{Index: 1}, Spec: c.GetSpec(),
		Rotation: &api.KeyRotation{WorkerJoinToken: true}})
	wantErr(t, err, codes.Unimplemented, "join token rotation is not available")

	s2 := NewServer(st, nil, WithTokenGenerator(func(api.NodeRole) (string, error) { return "", errBoom }))
	resp, err := s.GetCluster(ctx, &api.GetClusterRequest{ClusterId: c.GetId()})
	mustOK(t, err)
	_, err = s2.UpdateCluster(ctx, &api.UpdateClusterRequest{ClusterId: c.GetId(), ClusterVersion: resp.GetCluster().GetMeta().GetVersion(),
		Spec: resp.GetCluster().GetSpec(), Rotation: &api.KeyRotation{ManagerJoinToken: true}})
	wantErr(t, err, codes.Internal, "could not generate a join token: boom")
	_, err = s.UpdateCluster(ctx, &api.UpdateClusterRequest{ClusterId: c.GetId(), Spec: c.GetSpec()})
	wantErr(t, err, codes.InvalidArgument, "invalid argument")
}
