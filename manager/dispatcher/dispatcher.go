// Package dispatcher is the leader's side of agent sessions: it registers
// nodes, watches their heartbeats (a node silent for its grace period goes
// DOWN), sends each node its assignments, and records the task states
// agents report, batched into few raft proposals.
package dispatcher

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/openswarm/swarmd/api"
	"github.com/openswarm/swarmd/manager/state/store"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// LeaderTrailer names the trailer a manager that does not lead sets to the
// leader's address, so an agent goes there directly.
const LeaderTrailer = "swarmd-leader"

// Defaults as docker's: a heartbeat every 5 s, a node down after 3 missed.
const (
	DefaultHeartbeatPeriod  = 5 * time.Second
	DefaultGraceMultiplier  = 3
	statusFlushInterval     = 20 * time.Millisecond
	maxStatusUpdatesPerTick = 2000
)

// Config configures a dispatcher.
type Config struct {
	HeartbeatPeriod time.Duration
	GraceMultiplier int
	Clock           clockwork.Clock
	Logger          *slog.Logger
	// NodeIdentity returns the caller's node ID from its verified
	// certificate; nothing the caller says about itself is trusted.
	NodeIdentity func(ctx context.Context) (string, error)
	// Managers lists the managers agents may connect to.
	Managers func() []*api.WeightedPeer
	// LeaderAddr is the leader's address, for agents that called a manager
	// whose dispatcher does not run.
	LeaderAddr func() string
}

// Dispatcher serves agents. It answers only while Run runs (on the leader).
type Dispatcher struct {
	api.UnimplementedDispatcherServer
	store *store.MemoryStore
	cfg   Config
	log   *slog.Logger

	mu       sync.Mutex
	runCtx   context.Context
	sessions map[string]*session // by node ID
	live     *liveness
	pending  map[string]*pendingStatus // task ID -> latest reported status
	flushed  chan struct{}             // closed and replaced after each flush
	halted   chan struct{}             // closed when Run returns
}

type session struct {
	id     string
	cancel context.CancelFunc
}

type pendingStatus struct {
	nodeID string
	status *api.TaskStatus
}

// New prepares a dispatcher.
func New(s *store.MemoryStore, cfg Config) *Dispatcher {
	if cfg.HeartbeatPeriod <= 0 {
		cfg.HeartbeatPeriod = DefaultHeartbeatPeriod
	}
	if cfg.GraceMultiplier <= 0 {
		cfg.GraceMultiplier = DefaultGraceMultiplier
	}
	if cfg.Clock == nil {
		cfg.Clock = clockwork.NewRealClock()
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Managers == nil {
		cfg.Managers = func() []*api.WeightedPeer { return nil }
	}
	if cfg.LeaderAddr == nil {
		cfg.LeaderAddr = func() string { return "" }
	}
	return &Dispatcher{store: s, cfg: cfg, log: cfg.Logger.With("module", "dispatcher"),
		sessions: map[string]*session{}, live: newLiveness(), pending: map[string]*pendingStatus{},
		flushed: make(chan struct{})}
}

func (d *Dispatcher) grace() time.Duration {
	return d.cfg.HeartbeatPeriod * time.Duration(d.cfg.GraceMultiplier)
}

// Run serves until ctx ends. Every node the store calls READY gets a full
// grace period from now to reach this dispatcher.
func (d *Dispatcher) Run(ctx context.Context) error {
	now := d.cfg.Clock.Now()
	var ready []*api.Node
	d.store.View(func(tx store.ReadTx) {
		nodes, _ := store.FindNodes(tx, store.All)
		for _, n := range nodes {
			if n.GetStatus().GetState() == api.NodeStatus_READY {
				ready = append(ready, n)
			}
		}
	})
	d.mu.Lock()
	d.runCtx = ctx
	d.halted = make(chan struct{})
	for _, n := range ready {
		d.live.beat(n.GetId(), now, d.grace())
	}
	d.mu.Unlock()
	d.log.Info("dispatcher started", "nodes_ready", len(ready), "grace", d.grace())
	defer d.stop()

	check := d.cfg.Clock.NewTicker(max(d.cfg.HeartbeatPeriod/4, 10*time.Millisecond))
	defer check.Stop()
	flush := d.cfg.Clock.NewTicker(statusFlushInterval)
	defer flush.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-check.Chan():
			d.markExpired(ctx)
		case <-flush.Chan():
			d.flushStatus(ctx)
		}
	}
}

func (d *Dispatcher) stop() {
	d.mu.Lock()
	defer d.mu.Unlock()
	for id, s := range d.sessions {
		s.cancel()
		delete(d.sessions, id)
	}
	d.runCtx = nil
	close(d.halted)
}

