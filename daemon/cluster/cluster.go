// Package cluster is swarmd's Engine API layer: it owns the node's swarm
// membership the way `docker swarm init/join/leave` expects (inactive until
// init or join, resumed from disk after a restart), serves the swarm
// endpoints of the Docker Engine HTTP API from the cluster's control API,
// and passes every other call through to the local engine.
package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/openswarm/swarmd/api"
	"github.com/openswarm/swarmd/manager"
	"github.com/openswarm/swarmd/node"
)

// Config configures the swarm membership of this host.
type Config struct {
	// StateDir holds the swarm state (default /var/lib/docker/swarm).
	StateDir string
	// Node is the template of the node configuration: hostname, ticks,
	// external CAs, executor, logger. Init and join fill in the addresses,
	// the join address and token.
	Node node.Config
	// ReadyTimeout bounds how long init and join wait for the node to be
	// ready (docker: 20 s); a join that takes longer goes on in the
	// background.
	ReadyTimeout time.Duration
	// RemoveContainers removes the containers of a node that left the
	// swarm (docker removes its tasks' containers on leave). Optional.
	RemoveContainers func(ctx context.Context, nodeID string) error
	Logger           *slog.Logger
}

// LocalNodeState is the node's swarm state as /info reports it.
type LocalNodeState string

// The states docker reports.
const (
	StateInactive LocalNodeState = "inactive"
	StatePending  LocalNodeState = "pending"
	StateActive   LocalNodeState = "active"
	StateError    LocalNodeState = "error"
	StateLocked   LocalNodeState = "locked"
)

// Cluster is the swarm membership of this host.
type Cluster struct {
	cfg Config
	log *slog.Logger

	// opMu serialises init, join and leave.
	opMu sync.Mutex

	mu      sync.RWMutex
	run     *nodeRun // nil while inactive
	lastErr error    // why the last node stopped by itself
	// locked holds the addresses of a membership whose node waits for the
	// swarm's unlock key (autolock) before it starts; nil otherwise.
	locked *savedAddrs
}

// nodeRun is one running node and the connection to its control socket.
type nodeRun struct {
	node  *node.Node
	conn  *grpc.ClientConn
	addrs savedAddrs
}

