// Package manager runs the manager role of a node: the raft member and its
// replicated store, the remote API other nodes call (raft, CA, dispatcher,
// control) over mutual TLS, the local control socket, and the duties only
// the leader performs. Each subsystem is started and stopped here, by one
// owner.
package manager

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/openswarm/swarmd/api"
	"github.com/openswarm/swarmd/ca"
	"github.com/openswarm/swarmd/manager/dispatcher"
	"github.com/openswarm/swarmd/manager/logbroker"
	"github.com/openswarm/swarmd/manager/state/raft"
	"github.com/openswarm/swarmd/manager/state/store"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
)

// Config configures a manager.
type Config struct {
	// StateDir is the node's state directory; raft keeps its log in raft/.
	StateDir string
	// Security is the node's identity: its certificate names the node ID,
	// the manager role and the cluster (O).
	Security *ca.SecurityConfig
	// RemoteAPI listens for other nodes (raft, CA, dispatcher, control).
	RemoteAPI net.Listener
	// AdvertiseAddr is the address other nodes reach RemoteAPI at.
	AdvertiseAddr string
	// ControlSocket is the unix socket of the local control API.
	ControlSocket string
	// JoinAddr is a manager to join the raft group through, when this
	// manager has no raft state yet.
	JoinAddr string
	// ForceNewCluster restarts the raft group with this manager alone.
	ForceNewCluster bool
	// RaftDEK is the key raft's log and snapshots are encrypted with on
	// disk (raft.Config.DEK; nil: not encrypted).
	RaftDEK []byte
	// Bootstrap, on the first manager of a new cluster, holds the objects to
	// create once it leads.
	Bootstrap *Bootstrap

	TickInterval  time.Duration
	HeartbeatTick int
	ElectionTick  int
	Logger        *slog.Logger
	// RaftMetrics and DispatcherMetrics, if set, are the node's metrics
	// that this manager's raft member and dispatcher update.
	RaftMetrics       *raft.Metrics
	DispatcherMetrics *dispatcher.Metrics
}

// Bootstrap is what the first manager writes into an empty store.
type Bootstrap struct {
	Cluster *api.Cluster
	Node    *api.Node
	// Stored, if set, is called once the objects are committed.
	Stored func()
}

// Manager is a running manager.
type Manager struct {
	cfg    Config
	log    *slog.Logger
	raft   *raft.Node
	store  *store.MemoryStore
	remote *grpc.Server
	local  *grpc.Server
	caSrv  *ca.Server

	dispatcher *dispatcher.Dispatcher
	logs       *logbroker.Broker
	fwd        *leaderForwarder

	ready    chan struct{}
	stopOnce sync.Once
	stopCh   chan struct{}
	done     chan struct{}
	err      error
}

