package node

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/openswarm/swarmd/api"
	"github.com/openswarm/swarmd/ca"
	"github.com/openswarm/swarmd/internal/atomicfile"
	"github.com/openswarm/swarmd/manager"
	"github.com/openswarm/swarmd/manager/dispatcher"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// ErrInactive means the node has no swarm state and was told neither to
// create a swarm nor to join one.
var ErrInactive = errors.New("node: no swarm state; create a swarm (--init) or join one (--join-addr and --join-token)")

const bootstrapFile = "bootstrap.pending"

// loadOrCreateSecurity finds the node's identity: the certificates on disk,
// or a new one from joining (token) or from creating a new cluster. For a new
// cluster it also returns the objects the first manager must store; they
// are kept on disk until stored, so a crash between writing the
// certificates and committing the cluster object loses nothing.
func (n *Node) loadOrCreateSecurity(ctx context.Context) (*ca.SecurityConfig, *manager.Bootstrap, error) {
	krw := n.keyReadWriter()
	exists, err := krw.Exists()
	if err != nil {
		return nil, nil, fmt.Errorf("node: certificates: %w", err)
	}
	if exists {
		sec, err := krw.Load()
		if err != nil {
			return nil, nil, fmt.Errorf("node: load certificates: %w", err)
		}
		boot, err := loadBootstrap(n.cfg.StateDir)
		return sec, boot, err
	}
	switch {
	case n.cfg.JoinAddr != "":
		if n.cfg.JoinToken == "" {
			return nil, nil, errors.New("node: joining a swarm needs a join token")
		}
		sec, err := ca.Join(ctx, n.cfg.JoinAddr, n.cfg.JoinToken, api.NodeRole_NODE_ROLE_WORKER)
		if err != nil {
			return nil, nil, fmt.Errorf("node: join %s: %w", n.cfg.JoinAddr, err)
		}
		if err := krw.Save(sec); err != nil {
			return nil, nil, fmt.Errorf("node: save certificates: %w", err)
		}
		return sec, nil, nil
	case n.cfg.Init:
		return n.createCluster(ctx, krw)
	default:
		return nil, nil, ErrInactive
	}
}

func (n *Node) createCluster(ctx context.Context, krw *ca.KeyReadWriter) (*ca.SecurityConfig, *manager.Bootstrap, error) {
	clusterID, nodeID := ca.NewID(), ca.NewID()
	csr, key, err := ca.GenerateNodeKeyAndCSR()
	if err != nil {
		return nil, nil, fmt.Errorf("node: %w", err)
	}
	expiry := n.cfg.NodeCertExpiry
	root, cert, err := n.firstCertificate(ctx, csr, nodeID, clusterID)
	if err != nil {
		return nil, nil, err
	}
	rootCA, err := ca.NewClusterRootCA(root)
	if err != nil {
		return nil, nil, fmt.Errorf("node: %w", err)
	}
	now := timestamppb.Now()
	spec := defaultClusterSpec(n.cfg)
	if expiry > 0 {
		spec.CaConfig.NodeCertExpiry = durationpb.New(expiry)
	}
	spec.CaConfig.ExternalCas = n.cfg.ExternalCAs
	boot := &manager.Bootstrap{
		Cluster: &api.Cluster{Id: clusterID, Spec: spec, RootCa: rootCA, CreatedAt: now},
		Node: &api.Node{
			Id:   nodeID,
			Role: api.NodeRole_NODE_ROLE_MANAGER,
			Spec: &api.NodeSpec{
				DesiredRole:  api.NodeRole_NODE_ROLE_MANAGER,
				Membership:   api.NodeMembership_NODE_MEMBERSHIP_ACCEPTED,
				Availability: api.NodeAvailability_NODE_AVAILABILITY_ACTIVE,
			},
			Certificate: &api.Certificate{
				Role: api.NodeRole_NODE_ROLE_MANAGER, Csr: csr, Status: api.Certificate_ISSUED,
				Certificate: cert, Cn: nodeID,
			},
		},
	}
	if err := os.MkdirAll(n.cfg.StateDir, 0o700); err != nil {
		return nil, nil, fmt.Errorf("node: state dir: %w", err)
	}
	if err := saveBootstrap(n.cfg.StateDir, boot); err != nil {
		return nil, nil, err
	}
	sec, err := ca.NewSecurityConfig(root, cert, key)
	if err != nil {
		return nil, nil, fmt.Errorf("node: %w", err)
	}
	if err := krw.Save(sec); err != nil {
		return nil, nil, fmt.Errorf("node: save certificates: %w", err)
	}
	n.log.Info("node: created a new swarm", "cluster.id", clusterID, "node.id", nodeID)
	return sec, boot, nil
}

