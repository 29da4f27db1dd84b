package logbroker

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/openswarm/swarmd/api"
	"github.com/openswarm/swarmd/manager/state/store"
	"github.com/openswarm/swarmd/manager/state/store/storetest"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// harness runs a broker over a local store behind a real gRPC server.
// Callers say which node they are in the "node-id" metadata: the tests'
// NodeIdentity reads it (a manager reads the verified certificate).
type harness struct {
	t      *testing.T
	ctx    context.Context
	store  *store.MemoryStore
	b      *Broker
	conn   *grpc.ClientConn
	stopFn context.CancelFunc
	runErr chan error
}

func testIdentity(ctx context.Context) (string, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	if v := md.Get("node-id"); len(v) == 1 && v[0] != "" {
		return v[0], nil
	}
	return "", errors.New("no node-id metadata")
}

// newHarness seeds the store with the tasks (service ID, task ID, node ID
// triples) and starts the broker unless stopped.
func newHarness(t *testing.T, running bool, tasks ...[3]string) *harness {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	h := &harness{t: t, ctx: ctx, store: storetest.New(t, nil)}
	for _, tk := range tasks {
		h.addTask(tk[0], tk[1], tk[2])
	}
	h.b = New(h.store, Config{Logger: slog.New(slog.DiscardHandler), NodeIdentity: testIdentity})
	h.conn = serve(t, func(s *grpc.Server) {
		api.RegisterLogsServer(s, h.b)
		api.RegisterLogBrokerServer(s, h.b)
	})
	if running {
		h.start()
	}
	return h
}

func (h *harness) start() {
	rctx, stop := context.WithCancel(h.ctx)
	h.stopFn, h.runErr = stop, make(chan error, 1)
	go func() { h.runErr <- h.b.Run(rctx) }()
	h.t.Cleanup(h.stop)
	waitFor(h.t, "broker running", h.b.Running)
}

func (h *harness) stop() {
	if h.stopFn != nil {
		h.stopFn()
		<-h.runErr
		h.stopFn = nil
	}
}

// serve starts a gRPC server with the services register registers and
// returns a client connection to it.
func serve(t *testing.T, register func(*grpc.Server)) *grpc.ClientConn {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	register(srv)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond) // polling, not synchronisation
	}
}

func (h *harness) addTask(service, id, node string) {
	h.t.Helper()
	err := h.store.Update(context.Background(), func(tx store.Tx) error {
		return tx.Create(&api.Task{Id: id, ServiceId: service, NodeId: node})
	})
	if err != nil {
		h.t.Fatalf("create task %s: %v", id, err)
	}
}

func (h *harness) nodeCtx(node string) context.Context {
	return metadata.AppendToOutgoingContext(h.ctx, "node-id", node)
}

// listen opens a node's ListenSubscriptions stream; cancel closes it.
func (h *harness) listen(node string) (grpc.ServerStreamingClient[api.SubscriptionMessage], context.CancelFunc) {
	h.t.Helper()
	ctx, cancel := context.WithCancel(h.nodeCtx(node))
	s, err := api.NewLogBrokerClient(h.conn).ListenSubscriptions(ctx, &api.ListenSubscriptionsRequest{})
	if err != nil {
		h.t.Fatalf("listen as %s: %v", node, err)
	}
	h.t.Cleanup(cancel)
	// The stream is registered once the server runs the handler: wait
	// until the broker knows the node.
	waitFor(h.t, "listener of "+node, func() bool { return h.b.Listening(node) })
	return s, cancel
}

// subscribe starts SubscribeLogs and returns the stream.
func (h *harness) subscribe(sel *api.LogSelector, follow bool) grpc.ServerStreamingClient[api.SubscribeLogsMessage] {
	h.t.Helper()
	s, err := api.NewLogsClient(h.conn).SubscribeLogs(h.ctx, &api.SubscribeLogsRequest{
		Selector: sel, Options: &api.LogSubscriptionOptions{Follow: follow},
	})
	if err != nil {
		h.t.Fatalf("subscribe: %v", err)
	}
	return s
}