// New prepares a manager; Run starts it.
func New(cfg Config) (*Manager, error) {
	if cfg.Security == nil || cfg.RemoteAPI == nil {
		return nil, errors.New("manager: security config and remote API listener are required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	peer := cfg.Security.Peer()
	if peer.Role != ca.RoleManager {
		return nil, fmt.Errorf("manager: node certificate has role %s, not manager", peer.Role)
	}
	creds, err := cfg.Security.ClientCredentials(ca.ManagerServerName)
	if err != nil {
		return nil, fmt.Errorf("manager: %w", err)
	}
	rn, err := raft.NewNode(raft.Config{
		NodeID:          peer.NodeID,
		Addr:            cfg.AdvertiseAddr,
		Dir:             filepath.Join(cfg.StateDir, "raft"),
		JoinAddr:        cfg.JoinAddr,
		ForceNewCluster: cfg.ForceNewCluster,
		DEK:             cfg.RaftDEK,
		TickInterval:    cfg.TickInterval,
		HeartbeatTick:   cfg.HeartbeatTick,
		ElectionTick:    cfg.ElectionTick,
		Credentials:     creds,
		Logger:          cfg.Logger,
		Metrics:         cfg.RaftMetrics,
	})
	if err != nil {
		return nil, fmt.Errorf("manager: %w", err)
	}
	st := store.NewMemoryStore(rn)
	caSrv, err := ca.NewServer(ca.ServerConfig{Store: st, ClusterID: peer.Org, Logger: cfg.Logger})
	if err != nil {
		return nil, fmt.Errorf("manager: %w", err)
	}
	m := &Manager{
		cfg: cfg, log: cfg.Logger.With("module", "manager", "node.id", peer.NodeID),
		raft: rn, store: st, caSrv: caSrv,
		ready: make(chan struct{}), stopCh: make(chan struct{}), done: make(chan struct{}),
	}
	auth := ca.NewAuthorizer(peer.Org, ca.MethodRoles())
	m.remote = grpc.NewServer(append(remoteServerOptions(cfg.Security.ServerCredentials()), auth.ServerOptions()...)...)
	rn.Register(m.remote)
	caSrv.Register(m.remote)
	m.fwd = &leaderForwarder{m: m}
	m.local = grpc.NewServer(grpc.UnaryInterceptor(m.fwd.unary))
	m.registerServices()
	return m, nil
}

// Store is the manager's replicated store.
func (m *Manager) Store() *store.MemoryStore { return m.store }

// Raft is the manager's raft member.
func (m *Manager) Raft() *raft.Node { return m.raft }

// Ready is closed once the raft member runs and the control socket answers.
func (m *Manager) Ready() <-chan struct{} { return m.ready }

// Run starts the manager and blocks until it stops: ctx ends, Stop is
// called, or a part of it fails.
func (m *Manager) Run(ctx context.Context) error {
	defer close(m.done)
	go func() { _ = m.remote.Serve(m.cfg.RemoteAPI) }()
	defer m.remote.Stop()

	if err := m.raft.Start(ctx, m.store); err != nil {
		m.err = fmt.Errorf("manager: start raft: %w", err)
		return m.err
	}
	defer m.store.Close()
	defer m.raft.Stop()

	// A manager counts towards quorum only once it votes: report ready no
	// sooner, so losing another manager right after a join cannot leave
	// the cluster without a quorum.
	if err := m.raft.WaitVoter(ctx); err != nil {
		m.err = fmt.Errorf("manager: wait to become a raft voter: %w", err)
		return m.err
	}
	lis, err := listenUnix(m.cfg.ControlSocket)
	if err != nil {
		m.err = err
		return err
	}
	go func() { _ = m.local.Serve(lis) }()
	defer m.fwd.close()
	defer m.local.Stop()
	close(m.ready)

	var wg sync.WaitGroup
	lctx, cancel := context.WithCancel(ctx)
	wg.Add(1)
	go func() { defer wg.Done(); m.runLeadership(lctx) }()
	wg.Add(1)
	go func() { defer wg.Done(); m.followRaftPolicy(lctx) }()
	defer wg.Wait()
	defer cancel()

	select {
	case <-ctx.Done():
	case <-m.stopCh:
	case <-m.raft.Done():
		m.err = m.raft.Err()
		if m.err == nil {
			m.err = errors.New("manager: raft member stopped")
		}
	}
	return m.err
}

// Stop stops the manager and waits for it.
func (m *Manager) Stop() {
	m.stopOnce.Do(func() { close(m.stopCh) })
	<-m.done
}

// Done is closed once Run returned.
func (m *Manager) Done() <-chan struct{} { return m.done }

// listenUnix serves a unix socket only its owner may use.
func listenUnix(path string) (net.Listener, error) {
	if path == "" {
		return nil, errors.New("manager: no control socket path")
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("manager: control socket dir: %w", err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("manager: remove stale control socket: %w", err)
	}
	lis, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("manager: listen on control socket: %w", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		_ = lis.Close()
		return nil, fmt.Errorf("manager: control socket permissions: %w", err)
	}
	return lis, nil
}

// remoteServerOptions are the options of the remote API server, which
// holds one connection per node of the swarm (thousands): each connection
// keeps an 8 KiB read buffer instead of 32 KiB (gRPC already lends write
// buffers only while a connection writes). Large messages (raft batches,
// snapshot chunks) are read past the buffer. Flow-control windows are
// static (raft.ServerOptions): no window-probing ping answers each message
// a peer or an agent sends.
func remoteServerOptions(creds credentials.TransportCredentials) []grpc.ServerOption {
	return append([]grpc.ServerOption{
		grpc.Creds(creds),
		grpc.ReadBufferSize(8 << 10),
	}, raft.ServerOptions()...)
}
