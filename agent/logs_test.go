package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/openswarm/swarmd/agent/exec/testexec"
	"github.com/openswarm/swarmd/api"
	"github.com/openswarm/swarmd/manager/dispatcher"
	"github.com/openswarm/swarmd/manager/logbroker"
	"github.com/openswarm/swarmd/manager/state/store"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// logCluster is a dispatcher and a log broker over a local store, served
// on 127.0.0.1, with a Logs client.
type logCluster struct {
	*cluster
	broker *logbroker.Broker
	logs   api.LogsClient
}

func newLogCluster(t *testing.T) *logCluster {
	t.Helper()
	c := &cluster{t: t, store: store.NewMemoryStore(nil), runs: make(chan error, 1)}
	c.d = dispatcher.New(c.store, dispatcher.Config{
		Logger:               slog.New(slog.DiscardHandler),
		NodeIdentity:         identityFromMetadata,
		AssignmentBatchDelay: -1,
	})
	b := logbroker.New(c.store, logbroker.Config{
		Logger:       slog.New(slog.DiscardHandler),
		NodeIdentity: identityFromMetadata,
	})
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c.addr = lis.Addr().String()
	srv := grpc.NewServer()
	api.RegisterDispatcherServer(srv, c.d)
	api.RegisterLogBrokerServer(srv, b)
	api.RegisterLogsServer(srv, b)
	go func() { _ = srv.Serve(lis) }()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	c.ctx = ctx
	brokerDone := make(chan error, 1)
	go func() { brokerDone <- b.Run(ctx) }()
	conn, err := grpc.NewClient(c.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		_ = conn.Close()
		srv.Stop()
		c.d.Stop()
		<-brokerDone
	})
	c.start()
	eventually(t, "log broker running", b.Running)
	return &logCluster{cluster: c, broker: b, logs: api.NewLogsClient(conn)}
}

// logLine is a received line, as "task/stream/text" with its origin
// checked against node and service.
func logLine(t *testing.T, m *api.LogMessage, node, service string) string {
	t.Helper()
	if c := m.GetContext(); c.GetNodeId() != node || c.GetServiceId() != service {
		t.Errorf("line %q has context %v, want node %s service %s", m.GetData(), c, node, service)
	}
	stream := "out"
	if m.GetStream() == api.LogStream_LOG_STREAM_STDERR {
		stream = "err"
	}
	return fmt.Sprintf("%s/%s/%s", m.GetContext().GetTaskId(), stream, m.GetData())
}

func TestAgentPublishesLogs(t *testing.T) {
	c := newLogCluster(t)
	c.update(func(tx store.Tx) error {
		for _, id := range []string{"t1", "t2"} {
			if err := tx.Create(assignedTask(id, "n1")); err != nil {
				return err
			}
		}
		other := assignedTask("t3", "n1")
		other.ServiceId = "svc2"
		return tx.Create(other)
	})
	eng := testexec.NewEngine()
	startAgent(t, c.cluster, "n1", eng, "")
	for _, id := range []string{"t1", "t2", "t3"} {
		c.waitTaskState(id, api.TaskState_TASK_STATE_RUNNING)
	}
	eventually(t, "n1 listens for log subscriptions", func() bool { return c.broker.Listening("n1") })
	eng.WriteLog("t1", api.LogStream_LOG_STREAM_STDOUT, "hello")
	eng.WriteLog("t1", api.LogStream_LOG_STREAM_STDERR, "oops")
	eng.WriteLog("t1", api.LogStream_LOG_STREAM_STDOUT, "bye")
	eng.WriteLog("t2", api.LogStream_LOG_STREAM_STDOUT, "two")
	eng.WriteLog("t3", api.LogStream_LOG_STREAM_STDOUT, "other service")

	tests := []struct {
		name string
		sel  *api.LogSelector
		opts *api.LogSubscriptionOptions
		want []string // sorted
	}{
		{"service", &api.LogSelector{ServiceIds: []string{"svc1"}}, nil,
			[]string{"t1/err/oops", "t1/out/bye", "t1/out/hello", "t2/out/two"}},
		{"task", &api.LogSelector{TaskIds: []string{"t1"}}, nil,
			[]string{"t1/err/oops", "t1/out/bye", "t1/out/hello"}},
		{"stderr only", &api.LogSelector{ServiceIds: []string{"svc1"}},
			&api.LogSubscriptionOptions{Streams: []api.LogStream{api.LogStream_LOG_STREAM_STDERR}},
			[]string{"t1/err/oops"}},
		{"tail", &api.LogSelector{TaskIds: []string{"t1"}}, &api.LogSubscriptionOptions{Tail: 1},
			[]string{"t1/out/bye"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, err := c.logs.SubscribeLogs(c.ctx, &api.SubscribeLogsRequest{Selector: tc.sel, Options: tc.opts})
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for {
				m, err := s.Recv()
				if errors.Is(err, io.EOF) {
					break
				}
				if err != nil {
					t.Fatalf("after %v: %v", got, err)
				}
				for _, lm := range m.GetMessages() {
					want := "svc1"
					if lm.GetContext().GetTaskId() == "t3" {
						want = "svc2"
					}
					got = append(got, logLine(t, lm, "n1", want))
				}
			}
			slices.Sort(got)
			if !slices.Equal(got, tc.want) {
				t.Fatalf("lines %v, want %v", got, tc.want)
			}
		})
	}
}

