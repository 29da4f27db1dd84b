// Package testexec is an in-memory, deterministic executor for tests and
// simulations (cmd/swarm-bench runs thousands of simulated nodes in one
// process with it). Tasks "run" until the test says otherwise: nothing
// happens on a timer, and no goroutine runs per task — a waiting worker
// blocks on a channel that Exit, Shutdown or Terminate closes.
//
// An Engine holds the simulated containers of one node, by task ID. It
// outlives Executors: a restart of the node (of swarmd, not of the engine)
// is a new Executor over the same Engine, which finds the containers
// where the previous one left them, so re-adoption can be tested.
package testexec

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/openswarm/swarmd/agent/exec"
	"github.com/openswarm/swarmd/api"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// Exit codes of containers stopped by Shutdown (SIGTERM) and Terminate
// (SIGKILL), as a shell reports them.
const (
	ExitCodeShutdown  = 143
	ExitCodeTerminate = 137
)

// Errors the simulated runtime returns.
var (
	// ErrNoSuchContainer: the task has no container (never prepared, or
	// removed).
	ErrNoSuchContainer = errors.New("testexec: no such container")
	// ErrNotStarted: Wait on a container that was never started.
	ErrNotStarted = errors.New("testexec: container not started")
	// ErrClosed: a controller was used after Close.
	ErrClosed = errors.New("testexec: controller closed")
)

// Hooks let a test decide what steps do. Prepare and Start may block,
// honouring ctx; they run without the engine's lock held. Exit runs with it
// held and must not call the engine.
type Hooks struct {
	// Prepare runs when a task that has no container is prepared; an
	// error fails Prepare and creates nothing (wrap it with exec.Temporary
	// for a failure the worker retries, otherwise the task is rejected).
	Prepare func(ctx context.Context, t *api.Task) error
	// Start runs before a created container starts; an error fails Start.
	Start func(ctx context.Context, t *api.Task) error
	// Exit is asked when a container starts: exits makes it exit at once
	// with code (e.g. a job that does nothing).
	Exit func(t *api.Task) (code int, exits bool)
}

// RejectImages is a Prepare hook that fails, as a missing image does, for
// tasks whose container image is one of images.
func RejectImages(images ...string) func(context.Context, *api.Task) error {
	return func(_ context.Context, t *api.Task) error {
		if img := t.GetSpec().GetContainer().GetImage(); slices.Contains(images, img) {
			//lint:ignore ST1005 the text docker shows for a missing image
			return fmt.Errorf("No such image: %s", img)
		}
		return nil
	}
}

// Block is a hook that blocks until release is closed or ctx ends.
func Block(release <-chan struct{}) func(context.Context, *api.Task) error {
	return func(ctx context.Context, _ *api.Task) error {
		select {
		case <-release:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Engine is the simulated runtime of one node.
type Engine struct {
	mu         sync.Mutex
	containers map[string]*container // by task ID
	starts     map[string]int        // by task ID; survives removal
	hooks      Hooks
	logs       map[string][]*api.LogMessage // by task ID; survives removal
	// changed is closed (and replaced) when a log line is written or a
	// container changes phase, for readers that follow logs.
	changed chan struct{}
}

// changedLocked wakes the readers that follow logs.
func (e *Engine) changedLocked() {
	close(e.changed)
	e.changed = make(chan struct{})
}

type container struct {
	phase    exec.Phase
	exitCode int
	serial   int
	// exited is closed when a started container exits.
	exited chan struct{}
}

// NewEngine returns an engine with no containers.
func NewEngine() *Engine {
	return &Engine{
		containers: map[string]*container{}, starts: map[string]int{},
		logs: map[string][]*api.LogMessage{}, changed: make(chan struct{}),
	}
}

// SetHooks replaces the engine's hooks.
func (e *Engine) SetHooks(h Hooks) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.hooks = h
}

func (e *Engine) getHooks() Hooks {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.hooks
}

// Exit makes the running container of a task exit with code.
func (e *Engine) Exit(taskID string, code int) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	c := e.containers[taskID]
	if c == nil {
		return fmt.Errorf("task %s: %w", taskID, ErrNoSuchContainer)
	}
	if c.phase != exec.PhaseRunning {
		return fmt.Errorf("task %s: container is %s, not running", taskID, c.phase)
	}
	c.exit(code)
	e.changedLocked()
	return nil
}

// DeleteContainer removes a task's container behind the agent's back (as
// `docker rm -f` would).
func (e *Engine) DeleteContainer(taskID string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if c := e.containers[taskID]; c != nil {
		c.exit(ExitCodeTerminate)
		delete(e.containers, taskID)
		e.changedLocked()
	}
}

// Running lists the tasks whose containers run, sorted.
func (e *Engine) Running() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []string
	for id, c := range e.containers {
		if c.phase == exec.PhaseRunning {
			out = append(out, id)
		}
	}
	slices.Sort(out)
	return out
}