// running returns the run context, or an Unavailable error naming the leader.
func (d *Dispatcher) running(ctx context.Context) (context.Context, error) {
	d.mu.Lock()
	rc := d.runCtx
	d.mu.Unlock()
	if rc != nil {
		return rc, nil
	}
	if addr := d.cfg.LeaderAddr(); addr != "" {
		_ = grpc.SetTrailer(ctx, metadata.Pairs(LeaderTrailer, addr))
		return nil, status.Errorf(codes.Unavailable, "dispatcher: this manager does not lead; the leader is at %s", addr)
	}
	return nil, status.Error(codes.Unavailable, "dispatcher: this manager does not lead and no leader is known")
}

func (d *Dispatcher) markExpired(ctx context.Context) {
	d.mu.Lock()
	down := d.live.expired(d.cfg.Clock.Now())
	for _, id := range down {
		if s, ok := d.sessions[id]; ok {
			s.cancel()
			delete(d.sessions, id)
		}
	}
	d.mu.Unlock()
	if len(down) == 0 {
		return
	}
	err := d.store.Batch(ctx, func(b *store.Batch) error {
		for _, id := range down {
			if err := b.Update(func(tx store.Tx) error {
				n := store.GetNode(tx, id)
				if n == nil || n.GetStatus().GetState() == api.NodeStatus_DOWN {
					return nil
				}
				n.Status = &api.NodeStatus{State: api.NodeStatus_DOWN, Message: "heartbeat failure", Addr: n.GetStatus().GetAddr()}
				return tx.Update(n)
			}); err != nil {
				d.log.Warn("dispatcher: mark node down", "node.id", id, "error", err)
			}
		}
		return nil
	})
	if err != nil && ctx.Err() == nil {
		d.log.Error("dispatcher: mark nodes down", "error", err)
	}
	for _, id := range down {
		d.log.Info("node down: no heartbeat within the grace period", "node.id", id)
	}
}

func newSessionID() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b[:])
}

