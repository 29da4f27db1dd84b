package dispatcher

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/openswarm/swarmd/api"
	"github.com/openswarm/swarmd/manager/state/store"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// LeaderTrailer names the trailer a manager that does not lead sets to the
// leader's address, so an agent goes there directly.
const LeaderTrailer = "swarmd-leader"

// Defaults, as docker's where docker has one.
const (
	// DefaultHeartbeatPeriod is how often agents heartbeat, unless the
	// cluster's DispatcherConfig says otherwise.
	DefaultHeartbeatPeriod = 5 * time.Second
	// DefaultGracePeriodMultiplier: a node that has not heartbeated for
	// this many periods is DOWN.
	DefaultGracePeriodMultiplier = 3
	// DefaultAssignmentBatchDelay is how long an Assignments stream
	// collects store changes before sending them as one change set.
	DefaultAssignmentBatchDelay = 20 * time.Millisecond
	// DefaultMaxMessageBytes bounds an AssignmentsMessage (gRPC refuses
	// messages over 4 MiB by default).
	DefaultMaxMessageBytes = 1 << 20
	// DefaultMaxStatusBatch bounds the writes one flush takes.
	DefaultMaxStatusBatch = 10000
)

// Config configures a dispatcher. Zero fields take the defaults.
type Config struct {
	// HeartbeatPeriod is the period agents are told to heartbeat at when
	// the cluster object sets none (Spec.Dispatcher.HeartbeatPeriod).
	HeartbeatPeriod time.Duration
	// GracePeriodMultiplier: a node silent for HeartbeatPeriod times this
	// goes DOWN.
	GracePeriodMultiplier int
	// Clock drives every timer (heartbeat deadlines, batching delays).
	Clock  clockwork.Clock
	Logger *slog.Logger
	// NodeIdentity returns the caller's node ID from its verified
	// certificate; nothing the caller says about itself is trusted. The
	// default refuses every caller.
	NodeIdentity func(ctx context.Context) (string, error)
	// Managers lists the managers agents may connect to. It is polled every
	// heartbeat period and whenever a node's role changes; agents are sent
	// the list when it changes.
	Managers func() []*api.WeightedPeer
	// LeaderAddr is the leader's address, for agents that called a manager
	// whose dispatcher does not run.
	LeaderAddr func() string

	// AssignmentBatchDelay is how long an Assignments stream collects
	// changes after the first one before sending them (default
	// DefaultAssignmentBatchDelay; negative: send at once).
	AssignmentBatchDelay time.Duration
	// StatusBatchDelay is how long the writer waits after the first queued
	// write before flushing, to gather more (default 0: a flush starts as
	// soon as the previous one ended, and takes everything queued while it
	// ran). Negative is 0.
	StatusBatchDelay time.Duration
	// MaxStatusBatch bounds the writes (task states and node states) one
	// flush takes (default DefaultMaxStatusBatch).
	MaxStatusBatch int
	// MaxMessageBytes bounds the encoded size of one AssignmentsMessage
	// (default DefaultMaxMessageBytes); a change set is cut into pages.
	MaxMessageBytes int
	// Metrics, if set, count sessions and heartbeats (nil: no metrics).
	Metrics *Metrics
}

