package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strconv"

	"github.com/docker/docker/api/types/swarm"

	"github.com/openswarm/swarmd/internal/atomicfile"
	"github.com/openswarm/swarmd/node"
)

// defaultSwarmPort is the port of the cluster API when an address has none.
const defaultSwarmPort = 2377

// stateFileName keeps what the Engine API layer needs to resume after a
// restart: the addresses init or join was given.
const stateFileName = "docker-state.json"

// savedAddrs are the addresses of this host's swarm membership.
type savedAddrs struct {
	ListenAddr    string `json:"ListenAddr"`
	AdvertiseAddr string `json:"AdvertiseAddr"`
	DataPathAddr  string `json:"DataPathAddr,omitempty"`
}

func loadAddrs(dir string) (savedAddrs, bool, error) {
	var a savedAddrs
	b, err := os.ReadFile(filepath.Join(dir, stateFileName))
	if errors.Is(err, fs.ErrNotExist) {
		return a, false, nil
	}
	if err != nil {
		return a, false, fmt.Errorf("cluster: %w", err)
	}
	if err := json.Unmarshal(b, &a); err != nil {
		return a, false, fmt.Errorf("cluster: %s: %w", filepath.Join(dir, stateFileName), err)
	}
	return a, true, nil
}

func saveAddrs(dir string, a savedAddrs) error {
	b, err := json.MarshalIndent(a, "", "  ")
	if err != nil {
		return fmt.Errorf("cluster: encode addresses: %w", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("cluster: state dir: %w", err)
	}
	return atomicfile.WriteFile(filepath.Join(dir, stateFileName), b, 0o600)
}

// resolveAddrs turns the ListenAddr and AdvertiseAddr of an init or join
// request into host:port pairs, as docker reads them: a missing port is
// 2377, a host may be an interface name, an unspecified advertise address
// is this host's address.
func resolveAddrs(listen, advertise string) (savedAddrs, error) {
	if listen == "" {
		listen = "0.0.0.0"
	}
	l, err := withPort(listen, strconv.Itoa(defaultSwarmPort))
	if err != nil {
		return savedAddrs{}, badRequest(fmt.Sprintf("invalid ListenAddr %q: %v", listen, err))
	}
	host, port, _ := net.SplitHostPort(l)
	if iface, err := net.InterfaceByName(host); err == nil {
		ip, err := node.AdvertiseAddr(iface.Name, l)
		if err != nil {
			return savedAddrs{}, badRequest(fmt.Sprintf("invalid ListenAddr %q: %v", listen, err))
		}
		l = ip
		host, _, _ = net.SplitHostPort(l)
	}
	if ip := net.ParseIP(host); ip == nil && host != "" {
		return savedAddrs{}, badRequest(fmt.Sprintf("invalid ListenAddr %q: %q is neither an IP address nor an interface", listen, host))
	}
	if advertise != "" {
		if advertise, err = withPort(advertise, port); err != nil {
			return savedAddrs{}, badRequest(fmt.Sprintf("invalid AdvertiseAddr %q: %v", advertise, err))
		}
	}
	adv, err := node.AdvertiseAddr(advertise, l)
	if err != nil {
		return savedAddrs{}, badRequest(fmt.Sprintf("could not choose an IP address to advertise: %v - specify one with --advertise-addr", err))
	}
	return savedAddrs{ListenAddr: l, AdvertiseAddr: adv}, nil
}

// withPort adds port to addr when it has none.
func withPort(addr, port string) (string, error) {
	if _, _, err := net.SplitHostPort(addr); err == nil {
		return addr, nil
	}
	if _, err := strconv.Atoi(addr); err == nil {
		return net.JoinHostPort("0.0.0.0", addr), nil
	}
	if _, _, err := net.SplitHostPort(net.JoinHostPort(addr, port)); err != nil {
		return "", err
	}
	return net.JoinHostPort(addr, port), nil
}

// Init creates a new swarm with this node as its first manager, as
// `docker swarm init` does, and returns the node's ID.
func (c *Cluster) Init(ctx context.Context, req swarm.InitRequest) (string, error) {
	c.opMu.Lock()
	defer c.opMu.Unlock()
	if c.isLocked() {
		if !req.ForceNewCluster {
			return "", errSwarmExists
		}
		return "", errSwarmLocked
	}
	if r := c.current(); r != nil {
		if !req.ForceNewCluster {
			return "", errSwarmExists
		}
		if err := c.stopRun(ctx, r); err != nil {
			return "", err
		}
	}
	addrs, err := resolveAddrs(req.ListenAddr, req.AdvertiseAddr)
	if err != nil {
		return "", err
	}
	addrs.DataPathAddr = req.DataPathAddr
	ncfg := c.nodeConfig(addrs)
	resume, err := c.hasState()
	if err != nil {
		return "", err
	}
	ncfg.Init = !resume
	ncfg.ForceNewCluster = req.ForceNewCluster && resume
	if !resume {
		if err := node.EraseState(c.cfg.StateDir); err != nil {
			return "", err
		}
	}
	r, err := c.startNode(ctx, ncfg, addrs)
	if err != nil {
		return "", err
	}
	if err := c.waitReady(ctx, r); err != nil {
		c.abandon(ctx, r)
		return "", err
	}
	if err := saveAddrs(c.cfg.StateDir, addrs); err != nil {
		return "", err
	}
	if err := c.applyInitSpec(ctx, req); err != nil {
		return r.node.NodeID(), err
	}
	c.log.Info("cluster: swarm initialised", "node.id", r.node.NodeID(), "advertise_addr", addrs.AdvertiseAddr)
	return r.node.NodeID(), nil
}

// hasState reports whether a swarm's certificates are on disk (a
// --force-new-cluster init starts from them).
func (c *Cluster) hasState() (bool, error) {
	_, err := os.Stat(filepath.Join(c.cfg.StateDir, "certificates", "swarm-node.crt"))
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, fs.ErrNotExist):
		return false, nil
	}
	return false, fmt.Errorf("cluster: %w", err)
}

