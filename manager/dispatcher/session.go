package dispatcher

import (
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/openswarm/swarmd/api"
	"github.com/openswarm/swarmd/manager/state/store"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
)

// registry holds a run's sessions (at most one per node) and the
// heartbeat deadlines of the nodes it watches. A node keeps its deadline
// when its session ends: it goes DOWN only if it does not come back (to
// this or, after a leader change, the next dispatcher) within the grace
// period.
type registry struct {
	mu       sync.Mutex
	live     *liveness
	sessions map[string]*session // by node ID
}

func newRegistry() *registry {
	return &registry{live: newLiveness(), sessions: map[string]*session{}}
}

// current returns node's session if its ID is sid, else nil.
func (g *registry) current(node, sid string) *session {
	g.mu.Lock()
	defer g.mu.Unlock()
	if s := g.sessions[node]; s != nil && s.id == sid {
		return s
	}
	return nil
}

// session returns node's session, or nil.
func (g *registry) session(node string) *session {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.sessions[node]
}

// all returns every session.
func (g *registry) all() []*session {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := make([]*session, 0, len(g.sessions))
	for _, s := range g.sessions {
		out = append(out, s)
	}
	return out
}

// endAll forgets every session and returns them.
func (g *registry) endAll() []*session {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := make([]*session, 0, len(g.sessions))
	for id, s := range g.sessions {
		out = append(out, s)
		delete(g.sessions, id)
	}
	return out
}

// session is one agent session. Its streams (Session and Assignments) end
// when done is closed, with err.
type session struct {
	id, node string

	done chan struct{}
	once sync.Once
	err  error

	// flags say what the Session stream must send (notify*), signal wakes
	// it.
	flags  atomic.Uint32
	signal chan struct{}
}

// What a Session stream is told to send.
const (
	notifyNode uint32 = 1 << iota
	notifyManagers
	notifyCluster
)

func newSession(node string) *session {
	var b [16]byte
	_, _ = crand.Read(b[:]) // crypto/rand.Read never fails
	return &session{id: hex.EncodeToString(b[:]), node: node, done: make(chan struct{}), signal: make(chan struct{}, 1)}
}

// end ends the session's streams with err; only the first call counts.
func (s *session) end(err error) {
	s.once.Do(func() {
		s.err = err
		close(s.done)
	})
}

func (s *session) notify(f uint32) {
	s.flags.Or(f)
	select {
	case s.signal <- struct{}{}:
	default:
	}
}

// register starts a session for node, replacing (ending) any other it had,
// pushes its deadline back and queues its READY write, which gen reports.
func (r *run) register(node string, desc *api.NodeDescription, addr string) (*session, *flushGen) {
	s := newSession(node)
	now, grace := r.d.cfg.Clock.Now(), r.grace()
	r.reg.mu.Lock()
	old := r.reg.sessions[node]
	r.reg.sessions[node] = s
	r.reg.live.beat(node, now, grace)
	gen := r.w.queueNode(node, nodeWrite{ready: true, desc: desc, addr: addr})
	r.reg.mu.Unlock()
	if old != nil {
		old.end(errReplaced)
	} else {
		r.d.cfg.Metrics.sessionsAdded(1)
	}
	return s, gen
}

// unregister ends s; the node keeps its deadline.
func (r *run) unregister(s *session, err error) {
	r.reg.mu.Lock()
	mine := r.reg.sessions[s.node] == s
	if mine {
		delete(r.reg.sessions, s.node)
	}
	r.reg.mu.Unlock()
	if mine {
		r.d.cfg.Metrics.sessionsAdded(-1)
	}
	s.end(err)
}

// nodeRemoved forgets a node deleted from the store and ends its session.
func (r *run) nodeRemoved(node string) {
	r.reg.mu.Lock()
	r.reg.live.forget(node)
	s := r.reg.sessions[node]
	delete(r.reg.sessions, node)
	r.reg.mu.Unlock()
	if s != nil {
		r.d.cfg.Metrics.sessionsAdded(-1)
		s.end(errNodeRemoved)
	}
}

// peerAddr is the host the caller connects from.
func peerAddr(ctx context.Context) string {
	p, ok := peer.FromContext(ctx)
	if !ok || p.Addr == nil {
		return ""
	}
	if host, _, err := net.SplitHostPort(p.Addr.String()); err == nil {
		return host
	}
	return p.Addr.String()
}

