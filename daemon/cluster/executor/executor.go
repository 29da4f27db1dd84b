// Package executor runs the tasks assigned to a node as containers of the
// node's Docker Engine: one container per task, named and labelled as
// docker names and labels the containers of its swarm tasks, so that the
// docker CLI shows them as it would.
//
// The decisions (container configuration, state mapping, log parsing) are
// pure functions; Controller only moves data between them and the engine.
package executor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"strings"
	"sync"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/events"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/system"
	"github.com/docker/docker/client"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/openswarm/swarmd/agent/exec"
	"github.com/openswarm/swarmd/api"
)

// engineAPI is the part of the engine's API the executor uses.
type engineAPI interface {
	Info(ctx context.Context) (system.Info, error)
	ContainerCreate(ctx context.Context, config *container.Config, hostConfig *container.HostConfig, networkingConfig *network.NetworkingConfig, platform *ocispec.Platform, containerName string) (container.CreateResponse, error)
	ContainerInspect(ctx context.Context, containerID string) (container.InspectResponse, error)
	ContainerStart(ctx context.Context, containerID string, options container.StartOptions) error
	ContainerStop(ctx context.Context, containerID string, options container.StopOptions) error
	ContainerKill(ctx context.Context, containerID, signal string) error
	ContainerRemove(ctx context.Context, containerID string, options container.RemoveOptions) error
	ContainerWait(ctx context.Context, containerID string, condition container.WaitCondition) (<-chan container.WaitResponse, <-chan error)
	ContainerLogs(ctx context.Context, containerID string, options container.LogsOptions) (io.ReadCloser, error)
	Events(ctx context.Context, options events.ListOptions) (<-chan events.Message, <-chan error)
}

// Executor runs a node's tasks as containers of its engine.
type Executor struct {
	engine engineAPI
	nodeID string
	logger *slog.Logger
	// hostname, when set, replaces the engine's name as the node's
	// hostname (swarmd --hostname).
	hostname string
	// secretsDir is where the tasks' secret and config files go: the
	// DefaultSecretsDir() of the host.
	secretsDir string

	mu   sync.Mutex
	deps exec.Dependencies
	// described is the hostname Describe last reported (for templates).
	described string
	// addrs resolves the node's tasks to their container addresses for
	// the routing mesh (TaskAddr).
	addrs taskAddrs
	// nets gives tasks their overlay networks (networks.go).
	nets *taskNetworks
}

var (
	_ exec.Executor       = (*Executor)(nil)
	_ exec.DependencyUser = (*Executor)(nil)
)

// New returns the executor of node nodeID over the engine cli talks to.
func New(cli *client.Client, nodeID string, logger *slog.Logger) *Executor {
	return newExecutor(cli, nodeID, logger)
}

func newExecutor(engine engineAPI, nodeID string, logger *slog.Logger) *Executor {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	logger = logger.With("component", "executor", "node.id", nodeID)
	nets := &taskNetworks{log: logger}
	nets.engine, _ = engine.(networkAPI)
	return &Executor{engine: engine, nodeID: nodeID, secretsDir: DefaultSecretsDir(), logger: logger, nets: nets}
}

// Describe describes the node from what its engine says of itself.
func (e *Executor) Describe(ctx context.Context) (*api.NodeDescription, error) {
	info, err := e.engine.Info(ctx)
	if err != nil {
		return nil, fmt.Errorf("executor: engine info: %w", err)
	}
	d := nodeDescription(info)
	if e.hostname != "" {
		d.Hostname = e.hostname
	}
	e.mu.Lock()
	e.described = d.GetHostname()
	e.mu.Unlock()
	return d, nil
}

// nodeHostname is the node's hostname as Describe last reported it.
func (e *Executor) nodeHostname() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.described == "" {
		return e.hostname
	}
	return e.described
}

// SetHostname makes Describe report hostname instead of the engine's name.
// It is called before the executor is used.
func (e *Executor) SetHostname(hostname string) { e.hostname = hostname }

// SetNetworkPlugin names the node's overlay network plugin, the driver of
// the engine networks of tasks attached to overlay networks; empty: such
// tasks fail (ErrNoNetworkPlugin). It is called before the executor is
// used.
func (e *Executor) SetNetworkPlugin(name string) { e.nets.plugin = name }

// nodeDescription is the description of a node whose engine gave info.
func nodeDescription(info system.Info) *api.NodeDescription {
	labels := make(map[string]string, len(info.Labels))
	for _, l := range info.Labels {
		k, v, _ := strings.Cut(l, "=")
		if k != "" {
			labels[k] = v
		}
	}
	return &api.NodeDescription{
		Hostname: info.Name,
		Platform: &api.Platform{Os: info.OSType, Architecture: info.Architecture},
		Resources: &api.Resources{
			NanoCpus:    int64(info.NCPU) * 1e9,
			MemoryBytes: info.MemTotal,
		},
		Engine: &api.EngineDescription{EngineVersion: info.ServerVersion, Labels: labels},
	}
}

// Controller returns the controller of t's container. t must have a
// container spec.
func (e *Executor) Controller(t *api.Task) (exec.Controller, error) {
	if t.GetSpec().GetContainer() == nil {
		return nil, fmt.Errorf("executor: task %s: %w", t.GetId(), ErrNoContainerSpec)
	}
	_, _, name, err := containerConfig(t, e.nodeID)
	if err != nil {
		return nil, fmt.Errorf("executor: task %s: %w", t.GetId(), err)
	}
	e.addrs.remember(t.GetId(), name)
	c := newController(e.engine, t, e.nodeID, e.logger)
	id := t.GetId()
	c.removed = func() { e.addrs.forget(id) }
	c.deps = e.dependencies
	c.hostname = e.nodeHostname
	c.nets = e.nets
	c.secretsDir = e.secretsDir
	return c, nil
}

func (e *Executor) dependencies() exec.Dependencies {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.deps
}

// SetDependencies keeps the node's secrets and configs for the
// controllers.
func (e *Executor) SetDependencies(d exec.Dependencies) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.deps = d
}

// temporary tells whether err, from the engine, is worth retrying: the
// engine could not be reached or was busy, or a name was taken.
func temporary(err error) bool {
	var netErr net.Error
	var urlErr *url.Error
	switch {
	case err == nil:
		return false
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return false
	case client.IsErrConnectionFailed(err), cerrdefs.IsUnavailable(err), cerrdefs.IsConflict(err),
		errors.As(err, &netErr), errors.As(err, &urlErr):
		return true
	}
	return false
}

// classify wraps err with what the step was, marking it temporary if it is.
func classify(op string, err error) error {
	err = fmt.Errorf("%s: %w", op, err)
	if temporary(err) {
		return exec.Temporary(err)
	}
	return err
}
