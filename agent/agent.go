// Package agent is the worker side of a node: it keeps one session with a
// manager's dispatcher, heartbeats on the period the dispatcher asks for,
// follows the manager list it is given, and reconnects with backoff to
// another manager when the session breaks.
//
// Given an executor, the agent also runs the node's tasks: beside each
// session it reads the dispatcher's Assignments stream, hands every change
// set to its worker (agent/worker), and sends the statuses the worker
// reports with UpdateTaskStatus on the current session; reports a session
// did not get acknowledged are sent on the next one. It also serves the log
// subscriptions of the manager's log broker: the logs of its tasks that
// docker service logs asks for (logs.go).
package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/openswarm/swarmd/agent/exec"
	"github.com/openswarm/swarmd/agent/worker"
	"github.com/openswarm/swarmd/api"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// Config configures an agent.
type Config struct {
	// Remotes are the managers to pick from.
	Remotes *Remotes
	// Credentials secure the connection (the node's mTLS identity).
	Credentials credentials.TransportCredentials
	// Description describes this node to the dispatcher, unless Executor
	// is set and describes it (then Description is the fallback when
	// Executor.Describe fails).
	Description func() *api.NodeDescription
	Clock       clockwork.Clock
	Logger      *slog.Logger
	// MaxBackoff bounds the wait between reconnections (default 8s).
	MaxBackoff time.Duration
	// OnNode, if set, is called with every node object the dispatcher sends.
	OnNode func(*api.Node)

	// Executor runs the node's tasks; nil: the agent runs none (and does
	// not ask for assignments).
	Executor exec.Executor
	// WorkerDBPath is the worker's task DB (a node's is
	// <state-dir>/worker/tasks.db); empty keeps it in memory, so nothing
	// survives a restart (simulated nodes). Used only with an Executor.
	WorkerDBPath string
	// DialOptions are added to the options of connections to managers.
	DialOptions []grpc.DialOption

	// MeshTunnel is the address of this node's routing mesh tunnel,
	// advertised in its description.
	MeshTunnel string
	// OnMesh, if set, receives the routing mesh's table each time the
	// dispatcher sends it (the Mesh stream runs beside the session).
	OnMesh func([]*api.MeshPort)
	// OnTaskStatus, if set, sees each status the node's worker reports for
	// a task, when it reports it (before the manager hears of it).
	OnTaskStatus func(taskID string, st *api.TaskStatus)
	// OnNetworks, if set, receives the endpoints of the overlay networks
	// each time the dispatcher sends them (the Networks stream runs beside
	// the session; each call has the complete set).
	OnNetworks func([]*api.NetworkPeers)
}

// Agent keeps the node's session with the managers.
type Agent struct {
	cfg   Config
	log   *slog.Logger
	ready chan struct{}
	once  sync.Once

	// worker and reporter run tasks; nil without an executor.
	worker   *worker.Worker
	reporter *worker.Reporter
	// taskEvents wakes log subscriptions that follow (logs.go) after each
	// change set the worker applied.
	taskEvents taskNotifier

	mu        sync.Mutex
	node      *api.Node
	sessionID string
	manager   string
}

// New checks the configuration and prepares an agent; Run starts it.
func New(cfg Config) (*Agent, error) {
	if cfg.Remotes == nil || len(cfg.Remotes.Addrs()) == 0 {
		return nil, errors.New("agent: no manager to connect to")
	}
	if cfg.Credentials == nil {
		return nil, errors.New("agent: no transport credentials")
	}
	if cfg.Description == nil {
		cfg.Description = func() *api.NodeDescription { return &api.NodeDescription{} }
	}
	if cfg.Clock == nil {
		cfg.Clock = clockwork.NewRealClock()
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.MaxBackoff == 0 {
		cfg.MaxBackoff = 8 * time.Second
	}
	a := &Agent{cfg: cfg, log: cfg.Logger.With("module", "agent"), ready: make(chan struct{})}
	if cfg.Executor != nil {
		a.reporter = worker.NewReporter(worker.ReporterConfig{Clock: cfg.Clock, Logger: cfg.Logger, OnReport: cfg.OnTaskStatus})
		w, err := worker.New(worker.Config{
			Executor: cfg.Executor, DBPath: cfg.WorkerDBPath, Reporter: a.reporter,
			Clock: cfg.Clock, Logger: cfg.Logger,
		})
		if err != nil {
			return nil, fmt.Errorf("agent: %w", err)
		}
		a.worker = w
	}
	return a, nil
}

// Worker is the agent's worker, nil if it runs no tasks.
func (a *Agent) Worker() *worker.Worker { return a.worker }

// Ready is closed once the first session is established.
func (a *Agent) Ready() <-chan struct{} { return a.ready }

// Node is the node object as the dispatcher last sent it.
func (a *Agent) Node() *api.Node {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.node == nil {
		return nil
	}
	return proto.Clone(a.node).(*api.Node)
}

// Managers lists the managers the agent knows.
func (a *Agent) Managers() []string { return a.cfg.Remotes.Addrs() }

// Manager is the address of the manager of the current session.
func (a *Agent) Manager() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.manager
}

