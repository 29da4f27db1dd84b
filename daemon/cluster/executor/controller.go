package executor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/events"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/mount"
	"github.com/openswarm/swarmd/agent/exec"
	"github.com/openswarm/swarmd/api"
	"google.golang.org/protobuf/proto"
)

// ErrControllerClosed is returned by a controller used after Close.
var ErrControllerClosed = errors.New("executor: controller closed")

// Controller runs one task as one container, found by its name.
type Controller struct {
	engine engineAPI
	nodeID string
	name   string
	logger *slog.Logger

	mu     sync.Mutex
	task   *api.Task
	closed bool
	// removed, if set, is called once the container is removed.
	removed func()
	// deps gives the node's secrets and configs; secretsDir is where the
	// task's files of them are written (see secrets.go).
	deps       func() exec.Dependencies
	secretsDir string
	// fresh is the ID of the container Prepare created, until Start
	// starts it: it was never started, so Start need not ask the engine.
	fresh string
	// nets attaches the container to the task's overlay networks; nil:
	// the task has none it can join.
	nets *taskNetworks
	// hostname is the node's hostname, for templates in the task's spec
	// (nil: unknown).
	hostname func() string
}

var (
	_ exec.Controller     = (*Controller)(nil)
	_ exec.Inspector      = (*Controller)(nil)
	_ exec.LogsController = (*Controller)(nil)
)

func newController(engine engineAPI, t *api.Task, nodeID string, logger *slog.Logger) *Controller {
	t = proto.Clone(t).(*api.Task)
	name := containerName(t, nodeID)
	return &Controller{
		engine: engine,
		nodeID: nodeID,
		name:   name,
		logger: logger.With("task.id", t.GetId(), "service.id", t.GetServiceId(), "container.name", name),
		task:   t,
	}
}

// current returns the task, or an error if the controller is closed.
func (c *Controller) current() (*api.Task, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, ErrControllerClosed
	}
	return c.task, nil
}

// Update records the new version of the task (its spec does not change).
func (c *Controller) Update(_ context.Context, t *api.Task) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return ErrControllerClosed
	}
	c.task = proto.Clone(t).(*api.Task)
	return nil
}

// inspect inspects the task's container. found is false if there is none;
// a container of that name that is not the task's is an error.
func (c *Controller) inspect(ctx context.Context, t *api.Task) (ci container.InspectResponse, found bool, err error) {
	ci, err = c.engine.ContainerInspect(ctx, c.name)
	switch {
	case cerrdefs.IsNotFound(err):
		return ci, false, nil
	case err != nil:
		return ci, false, classify("inspect container "+c.name, err)
	}
	if ci.Config == nil || ci.Config.Labels[LabelTaskID] != t.GetId() {
		return ci, false, fmt.Errorf("executor: container %s (%s) does not belong to task %s", c.name, ci.ID, t.GetId())
	}
	return ci, true, nil
}

// Prepare creates the task's container from an image the engine has
// already: images are never pulled.
func (c *Controller) Prepare(ctx context.Context) error {
	t, err := c.current()
	if err != nil {
		return err
	}
	hostname := ""
	if c.hostname != nil {
		hostname = c.hostname()
	}
	if t, err = expandContainerSpec(t, c.nodeID, hostname); err != nil {
		return err
	}
	cfg, host, name, err := containerConfig(t, c.nodeID)
	if err != nil {
		return err
	}
	atts, err := taskAttachments(t)
	if err != nil {
		return err
	}
	if len(atts) > 0 && (c.nets == nil || c.nets.plugin == "" || c.nets.engine == nil) {
		return ErrNoNetworkPlugin
	}
	host.DNS = taskDNS(atts)
	// Straight to create, the one call the engine must answer anyway: a
	// container that exists already is a name conflict, a missing image
	// is "not found".
	mounts, err := c.writeDependencies(t)
	if err != nil {
		return err
	}
	host.Mounts = append(host.Mounts, mounts...)
	resp, err := c.engine.ContainerCreate(ctx, cfg, host, nil, nil, name)
	switch {
	case err == nil:
	case cerrdefs.IsConflict(err):
		// Created before, by an earlier try of ours (or not ours).
		if _, found, ierr := c.inspect(ctx, t); ierr != nil {
			return ierr
		} else if found {
			return exec.ErrTaskPrepared
		}
		return classify("create container "+name, err)
	case cerrdefs.IsNotFound(err):
		//lint:ignore ST1005 docker's text, which users and tools match
		return fmt.Errorf("No such image: %s", cfg.Image)
	default:
		return classify("create container "+name, err)
	}
	for _, w := range resp.Warnings {
		c.logger.WarnContext(ctx, "container created with warning", "container.id", resp.ID, "warning", w)
	}
	c.logger.DebugContext(ctx, "container created", "container.id", resp.ID)
	// The overlay networks join before the start: the container keeps
	// the engine's default network for the outside and the routing mesh.
	if err := c.nets.attach(ctx, resp.ID, atts); err != nil {
		// A container without its networks must not be started by a
		// later try: the next Prepare creates it again.
		if rerr := c.engine.ContainerRemove(context.WithoutCancel(ctx), resp.ID, container.RemoveOptions{Force: true}); rerr != nil {
			c.logger.WarnContext(ctx, "container not removed after its networks failed", "container.id", resp.ID, "error", rerr)
		}
		return err
	}
	c.mu.Lock()
	c.fresh = resp.ID
	c.mu.Unlock()
	return nil
}

