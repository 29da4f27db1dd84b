package dispatcher

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/openswarm/swarmd/api"
	"github.com/openswarm/swarmd/manager/state/store"
	"github.com/openswarm/swarmd/manager/state/store/storetest"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// harness runs a dispatcher over a local store behind a real gRPC server on
// 127.0.0.1, with a fake clock. Callers say who they are in the "node-id"
// metadata: the tests' NodeIdentity reads it (a real manager reads the
// verified certificate).
type harness struct {
	t      testing.TB
	store  *store.MemoryStore
	clock  *clockwork.FakeClock
	d      *Dispatcher
	client api.DispatcherClient
	ctx    context.Context
	runErr chan error
	cancel context.CancelFunc
}

func testIdentity(ctx context.Context) (string, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	if v := md.Get("node-id"); len(v) == 1 && v[0] != "" {
		return v[0], nil
	}
	return "", errors.New("no node-id metadata")
}

// newHarness starts a dispatcher; seed writes the store's initial content
// before it starts. Assignment and status batching are off unless cfg
// turns them on.
func newHarness(t testing.TB, seed func(tx store.Tx) error, cfg func(*Config)) *harness {
	t.Helper()
	h := &harness{t: t, store: storetest.New(t, nil), clock: clockwork.NewFakeClock()}
	if seed != nil {
		if err := h.store.Update(context.Background(), seed); err != nil {
			t.Fatalf("seed store: %v", err)
		}
	}
	c := Config{
		Clock:                h.clock,
		Logger:               slog.New(slog.DiscardHandler),
		NodeIdentity:         testIdentity,
		AssignmentBatchDelay: -1,
	}
	if cfg != nil {
		cfg(&c)
	}
	h.d = New(h.store, c)

	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	api.RegisterDispatcherServer(srv, h.d)
	go func() { _ = srv.Serve(lis) }()
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	h.client = api.NewDispatcherClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	h.ctx, h.cancel = ctx, cancel
	t.Cleanup(func() {
		cancel()
		_ = conn.Close()
		srv.Stop()
		h.d.Stop()
	})
	h.start()
	return h
}

// start runs the dispatcher and waits until it serves.
func (h *harness) start() {
	h.runErr = make(chan error, 1)
	go func() { h.runErr <- h.d.Run(h.ctx) }()
	h.eventually("dispatcher running", func() bool {
		h.d.mu.Lock()
		defer h.d.mu.Unlock()
		return h.d.run != nil
	})
}