func recvSub(t *testing.T, s grpc.ServerStreamingClient[api.SubscriptionMessage]) *api.SubscriptionMessage {
	t.Helper()
	m, err := s.Recv()
	if err != nil {
		t.Fatalf("receive subscription: %v", err)
	}
	return m
}

func line(node, task, text string) *api.LogMessage {
	return &api.LogMessage{
		Context: &api.LogContext{NodeId: node, TaskId: task, ServiceId: "svc"},
		Stream:  api.LogStream_LOG_STREAM_STDOUT,
		Data:    []byte(text),
	}
}

// publish sends the messages as node on a new PublishLogs stream and
// returns the stream's outcome.
func (h *harness) publish(node string, msgs ...*api.PublishLogsMessage) error {
	s, err := api.NewLogBrokerClient(h.conn).PublishLogs(h.nodeCtx(node))
	if err != nil {
		return err
	}
	for _, m := range msgs {
		if err := s.Send(m); err != nil {
			break // the server ended the stream; CloseAndRecv says why
		}
	}
	_, err = s.CloseAndRecv()
	return err
}

// drain reads a client stream to its end: the lines it got, and the error
// it ended with (nil for a clean end).
func drain(s grpc.ServerStreamingClient[api.SubscribeLogsMessage]) ([]string, error) {
	var lines []string
	for {
		m, err := s.Recv()
		if errors.Is(err, io.EOF) {
			return lines, nil
		}
		if err != nil {
			return lines, err
		}
		for _, lm := range m.GetMessages() {
			lines = append(lines, string(lm.GetData()))
		}
	}
}

func TestSubscribeWithoutFollow(t *testing.T) {
	tasks := [][3]string{{"svc", "t1", "n1"}, {"svc", "t2", "n2"}, {"other", "t3", "n3"}}
	tests := []struct {
		name      string
		listening []string // nodes with a ListenSubscriptions stream
		drop      string   // a node that disconnects after it got the subscription
		wantLines []string
		wantCode  codes.Code
		wantMsg   string
	}{
		{name: "every node closes", listening: []string{"n1", "n2"}, wantLines: []string{"n1-a", "n1-b", "n2-a", "n2-b"}},
		{name: "node not connected", listening: []string{"n1"}, wantLines: []string{"n1-a", "n1-b"},
			wantCode: codes.Unavailable, wantMsg: "incomplete log stream. some logs could not be retrieved for the following reasons: node n2 is not available"},
		{name: "node disconnects", listening: []string{"n1", "n2"}, drop: "n2", wantLines: []string{"n1-a", "n1-b"},
			wantCode: codes.Unavailable, wantMsg: "node n2 disconnected"},
		{name: "no node connected", wantCode: codes.Unavailable, wantMsg: "node n1 is not available, node n2 is not available"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, true, tasks...)
			streams := map[string]grpc.ServerStreamingClient[api.SubscriptionMessage]{}
			cancels := map[string]context.CancelFunc{}
			for _, n := range tc.listening {
				streams[n], cancels[n] = h.listen(n)
			}
			client := h.subscribe(&api.LogSelector{ServiceIds: []string{"svc"}}, false)
			for _, n := range tc.listening {
				sub := recvSub(t, streams[n])
				if sub.GetSelector().GetServiceIds()[0] != "svc" || sub.GetClose() {
					t.Fatalf("node %s got %v", n, sub)
				}
				if n == tc.drop {
					cancels[n]()
					continue
				}
				err := h.publish(n,
					&api.PublishLogsMessage{SubscriptionId: sub.GetId(), Messages: []*api.LogMessage{line(n, "t", n+"-a")}},
					&api.PublishLogsMessage{SubscriptionId: sub.GetId(), Messages: []*api.LogMessage{line(n, "t", n+"-b")}, Close: true})
				if err != nil {
					t.Fatalf("publish as %s: %v", n, err)
				}
			}
			lines, err := drain(client)
			if strings.Join(lines, ",") != strings.Join(tc.wantLines, ",") {
				t.Errorf("lines = %v, want %v", lines, tc.wantLines)
			}
			if status.Code(err) != tc.wantCode || !strings.Contains(status.Convert(err).Message(), tc.wantMsg) {
				t.Errorf("end = %v, want %v containing %q", err, tc.wantCode, tc.wantMsg)
			}
			waitFor(t, "subscription forgotten", func() bool {
				r, _ := h.b.current()
				r.mu.Lock()
				defer r.mu.Unlock()
				return len(r.subs) == 0
			})
		})
	}
}