// Start starts the task's container, unless it was started before. A
// container with a healthcheck counts as started once it is healthy, so
// its task is RUNNING only then (a rolling update moves on, and a
// start-first update stops the old task, only then); a container that
// turns unhealthy first fails the task with ErrContainerUnhealthy.
func (c *Controller) Start(ctx context.Context) error {
	t, err := c.current()
	if err != nil {
		return err
	}
	c.mu.Lock()
	id := c.fresh
	c.fresh = ""
	c.mu.Unlock()
	if id == "" {
		ci, found, err := c.inspect(ctx, t)
		switch {
		case err != nil:
			return err
		case !found:
			return fmt.Errorf("executor: start: no container %s", c.name)
		case hasStarted(ci.State):
			if err := c.waitHealthy(ctx, t, ci.ID); err != nil {
				return err
			}
			return exec.ErrTaskStarted
		}
		id = ci.ID
	}
	if err := c.engine.ContainerStart(ctx, id, container.StartOptions{}); err != nil {
		return classify("start container "+c.name, err)
	}
	c.logger.DebugContext(ctx, "container started", "container.id", id)
	return c.waitHealthy(ctx, t, id)
}

// waitHealthy waits until t's started container id is healthy, if it has
// a healthcheck: nil once it is, or when it has no healthcheck or stopped
// running (Wait then reports how it ended); ErrContainerUnhealthy when the
// check fails first.
func (c *Controller) waitHealthy(ctx context.Context, t *api.Task, id string) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		subscribed bool
		evC        <-chan events.Message
		evE        <-chan error
	)
	for {
		ci, found, err := c.inspect(ctx, t)
		switch {
		case err != nil:
			return err
		case !found || ci.State == nil || ci.State.Health == nil || !ci.State.Running:
			return nil
		case ci.State.Health.Status == container.Healthy:
			c.logger.DebugContext(ctx, "container healthy", "container.id", id)
			return nil
		case unhealthy(ci.State):
			c.logger.InfoContext(ctx, "container unhealthy", "container.id", id)
			return ErrContainerUnhealthy
		}
		if !subscribed {
			// Subscribe, then look again: no change in between is
			// missed, and every event is a reason to look again.
			c.logger.DebugContext(ctx, "waiting for the container to be healthy", "container.id", id)
			subscribed = true
			evC, evE = c.engine.Events(ctx, events.ListOptions{Filters: filters.NewArgs(
				filters.Arg("type", string(events.ContainerEventType)),
				filters.Arg("container", id),
				filters.Arg("event", string(events.ActionHealthStatus)),
				filters.Arg("event", string(events.ActionDie)),
			)})
			continue
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case _, ok := <-evC:
			if !ok {
				evC = nil // the stream ended: its error, if any, comes on evE
			}
		case err := <-evE:
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return classify("watch health of container "+c.name, err)
		}
	}
}

// Wait waits for the task's container to exit. A container whose
// healthcheck reports it unhealthy fails the task before it exits.
func (c *Controller) Wait(ctx context.Context) error {
	t, err := c.current()
	if err != nil {
		return err
	}
	ci, found, err := c.inspect(ctx, t)
	switch {
	case err != nil:
		return err
	case !found:
		return fmt.Errorf("executor: wait: no container %s", c.name)
	case !hasStarted(ci.State):
		return fmt.Errorf("executor: wait: container %s was not started", c.name)
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	var (
		healthC <-chan events.Message
		healthE <-chan error
	)
	if ci.State.Health != nil && ci.State.Running {
		healthC, healthE = c.engine.Events(ctx, events.ListOptions{Filters: filters.NewArgs(
			filters.Arg("type", string(events.ContainerEventType)),
			filters.Arg("container", ci.ID),
			filters.Arg("event", string(events.ActionHealthStatus)),
		)})
		// It may have turned unhealthy before the subscription.
		if now, found, err := c.inspect(ctx, t); err == nil && found && unhealthy(now.State) {
			return ErrContainerUnhealthy
		}
	}

	waitC, waitE := c.engine.ContainerWait(ctx, ci.ID, container.WaitConditionNotRunning)
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case resp := <-waitC:
			var waitErr string
			if resp.Error != nil {
				waitErr = resp.Error.Message
			}
			oom := false
			if resp.StatusCode != 0 {
				if end, found, err := c.inspect(ctx, t); err == nil && found && end.State != nil {
					oom = end.State.OOMKilled
				}
			}
			c.logger.DebugContext(ctx, "container exited", "container.id", ci.ID, "exit.code", resp.StatusCode)
			return exitResult(resp.StatusCode, oom, waitErr)
		case err := <-waitE:
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return classify("wait for container "+c.name, err)
		case ev := <-healthC:
			if strings.HasSuffix(string(ev.Action), string(container.Unhealthy)) {
				c.logger.InfoContext(ctx, "container unhealthy", "container.id", ci.ID)
				return ErrContainerUnhealthy
			}
		case err := <-healthE:
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return classify("watch health of container "+c.name, err)
		}
	}
}

