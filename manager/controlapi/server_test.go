package controlapi

import (
	"context"
	"errors"
	"fmt"
	"net"
	"testing"

	"github.com/openswarm/swarmd/api"
	"github.com/openswarm/swarmd/manager/state/store"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"
)

func TestStoreErr(t *testing.T) {
	tests := []struct {
		in   error
		code codes.Code
		text string
	}{
		{fmt.Errorf("update service x: %w", store.ErrSequenceConflict), codes.Unknown, "update out of sequence"},
		{fmt.Errorf("create: %w", store.ErrNameConflict), codes.AlreadyExists, "name conflicts with an existing object"},
		{fmt.Errorf("x: %w", store.ErrNotExist), codes.NotFound, "object does not exist"},
		{fmt.Errorf("x: %w", store.ErrTxTooLarge), codes.ResourceExhausted, "transaction is too large"},
		{context.DeadlineExceeded, codes.DeadlineExceeded, ""},
		{errBoom, codes.Unknown, "boom"},
		{errorf(codes.NotFound, "service x not found"), codes.NotFound, "service x not found"},
		{status.Error(codes.Unavailable, "not the leader"), codes.Unavailable, "not the leader"},
	}
	for _, tt := range tests {
		err := storeErr(tt.in)
		wantErr(t, err, tt.code, tt.text)
		if !errors.Is(err, tt.in) && status.Code(tt.in) == codes.Unknown {
			t.Errorf("storeErr(%v) does not wrap its cause", tt.in)
		}
	}
	if storeErr(nil) != nil {
		t.Fatal("storeErr(nil) != nil")
	}
	if got := storeErr(store.ErrSequenceConflict).Error(); got != "rpc error: code = Unknown desc = update out of sequence" {
		t.Fatalf("text %q", got)
	}
}

// TestOverGRPC checks codes and texts as a remote client (the Engine API
// layer, swarmctl) receives them.
func TestOverGRPC(t *testing.T) {
	raft := &fakeRaft{leader: 1}
	s, st := newTestServer(t, raft)
	put(t, st, testNode("m1aaaaaaaaaaaaaaaaaaaaaaa", "m1", manager, ready))
	raft.add(1, "m1aaaaaaaaaaaaaaaaaaaaaaa")

	lis := bufconn.Listen(1 << 20)
	gs := grpc.NewServer()
	api.RegisterControlServer(gs, s)
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(gs.Stop)
	conn, err := grpc.NewClient("passthrough:///bufnet",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	mustOK(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	c := api.NewControlClient(conn)
	ctx := context.Background()

	created, err := c.CreateService(ctx, &api.CreateServiceRequest{Spec: serviceSpec("web")})
	mustOK(t, err)
	svc := created.GetService()
	_, err = c.UpdateService(ctx, &api.UpdateServiceRequest{ServiceId: svc.GetId(), ServiceVersion: svc.GetMeta().GetVersion(), Spec: svc.GetSpec()})
	mustOK(t, err)
	_, err = c.UpdateService(ctx, &api.UpdateServiceRequest{ServiceId: svc.GetId(), ServiceVersion: svc.GetMeta().GetVersion(), Spec: svc.GetSpec()})
	if got := err.Error(); got != "rpc error: code = Unknown desc = update out of sequence" {
		t.Fatalf("stale update over gRPC: %q", got)
	}
	_, err = c.UpdateNode(ctx, &api.UpdateNodeRequest{NodeId: "m1", NodeVersion: &api.Version{Index: 1}, Spec: &api.NodeSpec{DesiredRole: worker}})
	if got := err.Error(); got != "rpc error: code = FailedPrecondition desc = attempting to demote the last manager of the swarm" {
		t.Fatalf("demotion over gRPC: %q", got)
	}
	_, err = c.GetService(ctx, &api.GetServiceRequest{ServiceId: "nope"})
	wantErr(t, err, codes.NotFound, "service nope not found")
	_, err = c.CreateService(ctx, &api.CreateServiceRequest{Spec: withPorts(serviceSpec("web2"), &api.PortConfig{TargetPort: 80, PublishedPort: 8080})})
	mustOK(t, err)
	_, err = c.CreateService(ctx, &api.CreateServiceRequest{Spec: withPorts(serviceSpec("web3"), &api.PortConfig{TargetPort: 80, PublishedPort: 8080})})
	wantErr(t, err, codes.InvalidArgument, "port '8080' is already in use by service 'web2'")
}

// TestRemoveNodeManyTasks orphans a node's tasks over several proposals
// when they do not fit in one.
func TestRemoveNodeManyTasks(t *testing.T) {
	st := store.NewMemoryStore(nil, store.WithMaxProposalBytes(16<<10))
	t.Cleanup(st.Close)
	s := NewServer(st, &fakeRaft{})
	gone := testNode("x1eeeeeeeeeeeeeeeeeeeeeee", "gone", worker, down)
	put(t, st, gone)
	const n = 400
	for i := range n {
		put(t, st, &api.Task{
			Id: fmt.Sprintf("task%021d", i), NodeId: gone.GetId(), ServiceId: "svc",
			Spec:   &api.TaskSpec{Container: &api.ContainerSpec{Image: "busybox", Env: []string{"PADDING=0123456789012345678901234567890123456789"}}},
			Status: &api.TaskStatus{State: api.TaskState_TASK_STATE_RUNNING},
		})
	}
	_, err := s.RemoveNode(context.Background(), &api.RemoveNodeRequest{NodeId: gone.GetId()})
	mustOK(t, err)
	st.View(func(tx store.ReadTx) {
		if store.GetNode(tx, gone.GetId()) != nil {
			t.Fatal("node still stored")
		}
		tasks, err := store.FindTasks(tx, store.ByNodeID(gone.GetId()))
		mustOK(t, err)
		if len(tasks) != n {
			t.Fatalf("%d tasks", len(tasks))
		}
		for _, task := range tasks {
			if task.GetStatus().GetState() != api.TaskState_TASK_STATE_ORPHANED {
				t.Fatalf("task %s in state %v", task.GetId(), task.GetStatus().GetState())
			}
		}
	})
}
