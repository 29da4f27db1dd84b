package agent

import (
	"context"

	"github.com/openswarm/swarmd/api"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// networks reads the session's Networks stream into OnNetworks until the
// stream ends. A manager without the Networks stream is not an error: the
// node's overlay networks then reach no other node through it.
func (a *Agent) networks(ctx context.Context, client api.DispatcherClient, session string) error {
	stream, err := client.Networks(ctx, &api.NetworksRequest{SessionId: session})
	if err != nil {
		return err
	}
	for {
		msg, err := stream.Recv()
		if status.Code(err) == codes.Unimplemented {
			a.log.Warn("agent: the manager serves no overlay network endpoints")
			return nil
		}
		if err != nil {
			return err
		}
		a.cfg.OnNetworks(msg.GetNetworks())
	}
}