// New returns an inactive cluster; Start resumes a swarm found on disk.
func New(cfg Config) (*Cluster, error) {
	if cfg.StateDir == "" {
		return nil, errors.New("cluster: no state directory")
	}
	if cfg.ReadyTimeout <= 0 {
		cfg.ReadyTimeout = 20 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Node.ListenControlAPI == "" {
		cfg.Node.ListenControlAPI = filepath.Join(cfg.StateDir, "swarmd.sock")
	}
	cfg.Node.StateDir = cfg.StateDir
	cfg.Node.Logger = cfg.Logger
	return &Cluster{cfg: cfg, log: cfg.Logger.With("module", "cluster")}, nil
}

// Resume resumes the swarm this host was part of, if its state is on
// disk, and reports whether it did: a restarted swarmd rejoins its swarm
// without init or join. It does not wait for the node to be ready.
func (c *Cluster) Resume(ctx context.Context) (bool, error) {
	c.opMu.Lock()
	defer c.opMu.Unlock()
	addrs, ok, err := loadAddrs(c.cfg.StateDir)
	if err != nil || !ok {
		return false, err
	}
	if has, err := c.hasState(); err != nil || !has {
		if err == nil {
			c.log.Warn("cluster: swarm addresses on disk but no certificates; staying inactive")
		}
		return false, err
	}
	locked, err := node.IsLocked(c.cfg.StateDir)
	if err != nil {
		return false, err
	}
	if locked {
		c.mu.Lock()
		c.locked, c.lastErr = &addrs, nil
		c.mu.Unlock()
		c.log.Info("cluster: the swarm found on disk is locked; waiting for docker swarm unlock", "advertise_addr", addrs.AdvertiseAddr)
		return true, nil
	}
	if _, err := c.startNode(ctx, c.nodeConfig(addrs), addrs); err != nil {
		return false, err
	}
	c.log.Info("cluster: resuming the swarm found on disk", "advertise_addr", addrs.AdvertiseAddr)
	return true, nil
}

// Stop stops the node (it stays in its swarm and resumes on the next
// Start).
func (c *Cluster) Stop(ctx context.Context) error {
	c.opMu.Lock()
	defer c.opMu.Unlock()
	c.mu.Lock()
	r := c.run
	c.run, c.locked = nil, nil
	c.mu.Unlock()
	if r == nil {
		return nil
	}
	return r.stop(ctx)
}

func (r *nodeRun) stop(ctx context.Context) error {
	err := r.node.Stop(ctx)
	if cerr := r.conn.Close(); err == nil && cerr != nil && status.Code(cerr) != codes.Canceled {
		err = cerr
	}
	return err
}

// nodeConfig is the template with the addresses of this membership.
func (c *Cluster) nodeConfig(a savedAddrs) node.Config {
	ncfg := c.cfg.Node
	ncfg.ListenRemoteAPI = a.ListenAddr
	ncfg.AdvertiseRemoteAPI = a.AdvertiseAddr
	ncfg.RemoveTasks = c.cfg.RemoveContainers
	return ncfg
}

// startNode starts a node and records it as this host's membership. It
// does not wait for the node to be ready.
func (c *Cluster) startNode(ctx context.Context, ncfg node.Config, addrs savedAddrs) (*nodeRun, error) {
	n, err := node.New(ncfg)
	if err != nil {
		return nil, err
	}
	conn, err := grpc.NewClient("unix://"+ncfg.ListenControlAPI, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, fmt.Errorf("cluster: control socket: %w", err)
	}
	if err := n.Start(context.WithoutCancel(ctx)); err != nil {
		_ = conn.Close()
		return nil, err
	}
	r := &nodeRun{node: n, conn: conn, addrs: addrs}
	c.mu.Lock()
	c.run, c.lastErr, c.locked = r, nil, nil
	c.mu.Unlock()
	go c.watch(r)
	return r, nil
}

// watch forgets a node that stopped by itself (an error, a removal from
// the swarm) and keeps why.
func (c *Cluster) watch(r *nodeRun) {
	<-r.node.Done()
	err := r.node.Err(context.Background())
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.run != r {
		return
	}
	c.run = nil
	c.lastErr = err
	_ = r.conn.Close()
	if errors.Is(err, node.ErrLocked) {
		// Its key material is sealed: it waits for docker swarm unlock.
		addrs := r.addrs
		c.locked, c.lastErr = &addrs, nil
		c.log.Info("cluster: the node is locked; waiting for docker swarm unlock")
		return
	}
	if err != nil {
		c.log.Error("cluster: node stopped", "error", err)
	}
}

// waitReady waits until r's node is ready, stopped, or the timeout passed.
// It returns errJoinTimeout on timeout, the node's error if it stopped.
func (c *Cluster) waitReady(ctx context.Context, r *nodeRun) error {
	t := time.NewTimer(c.cfg.ReadyTimeout)
	defer t.Stop()
	select {
	case <-r.node.Ready():
		return nil
	case <-r.node.Done():
		if err := r.node.Err(ctx); err != nil {
			return err
		}
		return errors.New("node stopped before it was ready")
	case <-t.C:
		return errJoinTimeout
	case <-ctx.Done():
		return ctx.Err()
	}
}

// current is the running node, or nil while inactive.
func (c *Cluster) current() *nodeRun {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.run
}

// NodeID is this node's ID ("" while inactive).
func (c *Cluster) NodeID() string {
	if r := c.current(); r != nil {
		return r.node.NodeID()
	}
	return ""
}

// State is the node's swarm state and, in StateError, why.
func (c *Cluster) State() (LocalNodeState, error) {
	c.mu.RLock()
	r, lastErr, locked := c.run, c.lastErr, c.locked != nil
	c.mu.RUnlock()
	if locked {
		return StateLocked, nil
	}
	if r == nil {
		if lastErr != nil {
			return StateError, lastErr
		}
		return StateInactive, nil
	}
	select {
	case <-r.node.Ready():
		return StateActive, nil
	default:
		return StatePending, nil
	}
}

// IsManager reports whether this node runs a manager now.
func (c *Cluster) IsManager() bool {
	r := c.current()
	return r != nil && r.node.Manager() != nil
}

// control returns the control API client of the manager on this node, or
// docker's error for a node that is not a manager.
func (c *Cluster) control() (api.ControlClient, error) {
	r, err := c.managerRun()
	if err != nil {
		return nil, err
	}
	return api.NewControlClient(r.conn), nil
}

// logs returns the log API client of the manager on this node.
func (c *Cluster) logs() (api.LogsClient, error) {
	r, err := c.managerRun()
	if err != nil {
		return nil, err
	}
	return api.NewLogsClient(r.conn), nil
}

func (c *Cluster) managerRun() (*nodeRun, error) {
	if c.isLocked() {
		return nil, errSwarmLocked
	}
	r := c.current()
	if r == nil {
		return nil, errNoManager
	}
	m := r.node.Manager()
	if m == nil {
		select {
		case <-r.node.Ready():
			return nil, errWorker
		default:
			return nil, errManagerNotReady
		}
	}
	return r, nil
}

// localManager is the manager running on this node, or nil.
func (c *Cluster) localManager() *manager.Manager {
	if r := c.current(); r != nil {
		return r.node.Manager()
	}
	return nil
}

// isLocked reports whether the node waits for the swarm's unlock key.
func (c *Cluster) isLocked() bool {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.locked != nil
}