func TestSubscribeSelectsNodes(t *testing.T) {
	h := newHarness(t, true, [3]string{"svc", "t1", "n1"}, [3]string{"svc", "t2", "n2"})
	var streams []grpc.ServerStreamingClient[api.SubscriptionMessage]
	for _, n := range []string{"n1", "n2", "n3"} {
		s, _ := h.listen(n)
		streams = append(streams, s)
	}
	// Task t2 is on n2; node n3 is named; n1 is not involved.
	client := h.subscribe(&api.LogSelector{TaskIds: []string{"t2"}, NodeIds: []string{"n3"}}, false)
	var id string
	for i, n := range []string{"n2", "n3"} {
		sub := recvSub(t, streams[i+1])
		id = sub.GetId()
		if i == 0 {
			// n1 was not asked: its lines are refused.
			err := h.publish("n1", &api.PublishLogsMessage{SubscriptionId: id, Messages: []*api.LogMessage{line("n1", "t1", "x")}})
			if status.Code(err) != codes.PermissionDenied {
				t.Fatalf("publish as n1: %v, want PermissionDenied", err)
			}
		}
		if err := h.publish(n, &api.PublishLogsMessage{SubscriptionId: id, Close: true}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := drain(client); err != nil {
		t.Fatalf("subscription ended with %v", err)
	}
}

func TestSubscribeNothingSelected(t *testing.T) {
	h := newHarness(t, true)
	// A service without tasks: nothing to read, the call ends at once.
	lines, err := drain(h.subscribe(&api.LogSelector{ServiceIds: []string{"none"}}, false))
	if err != nil || len(lines) != 0 {
		t.Fatalf("got %v, %v; want no lines and a clean end", lines, err)
	}
	_, err = drain(h.subscribe(&api.LogSelector{}, false))
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("empty selector: %v, want InvalidArgument", err)
	}
}

func TestFollow(t *testing.T) {
	h := newHarness(t, true, [3]string{"svc", "t1", "n1"})
	l1, _ := h.listen("n1")
	l3, _ := h.listen("n3")
	ctx, cancel := context.WithCancel(h.ctx)
	client, err := api.NewLogsClient(h.conn).SubscribeLogs(ctx, &api.SubscribeLogsRequest{
		Selector: &api.LogSelector{ServiceIds: []string{"svc"}}, Options: &api.LogSubscriptionOptions{Follow: true},
	})
	if err != nil {
		t.Fatal(err)
	}
	sub := recvSub(t, l1)

	// n1 publishes on one stream, line after line; the client gets each.
	pub, err := api.NewLogBrokerClient(h.conn).PublishLogs(h.nodeCtx("n1"))
	if err != nil {
		t.Fatal(err)
	}
	for _, text := range []string{"one", "two"} {
		if err := pub.Send(&api.PublishLogsMessage{SubscriptionId: sub.GetId(), Messages: []*api.LogMessage{line("n1", "t1", text)}}); err != nil {
			t.Fatal(err)
		}
		m, err := client.Recv()
		if err != nil || string(m.GetMessages()[0].GetData()) != text {
			t.Fatalf("got %v, %v; want %q", m, err, text)
		}
	}

	// A task of the service lands on n3: n3 gets the subscription too.
	h.addTask("svc", "t9", "n3")
	sub3 := recvSub(t, l3)
	if sub3.GetId() != sub.GetId() || !sub3.GetOptions().GetFollow() {
		t.Fatalf("n3 got %v, want subscription %s with follow", sub3, sub.GetId())
	}
	if err := h.publish("n3", &api.PublishLogsMessage{SubscriptionId: sub.GetId(), Messages: []*api.LogMessage{line("n3", "t9", "three")}}); err != nil {
		t.Fatal(err)
	}
	if m, err := client.Recv(); err != nil || string(m.GetMessages()[0].GetData()) != "three" {
		t.Fatalf("got %v, %v; want three", m, err)
	}

	// A node connecting later (again) gets the subscriptions concerning it.
	l1again, _ := h.listen("n1")
	if got := recvSub(t, l1again); got.GetId() != sub.GetId() {
		t.Fatalf("reconnected n1 got %v", got)
	}

	// The client leaves: the nodes are told to stop.
	cancel()
	if got := recvSub(t, l1again); got.GetId() != sub.GetId() || !got.GetClose() {
		t.Fatalf("n1 got %v, want close of %s", got, sub.GetId())
	}
	if got := recvSub(t, l3); got.GetId() != sub.GetId() || !got.GetClose() {
		t.Fatalf("n3 got %v, want close of %s", got, sub.GetId())
	}
	_ = pub.Send(&api.PublishLogsMessage{SubscriptionId: sub.GetId(), Messages: []*api.LogMessage{line("n1", "t1", "late")}})
	if _, err := pub.CloseAndRecv(); status.Code(err) != codes.NotFound {
		t.Fatalf("publish after the subscription ended: %v, want NotFound", err)
	}
}

func TestPublishRejected(t *testing.T) {
	tests := []struct {
		name     string
		node     string
		msg      func(sub string) *api.PublishLogsMessage
		want     codes.Code
		failsSub string // the subscription then ends with this, "" if it is unaffected
	}{
		{"unknown subscription", "n1", func(string) *api.PublishLogsMessage {
			return &api.PublishLogsMessage{SubscriptionId: "nope", Close: true}
		}, codes.NotFound, ""},
		{"node not sent the subscription", "n2", func(sub string) *api.PublishLogsMessage {
			return &api.PublishLogsMessage{SubscriptionId: sub, Messages: []*api.LogMessage{line("n2", "t2", "x")}}
		}, codes.PermissionDenied, ""},
		{"lines of another node", "n1", func(sub string) *api.PublishLogsMessage {
			return &api.PublishLogsMessage{SubscriptionId: sub, Messages: []*api.LogMessage{line("n2", "t1", "x")}}
		}, codes.PermissionDenied, "node n1 published log messages of another node"},
		{"lines without a node", "n1", func(sub string) *api.PublishLogsMessage {
			return &api.PublishLogsMessage{SubscriptionId: sub, Messages: []*api.LogMessage{{Data: []byte("x")}}}
		}, codes.PermissionDenied, "node n1 published log messages of another node"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, true, [3]string{"svc", "t1", "n1"}, [3]string{"svc", "t2", "n2"})
			l1, _ := h.listen("n1")
			h.listen("n2")
			client := h.subscribe(&api.LogSelector{TaskIds: []string{"t1"}}, false)
			sub := recvSub(t, l1)
			if err := h.publish(tc.node, tc.msg(sub.GetId())); status.Code(err) != tc.want {
				t.Fatalf("publish: %v, want %v", err, tc.want)
			}
			if tc.failsSub == "" {
				// Nothing reached the client; the real node still completes it.
				if err := h.publish("n1", &api.PublishLogsMessage{SubscriptionId: sub.GetId(),
					Messages: []*api.LogMessage{line("n1", "t1", "ok")}, Close: true}); err != nil {
					t.Fatal(err)
				}
			}
			lines, err := drain(client)
			switch {
			case tc.failsSub == "" && (err != nil || strings.Join(lines, ",") != "ok"):
				t.Fatalf("got %v, %v; want [ok]", lines, err)
			case tc.failsSub != "" && (len(lines) != 0 || !strings.Contains(status.Convert(err).Message(), tc.failsSub)):
				t.Fatalf("got %v, %v; want no line and an error naming %q", lines, err, tc.failsSub)
			}
			// Nothing after the subscription ended.
			if err := h.publish("n1", &api.PublishLogsMessage{SubscriptionId: sub.GetId()}); status.Code(err) != codes.NotFound {
				t.Fatalf("publish after the end: %v, want NotFound", err)
			}
		})
	}

	t.Run("no caller identity", func(t *testing.T) {
		h := newHarness(t, true)
		s, err := api.NewLogBrokerClient(h.conn).PublishLogs(h.ctx)
		if err == nil {
			_, err = s.CloseAndRecv()
		}
		if status.Code(err) != codes.Unauthenticated {
			t.Fatalf("anonymous publish: %v, want Unauthenticated", err)
		}
	})
}

