// Package node is a swarm node: its identity (certificates), the agent that
// every node runs, and the manager it runs while its certificate says it is
// one. Start once; Ready closes when the agent registered (and, on a
// manager, the control socket answers); Stop is idempotent; Err waits for
// the end.
package node

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/openswarm/swarmd/agent"
	"github.com/openswarm/swarmd/agent/exec"
	"github.com/openswarm/swarmd/api"
	"github.com/openswarm/swarmd/ca"
	"github.com/openswarm/swarmd/manager"
	"github.com/openswarm/swarmd/manager/state/raft"
	"github.com/openswarm/swarmd/mesh"
)

// Config configures a node.
type Config struct {
	StateDir           string
	JoinAddr           string
	JoinToken          string
	Init               bool
	ListenRemoteAPI    string
	AdvertiseRemoteAPI string
	ListenControlAPI   string
	Hostname           string
	ForceNewCluster    bool
	HeartbeatTick      int
	ElectionTick       int
	// TickInterval is raft's tick (default 100ms).
	TickInterval   time.Duration
	ExternalCAs    []*api.ExternalCA
	NodeCertExpiry time.Duration
	Logger         *slog.Logger
	// Executor runs the tasks assigned to this node (the Docker executor;
	// the test executor in tests). Without one the node runs no task.
	Executor exec.Executor
	// NewExecutor makes the executor once the node's ID is known (the
	// Docker executor labels containers with it); used when Executor is
	// nil.
	NewExecutor func(nodeID string) (exec.Executor, error)

	// MeshListen is the host:port of the routing mesh's tunnel, where
	// other nodes deliver traffic for this node's tasks (mutual TLS with
	// the node certificates); its port is advertised with the host of
	// AdvertiseRemoteAPI. Empty: the node runs no routing mesh. The mesh
	// needs an executor that resolves tasks to addresses (mesh.Resolver).
	MeshListen string
	// MeshBindAddr is the IP the mesh binds published ports to; empty:
	// every address.
	MeshBindAddr string
	// MeshFastPath lets the kernel (nftables DNAT) forward the published
	// ports, to local tasks and to the nodes of remote ones; the userspace
	// mesh stays bound and is the fallback.
	MeshFastPath bool
	// NetworkPlugin names the overlay network and IPAM plugin the node
	// serves to its engine (socket /run/docker/plugins/<name>.sock; state
	// under <state-dir>/overlay; VXLAN from the host of
	// AdvertiseRemoteAPI). Empty: the node runs no overlay networks.
	NetworkPlugin string
	// UnlockKey is the swarm's unlock key (autolock): it opens the
	// manager's sealed key material. A manager whose key material is
	// sealed stops with ErrLocked without it, ErrInvalidUnlockKey with a
	// wrong one.
	UnlockKey []byte
	// Metrics, if set, are updated by this node's managers and report on
	// this node (see NewMetrics).
	Metrics *Metrics
	// RemoveTasks, if set, removes what the node's tasks left on the
	// engine (containers, engine networks); Leave runs it once the agent
	// stopped and before the overlay does.
	RemoveTasks func(ctx context.Context, nodeID string) error
}

// workerDBPath is where the worker keeps its tasks, under the state dir.
func workerDBPath(stateDir string) string { return filepath.Join(stateDir, "worker", "tasks.db") }

// Node is one swarm node.
type Node struct {
	cfg Config
	log *slog.Logger

	startOnce sync.Once
	started   bool
	startedAt time.Time
	readyOnce sync.Once
	ready     chan struct{}
	stopOnce  sync.Once
	stopCh    chan struct{}
	leaving   atomic.Bool // Leave stops the node: its tasks go too
	done      chan struct{}
	err       error

	mu      sync.Mutex
	sec     *ca.SecurityConfig
	manager *manager.Manager
	agent   *agent.Agent

	keys keySealer // how the TLS key is sealed at rest (lock.go)
}