// Run keeps a session open until ctx ends. With an executor, it first
// starts the worker (which re-adopts the tasks of its task DB), and stops
// it on return; the tasks themselves keep running. An agent runs once.
func (a *Agent) Run(ctx context.Context) error {
	if a.worker != nil {
		stop, err := a.startWorker(ctx)
		if err != nil {
			return err
		}
		defer stop()
	}
	rnd := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))
	cs := newConns(append([]grpc.DialOption{grpc.WithTransportCredentials(a.cfg.Credentials)}, a.cfg.DialOptions...))
	defer cs.closeAll()
	backoff := time.Duration(0)
	var last, redirect string
	for ctx.Err() == nil {
		addr, _ := a.cfg.Remotes.Select(last)
		if redirect != "" {
			addr, redirect = redirect, ""
		}
		started := a.cfg.Clock.Now()
		err := a.runSession(ctx, cs, addr)
		if ctx.Err() != nil {
			break
		}
		var moved *leaderElsewhere
		if errors.As(err, &moved) && moved.addr != addr {
			// The manager does not lead and named the one that does.
			a.cfg.Remotes.Observe(moved.addr, true)
			redirect = moved.addr
			continue
		}
		established := errors.Is(err, errSessionEnded)
		if established {
			// A session that was up ended: the manager went away or
			// broke it off; the next attempt to it starts afresh.
			cs.drop(addr)
		} else {
			cs.failed(addr)
		}
		a.cfg.Remotes.Observe(addr, established)
		last = addr
		if established && a.cfg.Clock.Since(started) > a.cfg.MaxBackoff {
			backoff = 0
		}
		backoff = nextBackoff(backoff, a.cfg.MaxBackoff)
		wait := backoff/2 + time.Duration(rnd.Int64N(int64(backoff/2)+1))
		a.log.Warn("agent: session with manager ended; reconnecting", "manager", addr, "error", err, "retry_in", wait)
		select {
		case <-a.cfg.Clock.After(wait):
		case <-ctx.Done():
		}
	}
	return nil
}

// startWorker runs the worker until stop is called, once it has restored
// the tasks of its DB.
func (a *Agent) startWorker(ctx context.Context) (stop func(), err error) {
	wctx, cancel := context.WithCancel(ctx)
	werr := make(chan error, 1)
	go func() { werr <- a.worker.Run(wctx) }()
	select {
	case <-a.worker.Ready():
	case err := <-werr:
		cancel()
		return nil, fmt.Errorf("agent: %w", err)
	}
	return func() {
		cancel()
		if err := <-werr; err != nil {
			a.log.Error("agent: worker stopped with an error", "error", err)
		}
	}, nil
}

var errSessionEnded = errors.New("session ended")

// leaderTrailer is the trailer in which a manager that does not lead names
// the leader (the dispatcher's LeaderTrailer).
const leaderTrailer = "swarmd-leader"

// leaderElsewhere is a session refused by a manager that does not lead.
type leaderElsewhere struct {
	addr string
	err  error
}

func (e *leaderElsewhere) Error() string {
	return fmt.Sprintf("manager does not lead; leader at %s: %v", e.addr, e.err)
}

func (e *leaderElsewhere) Unwrap() error { return e.err }

func nextBackoff(cur, maxWait time.Duration) time.Duration {
	if cur == 0 {
		return 100 * time.Millisecond
	}
	return min(2*cur, maxWait)
}

// runSession opens a session with one manager and serves it until it breaks.
// It returns an error wrapping errSessionEnded if the session was
// established first.
func (a *Agent) runSession(ctx context.Context, cs *conns, addr string) error {
	conn, err := cs.get(addr, a.cfg.Remotes.Addrs())
	if err != nil {
		return err
	}
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	client := api.NewDispatcherClient(conn)
	stream, err := client.Session(sctx, &api.SessionRequest{Description: a.describe(sctx)})
	if err != nil {
		return fmt.Errorf("open session: %w", err)
	}
	msg, err := stream.Recv()
	if err != nil {
		if l := stream.Trailer().Get(leaderTrailer); len(l) > 0 && l[0] != "" {
			return &leaderElsewhere{addr: l[0], err: err}
		}
		return fmt.Errorf("open session: %w", err)
	}
	a.update(addr, msg)
	a.once.Do(func() { close(a.ready) })
	a.log.Info("agent: session established", "manager", addr, "node.id", msg.GetNode().GetId())
	err = a.serveSession(sctx, cancel, client, api.NewLogBrokerClient(conn), stream, addr, msg.GetSessionId())
	return fmt.Errorf("%w: %w", errSessionEnded, err)
}