func TestPublishStreamEndsEarly(t *testing.T) {
	h := newHarness(t, true, [3]string{"svc", "t1", "n1"})
	l1, _ := h.listen("n1")
	client := h.subscribe(&api.LogSelector{ServiceIds: []string{"svc"}}, false)
	sub := recvSub(t, l1)
	// The node publishes a line and ends its stream without closing.
	if err := h.publish("n1", &api.PublishLogsMessage{SubscriptionId: sub.GetId(),
		Messages: []*api.LogMessage{line("n1", "t1", "partial")}}); err != nil {
		t.Fatal(err)
	}
	lines, err := drain(client)
	if strings.Join(lines, ",") != "partial" || status.Code(err) != codes.Unavailable ||
		!strings.Contains(err.Error(), "node n1 stopped publishing before it was done") {
		t.Fatalf("got %v, %v", lines, err)
	}
}

func TestNotRunning(t *testing.T) {
	h := newHarness(t, false)
	_, err := drain(h.subscribe(&api.LogSelector{NodeIds: []string{"n1"}}, false))
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("subscribe: %v, want Unavailable", err)
	}
	s, err := api.NewLogBrokerClient(h.conn).ListenSubscriptions(h.nodeCtx("n1"), &api.ListenSubscriptionsRequest{})
	if err == nil {
		_, err = s.Recv()
	}
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("listen: %v, want Unavailable", err)
	}
}