// Session registers the calling node — its description, status READY at
// the address it calls from — and streams its node object, the manager
// list and the cluster's network keys and root CA: all of them first
// (with the session ID), then whatever changes. The session ends when the
// node opens another, misses its heartbeats, is removed, or the dispatcher
// stops. A node whose ID the cluster has blacklisted (removed nodes) is
// refused.
func (d *Dispatcher) Session(req *api.SessionRequest, stream api.Dispatcher_SessionServer) error {
	ctx := stream.Context()
	r, err := d.current(ctx)
	if err != nil {
		return err
	}
	node, err := d.identify(ctx)
	if err != nil {
		return err
	}
	if c := r.cluster.Load(); c != nil {
		if _, gone := c.removed[node]; gone {
			return errNodeRemoved
		}
	}
	addr := peerAddr(ctx)
	s, gen := r.register(node, req.GetDescription(), addr)
	// The session's other streams (Assignments) end with the reason this
	// one ends: errStopped when the dispatcher stops, so that the agent
	// looks for the new leader, errSessionEnded otherwise.
	endErr := errSessionEnded
	defer func() { r.unregister(s, endErr) }()
	if err := r.w.wait(ctx, gen, node); err != nil {
		return err
	}
	var n *api.Node
	d.store.View(func(tx store.ReadTx) { n = store.GetNode(tx, node) })
	if n == nil {
		return errNodeRemoved
	}
	d.log.Info("node session started", "node.id", node, "addr", addr)
	sent := versionOf(n)
	if err := stream.Send(r.sessionMessage(s, n)); err != nil {
		return err
	}
	for {
		select {
		case <-s.done:
			return s.err
		case <-r.ctx.Done():
			endErr = errStopped
			return errStopped
		case <-ctx.Done():
			return status.FromContextError(ctx.Err()).Err()
		case <-s.signal:
		}
		f := s.flags.Swap(0)
		var n *api.Node
		if f&notifyNode != 0 {
			d.store.View(func(tx store.ReadTx) { n = store.GetNode(tx, node) })
			if n == nil {
				return errNodeRemoved
			}
			if versionOf(n) == sent {
				n = nil
			} else {
				sent = versionOf(n)
			}
		}
		if n == nil && f&^notifyNode == 0 {
			continue
		}
		if err := stream.Send(r.sessionMessage(s, n)); err != nil {
			return err
		}
	}
}

// sessionMessage is a SessionMessage with n (may be nil) and the current
// manager list and cluster data.
func (r *run) sessionMessage(s *session, n *api.Node) *api.SessionMessage {
	m := &api.SessionMessage{SessionId: s.id, Node: n}
	if ml := r.managers.Load(); ml != nil {
		m.Managers = ml.peers
	}
	if c := r.cluster.Load(); c != nil {
		m.NetworkBootstrapKeys = c.keys
		m.RootCa = c.rootCA
	}
	return m
}

// Heartbeat pushes the calling node's deadline back by the grace period
// and returns the period to heartbeat at (slightly shortened, at random,
// so that agents spread out).
func (d *Dispatcher) Heartbeat(ctx context.Context, req *api.HeartbeatRequest) (*api.HeartbeatResponse, error) {
	r, err := d.current(ctx)
	if err != nil {
		return nil, err
	}
	node, err := d.identify(ctx)
	if err != nil {
		return nil, err
	}
	period := r.heartbeatPeriod()
	now := d.cfg.Clock.Now()
	r.reg.mu.Lock()
	if s := r.reg.sessions[node]; s == nil || s.id != req.GetSessionId() {
		r.reg.mu.Unlock()
		return nil, errInvalid
	}
	r.reg.live.beat(node, now, period*time.Duration(d.cfg.GracePeriodMultiplier))
	r.reg.mu.Unlock()
	d.cfg.Metrics.heartbeat()
	return &api.HeartbeatResponse{Period: durationpb.New(jitter(period))}, nil
}

// jitter shortens period by up to 5 %.
func jitter(period time.Duration) time.Duration {
	if j := int64(period / 20); j > 0 {
		return period - time.Duration(rand.Int64N(j))
	}
	return period
}

// session checks that sid is the calling node's current session.
func (d *Dispatcher) session(ctx context.Context, sid string) (*run, *session, error) {
	r, err := d.current(ctx)
	if err != nil {
		return nil, nil, err
	}
	node, err := d.identify(ctx)
	if err != nil {
		return nil, nil, err
	}
	s := r.reg.current(node, sid)
	if s == nil {
		return nil, nil, errInvalid
	}
	return r, s, nil
}

// waitErr turns a flush failure into a status error.
func waitErr(err error) error {
	if _, ok := status.FromError(err); ok {
		return err
	}
	return status.Errorf(codes.Unavailable, "dispatcher: store write failed: %v", err)
}
