package logbroker

import (
	"context"
	"errors"
	"io"

	"github.com/openswarm/swarmd/api"
	"google.golang.org/grpc"
)

// LeaderClient returns a Logs client of the leader, or nil when this
// manager leads (then the local broker serves the call).
type LeaderClient func(ctx context.Context) (api.LogsClient, error)

// Forward returns the Logs server of a manager's local socket: where b
// serves (on the leader) it serves SubscribeLogs itself; elsewhere it
// relays the call to the leader that leader returns, message by message,
// and ends as the leader's call ends (with its status).
func Forward(b *Broker, leader LeaderClient) api.LogsServer {
	return &forwarder{b: b, leader: leader}
}

type forwarder struct {
	api.UnimplementedLogsServer
	b      *Broker
	leader LeaderClient
}

func (f *forwarder) SubscribeLogs(req *api.SubscribeLogsRequest, stream grpc.ServerStreamingServer[api.SubscribeLogsMessage]) error {
	if f.b.Running() {
		return f.b.SubscribeLogs(req, stream)
	}
	ctx := stream.Context()
	client, err := f.leader(ctx)
	if err != nil {
		return err
	}
	if client == nil {
		return f.b.SubscribeLogs(req, stream)
	}
	up, err := client.SubscribeLogs(ctx, req)
	if err != nil {
		return err
	}
	for {
		m, err := up.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if err := stream.Send(m); err != nil {
			return err
		}
	}
}
