package agent

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/openswarm/swarmd/api"
	"github.com/openswarm/swarmd/manager/state/store"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// TestAgentReceivesNetworkPeers: OnNetworks gets the endpoints of the
// overlay networks, with the address the node's session comes from, and
// again when a task leaves.
func TestAgentReceivesNetworkPeers(t *testing.T) {
	c := newCluster(t)
	var (
		mu   sync.Mutex
		last []*api.NetworkPeers
		n    int
	)
	a, err := New(Config{
		Remotes:     NewRemotes(1, c.addr),
		Credentials: insecure.NewCredentials(),
		DialOptions: []grpc.DialOption{grpc.WithPerRPCCredentials(nodeIDCreds("n1"))},
		Logger:      slog.New(slog.DiscardHandler),
		MaxBackoff:  200 * time.Millisecond,
		OnNetworks: func(nets []*api.NetworkPeers) {
			mu.Lock()
			defer mu.Unlock()
			last, n = nets, n+1
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	eventually(t, "the first (empty) set", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return n > 0
	})
	tk := assignedTask("t1", "n1")
	tk.Networks = []*api.NetworkAttachment{{Network: &api.Network{Id: "netA"}, Addresses: []string{"10.0.1.2/24"}}}
	c.update(func(tx store.Tx) error { return tx.Create(tk) })
	peers := func() string {
		mu.Lock()
		defer mu.Unlock()
		if len(last) != 1 || len(last[0].GetPeers()) != 1 {
			return ""
		}
		p := last[0].GetPeers()[0]
		return last[0].GetNetworkId() + " " + p.GetIp() + " " + p.GetVtep()
	}
	eventually(t, "the task's endpoint", func() bool { return peers() == "netA 10.0.1.2 127.0.0.1" })
	c.setDesired("t1", api.TaskState_TASK_STATE_SHUTDOWN)
	eventually(t, "no endpoint", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(last) == 0
	})
}