func (c Config) withDefaults() Config {
	if c.HeartbeatPeriod <= 0 {
		c.HeartbeatPeriod = DefaultHeartbeatPeriod
	}
	if c.GracePeriodMultiplier <= 0 {
		c.GracePeriodMultiplier = DefaultGracePeriodMultiplier
	}
	if c.Clock == nil {
		c.Clock = clockwork.NewRealClock()
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.NodeIdentity == nil {
		c.NodeIdentity = func(context.Context) (string, error) {
			return "", errors.New("no node identity configured")
		}
	}
	if c.Managers == nil {
		c.Managers = func() []*api.WeightedPeer { return nil }
	}
	if c.LeaderAddr == nil {
		c.LeaderAddr = func() string { return "" }
	}
	if c.AssignmentBatchDelay == 0 {
		c.AssignmentBatchDelay = DefaultAssignmentBatchDelay
	}
	if c.StatusBatchDelay < 0 {
		c.StatusBatchDelay = 0
	}
	if c.MaxStatusBatch <= 0 {
		c.MaxStatusBatch = DefaultMaxStatusBatch
	}
	if c.MaxMessageBytes <= 0 {
		c.MaxMessageBytes = DefaultMaxMessageBytes
	}
	return c
}

// Dispatcher serves agents: api.DispatcherServer. It answers only while Run
// runs (on the leader); Run may be called again after it returned (a new
// term of leadership), with fresh state.
type Dispatcher struct {
	api.UnimplementedDispatcherServer
	store *store.MemoryStore
	cfg   Config
	log   *slog.Logger

	mu  sync.Mutex
	run *run // nil unless Run runs
}

// New prepares a dispatcher over s; Run starts it.
func New(s *store.MemoryStore, cfg Config) *Dispatcher {
	cfg = cfg.withDefaults()
	return &Dispatcher{store: s, cfg: cfg, log: cfg.Logger.With("module", "dispatcher")}
}

// errWatchClosed: the store closed the dispatcher's watch (store closed,
// or the watch fell too far behind).
var errWatchClosed = errors.New("dispatcher: store watch closed")

// Run serves agents until ctx ends, Stop is called, or the store's watch
// closes (then it returns errWatchClosed). Every node the store does not
// already call DOWN gets one full grace period from now to reach this
// dispatcher before it is judged (swarmkit#2293: a leader change must not
// mark healthy nodes UNKNOWN or DOWN). Nothing is written about nodes when
// Run starts or stops.
func (d *Dispatcher) Run(ctx context.Context) error {
	r, err := d.start(ctx)
	if err != nil {
		return err
	}
	<-r.ctx.Done()
	r.shutdown()
	d.mu.Lock()
	d.run = nil
	d.mu.Unlock()
	close(r.done)
	if err := context.Cause(r.ctx); errors.Is(err, errWatchClosed) {
		return err
	}
	return nil
}

// Stop stops Run, if it runs, and waits until it returned.
func (d *Dispatcher) Stop() {
	d.mu.Lock()
	r := d.run
	d.mu.Unlock()
	if r != nil {
		r.cancel(nil)
		<-r.done
	}
}

// start sets up a run: the store watch first, so that no change after the
// snapshot the run starts from is missed, then deadlines for known nodes,
// then the goroutines.
func (d *Dispatcher) start(ctx context.Context) (*run, error) {
	rctx, cancel := context.WithCancelCause(ctx)
	r := &run{
		d: d, ctx: rctx, cancel: cancel, done: make(chan struct{}),
		hub: newHub(), mesh: newMeshFeed(), networks: newNetworksFeed(),
	}
	r.reg = newRegistry()
	r.w = newWriter(d.store, d.cfg, d.log)
	events, cancelWatch := d.store.WatchBatches(store.MatchKind(store.KindNode, store.KindTask, store.KindSecret, store.KindConfig, store.KindCluster))

	var nodes []*api.Node
	d.store.View(func(tx store.ReadTx) {
		nodes, _ = store.FindNodes(tx, store.All)
		clusters, _ := store.FindClusters(tx, store.All)
		if len(clusters) > 0 {
			r.setCluster(clusters[0])
		}
	})
	r.managers.Store(&managerList{peers: d.cfg.Managers()})
	now, grace := d.cfg.Clock.Now(), r.grace()
	watched := 0
	r.reg.mu.Lock()
	for _, n := range nodes {
		if n.GetStatus().GetState() != api.NodeStatus_DOWN {
			r.reg.live.beat(n.GetId(), now, grace)
			watched++
		}
	}
	r.reg.mu.Unlock()

	d.mu.Lock()
	if d.run != nil {
		d.mu.Unlock()
		cancelWatch()
		cancel(nil)
		return nil, errors.New("dispatcher: already running")
	}
	d.run = r
	d.mu.Unlock()

	// The tickers start now, not whenever their goroutines get to run.
	sweeper := d.cfg.Clock.NewTicker(sweepInterval(r.heartbeatPeriod()))
	poller := d.cfg.Clock.NewTicker(r.heartbeatPeriod())
	r.wg.Add(4)
	go func() { defer r.wg.Done(); r.w.run(rctx) }()
	go func() { defer r.wg.Done(); r.runHub(events, cancelWatch) }()
	go func() { defer r.wg.Done(); r.runSweeper(sweeper) }()
	go func() { defer r.wg.Done(); r.runManagersPoll(poller) }()
	meshEvents, cancelMesh := d.store.WatchBatches(store.MatchKind(store.KindService, store.KindTask, store.KindNode))
	r.wg.Add(1)
	go func() { defer r.wg.Done(); r.runMesh(meshEvents, cancelMesh) }()
	netEvents, cancelNets := d.store.WatchBatches(store.MatchKind(store.KindTask, store.KindNode))
	r.wg.Add(1)
	go func() { defer r.wg.Done(); r.runNetworks(netEvents, cancelNets) }()
	d.log.Info("dispatcher started", "nodes_watched", watched, "grace", grace)
	return r, nil
}

// run is the state of one Run: everything is fresh for each term.
type run struct {
	d      *Dispatcher
	ctx    context.Context
	cancel context.CancelCauseFunc
	done   chan struct{} // closed when Run returns
	wg     sync.WaitGroup

	reg  *registry
	hub  *hub
	w    *writer
	mesh *feed[*api.MeshMessage]
	// networks holds the overlay networks' endpoints (networks.go).
	networks *feed[*networksTable]

	period   atomic.Int64 // heartbeat period (ns) from the cluster object, 0: the configured one
	cluster  atomic.Pointer[clusterInfo]
	managers atomic.Pointer[managerList]
}

// clusterInfo is what sessions carry of the cluster object.
type clusterInfo struct {
	keys   []*api.EncryptionKey
	rootCA []byte
	// removed holds the IDs of nodes removed from the cluster
	// (BlacklistedCertificates): they may not open a session.
	removed map[string]struct{}
}

type managerList struct{ peers []*api.WeightedPeer }

func (r *run) shutdown() {
	r.wg.Wait()
	ended := r.reg.endAll()
	r.d.cfg.Metrics.sessionsAdded(-len(ended))
	for _, s := range ended {
		s.end(errStopped)
	}
	r.d.log.Info("dispatcher stopped")
}

func (r *run) heartbeatPeriod() time.Duration {
	if p := time.Duration(r.period.Load()); p > 0 {
		return p
	}
	return r.d.cfg.HeartbeatPeriod
}

func (r *run) grace() time.Duration {
	return r.heartbeatPeriod() * time.Duration(r.d.cfg.GracePeriodMultiplier)
}

// setCluster takes the heartbeat period and what sessions carry from the
// cluster object, and reports whether the latter changed.
func (r *run) setCluster(c *api.Cluster) bool {
	r.period.Store(int64(c.GetSpec().GetDispatcher().GetHeartbeatPeriod().AsDuration()))
	next := &clusterInfo{keys: c.GetNetworkBootstrapKeys(), rootCA: c.GetRootCa().GetCaCert(), removed: map[string]struct{}{}}
	for _, id := range c.GetBlacklistedCertificates() {
		next.removed[id] = struct{}{}
	}
	old := r.cluster.Swap(next)
	if old == nil {
		return true
	}
	if string(old.rootCA) != string(next.rootCA) || len(old.keys) != len(next.keys) {
		return true
	}
	for i := range old.keys {
		if !proto.Equal(old.keys[i], next.keys[i]) {
			return true
		}
	}
	return false
}

// runSweeper marks DOWN the nodes whose heartbeat deadline passed, checking
// a few times per period (following the cluster's period).
func (r *run) runSweeper(t clockwork.Ticker) {
	interval := sweepInterval(r.heartbeatPeriod())
	defer t.Stop()
	for {
		select {
		case <-r.ctx.Done():
			return
		case <-t.Chan():
			r.sweep()
			if next := sweepInterval(r.heartbeatPeriod()); next != interval {
				interval = next
				t.Reset(interval)
			}
		}
	}
}

func sweepInterval(period time.Duration) time.Duration {
	return max(period/4, 10*time.Millisecond)
}

// sweep ends the sessions of expired nodes and queues their DOWN writes
// (under the registry lock, so that they are ordered with registrations).
func (r *run) sweep() {
	now := r.d.cfg.Clock.Now()
	r.reg.mu.Lock()
	down := r.reg.live.expired(now)
	var (
		ended []*session
		gen   *flushGen
	)
	for _, id := range down {
		if s := r.reg.sessions[id]; s != nil {
			delete(r.reg.sessions, id)
			ended = append(ended, s)
		}
		gen = r.w.queueNode(id, nodeWrite{message: msgHeartbeatFailure})
	}
	r.reg.mu.Unlock()
	r.d.cfg.Metrics.sessionsAdded(-len(ended))
	for _, s := range ended {
		s.end(errExpired)
	}
	if len(down) == 0 {
		return
	}
	for _, id := range down {
		r.d.log.Info("node down: no heartbeat within the grace period", "node.id", id)
	}
	r.wg.Add(1)
	go func() { defer r.wg.Done(); r.retryDown(gen, down) }()
}

// retryDown waits for the flush of DOWN writes and, if it failed, watches
// the nodes again (those that did not come back meanwhile) so that the
// next sweep after one more period marks them again.
func (r *run) retryDown(gen *flushGen, nodes []string) {
	select {
	case <-gen.done:
	case <-r.ctx.Done():
		return
	}
	if gen.err == nil || r.ctx.Err() != nil {
		return
	}
	now, period := r.d.cfg.Clock.Now(), r.heartbeatPeriod()
	r.reg.mu.Lock()
	defer r.reg.mu.Unlock()
	for _, id := range nodes {
		if r.reg.sessions[id] == nil && !r.reg.live.watching(id) {
			r.reg.live.beat(id, now, period)
		}
	}
}

// runManagersPoll refreshes the manager list every heartbeat period.
func (r *run) runManagersPoll(t clockwork.Ticker) {
	defer t.Stop()
	for {
		select {
		case <-r.ctx.Done():
			return
		case <-t.Chan():
			r.refreshManagers()
		}
	}
}

// refreshManagers polls the manager list and tells every session if it
// changed.
func (r *run) refreshManagers() {
	next := r.d.cfg.Managers()
	old := r.managers.Load()
	if old != nil && samePeers(old.peers, next) {
		return
	}
	r.managers.Store(&managerList{peers: next})
	for _, s := range r.reg.all() {
		s.notify(notifyManagers)
	}
}

func samePeers(a, b []*api.WeightedPeer) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !proto.Equal(a[i], b[i]) {
			return false
		}
	}
	return true
}