func TestStopEndsStreams(t *testing.T) {
	h := newHarness(t, true, [3]string{"svc", "t1", "n1"})
	l1, _ := h.listen("n1")
	client := h.subscribe(&api.LogSelector{ServiceIds: []string{"svc"}}, true)
	recvSub(t, l1)
	h.stop()
	if _, err := drain(client); status.Code(err) != codes.Unavailable {
		t.Fatalf("subscription after stop: %v, want Unavailable", err)
	}
	if _, err := l1.Recv(); status.Code(err) != codes.Unavailable {
		t.Fatalf("listener after stop: %v, want Unavailable", err)
	}
}

func TestForward(t *testing.T) {
	leader := newHarness(t, true, [3]string{"svc", "t1", "n1"})
	l1, _ := leader.listen("n1")
	follower := New(store.NewMemoryStore(nil), Config{Logger: slog.New(slog.DiscardHandler)})
	tests := []struct {
		name     string
		leader   LeaderClient
		wantCode codes.Code
	}{
		{"relayed to the leader", func(context.Context) (api.LogsClient, error) {
			return api.NewLogsClient(leader.conn), nil
		}, codes.OK},
		{"no leader", func(context.Context) (api.LogsClient, error) {
			return nil, status.Error(codes.Unavailable, "no leader")
		}, codes.Unavailable},
		{"leads but broker not started", func(context.Context) (api.LogsClient, error) { return nil, nil }, codes.Unavailable},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			conn := serve(t, func(s *grpc.Server) { api.RegisterLogsServer(s, Forward(follower, tc.leader)) })
			client, err := api.NewLogsClient(conn).SubscribeLogs(leader.ctx, &api.SubscribeLogsRequest{
				Selector: &api.LogSelector{ServiceIds: []string{"svc"}},
			})
			if err != nil {
				t.Fatal(err)
			}
			if tc.wantCode == codes.OK {
				sub := recvSub(t, l1)
				if err := leader.publish("n1", &api.PublishLogsMessage{SubscriptionId: sub.GetId(),
					Messages: []*api.LogMessage{line("n1", "t1", "relayed")}, Close: true}); err != nil {
					t.Fatal(err)
				}
			}
			lines, err := drain(client)
			if status.Code(err) != tc.wantCode {
				t.Fatalf("end: %v, want %v", err, tc.wantCode)
			}
			if tc.wantCode == codes.OK && strings.Join(lines, ",") != "relayed" {
				t.Fatalf("lines = %v", lines)
			}
		})
	}
}