// Containers lists the tasks that have a container, sorted.
func (e *Engine) Containers() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]string, 0, len(e.containers))
	for id := range e.containers {
		out = append(out, id)
	}
	slices.Sort(out)
	return out
}

// Starts is how many times a task's container was started.
func (e *Engine) Starts(taskID string) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.starts[taskID]
}

// State is the state of a task's container.
func (e *Engine) State(taskID string) exec.RuntimeState {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.stateLocked(taskID)
}

func (e *Engine) stateLocked(taskID string) exec.RuntimeState {
	c := e.containers[taskID]
	if c == nil {
		return exec.RuntimeState{Phase: exec.PhaseAbsent}
	}
	return exec.RuntimeState{
		Phase:    c.phase,
		ExitCode: c.exitCode,
		Container: &api.ContainerStatus{
			ContainerId: containerID(taskID),
			Pid:         int32(c.serial),
			ExitCode:    int32(c.exitCode),
		},
	}
}

func containerID(taskID string) string { return "testexec-" + taskID }

func (c *container) exit(code int) {
	if c.phase != exec.PhaseRunning {
		return
	}
	c.phase, c.exitCode = exec.PhaseExited, code
	close(c.exited)
}

// Executor is an exec.Executor over an Engine.
type Executor struct {
	eng  *Engine
	mu   sync.Mutex
	desc *api.NodeDescription
}

// New returns an executor over a new engine, describing the node as desc
// (nil: DefaultDescription).
func New(desc *api.NodeDescription) *Executor { return NewEngine().Executor(desc) }

// Executor returns a new executor over e: a restarted node sees the
// containers the previous executor left.
func (e *Engine) Executor(desc *api.NodeDescription) *Executor {
	if desc == nil {
		desc = DefaultDescription("testexec")
	}
	return &Executor{eng: e, desc: proto.Clone(desc).(*api.NodeDescription)}
}

// DefaultDescription describes a linux/amd64 node with 4 CPUs and 8 GiB.
func DefaultDescription(hostname string) *api.NodeDescription {
	return &api.NodeDescription{
		Hostname:  hostname,
		Platform:  &api.Platform{Os: "linux", Architecture: "amd64"},
		Resources: &api.Resources{NanoCpus: 4e9, MemoryBytes: 8 << 30},
		Engine:    &api.EngineDescription{EngineVersion: "testexec"},
	}
}

// Engine is the executor's engine.
func (x *Executor) Engine() *Engine { return x.eng }

// SetDescription changes what Describe returns.
func (x *Executor) SetDescription(desc *api.NodeDescription) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.desc = proto.Clone(desc).(*api.NodeDescription)
}

// Describe returns the node's description.
func (x *Executor) Describe(context.Context) (*api.NodeDescription, error) {
	x.mu.Lock()
	defer x.mu.Unlock()
	return proto.Clone(x.desc).(*api.NodeDescription), nil
}

// Controller returns the controller of t's simulated container.
func (x *Executor) Controller(t *api.Task) (exec.Controller, error) {
	if t.GetId() == "" {
		return nil, errors.New("testexec: task without ID")
	}
	return &controller{eng: x.eng, id: t.GetId(), task: proto.Clone(t).(*api.Task)}, nil
}

// controller acts on one task's container. It implements exec.Inspector.
type controller struct {
	eng *Engine
	id  string

	mu     sync.Mutex
	task   *api.Task
	closed bool
}

var (
	_ exec.Inspector      = (*controller)(nil)
	_ exec.LogsController = (*controller)(nil)
)

func (c *controller) current() (*api.Task, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, ErrClosed
	}
	return c.task, nil
}

func (c *controller) Update(_ context.Context, t *api.Task) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return ErrClosed
	}
	c.task = proto.Clone(t).(*api.Task)
	return nil
}

