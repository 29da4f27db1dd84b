// Package logbroker routes task logs from the nodes that hold them to the
// clients that ask for them (docker service logs).
//
// A client calls Logs.SubscribeLogs with a selector (services, nodes,
// tasks) and options. The broker resolves the selector against the store
// into the set of nodes involved, gives the subscription a unique ID and
// sends it to each of those nodes on its LogBroker.ListenSubscriptions
// stream (every agent keeps one per session, identified by its
// certificate). The agents publish the matching lines with
// LogBroker.PublishLogs; the broker hands them to the client.
//
// Without follow, SubscribeLogs ends once every node involved closed its
// part. A node that is not connected, or whose connection breaks before it
// closed its part, does not hold the subscription up: what arrived is sent
// and the call ends with codes.Unavailable and a message naming each node
// that could not be read. With follow, the subscription lasts until the
// client leaves; nodes that get a matching task later are sent the
// subscription as the store reports the task, and nodes that connect (or
// reconnect) later are sent the subscriptions that concern them.
//
// The broker serves only while Run runs, on the leader; elsewhere its
// methods return codes.Unavailable. Forward makes a Logs server for a
// manager's local socket that relays SubscribeLogs to the leader.
package logbroker

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/openswarm/swarmd/api"
	"github.com/openswarm/swarmd/manager/state/store"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// Config configures a broker.
type Config struct {
	Logger *slog.Logger
	// NodeIdentity returns the caller's node ID from its verified
	// certificate. The default refuses every caller.
	NodeIdentity func(ctx context.Context) (string, error)
	// LeaderAddr is the leader's address, named in the error a manager
	// that does not lead returns.
	LeaderAddr func() string
}

// Broker is the log broker: api.LogsServer for clients and
// api.LogBrokerServer for agents. It answers only while Run runs.
type Broker struct {
	api.UnimplementedLogsServer
	api.UnimplementedLogBrokerServer

	store *store.MemoryStore
	cfg   Config
	log   *slog.Logger

	mu  sync.Mutex
	run *run // nil unless Run runs
}

// New returns a broker over s; Run starts it.
func New(s *store.MemoryStore, cfg Config) *Broker {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.NodeIdentity == nil {
		cfg.NodeIdentity = func(context.Context) (string, error) {
			return "", errors.New("no node identity configured")
		}
	}
	if cfg.LeaderAddr == nil {
		cfg.LeaderAddr = func() string { return "" }
	}
	return &Broker{store: s, cfg: cfg, log: cfg.Logger.With("module", "logbroker")}
}

// Errors subscriptions and streams end with.
var (
	errStopped  = status.Error(codes.Unavailable, "logbroker: stopped (leadership changed or manager stopping)")
	errReplaced = status.Error(codes.Aborted, "logbroker: replaced by a newer subscription stream of this node")
)

// Run serves until ctx ends; each run starts with no subscription. Every
// stream open when it returns ends with codes.Unavailable.
func (b *Broker) Run(ctx context.Context) error {
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	r := &run{
		ctx: rctx, done: make(chan struct{}),
		subs: map[string]*subscription{}, listeners: map[string]*listener{},
	}
	b.mu.Lock()
	if b.run != nil {
		b.mu.Unlock()
		return errors.New("logbroker: already running")
	}
	b.run = r
	b.mu.Unlock()
	b.log.Info("logbroker started")
	<-rctx.Done()
	b.mu.Lock()
	b.run = nil
	b.mu.Unlock()
	close(r.done)
	b.log.Info("logbroker stopped")
	return nil
}

// current returns the running run, or an Unavailable error naming the
// leader.
func (b *Broker) current() (*run, error) {
	b.mu.Lock()
	r := b.run
	b.mu.Unlock()
	if r != nil && r.ctx.Err() == nil {
		return r, nil
	}
	if addr := b.cfg.LeaderAddr(); addr != "" {
		return nil, status.Errorf(codes.Unavailable, "logbroker: this manager does not lead; the leader is at %s", addr)
	}
	return nil, status.Error(codes.Unavailable, "logbroker: this manager does not lead and no leader is known")
}

// Running reports whether the broker serves (Run runs).
func (b *Broker) Running() bool {
	_, err := b.current()
	return err == nil
}

