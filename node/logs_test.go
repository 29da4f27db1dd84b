package node

import (
	"context"
	"errors"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/openswarm/swarmd/api"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

// logsClient is the Logs API on a manager's control socket.
func (c *testCluster) logsClient(name string) api.LogsClient {
	c.t.Helper()
	conn, err := grpc.NewClient("unix://"+c.nodes[name].cfg.ListenControlAPI, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() { _ = conn.Close() })
	return api.NewLogsClient(conn)
}

// readLogs reads a subscription without follow to its end: its lines as
// "node-name text", sorted, and the error it ended with.
func (c *testCluster) readLogs(client api.LogsClient, serviceID string) ([]string, error) {
	c.t.Helper()
	s, err := client.SubscribeLogs(c.ctx(), &api.SubscribeLogsRequest{Selector: &api.LogSelector{ServiceIds: []string{serviceID}}})
	if err != nil {
		return nil, err
	}
	var lines []string
	for {
		m, err := s.Recv()
		if errors.Is(err, io.EOF) {
			slices.Sort(lines)
			return lines, nil
		}
		if err != nil {
			slices.Sort(lines)
			return lines, err
		}
		for _, lm := range m.GetMessages() {
			if lm.GetContext().GetServiceId() != serviceID {
				c.t.Errorf("line %q of service %q", lm.GetData(), lm.GetContext().GetServiceId())
			}
			lines = append(lines, c.nodeName(lm.GetContext().GetNodeId())+" "+string(lm.GetData()))
		}
	}
}

func TestServiceLogsFromEveryNode(t *testing.T) {
	c := newTestCluster(t, "127.0.0.171")
	c.join("w1", "127.0.0.172", false)
	c.join("w2", "127.0.0.173", false)
	c.join("m2", "127.0.0.174", true)
	svc := c.createService(replicated("chatty", 3))
	c.waitFor(20*time.Second, "3 replicas running", svc.GetId(), func() bool {
		return total(c.running(svc.GetId())) == 3 && total(c.containers(svc.GetId())) == 3
	})
	var want []string
	nodeOf := map[string]string{} // task ID -> node name
	for _, tk := range c.tasks(svc.GetId()) {
		name := c.nodeName(tk.GetNodeId())
		nodeOf[tk.GetId()] = name
		c.nodes[name].engine.WriteLog(tk.GetId(), api.LogStream_LOG_STREAM_STDOUT, "hello from "+tk.GetId())
		want = append(want, name+" hello from "+tk.GetId())
	}
	slices.Sort(want)

	// On the leader's socket, and on the other manager's (relayed to the
	// leader). Agents listen for subscriptions shortly after their session
	// starts: poll until every node answers.
	for _, mgr := range []string{"m1", "m2"} {
		client := c.logsClient(mgr)
		var got []string
		var err error
		c.waitFor(20*time.Second, "logs of every task through "+mgr, svc.GetId(), func() bool {
			got, err = c.readLogs(client, svc.GetId())
			return err == nil && slices.Equal(got, want)
		})
	}

	// Follow: the lines so far, then new ones as they are written.
	ctx, cancel := context.WithCancel(c.ctx())
	defer cancel()
	s, err := c.logsClient("m2").SubscribeLogs(ctx, &api.SubscribeLogsRequest{
		Selector: &api.LogSelector{ServiceIds: []string{svc.GetId()}},
		Options:  &api.LogSubscriptionOptions{Follow: true},
	})
	if err != nil {
		t.Fatal(err)
	}
	var followed []string
	next := func(n int) {
		t.Helper()
		for len(followed) < n {
			m, err := s.Recv()
			if err != nil {
				t.Fatalf("follow: after %v: %v", followed, err)
			}
			for _, lm := range m.GetMessages() {
				followed = append(followed, string(lm.GetData()))
			}
		}
	}
	next(3)
	var some string
	for id := range nodeOf {
		some = id
		break
	}
	c.nodes[nodeOf[some]].engine.WriteLog(some, api.LogStream_LOG_STREAM_STDERR, "later")
	next(4)
	if followed[3] != "later" {
		t.Fatalf("followed %v, want later last", followed)
	}
	cancel()

	// A node that is gone does not hold the logs up: the others' lines
	// arrive, and the call ends naming it.
	var gone, goneTask string
	for id, name := range nodeOf {
		if strings.HasPrefix(name, "w") {
			gone, goneTask = name, id
			break
		}
	}
	c.stop(gone)
	var wantRest []string
	for _, l := range want {
		if !strings.HasSuffix(l, goneTask) {
			wantRest = append(wantRest, l)
		}
	}
	client := c.logsClient("m1")
	var got []string
	c.waitFor(20*time.Second, "logs without "+gone, svc.GetId(), func() bool {
		got, err = c.readLogs(client, svc.GetId())
		return status.Code(err) == codes.Unavailable && strings.Contains(err.Error(), "node "+c.nodeID(gone)) &&
			strings.Contains(err.Error(), "incomplete log stream")
	})
	for _, l := range wantRest {
		if !slices.Contains(got, l) {
			t.Fatalf("lines %v lack %q (ended with %v)", got, l, err)
		}
	}
}
