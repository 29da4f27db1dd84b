package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"time"

	"github.com/openswarm/swarmd/agent/exec"
	"github.com/openswarm/swarmd/api"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// maxLogBatch bounds the lines one PublishLogsMessage carries.
const maxLogBatch = 128

// taskNotifier wakes log subscriptions that follow when the worker's tasks
// change. Its zero value is ready to use.
type taskNotifier struct {
	mu sync.Mutex
	ch chan struct{}
}

// changed returns a channel closed at the next notify.
func (n *taskNotifier) changed() <-chan struct{} {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.ch == nil {
		n.ch = make(chan struct{})
	}
	return n.ch
}

func (n *taskNotifier) notify() {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.ch != nil {
		close(n.ch)
		n.ch = nil
	}
}

// serveLogs serves the log subscriptions of a session until ctx ends: it
// listens on the manager's log broker, and listens again (with backoff) if
// that stream breaks. Logs are not worth ending the session for; a manager
// without a log broker is simply not listened to.
func (a *Agent) serveLogs(ctx context.Context, client api.LogBrokerClient) {
	backoff := time.Duration(0)
	for {
		got, err := a.listenLogs(ctx, client)
		if ctx.Err() != nil {
			return
		}
		if status.Code(err) == codes.Unimplemented {
			a.log.Info("agent: the manager has no log broker; logs are not served", "error", err)
			return
		}
		if got {
			backoff = 0
		}
		backoff = nextBackoff(backoff, a.cfg.MaxBackoff)
		a.log.Warn("agent: log subscriptions stream ended; listening again", "error", err, "retry_in", backoff)
		select {
		case <-a.cfg.Clock.After(backoff):
		case <-ctx.Done():
			return
		}
	}
}

// listenLogs runs the subscriptions the manager sends on one
// ListenSubscriptions stream until it breaks; then it cancels them and
// waits for them. got reports whether any message arrived.
func (a *Agent) listenLogs(ctx context.Context, client api.LogBrokerClient) (got bool, err error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := client.ListenSubscriptions(ctx, &api.ListenSubscriptionsRequest{})
	if err != nil {
		return false, fmt.Errorf("listen for log subscriptions: %w", err)
	}
	var (
		mu   sync.Mutex
		subs = map[string]context.CancelFunc{}
		wg   sync.WaitGroup
	)
	defer wg.Wait()
	defer cancel()
	for {
		m, err := stream.Recv()
		if err != nil {
			return got, fmt.Errorf("receive log subscription: %w", err)
		}
		got = true
		id := m.GetId()
		mu.Lock()
		stopSub, running := subs[id]
		switch {
		case m.GetClose():
			if running {
				stopSub()
				delete(subs, id)
			}
		case !running:
			sctx, cancelSub := context.WithCancel(ctx)
			subs[id] = cancelSub
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() {
					cancelSub()
					mu.Lock()
					delete(subs, id)
					mu.Unlock()
				}()
				if err := a.runLogSubscription(sctx, client, m); err != nil && sctx.Err() == nil {
					a.log.Warn("agent: log subscription failed", "subscription.id", id, "error", err)
				}
			}()
		}
		mu.Unlock()
	}
}

// selects reports whether a subscription's selector selects a task of
// this node.
func selects(sel *api.LogSelector, node string, t *api.Task) bool {
	return slices.Contains(sel.GetNodeIds(), node) ||
		slices.Contains(sel.GetServiceIds(), t.GetServiceId()) ||
		slices.Contains(sel.GetTaskIds(), t.GetId())
}