// Listening reports whether a node has a ListenSubscriptions stream open.
func (b *Broker) Listening(node string) bool {
	r, err := b.current()
	if err != nil {
		return false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.listeners[node] != nil
}

// identify returns the caller's node ID, from NodeIdentity only.
func (b *Broker) identify(ctx context.Context) (string, error) {
	id, err := b.cfg.NodeIdentity(ctx)
	if err != nil {
		if _, ok := status.FromError(err); ok {
			return "", err
		}
		return "", status.Errorf(codes.Unauthenticated, "logbroker: %v", err)
	}
	if id == "" {
		return "", status.Error(codes.Unauthenticated, "logbroker: no node identity")
	}
	return id, nil
}

// run is the state of one Run.
type run struct {
	ctx  context.Context
	done chan struct{}

	mu        sync.Mutex
	subs      map[string]*subscription
	listeners map[string]*listener // by node ID
}

// partState is where a node is with its part of a subscription.
type partState int

const (
	partPending partState = iota // sent (or to be sent) to the node
	partClosed                   // the node published everything
	partFailed                   // the node could not be read
)

// subscription is one SubscribeLogs call. Its fields are guarded by the
// run's mutex, except msgs and changed (channels).
type subscription struct {
	msg    *api.SubscriptionMessage
	follow bool
	parts  map[string]partState // by node ID
	errs   map[string]string    // by node ID: why its part failed

	msgs    chan []*api.LogMessage // to the client
	changed chan struct{}          // a part closed or failed; capacity 1
	done    chan struct{}          // closed when SubscribeLogs returns
}

func (s *subscription) notify() {
	select {
	case s.changed <- struct{}{}:
	default:
	}
}

// completeLocked reports whether a subscription without follow has every
// part closed or failed.
func (s *subscription) completeLocked() bool {
	for _, p := range s.parts {
		if p == partPending {
			return false
		}
	}
	return true
}

// listener is a node's ListenSubscriptions stream. Messages are queued
// without bound so that the broker never blocks on a slow node while it
// holds its lock; a subscription message is small and a node gets one per
// subscription.
type listener struct {
	node  string
	queue []*api.SubscriptionMessage
	wake  chan struct{} // capacity 1
	end   chan error    // capacity 1: ends the stream with the error
}

func (l *listener) sendLocked(m *api.SubscriptionMessage) {
	l.queue = append(l.queue, m)
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

// newID returns a random subscription ID.
func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// SubscribeLogs streams the logs the request selects (api.LogsServer).
func (b *Broker) SubscribeLogs(req *api.SubscribeLogsRequest, stream grpc.ServerStreamingServer[api.SubscribeLogsMessage]) error {
	r, err := b.current()
	if err != nil {
		return err
	}
	sel := req.GetSelector()
	if len(sel.GetServiceIds()) == 0 && len(sel.GetNodeIds()) == 0 && len(sel.GetTaskIds()) == 0 {
		return status.Error(codes.InvalidArgument, "logbroker: the selector selects nothing")
	}
	ctx := stream.Context()
	follow := req.GetOptions().GetFollow()
	sub := &subscription{
		msg: &api.SubscriptionMessage{
			Id:       newID(),
			Selector: proto.CloneOf(sel),
			Options:  proto.CloneOf(req.GetOptions()),
		},
		follow:  follow,
		parts:   map[string]partState{},
		errs:    map[string]string{},
		msgs:    make(chan []*api.LogMessage, 64),
		changed: make(chan struct{}, 1),
		done:    make(chan struct{}),
	}
	if sub.msg.Options == nil {
		sub.msg.Options = &api.LogSubscriptionOptions{}
	}

	var nodes []string
	var events <-chan store.Event
	resolve := func(tx store.ReadTx) error {
		var err error
		nodes, err = resolveNodes(tx, sel)
		return err
	}
	if follow {
		var cancelWatch func()
		events, cancelWatch, err = b.store.ViewAndWatch(resolve, store.MatchKind(store.KindTask))
		if err != nil {
			return status.Errorf(codes.Internal, "logbroker: resolve selector: %v", err)
		}
		defer cancelWatch()
	} else {
		b.store.View(func(tx store.ReadTx) { err = resolve(tx) })
		if err != nil {
			return status.Errorf(codes.Internal, "logbroker: resolve selector: %v", err)
		}
	}

	log := b.log.With("subscription.id", sub.msg.GetId())
	r.mu.Lock()
	r.subs[sub.msg.GetId()] = sub
	for _, n := range nodes {
		r.addNodeLocked(sub, n)
	}
	sub.notify() // a subscription of no node is complete at once
	r.mu.Unlock()
	log.Debug("logbroker: subscription started", "nodes", nodes, "follow", follow)
	defer r.endSubscription(sub)

	for {
		select {
		case batch := <-sub.msgs:
			if err := stream.Send(&api.SubscribeLogsMessage{Messages: batch}); err != nil {
				return err
			}
		case <-sub.changed:
			if follow {
				continue
			}
			r.mu.Lock()
			complete := sub.completeLocked()
			r.mu.Unlock()
			if complete {
				return b.finish(sub, stream)
			}
		case ev, ok := <-events:
			if !ok {
				return status.Error(codes.Unavailable, "logbroker: store watch closed")
			}
			r.taskEvent(sub, ev)
		case <-ctx.Done():
			return ctx.Err()
		case <-r.ctx.Done():
			return errStopped
		}
	}
}

// finish sends what is left of a complete subscription and returns its
// outcome: nil, or Unavailable naming every node that could not be read.
func (b *Broker) finish(sub *subscription, stream grpc.ServerStreamingServer[api.SubscribeLogsMessage]) error {
	for more := true; more; {
		select {
		case batch := <-sub.msgs:
			if err := stream.Send(&api.SubscribeLogsMessage{Messages: batch}); err != nil {
				return err
			}
		default:
			more = false
		}
	}
	// The parts cannot change any more: every one is closed or failed.
	if len(sub.errs) == 0 {
		return nil
	}
	reasons := make([]string, 0, len(sub.errs))
	for _, why := range sub.errs {
		reasons = append(reasons, why)
	}
	sort.Strings(reasons)
	return status.Errorf(codes.Unavailable,
		"warning: incomplete log stream. some logs could not be retrieved for the following reasons: %s",
		strings.Join(reasons, ", "))
}

// resolveNodes returns the nodes that hold (or held) the tasks sel
// selects, sorted.
func resolveNodes(tx store.ReadTx, sel *api.LogSelector) ([]string, error) {
	set := map[string]struct{}{}
	for _, n := range sel.GetNodeIds() {
		set[n] = struct{}{}
	}
	for _, id := range sel.GetServiceIds() {
		tasks, err := store.FindTasks(tx, store.ByServiceID(id))
		if err != nil {
			return nil, fmt.Errorf("tasks of service %s: %w", id, err)
		}
		for _, t := range tasks {
			if n := t.GetNodeId(); n != "" {
				set[n] = struct{}{}
			}
		}
	}
	for _, id := range sel.GetTaskIds() {
		if t := store.GetTask(tx, id); t != nil && t.GetNodeId() != "" {
			set[t.GetNodeId()] = struct{}{}
		}
	}
	out := make([]string, 0, len(set))
	for n := range set {
		out = append(out, n)
	}
	slices.Sort(out)
	return out, nil
}

// selectsTask reports whether sel selects t by service or task ID.
func selectsTask(sel *api.LogSelector, t *api.Task) bool {
	return slices.Contains(sel.GetServiceIds(), t.GetServiceId()) || slices.Contains(sel.GetTaskIds(), t.GetId())
}

// addNodeLocked makes node part of sub and sends it the subscription. A
// node that is not connected fails its part at once, unless the
// subscription follows: then it gets the subscription when it connects.
func (r *run) addNodeLocked(sub *subscription, node string) {
	if _, ok := sub.parts[node]; ok {
		return
	}
	sub.parts[node] = partPending
	if l := r.listeners[node]; l != nil {
		l.sendLocked(sub.msg)
		return
	}
	if !sub.follow {
		r.failLocked(sub, node, fmt.Sprintf("node %s is not available", node))
	}
}

func (r *run) failLocked(sub *subscription, node, why string) {
	if sub.parts[node] != partPending {
		return
	}
	sub.parts[node] = partFailed
	sub.errs[node] = why
	sub.notify()
}

// taskEvent adds the node of a task the store reports to a following
// subscription that selects it.
func (r *run) taskEvent(sub *subscription, ev store.Event) {
	t, ok := ev.Object.(*api.Task)
	if !ok || ev.Action == store.EventRemove || t.GetNodeId() == "" || !selectsTask(sub.msg.GetSelector(), t) {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.addNodeLocked(sub, t.GetNodeId())
}

// endSubscription forgets sub and tells the nodes still working on it to
// stop.
func (r *run) endSubscription(sub *subscription) {
	close(sub.done)
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.subs, sub.msg.GetId())
	closeMsg := &api.SubscriptionMessage{Id: sub.msg.GetId(), Close: true}
	for node, p := range sub.parts {
		if l := r.listeners[node]; l != nil && p == partPending {
			l.sendLocked(closeMsg)
		}
	}
}

// ListenSubscriptions sends the calling node the subscriptions that
// concern it until it leaves (api.LogBrokerServer). A node has one such
// stream: a newer one replaces it.
func (b *Broker) ListenSubscriptions(_ *api.ListenSubscriptionsRequest, stream grpc.ServerStreamingServer[api.SubscriptionMessage]) error {
	r, err := b.current()
	if err != nil {
		return err
	}
	node, err := b.identify(stream.Context())
	if err != nil {
		return err
	}
	l := &listener{node: node, wake: make(chan struct{}, 1), end: make(chan error, 1)}
	r.mu.Lock()
	if old := r.listeners[node]; old != nil {
		old.end <- errReplaced
	}
	r.listeners[node] = l
	for _, sub := range r.subs {
		if p, ok := sub.parts[node]; ok && p == partPending {
			l.sendLocked(sub.msg)
		}
	}
	r.mu.Unlock()
	b.log.Debug("logbroker: node listens for subscriptions", "node.id", node)
	defer r.unlisten(l)

	for {
		select {
		case <-l.wake:
		case err := <-l.end:
			return err
		case <-stream.Context().Done():
			return stream.Context().Err()
		case <-r.ctx.Done():
			return errStopped
		}
		r.mu.Lock()
		queue := l.queue
		l.queue = nil
		r.mu.Unlock()
		for _, m := range queue {
			if err := stream.Send(m); err != nil {
				return err
			}
		}
	}
}

// unlisten forgets a node's stream: the parts it had not closed of
// subscriptions without follow fail; following ones wait for the node to
// come back.
func (r *run) unlisten(l *listener) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.listeners[l.node] != l {
		return
	}
	delete(r.listeners, l.node)
	for _, sub := range r.subs {
		if !sub.follow {
			r.failLocked(sub, l.node, fmt.Sprintf("node %s disconnected", l.node))
		}
	}
}

// PublishLogs takes the log lines a node publishes (api.LogBrokerServer).
// The node may publish only for subscriptions it was sent, only lines of
// its own tasks (LogContext.NodeId), and nothing after it closed its part.
// A stream that ends before the node closed its part of a subscription
// without follow fails that part.
func (b *Broker) PublishLogs(stream grpc.ClientStreamingServer[api.PublishLogsMessage, api.PublishLogsResponse]) error {
	r, err := b.current()
	if err != nil {
		return err
	}
	ctx := stream.Context()
	node, err := b.identify(ctx)
	if err != nil {
		return err
	}
	open := map[string]*subscription{} // published to, not closed
	defer func() {
		r.mu.Lock()
		defer r.mu.Unlock()
		for _, sub := range open {
			if !sub.follow {
				r.failLocked(sub, node, fmt.Sprintf("node %s stopped publishing before it was done", node))
			}
		}
	}()
	for {
		m, err := stream.Recv()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return stream.SendAndClose(&api.PublishLogsResponse{})
			}
			return err
		}
		sub, err := r.accept(node, m)
		if err != nil {
			return err
		}
		open[m.GetSubscriptionId()] = sub
		if len(m.GetMessages()) > 0 {
			select {
			case sub.msgs <- m.GetMessages():
			case <-sub.done:
				return status.Errorf(codes.NotFound, "logbroker: subscription %s ended", m.GetSubscriptionId())
			case <-ctx.Done():
				return ctx.Err()
			case <-r.ctx.Done():
				return errStopped
			}
		}
		if m.GetClose() {
			delete(open, m.GetSubscriptionId())
			r.mu.Lock()
			if sub.parts[node] == partPending {
				sub.parts[node] = partClosed
				sub.notify()
			}
			r.mu.Unlock()
		}
	}
}

// accept checks a message a node publishes and returns its subscription.
// Lines that do not name the node as their origin are refused, and fail
// the node's part of the subscription.
func (r *run) accept(node string, m *api.PublishLogsMessage) (*subscription, error) {
	id := m.GetSubscriptionId()
	r.mu.Lock()
	defer r.mu.Unlock()
	sub := r.subs[id]
	if sub == nil {
		return nil, status.Errorf(codes.NotFound, "logbroker: no subscription %s", id)
	}
	switch p, ok := sub.parts[node]; {
	case !ok:
		return nil, status.Errorf(codes.PermissionDenied, "logbroker: subscription %s was not sent to node %s", id, node)
	case p != partPending:
		return nil, status.Errorf(codes.FailedPrecondition, "logbroker: node %s already ended its part of subscription %s", node, id)
	}
	for _, lm := range m.GetMessages() {
		if got := lm.GetContext().GetNodeId(); got != node {
			r.failLocked(sub, node, fmt.Sprintf("node %s published log messages of another node", node))
			return nil, status.Errorf(codes.PermissionDenied,
				"logbroker: node %s published a log message of node %q", node, got)
		}
	}
	return sub, nil
}