// current returns the running run, or an Unavailable error naming the
// leader (also in the LeaderTrailer trailer).
func (d *Dispatcher) current(ctx context.Context) (*run, error) {
	d.mu.Lock()
	r := d.run
	d.mu.Unlock()
	if r != nil && r.ctx.Err() == nil {
		return r, nil
	}
	if addr := d.cfg.LeaderAddr(); addr != "" {
		_ = grpc.SetTrailer(ctx, metadata.Pairs(LeaderTrailer, addr))
		return nil, status.Errorf(codes.Unavailable, "dispatcher: this manager does not lead; the leader is at %s", addr)
	}
	return nil, status.Error(codes.Unavailable, "dispatcher: this manager does not lead and no leader is known")
}

// identify returns the caller's node ID, from NodeIdentity only.
func (d *Dispatcher) identify(ctx context.Context) (string, error) {
	id, err := d.cfg.NodeIdentity(ctx)
	if err != nil {
		if _, ok := status.FromError(err); ok {
			return "", err
		}
		return "", status.Errorf(codes.Unauthenticated, "dispatcher: %v", err)
	}
	if id == "" {
		return "", status.Error(codes.Unauthenticated, "dispatcher: no node identity")
	}
	return id, nil
}

// Errors sessions and streams end with.
var (
	errStopped      = status.Error(codes.Unavailable, "dispatcher: stopped (leadership changed or manager stopping)")
	errReplaced     = status.Error(codes.Aborted, "dispatcher: session replaced by a newer session of this node")
	errExpired      = status.Error(codes.Aborted, "dispatcher: no heartbeat within the grace period; node marked down")
	errNodeRemoved  = status.Error(codes.PermissionDenied, "dispatcher: node was removed from the cluster")
	errSessionEnded = status.Error(codes.Aborted, "dispatcher: session ended")
	errInvalid      = status.Error(codes.NotFound, "dispatcher: session invalid")
)

// String describes the dispatcher for logs.
func (d *Dispatcher) String() string {
	d.mu.Lock()
	r := d.run
	d.mu.Unlock()
	if r == nil {
		return "dispatcher(stopped)"
	}
	return fmt.Sprintf("dispatcher(%d sessions)", len(r.reg.all()))
}