// Shutdown stops the container within the spec's stop grace period; the
// engine kills it after that.
func (c *Controller) Shutdown(ctx context.Context) error {
	t, err := c.current()
	if err != nil {
		return err
	}
	timeout := stopTimeoutSeconds(stopGracePeriod(t))
	err = c.engine.ContainerStop(ctx, c.name, container.StopOptions{Timeout: &timeout})
	if err == nil || cerrdefs.IsNotFound(err) || cerrdefs.IsNotModified(err) {
		return nil
	}
	return classify("stop container "+c.name, err)
}

// Terminate kills the container at once.
func (c *Controller) Terminate(ctx context.Context) error {
	if _, err := c.current(); err != nil {
		return err
	}
	err := c.engine.ContainerKill(ctx, c.name, "SIGKILL")
	if err == nil || cerrdefs.IsNotFound(err) || notRunning(err) {
		return nil
	}
	return classify("kill container "+c.name, err)
}

// notRunning tells whether err is the engine's refusal to signal a
// container that does not run.
func notRunning(err error) bool {
	return cerrdefs.IsConflict(err) && strings.Contains(err.Error(), "is not running")
}

// Remove removes the container and its anonymous volumes.
func (c *Controller) Remove(ctx context.Context) error {
	t, err := c.current()
	if err != nil {
		return err
	}
	err = c.engine.ContainerRemove(ctx, c.name, container.RemoveOptions{Force: true, RemoveVolumes: true})
	if err == nil || cerrdefs.IsNotFound(err) {
		if dir := c.dependencyDir(t.GetId()); dir != "" {
			if err := os.RemoveAll(dir); err != nil {
				return fmt.Errorf("executor: remove the task's secrets: %w", err)
			}
		}
		if c.removed != nil {
			c.removed()
		}
		if c.nets != nil {
			// Its own attachments parsed when it was prepared.
			atts, _ := taskAttachments(t)
			c.nets.release(ctx, atts)
		}
		return nil
	}
	return classify("remove container "+c.name, err)
}

// Close releases the controller.
func (c *Controller) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	return nil
}

// Inspect tells where the task's container is.
func (c *Controller) Inspect(ctx context.Context) (exec.RuntimeState, error) {
	t, err := c.current()
	if err != nil {
		return exec.RuntimeState{}, err
	}
	ci, found, err := c.inspect(ctx, t)
	if err != nil {
		return exec.RuntimeState{}, err
	}
	if !found {
		return exec.RuntimeState{Phase: exec.PhaseAbsent}, nil
	}
	return runtimeState(ci), nil
}

// dependencyDir is the directory of the task's secret and config files.
func (c *Controller) dependencyDir(taskID string) string {
	if c.secretsDir == "" || taskID == "" {
		return ""
	}
	return filepath.Join(c.secretsDir, taskID)
}

// writeDependencies writes the secrets and configs the task mounts and
// returns their mounts. One the node was not given yet is worth a retry.
func (c *Controller) writeDependencies(t *api.Task) ([]mount.Mount, error) {
	ct := t.GetSpec().GetContainer()
	if len(ct.GetSecrets()) == 0 && len(ct.GetConfigs()) == 0 {
		return nil, nil
	}
	var deps exec.Dependencies
	if c.deps != nil {
		deps = c.deps()
	}
	files, err := depFiles(t, deps)
	if errors.Is(err, ErrDependencyMissing) {
		return nil, exec.Temporary(fmt.Errorf("executor: %w", err))
	}
	if err != nil {
		return nil, fmt.Errorf("executor: %w", err)
	}
	dir := c.dependencyDir(t.GetId())
	if dir == "" {
		return nil, errors.New("executor: no directory for secrets and configs")
	}
	mounts, err := writeDepFiles(dir, files)
	if err != nil {
		return nil, fmt.Errorf("executor: %w", err)
	}
	return mounts, nil
}