// firstCertificate makes the root CA of a new swarm and signs its first
// manager certificate: locally with a new root, or, with external CAs,
// through them, the root then being the external CA's certificate (its key
// never comes here).
func (n *Node) firstCertificate(ctx context.Context, csr []byte, nodeID, clusterID string) (ca.RootCA, []byte, error) {
	role := api.NodeRole_NODE_ROLE_MANAGER
	if len(n.cfg.ExternalCAs) == 0 {
		root, err := ca.CreateRootCA("swarm-ca")
		if err != nil {
			return ca.RootCA{}, nil, fmt.Errorf("node: create root CA: %w", err)
		}
		cert, err := root.IssueNodeCertificate(ctx, csr, nodeID, role, clusterID, n.cfg.NodeCertExpiry)
		if err != nil {
			return ca.RootCA{}, nil, fmt.Errorf("node: issue the first manager certificate: %w", err)
		}
		return root, cert, nil
	}
	ext, err := ca.NewExternalCA(n.cfg.ExternalCAs, ca.RootCA{}, ca.ExternalCAOptions{})
	if err != nil {
		return ca.RootCA{}, nil, fmt.Errorf("node: %w", err)
	}
	rootPEM, err := ext.RootCertificate(ctx)
	if err != nil {
		return ca.RootCA{}, nil, fmt.Errorf("node: get the external CA's certificate: %w", err)
	}
	root, err := ca.NewRootCA(rootPEM, nil)
	if err != nil {
		return ca.RootCA{}, nil, fmt.Errorf("node: external CA: %w", err)
	}
	cert, err := ext.IssueNodeCertificate(ctx, csr, nodeID, role, clusterID)
	if err != nil {
		return ca.RootCA{}, nil, fmt.Errorf("node: external CA: issue the first manager certificate: %w", err)
	}
	return root, cert, nil
}

func defaultClusterSpec(cfg Config) *api.ClusterSpec {
	return &api.ClusterSpec{
		Annotations:   &api.Annotations{Name: "default"},
		Orchestration: &api.OrchestrationConfig{TaskHistoryRetentionLimit: 5},
		Raft: &api.RaftConfig{
			SnapshotInterval: 10000, LogEntriesForSlowFollowers: 500,
			HeartbeatTick: uint32(max(cfg.HeartbeatTick, 1)), ElectionTick: uint32(max(cfg.ElectionTick, 10)),
		},
		Dispatcher: &api.DispatcherConfig{HeartbeatPeriod: durationpb.New(dispatcher.DefaultHeartbeatPeriod)},
		CaConfig:   &api.CAConfig{NodeCertExpiry: durationpb.New(ca.DefaultNodeCertExpiry)},
	}
}

// The bootstrap objects hold the root CA key: the file is 0600 and removed
// as soon as the objects are committed.
func saveBootstrap(dir string, b *manager.Bootstrap) error {
	data, err := proto.Marshal(&api.StoreSnapshot{Clusters: []*api.Cluster{b.Cluster}, Nodes: []*api.Node{b.Node}})
	if err != nil {
		return fmt.Errorf("node: encode bootstrap: %w", err)
	}
	return atomicfile.WriteFile(filepath.Join(dir, bootstrapFile), data, 0o600)
}

func loadBootstrap(dir string) (*manager.Bootstrap, error) {
	data, err := os.ReadFile(filepath.Join(dir, bootstrapFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("node: read bootstrap: %w", err)
	}
	var snap api.StoreSnapshot
	if err := proto.Unmarshal(data, &snap); err != nil || len(snap.GetClusters()) != 1 || len(snap.GetNodes()) != 1 {
		return nil, fmt.Errorf("node: %s is damaged (%v)", filepath.Join(dir, bootstrapFile), err)
	}
	return &manager.Bootstrap{Cluster: snap.GetClusters()[0], Node: snap.GetNodes()[0]}, nil
}

func removeBootstrap(dir string) error {
	err := os.Remove(filepath.Join(dir, bootstrapFile))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("node: remove bootstrap: %w", err)
	}
	return nil
}