// checkSession returns the caller's node ID if sessionID is its current
// session.
func (d *Dispatcher) checkSession(ctx context.Context, sessionID string) (string, error) {
	if _, err := d.running(ctx); err != nil {
		return "", err
	}
	nodeID, err := d.cfg.NodeIdentity(ctx)
	if err != nil {
		return "", status.Errorf(codes.Unauthenticated, "dispatcher: %v", err)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	s, ok := d.sessions[nodeID]
	if !ok || s.id != sessionID {
		return "", status.Error(codes.NotFound, "dispatcher: session invalid")
	}
	return nodeID, nil
}

// Heartbeat pushes the node's deadline back.
func (d *Dispatcher) Heartbeat(ctx context.Context, req *api.HeartbeatRequest) (*api.HeartbeatResponse, error) {
	nodeID, err := d.checkSession(ctx, req.GetSessionId())
	if err != nil {
		return nil, err
	}
	d.mu.Lock()
	d.live.beat(nodeID, d.cfg.Clock.Now(), d.grace())
	d.mu.Unlock()
	return &api.HeartbeatResponse{Period: durationpb.New(d.cfg.HeartbeatPeriod)}, nil
}

// Session registers the node and streams its node object and the manager
// list until the session ends (replaced, expired, or the leader changes).
func (d *Dispatcher) Session(req *api.SessionRequest, stream api.Dispatcher_SessionServer) error {
	ctx := stream.Context()
	rc, err := d.running(ctx)
	if err != nil {
		return err
	}
	nodeID, err := d.cfg.NodeIdentity(ctx)
	if err != nil {
		return status.Errorf(codes.Unauthenticated, "dispatcher: %v", err)
	}
	addr := ""
	if p, ok := peer.FromContext(ctx); ok {
		if host, _, err := net.SplitHostPort(p.Addr.String()); err == nil {
			addr = host
		}
	}
	node, err := d.register(ctx, nodeID, req.GetDescription(), addr)
	if err != nil {
		return err
	}
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(rc, cancel)
	defer stop()
	s := &session{id: newSessionID(), cancel: cancel}
	d.mu.Lock()
	if old, ok := d.sessions[nodeID]; ok {
		old.cancel()
	}
	d.sessions[nodeID] = s
	d.live.beat(nodeID, d.cfg.Clock.Now(), d.grace())
	d.mu.Unlock()
	defer func() {
		d.mu.Lock()
		if cur, ok := d.sessions[nodeID]; ok && cur == s {
			delete(d.sessions, nodeID)
		}
		d.mu.Unlock()
	}()
	d.log.Info("node session started", "node.id", nodeID, "addr", addr)

	events, cancelWatch := d.store.Watch(func(e store.Event) bool {
		return e.Kind() == store.KindNode && e.Object != nil && e.Object.GetId() == nodeID
	})
	defer cancelWatch()
	send := func(n *api.Node) error {
		return stream.Send(&api.SessionMessage{SessionId: s.id, Node: n, Managers: d.cfg.Managers()})
	}
	if err := send(node); err != nil {
		return err
	}
	managers := d.cfg.Clock.NewTicker(d.cfg.HeartbeatPeriod)
	defer managers.Stop()
	for {
		select {
		case <-sctx.Done():
			return status.Error(codes.Unavailable, "dispatcher: session ended")
		case e, ok := <-events:
			if !ok {
				return status.Error(codes.Unavailable, "dispatcher: session ended")
			}
			n, _ := e.Object.(*api.Node)
			if n != nil && e.Action != store.EventRemove {
				if err := send(n); err != nil {
					return err
				}
			}
		case <-managers.Chan():
			if err := send(nil); err != nil {
				return err
			}
		}
	}
}

// register records the node's description and marks it READY.
func (d *Dispatcher) register(ctx context.Context, nodeID string, desc *api.NodeDescription, addr string) (*api.Node, error) {
	var out *api.Node
	err := d.store.Update(ctx, func(tx store.Tx) error {
		n := store.GetNode(tx, nodeID)
		if n == nil {
			return status.Errorf(codes.NotFound, "dispatcher: node %s is not a member of this cluster", nodeID)
		}
		if desc != nil {
			n.Description = desc
		}
		n.Status = &api.NodeStatus{State: api.NodeStatus_READY, Addr: addr}
		out = n
		return tx.Update(n)
	})
	if err != nil {
		if _, ok := status.FromError(err); ok {
			return nil, err
		}
		return nil, status.Errorf(codes.Unavailable, "dispatcher: register node: %v", err)
	}
	return out, nil
}

// UpdateTaskStatus queues the reported states of the caller's tasks and
// returns once a flush stored them.
func (d *Dispatcher) UpdateTaskStatus(ctx context.Context, req *api.UpdateTaskStatusRequest) (*api.UpdateTaskStatusResponse, error) {
	nodeID, err := d.checkSession(ctx, req.GetSessionId())
	if err != nil {
		return nil, err
	}
	var bad string
	d.store.View(func(tx store.ReadTx) {
		for _, u := range req.GetUpdates() {
			if t := store.GetTask(tx, u.GetTaskId()); t == nil || t.GetNodeId() != nodeID {
				bad = u.GetTaskId()
				return
			}
		}
	})
	if bad != "" {
		return nil, status.Errorf(codes.PermissionDenied, "dispatcher: task %s is not assigned to node %s", bad, nodeID)
	}
	d.mu.Lock()
	for _, u := range req.GetUpdates() {
		if p, ok := d.pending[u.GetTaskId()]; ok && !mayMove(p.status.GetState(), u.GetStatus().GetState()) {
			continue
		}
		d.pending[u.GetTaskId()] = &pendingStatus{nodeID: nodeID, status: u.GetStatus()}
	}
	flushed, halted := d.flushed, d.halted
	d.mu.Unlock()
	select {
	case <-flushed:
		return &api.UpdateTaskStatusResponse{}, nil
	case <-halted:
		return nil, status.Error(codes.Unavailable, "dispatcher: stopped before the task states were stored")
	case <-ctx.Done():
		return nil, status.FromContextError(ctx.Err()).Err()
	}
}

// flushStatus writes the queued task states in one batch.
func (d *Dispatcher) flushStatus(ctx context.Context) {
	d.mu.Lock()
	if len(d.pending) == 0 {
		d.mu.Unlock()
		return
	}
	pending := d.pending
	d.pending = map[string]*pendingStatus{}
	done := d.flushed
	d.flushed = make(chan struct{})
	d.mu.Unlock()
	defer close(done)
	err := d.store.Batch(ctx, func(b *store.Batch) error {
		for id, p := range pending {
			if err := b.Update(func(tx store.Tx) error {
				t := store.GetTask(tx, id)
				if t == nil || t.GetNodeId() != p.nodeID || !mayMove(t.GetStatus().GetState(), p.status.GetState()) {
					return nil
				}
				st := p.status
				if st.GetTimestamp() == nil {
					st.Timestamp = timestamppb.New(d.cfg.Clock.Now())
				}
				t.Status = st
				return tx.Update(t)
			}); err != nil && !errors.Is(err, store.ErrNotExist) {
				d.log.Warn("dispatcher: store task status", "task.id", id, "error", err)
			}
		}
		return nil
	})
	if err != nil && ctx.Err() == nil {
		d.log.Error("dispatcher: store task states", "error", err, "count", len(pending))
	}
}

// String describes the dispatcher for logs.
func (d *Dispatcher) String() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return fmt.Sprintf("dispatcher(%d sessions)", len(d.sessions))
}