// New checks the configuration.
func New(cfg Config) (*Node, error) {
	if cfg.StateDir == "" {
		return nil, errors.New("node: no state directory")
	}
	if cfg.Hostname == "" {
		h, err := os.Hostname()
		if err != nil {
			return nil, fmt.Errorf("node: hostname: %w", err)
		}
		cfg.Hostname = h
	}
	if cfg.ListenRemoteAPI == "" {
		cfg.ListenRemoteAPI = "0.0.0.0:4242"
	}
	if cfg.AdvertiseRemoteAPI == "" {
		cfg.AdvertiseRemoteAPI = cfg.ListenRemoteAPI
	}
	if host, _, err := net.SplitHostPort(cfg.AdvertiseRemoteAPI); err != nil || host == "" || net.ParseIP(host).IsUnspecified() {
		return nil, fmt.Errorf("node: advertise address %q must name a reachable host:port (set --advertise-remote-api)", cfg.AdvertiseRemoteAPI)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Node{
		cfg: cfg, log: cfg.Logger.With("module", "node"),
		ready: make(chan struct{}), stopCh: make(chan struct{}), done: make(chan struct{}),
	}, nil
}

// Start starts the node; it may be called once.
func (n *Node) Start(ctx context.Context) error {
	err := errors.New("node: already started")
	n.startOnce.Do(func() {
		err = nil
		n.started = true
		n.startedAt = time.Now()
		n.cfg.Metrics.bind(n)
		go n.run(context.WithoutCancel(ctx))
	})
	return err
}

// Ready is closed once the node is ready.
func (n *Node) Ready() <-chan struct{} { return n.ready }

// Done is closed once the node has stopped.
func (n *Node) Done() <-chan struct{} { return n.done }

// Stop stops the node and waits until it has stopped or ctx ends.
func (n *Node) Stop(ctx context.Context) error {
	n.stopOnce.Do(func() { close(n.stopCh) })
	if !n.started {
		return nil
	}
	select {
	case <-n.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Err blocks until the node stopped and says why (nil for a clean stop).
func (n *Node) Err(ctx context.Context) error {
	select {
	case <-n.done:
		return n.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// NodeID is the node's ID, once known.
func (n *Node) NodeID() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.sec == nil {
		return ""
	}
	return n.sec.NodeID()
}

// Manager is the node's manager while it runs one.
func (n *Node) Manager() *manager.Manager {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.manager
}

func (n *Node) run(ctx context.Context) {
	defer close(n.done)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-n.stopCh:
			cancel()
		case <-ctx.Done():
		}
	}()
	n.err = n.runNode(ctx)
	if errors.Is(n.err, context.Canceled) {
		n.err = nil
	}
	if n.err != nil {
		n.log.Error("node stopped", "error", n.err)
	} else {
		n.log.Info("node stopped")
	}
}

func (n *Node) runNode(ctx context.Context) error {
	if err := os.MkdirAll(n.cfg.StateDir, 0o700); err != nil {
		return fmt.Errorf("node: state dir: %w", err)
	}
	sec, boot, err := n.loadOrCreateSecurity(ctx)
	if err != nil {
		return err
	}
	n.mu.Lock()
	n.sec = sec
	n.mu.Unlock()
	st, err := loadState(n.cfg.StateDir)
	if err != nil {
		return err
	}
	managers := append([]string(nil), st.Managers...)
	if n.cfg.JoinAddr != "" {
		managers = append(managers, n.cfg.JoinAddr)
	}

	// Teardown order: the manager and the agent stop first (no task
	// starts any more), then, when the node leaves its swarm, its task
	// containers go while the overlay still serves the engine's network
	// plugin (without it the engine waits for the plugin on each of
	// their endpoints), then the overlay stops.
	var wg, owg sync.WaitGroup
	var mr *managerRun
	stopOverlay := context.CancelFunc(func() {})
	defer func() {
		mr.stop()
		wg.Wait()
		n.removeTasksIfLeaving()
		stopOverlay()
		owg.Wait()
	}()
	if sec.Peer().Role == ca.RoleManager {
		if mr, err = n.startManager(ctx, sec, boot, managers); err != nil {
			return err
		}
		select {
		case <-mr.m.Ready():
		case <-mr.exited:
			return mr.err
		case <-ctx.Done():
			return ctx.Err()
		}
		managers = append(managers, n.cfg.AdvertiseRemoteAPI)
	}
	if len(managers) == 0 {
		return errors.New("node: no manager known; join again with --join-addr")
	}
	// The overlay outlives ctx: the teardown above stops it.
	octx, cancelOverlay := context.WithCancel(context.WithoutCancel(ctx))
	stopOverlay = cancelOverlay
	ov := n.startOverlay(octx, &owg)
	renewNow := make(chan struct{}, 1)
	roleCheck := make(chan struct{}, 1)
	a, ms, err := n.newAgent(sec, managers, ov, func(obj *api.Node) {
		if want, err := ca.RoleOf(ca.IssuedRole(obj)); err == nil && want != sec.Peer().Role {
			signal(renewNow)
		}
	})
	if err != nil {
		return err
	}
	if ms != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := ms.Run(ctx); err != nil && ctx.Err() == nil {
				n.log.Error("node: routing mesh stopped", "error", err)
			}
		}()
	}
	errc := make(chan error, 2)
	wg.Add(1)
	go func() { defer wg.Done(); errc <- a.Run(ctx) }()
	select {
	case <-a.Ready():
	case err := <-errc:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
	if err := saveState(n.cfg.StateDir, persistentState{Managers: a.Managers()}); err != nil {
		n.log.Warn("node: save known managers", "error", err)
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := n.runRenewal(ctx, sec, a.Managers, renewNow, func() { signal(roleCheck) }); err != nil && ctx.Err() == nil {
			errc <- err
		}
	}()
	var restarts managerRestarts
	n.readyOnce.Do(func() { close(n.ready) })
	n.log.Info("node is ready", "node.id", sec.NodeID(), "role", string(sec.Peer().Role),
		"elapsed", time.Since(n.startedAt).Round(time.Microsecond))
	for {
		var exited <-chan struct{}
		if mr != nil {
			exited = mr.exited
		}
		select {
		case <-roleCheck:
			if mr, err = n.followRole(ctx, sec, mr, a.Managers()); err != nil {
				return err
			}
		case <-exited:
			if !errors.Is(mr.err, raft.ErrMemberRemoved) {
				if mr, err = n.restartManager(ctx, sec, mr.err, a.Managers(), &restarts); err != nil {
					return err
				}
				continue
			}
			// Demoted: the leader removed this manager from the raft
			// group; the worker certificate follows once the leader
			// records the worker role (the node object says so).
			n.log.Info("node: removed from the raft group; running as a worker")
			mr = nil
			if err := n.removeRaftState(); err != nil {
				return err
			}
		case err := <-errc:
			return err
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// signal makes a pending notification on a channel of capacity one.
func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// followRole starts or stops the manager to match the role the node's
// certificate now names: promotion and demotion need no restart.
func (n *Node) followRole(ctx context.Context, sec *ca.SecurityConfig, mr *managerRun, managers []string) (*managerRun, error) {
	switch role := sec.Peer().Role; {
	case role == ca.RoleManager && mr == nil:
		n.log.Info("node: promoted; starting the manager")
		if err := n.removeRaftState(); err != nil {
			return nil, err
		}
		return n.startManager(ctx, sec, nil, managers)
	case role == ca.RoleWorker && mr != nil:
		n.log.Info("node: demoted; stopping the manager")
		mr.stop()
		return nil, n.removeRaftState()
	}
	return mr, nil
}

// removeRaftState forgets this node's raft membership: a manager that left
// the raft group joins again under a new raft ID if promoted later.
func (n *Node) removeRaftState() error {
	if err := os.RemoveAll(filepath.Join(n.cfg.StateDir, "raft")); err != nil {
		return fmt.Errorf("node: remove raft state: %w", err)
	}
	// Workers are never sealed (a promoted node's manager seals again).
	if err := n.unsealTLSKey(); err != nil {
		return err
	}
	// A sealed raft DEK has nothing left to open and would keep a worker
	// locked after a restart: a promotion makes a new one.
	if locked, err := IsLocked(n.cfg.StateDir); err == nil && locked {
		if err := os.Remove(raftDEKPath(n.cfg.StateDir)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("node: remove sealed raft encryption key: %w", err)
		}
	}
	return nil
}

// managerRun is a running manager.
type managerRun struct {
	m      *manager.Manager
	cancel context.CancelFunc
	exited chan struct{}
	err    error
}

// stop stops the manager and waits for it; a nil managerRun is stopped.
func (r *managerRun) stop() {
	if r == nil {
		return
	}
	r.cancel()
	<-r.exited
}

func (n *Node) startManager(ctx context.Context, sec *ca.SecurityConfig, boot *manager.Bootstrap, managers []string) (*managerRun, error) {
	lis, err := net.Listen("tcp", n.cfg.ListenRemoteAPI)
	if err != nil {
		return nil, fmt.Errorf("node: listen on the remote API %s: %w", n.cfg.ListenRemoteAPI, err)
	}
	if boot != nil {
		boot.Stored = func() {
			if err := removeBootstrap(n.cfg.StateDir); err != nil {
				n.log.Warn("node: remove bootstrap file", "error", err)
			}
		}
	}
	var join string
	for _, m := range managers {
		if m != n.cfg.AdvertiseRemoteAPI {
			join = m
			break
		}
	}
	dek, err := loadRaftDEK(n.cfg.StateDir, n.cfg.UnlockKey)
	if err != nil {
		_ = lis.Close()
		return nil, err
	}
	sealedWith := n.cfg.UnlockKey
	if locked, err := IsLocked(n.cfg.StateDir); err == nil && !locked {
		sealedWith = nil
	}
	rm, dm := n.cfg.Metrics.managerMetrics()
	m, err := manager.New(manager.Config{
		StateDir: n.cfg.StateDir, Security: sec, RemoteAPI: lis, AdvertiseAddr: n.cfg.AdvertiseRemoteAPI,
		ControlSocket: n.cfg.ListenControlAPI, JoinAddr: join, ForceNewCluster: n.cfg.ForceNewCluster,
		RaftDEK: dek, Bootstrap: boot, TickInterval: n.cfg.TickInterval, HeartbeatTick: n.cfg.HeartbeatTick,
		ElectionTick: n.cfg.ElectionTick, Logger: n.cfg.Logger, RaftMetrics: rm, DispatcherMetrics: dm,
	})
	if err != nil {
		_ = lis.Close()
		return nil, err
	}
	n.mu.Lock()
	n.manager = m
	n.mu.Unlock()
	mctx, cancel := context.WithCancel(ctx)
	r := &managerRun{m: m, cancel: cancel, exited: make(chan struct{})}
	go func() {
		defer close(r.exited)
		// The unlock key follower stops before the manager counts as
		// exited: nothing reseals the DEK after a demotion removed it.
		wctx, wcancel := context.WithCancel(mctx)
		var wg sync.WaitGroup
		wg.Add(1)
		go func() { defer wg.Done(); n.followUnlockKey(wctx, m, dek, sealedWith) }()
		defer wg.Wait()
		defer wcancel()
		r.err = m.Run(mctx)
		n.mu.Lock()
		if n.manager == m {
			n.manager = nil
		}
		n.mu.Unlock()
	}()
	return r, nil
}

func (n *Node) newAgent(sec *ca.SecurityConfig, managers []string, ov *nodeOverlay, onNode func(*api.Node)) (*agent.Agent, *mesh.Mesh, error) {
	creds, err := sec.ClientCredentials(ca.ManagerServerName)
	if err != nil {
		return nil, nil, fmt.Errorf("node: %w", err)
	}
	cfg := agent.Config{
		Remotes:     agent.NewRemotes(uint64(time.Now().UnixNano()), managers...),
		Credentials: creds,
		Description: n.describe,
		Logger:      n.cfg.Logger,
		OnNode:      onNode,
	}
	executor := n.cfg.Executor
	if executor == nil && n.cfg.NewExecutor != nil {
		if executor, err = n.cfg.NewExecutor(sec.NodeID()); err != nil {
			return nil, nil, fmt.Errorf("node: executor: %w", err)
		}
	}
	if executor != nil {
		dbPath := workerDBPath(n.cfg.StateDir)
		if err := os.MkdirAll(filepath.Dir(dbPath), 0o700); err != nil {
			return nil, nil, fmt.Errorf("node: worker dir: %w", err)
		}
		cfg.Executor, cfg.WorkerDBPath = executor, dbPath
	}
	ms, err := n.newMesh(sec, executor)
	if err != nil {
		return nil, nil, err
	}
	if ms != nil {
		cfg.MeshTunnel = meshAdvertise(n.cfg.AdvertiseRemoteAPI, ms.TunnelAddr())
		cfg.OnMesh = func(ports []*api.MeshPort) {
			if err := ms.Update(meshPorts(ports)); err != nil {
				n.log.Warn("node: routing mesh: some published ports are not served", "error", err)
			}
		}
		// A local task that stops leaves the mesh at once, not a round
		// trip through the managers later.
		cfg.OnTaskStatus = func(taskID string, st *api.TaskStatus) {
			if st.GetState() > api.TaskState_TASK_STATE_RUNNING {
				ms.TaskStopped(taskID)
			}
		}
	}
	if ov != nil {
		cfg.OnNetworks = func(nets []*api.NetworkPeers) { ov.apply(context.Background(), nets) }
	}
	a, err := agent.New(cfg)
	if err != nil {
		if ms != nil {
			_ = ms.Close()
		}
		return nil, nil, err
	}
	n.mu.Lock()
	n.agent = a
	n.mu.Unlock()
	return a, ms, nil
}

// describe tells the dispatcher what this node is.
func (n *Node) describe() *api.NodeDescription {
	return &api.NodeDescription{
		Hostname:  n.cfg.Hostname,
		Platform:  &api.Platform{Os: runtime.GOOS, Architecture: runtime.GOARCH},
		Resources: &api.Resources{NanoCpus: int64(runtime.NumCPU()) * 1e9, MemoryBytes: memoryBytes()},
	}
}

// RemoteManagers are the manager addresses the node's agent knows.
func (n *Node) RemoteManagers() []string {
	n.mu.Lock()
	a := n.agent
	n.mu.Unlock()
	if a == nil {
		return nil
	}
	return a.Managers()
}

// AdvertiseAddr is the address other nodes reach this node at.
func (n *Node) AdvertiseAddr() string { return n.cfg.AdvertiseRemoteAPI }

// ControlSocket is the unix socket the node's manager serves the control
// API on (while the node is a manager).
func (n *Node) ControlSocket() string { return n.cfg.ListenControlAPI }