// eventually polls cond until it holds, failing the test after a while.
func (h *harness) eventually(what string, cond func() bool) {
	h.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			h.t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// advanceUntil advances the fake clock by step until cond holds. It is for
// batching delays, whose timers are armed by goroutines that may not have
// run yet when the clock first moves.
func (h *harness) advanceUntil(what string, step time.Duration, cond func() bool) {
	h.t.Helper()
	h.eventually(what, func() bool {
		if cond() {
			return true
		}
		h.clock.Advance(step)
		return cond()
	})
}

// as returns a context in which calls are made as node.
func (h *harness) as(node string) context.Context {
	return metadata.AppendToOutgoingContext(h.ctx, "node-id", node)
}

// agent is one simulated agent session.
type agent struct {
	h       *harness
	node    string
	ctx     context.Context
	cancel  context.CancelFunc
	stream  grpc.ServerStreamingClient[api.SessionMessage]
	session string
	first   *api.SessionMessage
	msgs    chan *api.SessionMessage
	ended   chan error
}

// connect opens a session for node and reads the first message.
func (h *harness) connect(node string, desc *api.NodeDescription) *agent {
	h.t.Helper()
	a, err := h.tryConnect(node, desc)
	if err != nil {
		h.t.Fatalf("session for %s: %v", node, err)
	}
	return a
}

func (h *harness) tryConnect(node string, desc *api.NodeDescription) (*agent, error) {
	ctx, cancel := context.WithCancel(h.as(node))
	stream, err := h.client.Session(ctx, &api.SessionRequest{Description: desc})
	if err != nil {
		cancel()
		return nil, err
	}
	first, err := stream.Recv()
	if err != nil {
		cancel()
		return nil, err
	}
	a := &agent{h: h, node: node, ctx: ctx, cancel: cancel, stream: stream, session: first.GetSessionId(), first: first,
		msgs: make(chan *api.SessionMessage, 100), ended: make(chan error, 1)}
	h.t.Cleanup(cancel)
	go func() {
		for {
			m, err := stream.Recv()
			if err != nil {
				a.ended <- err
				return
			}
			a.msgs <- m
		}
	}()
	return a, nil
}

func (a *agent) heartbeat() (*api.HeartbeatResponse, error) {
	return a.h.client.Heartbeat(a.h.as(a.node), &api.HeartbeatRequest{SessionId: a.session})
}

// next returns the next session message.
func (a *agent) next() *api.SessionMessage {
	a.h.t.Helper()
	select {
	case m := <-a.msgs:
		return m
	case err := <-a.ended:
		a.h.t.Fatalf("session of %s ended: %v", a.node, err)
	case <-time.After(10 * time.Second):
		a.h.t.Fatalf("no session message for %s", a.node)
	}
	return nil
}

// waitEnded returns the status code the session stream ended with.
func (a *agent) waitEnded() codes.Code {
	a.h.t.Helper()
	for {
		select {
		case <-a.msgs:
		case err := <-a.ended:
			return status.Code(err)
		case <-time.After(10 * time.Second):
			a.h.t.Fatalf("session of %s did not end", a.node)
			return codes.OK
		}
	}
}

func (h *harness) node(id string) *api.Node {
	var n *api.Node
	h.store.View(func(tx store.ReadTx) { n = store.GetNode(tx, id) })
	return n
}

func (h *harness) task(id string) *api.Task {
	var t *api.Task
	h.store.View(func(tx store.ReadTx) { t = store.GetTask(tx, id) })
	return t
}

func (h *harness) nodeState(id string) api.NodeStatus_State {
	return h.node(id).GetStatus().GetState()
}

func (h *harness) update(cb func(tx store.Tx) error) {
	h.t.Helper()
	if err := h.store.Update(context.Background(), cb); err != nil {
		h.t.Fatal(err)
	}
}

// assignments is an open Assignments stream, read into change sets.
type assignments struct {
	h    *harness
	sets chan changeSet
	errs chan error
}

type changeSet struct {
	typ       api.AssignmentsMessage_Type
	appliesTo string
	resultsIn string
	pages     int
	changes   []*api.AssignmentChange
}

func (a *agent) assignments() *assignments {
	a.h.t.Helper()
	stream, err := a.h.client.Assignments(a.ctx, &api.AssignmentsRequest{SessionId: a.session})
	if err != nil {
		a.h.t.Fatal(err)
	}
	as := &assignments{h: a.h, sets: make(chan changeSet, 100), errs: make(chan error, 1)}
	go func() {
		var cur *changeSet
		for {
			m, err := stream.Recv()
			if err != nil {
				as.errs <- err
				return
			}
			if cur == nil {
				cur = &changeSet{typ: m.GetType(), appliesTo: m.GetAppliesTo(), resultsIn: m.GetResultsIn()}
			} else if m.GetType() != cur.typ || m.GetAppliesTo() != cur.appliesTo || m.GetResultsIn() != cur.resultsIn {
				as.errs <- errors.New("pages of one change set disagree")
				return
			}
			cur.pages++
			cur.changes = append(cur.changes, m.GetChanges()...)
			if !m.GetMore() {
				as.sets <- *cur
				cur = nil
			}
		}
	}()
	return as
}

func (as *assignments) next() changeSet {
	as.h.t.Helper()
	select {
	case s := <-as.sets:
		return s
	case err := <-as.errs:
		as.h.t.Fatalf("assignments stream ended: %v", err)
	case <-time.After(10 * time.Second):
		as.h.t.Fatal("no change set")
	}
	return changeSet{}
}

func (as *assignments) waitEnded() error {
	as.h.t.Helper()
	for {
		select {
		case <-as.sets:
		case err := <-as.errs:
			return err
		case <-time.After(10 * time.Second):
			as.h.t.Fatal("assignments stream did not end")
			return nil
		}
	}
}