// Join joins the swarm of req.RemoteAddrs with req.JoinToken, as `docker
// swarm join` does. A join still under way after the ready timeout goes on
// in the background (docker's timeout error says so).
func (c *Cluster) Join(ctx context.Context, req swarm.JoinRequest) error {
	c.opMu.Lock()
	defer c.opMu.Unlock()
	if c.current() != nil || c.isLocked() {
		return errSwarmExists
	}
	if len(req.RemoteAddrs) == 0 {
		return badRequest("at least 1 RemoteAddr is required to join")
	}
	if req.JoinToken == "" {
		return badRequest("JoinToken: a join token is required to join a swarm")
	}
	remote, err := withPort(req.RemoteAddrs[0], strconv.Itoa(defaultSwarmPort))
	if err != nil {
		return badRequest(fmt.Sprintf("invalid RemoteAddrs[0] %q: %v", req.RemoteAddrs[0], err))
	}
	addrs, err := resolveAddrs(req.ListenAddr, req.AdvertiseAddr)
	if err != nil {
		return err
	}
	addrs.DataPathAddr = req.DataPathAddr
	if err := node.EraseState(c.cfg.StateDir); err != nil {
		return err
	}
	ncfg := c.nodeConfig(addrs)
	ncfg.JoinAddr, ncfg.JoinToken = remote, req.JoinToken
	r, err := c.startNode(ctx, ncfg, addrs)
	if err != nil {
		return err
	}
	if err := saveAddrs(c.cfg.StateDir, addrs); err != nil {
		return err
	}
	switch err := c.waitReady(ctx, r); {
	case errors.Is(err, errJoinTimeout):
		return err
	case err != nil:
		c.abandon(ctx, r)
		return err
	}
	if err := c.applyAvailability(ctx, r, req.Availability); err != nil {
		return err
	}
	c.log.Info("cluster: joined the swarm", "node.id", r.node.NodeID(), "remote", remote)
	return nil
}

// abandon stops a node whose init or join failed and erases what it left.
func (c *Cluster) abandon(ctx context.Context, r *nodeRun) {
	_ = c.stopRun(ctx, r)
	c.mu.Lock()
	c.lastErr = nil
	c.mu.Unlock()
	if err := node.EraseState(c.cfg.StateDir); err != nil {
		c.log.Warn("cluster: erase the state of a failed attempt", "error", err)
	}
	_ = os.Remove(filepath.Join(c.cfg.StateDir, stateFileName))
}

// stopRun stops r and forgets it.
func (c *Cluster) stopRun(ctx context.Context, r *nodeRun) error {
	c.mu.Lock()
	if c.run == r {
		c.run = nil
	}
	c.mu.Unlock()
	return r.stop(ctx)
}

// Leave takes this node out of its swarm, as `docker swarm leave` does: a
// manager needs force; the node's state is erased and the containers of
// its tasks are removed.
func (c *Cluster) Leave(ctx context.Context, force bool) error {
	c.opMu.Lock()
	defer c.opMu.Unlock()
	if c.isLocked() {
		if !force {
			return errLockedLeave
		}
		c.mu.Lock()
		c.locked = nil
		c.mu.Unlock()
		return c.clearState(ctx, "")
	}
	r := c.current()
	if r == nil {
		c.mu.Lock()
		hadErr := c.lastErr != nil
		c.lastErr = nil
		c.mu.Unlock()
		if !hadErr {
			return errNoSwarm
		}
		// A node that failed: leaving clears what it left behind.
		return c.clearState(ctx, "")
	}
	nodeID := r.node.NodeID()
	if err := r.node.CanLeave(force); err != nil {
		return unavailable(err.Error())
	}
	// The node removes its task containers itself once its agent stopped
	// and while it still serves its network plugin (Config.RemoveTasks):
	// no task starts again meanwhile, and the engine does not wait for a
	// plugin that is gone on each of their overlay endpoints.
	if err := r.node.Leave(ctx, force); err != nil {
		if errors.Is(err, node.ErrManagerLeave) {
			return unavailable(err.Error())
		}
		return err
	}
	c.mu.Lock()
	if c.run == r {
		c.run = nil
	}
	c.mu.Unlock()
	_ = r.conn.Close()
	return c.clearState(ctx, nodeID)
}

func (c *Cluster) clearState(ctx context.Context, nodeID string) error {
	if err := node.EraseState(c.cfg.StateDir); err != nil {
		return err
	}
	if err := os.Remove(filepath.Join(c.cfg.StateDir, stateFileName)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("cluster: %w", err)
	}
	if nodeID != "" && c.cfg.RemoveContainers != nil {
		if err := c.cfg.RemoveContainers(ctx, nodeID); err != nil {
			c.log.Warn("cluster: remove the containers of the node's tasks", "node.id", nodeID, "error", err)
		}
	}
	c.log.Info("cluster: left the swarm", "node.id", nodeID)
	return nil
}