func (c *controller) Prepare(ctx context.Context) error {
	t, err := c.current()
	if err != nil {
		return err
	}
	e := c.eng
	e.mu.Lock()
	_, exists := e.containers[c.id]
	hook := e.hooks.Prepare
	e.mu.Unlock()
	if exists {
		return exec.ErrTaskPrepared
	}
	if hook != nil {
		if err := hook(ctx, t); err != nil {
			return err
		}
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if _, ok := e.containers[c.id]; ok {
		return exec.ErrTaskPrepared
	}
	e.containers[c.id] = &container{phase: exec.PhaseCreated}
	e.changedLocked()
	return nil
}

func (c *controller) Start(ctx context.Context) error {
	t, err := c.current()
	if err != nil {
		return err
	}
	e := c.eng
	if err := c.startable(); err != nil {
		return err
	}
	h := e.getHooks()
	if h.Start != nil {
		if err := h.Start(ctx, t); err != nil {
			return err
		}
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if err := c.startableLocked(); err != nil {
		return err
	}
	ct := e.containers[c.id]
	e.starts[c.id]++
	ct.phase, ct.serial, ct.exited = exec.PhaseRunning, e.starts[c.id], make(chan struct{})
	if h.Exit != nil {
		if code, exits := h.Exit(t); exits {
			ct.exit(code)
		}
	}
	e.changedLocked()
	return nil
}

func (c *controller) startable() error {
	c.eng.mu.Lock()
	defer c.eng.mu.Unlock()
	return c.startableLocked()
}

func (c *controller) startableLocked() error {
	ct := c.eng.containers[c.id]
	switch {
	case ct == nil:
		return fmt.Errorf("start task %s: %w", c.id, ErrNoSuchContainer)
	case ct.phase != exec.PhaseCreated:
		return exec.ErrTaskStarted
	}
	return nil
}

func (c *controller) Wait(ctx context.Context) error {
	if _, err := c.current(); err != nil {
		return err
	}
	e := c.eng
	e.mu.Lock()
	ct := e.containers[c.id]
	if ct == nil {
		e.mu.Unlock()
		return fmt.Errorf("wait for task %s: %w", c.id, ErrNoSuchContainer)
	}
	if ct.phase == exec.PhaseCreated {
		e.mu.Unlock()
		return fmt.Errorf("wait for task %s: %w", c.id, ErrNotStarted)
	}
	exited := ct.exited
	e.mu.Unlock()
	select {
	case <-exited:
	case <-ctx.Done():
		return ctx.Err()
	}
	e.mu.Lock()
	code := ct.exitCode
	e.mu.Unlock()
	if code != 0 {
		return &exec.ExitError{Code: code}
	}
	return nil
}

func (c *controller) Shutdown(context.Context) error { return c.stop(ExitCodeShutdown) }

func (c *controller) Terminate(context.Context) error { return c.stop(ExitCodeTerminate) }

func (c *controller) stop(code int) error {
	if _, err := c.current(); err != nil {
		return err
	}
	c.eng.mu.Lock()
	defer c.eng.mu.Unlock()
	if ct := c.eng.containers[c.id]; ct != nil {
		ct.exit(code)
		c.eng.changedLocked()
	}
	return nil
}

func (c *controller) Remove(context.Context) error {
	if _, err := c.current(); err != nil {
		return err
	}
	c.eng.DeleteContainer(c.id)
	return nil
}

func (c *controller) Inspect(context.Context) (exec.RuntimeState, error) {
	if _, err := c.current(); err != nil {
		return exec.RuntimeState{}, err
	}
	return c.eng.State(c.id), nil
}

func (c *controller) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	return nil
}

// WriteLog records a line the task's container wrote on stream (stdout or
// stderr), timestamped now; controllers following the task's logs get it
// at once.
func (e *Engine) WriteLog(taskID string, stream api.LogStream, data string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.logs[taskID] = append(e.logs[taskID], &api.LogMessage{
		Context:   &api.LogContext{TaskId: taskID},
		Timestamp: timestamppb.Now(),
		Stream:    stream,
		Data:      []byte(data),
	})
	e.changedLocked()
}

// Logs publishes the lines the task's container wrote that opts selects
// (streams, since, tail) (exec.LogsController). With follow it then
// publishes new lines as they are written, until the container has run and
// stopped (exited or was removed) or ctx ends.
func (c *controller) Logs(ctx context.Context, publish exec.LogPublisher, opts *api.LogSubscriptionOptions) error {
	t, err := c.current()
	if err != nil {
		return err
	}
	e := c.eng
	e.mu.Lock()
	next := 0
	if n, tail := len(e.logs[c.id]), int(opts.GetTail()); tail > 0 && tail < n {
		next = n - tail
	}
	e.mu.Unlock()
	for {
		e.mu.Lock()
		all := e.logs[c.id]
		lines := all[next:]
		next = len(all)
		changed := e.changed
		ct := e.containers[c.id]
		ended := (ct != nil && ct.phase == exec.PhaseExited) || (ct == nil && e.starts[c.id] > 0)
		e.mu.Unlock()
		for _, l := range lines {
			if !wanted(l, opts) {
				continue
			}
			m := proto.CloneOf(l)
			m.Context = &api.LogContext{ServiceId: t.GetServiceId(), NodeId: t.GetNodeId(), TaskId: c.id}
			if err := publish.Publish(ctx, m); err != nil {
				return fmt.Errorf("testexec: publish logs of task %s: %w", c.id, err)
			}
		}
		if !opts.GetFollow() || ended {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return nil
		}
	}
}

// wanted reports whether opts selects line by stream and time.
func wanted(line *api.LogMessage, opts *api.LogSubscriptionOptions) bool {
	if s := opts.GetStreams(); len(s) > 0 && !slices.Contains(s, line.GetStream()) {
		return false
	}
	if since := opts.GetSince(); since != nil && line.GetTimestamp().AsTime().Before(since.AsTime()) {
		return false
	}
	return true
}