// runLogSubscription publishes the logs of the node's tasks that sub
// selects, on one PublishLogs stream. Without follow it reads each task's
// logs once and then closes its part; with follow it goes on, also with
// tasks the node gets later, until ctx ends (the manager closed the
// subscription or the session ended).
func (a *Agent) runLogSubscription(ctx context.Context, client api.LogBrokerClient, sub *api.SubscriptionMessage) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	node := a.Node().GetId()
	stream, err := client.PublishLogs(ctx)
	if err != nil {
		return fmt.Errorf("publish logs: %w", err)
	}
	lines := make(chan *api.LogMessage, maxLogBatch)
	sent := make(chan error, 1)
	go func() { sent <- sendLogs(stream, sub.GetId(), lines, cancel) }()

	var wg sync.WaitGroup
	started := map[string]bool{}
	follow := sub.GetOptions().GetFollow()
	for {
		changed := a.taskEvents.changed()
		if a.worker != nil {
			for _, id := range a.worker.Tasks() {
				t, ok := a.worker.Task(id)
				if started[id] || !ok || !selects(sub.GetSelector(), node, t) {
					continue
				}
				started[id] = true
				wg.Add(1)
				go func() {
					defer wg.Done()
					if err := a.taskLogs(ctx, t, node, sub.GetOptions(), lines); err != nil && ctx.Err() == nil {
						a.log.Warn("agent: read task logs", "subscription.id", sub.GetId(), "task.id", t.GetId(), "error", err)
					}
				}()
			}
		}
		if !follow {
			break
		}
		select {
		case <-changed:
			continue
		case <-ctx.Done():
		}
		break
	}
	wg.Wait()
	close(lines)
	return <-sent
}

// taskLogs reads one task's logs through a controller of its own, if the
// executor's controllers can read logs.
func (a *Agent) taskLogs(ctx context.Context, t *api.Task, node string, opts *api.LogSubscriptionOptions, lines chan<- *api.LogMessage) error {
	ctlr, err := a.cfg.Executor.Controller(t)
	if err != nil {
		return fmt.Errorf("controller: %w", err)
	}
	defer func() { _ = ctlr.Close() }()
	lc, ok := ctlr.(exec.LogsController)
	if !ok {
		return nil
	}
	if opts == nil {
		opts = &api.LogSubscriptionOptions{}
	}
	return lc.Logs(ctx, &taskPublisher{task: t, node: node, lines: lines}, opts)
}

// taskPublisher hands a task's lines to the subscription's sender, naming
// the task, its service and this node as their origin whatever the
// controller said.
type taskPublisher struct {
	task  *api.Task
	node  string
	lines chan<- *api.LogMessage
}

func (p *taskPublisher) Publish(ctx context.Context, m *api.LogMessage) error {
	node := p.node
	if node == "" {
		node = p.task.GetNodeId()
	}
	m = proto.CloneOf(m)
	m.Context = &api.LogContext{ServiceId: p.task.GetServiceId(), NodeId: node, TaskId: p.task.GetId()}
	select {
	case p.lines <- m:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// sendLogs sends the lines on stream, as many per message as are queued
// (up to maxLogBatch), until lines is closed; then it closes the node's part
// of the subscription. If sending fails it cancels the subscription (fail)
// and returns the error.
func sendLogs(stream grpc.ClientStreamingClient[api.PublishLogsMessage, api.PublishLogsResponse], id string,
	lines <-chan *api.LogMessage, fail context.CancelFunc,
) error {
	for {
		m, ok := <-lines
		batch := []*api.LogMessage{}
		if ok {
			batch = append(batch, m)
		}
	gather:
		for ok && len(batch) < maxLogBatch {
			select {
			case m, ok = <-lines:
				if ok {
					batch = append(batch, m)
				}
			default:
				break gather
			}
		}
		if err := stream.Send(&api.PublishLogsMessage{SubscriptionId: id, Messages: batch, Close: !ok}); err != nil {
			fail()
			if errors.Is(err, io.EOF) {
				// The broker ended the stream: its status says why.
				_, err = stream.CloseAndRecv()
			}
			return fmt.Errorf("publish logs: %w", err)
		}
		if !ok {
			_, err := stream.CloseAndRecv()
			return err
		}
	}
}