func TestAgentFollowsLogs(t *testing.T) {
	c := newLogCluster(t)
	c.update(func(tx store.Tx) error { return tx.Create(assignedTask("t1", "n1")) })
	eng := testexec.NewEngine()
	startAgent(t, c.cluster, "n1", eng, "")
	c.waitTaskState("t1", api.TaskState_TASK_STATE_RUNNING)
	eng.WriteLog("t1", api.LogStream_LOG_STREAM_STDOUT, "before")

	ctx, cancel := context.WithCancel(c.ctx)
	defer cancel()
	s, err := c.logs.SubscribeLogs(ctx, &api.SubscribeLogsRequest{
		Selector: &api.LogSelector{ServiceIds: []string{"svc1"}},
		Options:  &api.LogSubscriptionOptions{Follow: true},
	})
	if err != nil {
		t.Fatal(err)
	}
	next := func() string {
		t.Helper()
		m, err := s.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if len(m.GetMessages()) != 1 {
			t.Fatalf("got %d lines at once, want 1", len(m.GetMessages()))
		}
		return logLine(t, m.GetMessages()[0], "n1", "svc1")
	}
	if got := next(); got != "t1/out/before" {
		t.Fatalf("got %s", got)
	}
	eng.WriteLog("t1", api.LogStream_LOG_STREAM_STDOUT, "after")
	if got := next(); got != "t1/out/after" {
		t.Fatalf("got %s", got)
	}

	// A task of the service the node gets later is followed too.
	c.update(func(tx store.Tx) error { return tx.Create(assignedTask("t2", "n1")) })
	c.waitTaskState("t2", api.TaskState_TASK_STATE_RUNNING)
	eng.WriteLog("t2", api.LogStream_LOG_STREAM_STDERR, "late")
	if got := next(); got != "t2/err/late" {
		t.Fatalf("got %s", got)
	}

	// The client leaves; the agent's subscription ends with the session
	// when the test stops the agent (its Run must return).
	cancel()
}

// fakePublishStream records what sendLogs sends.
type fakePublishStream struct {
	grpc.ClientStream
	sent   []*api.PublishLogsMessage
	failAt int // Send fails from this message on (0: never)
}

func (f *fakePublishStream) Send(m *api.PublishLogsMessage) error {
	if f.failAt > 0 && len(f.sent)+1 >= f.failAt {
		return errors.New("broken stream")
	}
	f.sent = append(f.sent, m)
	return nil
}

func (f *fakePublishStream) CloseAndRecv() (*api.PublishLogsResponse, error) {
	return &api.PublishLogsResponse{}, nil
}

func TestSendLogsBatches(t *testing.T) {
	tests := []struct {
		name      string
		lines     int
		failAt    int
		wantSizes []int // lines per message sent
		wantClose bool  // the last message closes the part
		wantErr   bool
	}{
		{name: "nothing", lines: 0, wantSizes: []int{0}, wantClose: true},
		{name: "queued lines in one message", lines: 3, wantSizes: []int{3}, wantClose: true},
		{name: "cut at the batch size", lines: maxLogBatch + 2, wantSizes: []int{maxLogBatch, 2}, wantClose: true},
		{name: "send fails", lines: 1, failAt: 1, wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			lines := make(chan *api.LogMessage, tc.lines)
			for i := range tc.lines {
				lines <- &api.LogMessage{Data: []byte(fmt.Sprint(i))}
			}
			close(lines)
			s := &fakePublishStream{failAt: tc.failAt}
			failed := false
			err := sendLogs(s, "sub1", lines, func() { failed = true })
			if (err != nil) != tc.wantErr || failed != tc.wantErr {
				t.Fatalf("err %v, cancelled %v; want error %v", err, failed, tc.wantErr)
			}
			var sizes []int
			for _, m := range s.sent {
				if m.GetSubscriptionId() != "sub1" {
					t.Fatalf("message for %q", m.GetSubscriptionId())
				}
				sizes = append(sizes, len(m.GetMessages()))
			}
			if !slices.Equal(sizes, tc.wantSizes) {
				t.Fatalf("sent %v lines per message, want %v", sizes, tc.wantSizes)
			}
			if tc.wantClose && !s.sent[len(s.sent)-1].GetClose() {
				t.Fatal("the last message does not close the part")
			}
		})
	}
}