// serveSession serves an established session until it breaks, and returns
// why. Beside the session stream run the heartbeats and, with a worker,
// the Assignments stream, the status reports and the log subscriptions
// (logs.go): the first of them but the logs to fail ends the session
// (cancel), and its error is the one returned.
func (a *Agent) serveSession(ctx context.Context, cancel context.CancelFunc, client api.DispatcherClient,
	logs api.LogBrokerClient, stream grpc.ServerStreamingClient[api.SessionMessage], addr, sid string,
) error {
	var (
		wg    sync.WaitGroup
		first sync.Once
		cause error
	)
	// What fails after the first failure fails because the session ended.
	fail := func(err error) {
		first.Do(func() { cause = err })
		cancel()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		fail(fmt.Errorf("heartbeat: %w", a.heartbeat(ctx, client, sid)))
	}()
	if a.cfg.OnMesh != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := a.mesh(ctx, client, sid); err != nil {
				fail(fmt.Errorf("mesh: %w", err))
			}
		}()
	}
	if a.cfg.OnNetworks != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := a.networks(ctx, client, sid); err != nil {
				fail(fmt.Errorf("networks: %w", err))
			}
		}()
	}
	if a.worker != nil {
		wg.Add(3)
		go func() {
			defer wg.Done()
			fail(fmt.Errorf("assignments: %w", a.assignments(ctx, client, sid)))
		}()
		go func() {
			defer wg.Done()
			_ = a.reporter.Run(ctx, statusSender(client, sid))
		}()
		go func() {
			defer wg.Done()
			a.serveLogs(ctx, logs)
		}()
	}
	for {
		msg, err := stream.Recv()
		if err != nil {
			fail(err)
			break
		}
		a.update(addr, msg)
	}
	wg.Wait()
	return cause
}

// describe describes the node: through the executor if there is one.
func (a *Agent) describe(ctx context.Context) *api.NodeDescription {
	var d *api.NodeDescription
	if a.cfg.Executor != nil {
		ed, err := a.cfg.Executor.Describe(ctx)
		if err == nil {
			d = ed
		} else {
			a.log.Warn("agent: executor cannot describe the node; using the configured description", "error", err)
		}
	}
	if d == nil && a.cfg.Description != nil {
		d = a.cfg.Description()
	}
	if a.cfg.MeshTunnel != "" {
		if d == nil {
			d = &api.NodeDescription{}
		}
		d = proto.CloneOf(d)
		d.MeshTunnel = a.cfg.MeshTunnel
	}
	return d
}

// mesh reads the session's Mesh stream into OnMesh until the stream ends.
// A manager without the Mesh stream is not an error: the node serves no
// mesh through it.
func (a *Agent) mesh(ctx context.Context, client api.DispatcherClient, session string) error {
	stream, err := client.Mesh(ctx, &api.MeshRequest{SessionId: session})
	if err != nil {
		return err
	}
	for {
		msg, err := stream.Recv()
		if status.Code(err) == codes.Unimplemented {
			a.log.Warn("agent: the manager serves no routing mesh table")
			return nil
		}
		if err != nil {
			return err
		}
		a.cfg.OnMesh(msg.GetPorts())
	}
}

// assignments reads the session's Assignments stream and hands each
// change set to the worker, until the stream or the worker fails.
func (a *Agent) assignments(ctx context.Context, client api.DispatcherClient, session string) error {
	stream, err := client.Assignments(ctx, &api.AssignmentsRequest{SessionId: session})
	if err != nil {
		return err
	}
	var as assembler
	for {
		m, err := stream.Recv()
		if err != nil {
			return err
		}
		set, err := as.add(m)
		if err != nil {
			return err
		}
		if set == nil {
			continue
		}
		if set.complete {
			err = a.worker.Assign(ctx, set.changes)
		} else {
			err = a.worker.Update(ctx, set.changes)
		}
		if err != nil {
			return fmt.Errorf("apply change set %s: %w", m.GetResultsIn(), err)
		}
		a.taskEvents.notify()
	}
}

// statusSender sends task status reports on a session.
func statusSender(client api.DispatcherClient, session string) worker.Sender {
	return func(ctx context.Context, updates []*worker.Update) error {
		_, err := client.UpdateTaskStatus(ctx, &api.UpdateTaskStatusRequest{SessionId: session, Updates: updates})
		return err
	}
}

func (a *Agent) update(addr string, msg *api.SessionMessage) {
	a.mu.Lock()
	if msg.GetNode() != nil {
		a.node = msg.GetNode()
	}
	a.sessionID = msg.GetSessionId()
	a.manager = addr
	a.mu.Unlock()
	if msg.GetNode() != nil && a.cfg.OnNode != nil {
		a.cfg.OnNode(msg.GetNode())
	}
	if ms := msg.GetManagers(); len(ms) > 0 {
		addrs := make([]string, 0, len(ms))
		for _, m := range ms {
			addrs = append(addrs, m.GetAddr())
		}
		a.cfg.Remotes.Replace(addrs)
	}
}

// heartbeat beats on the period the dispatcher asks for until it fails.
func (a *Agent) heartbeat(ctx context.Context, client api.DispatcherClient, session string) error {
	for {
		resp, err := client.Heartbeat(ctx, &api.HeartbeatRequest{SessionId: session})
		if err != nil {
			return err
		}
		period := resp.GetPeriod().AsDuration()
		if period <= 0 {
			period = time.Second
		}
		select {
		case <-a.cfg.Clock.After(period):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}
