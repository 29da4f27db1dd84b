package controlapi

import (
	"context"
	"errors"
	"testing"

	"github.com/openswarm/swarmd/api"
	"github.com/openswarm/swarmd/manager/state/store"
	"google.golang.org/grpc/codes"
)

func netSpec(name string) *api.NetworkSpec {
	return &api.NetworkSpec{Annotations: &api.Annotations{Name: name}, Driver: "overlay"}
}

func TestNetworks(t *testing.T) {
	s, st := newTestServer(t, nil)
	ctx := context.Background()
	resp, err := s.CreateNetwork(ctx, &api.CreateNetworkRequest{Spec: netSpec("backend")})
	mustOK(t, err)
	backend := resp.GetNetwork()
	_, err = s.CreateNetwork(ctx, &api.CreateNetworkRequest{Spec: netSpec("Backend")})
	wantErr(t, err, codes.AlreadyExists, "name conflicts with an existing object: network Backend already exists")
	if !errors.Is(err, store.ErrNameConflict) {
		t.Fatalf("%v does not wrap store.ErrNameConflict", err)
	}
	_, err = s.CreateNetwork(ctx, &api.CreateNetworkRequest{Spec: netSpec("bad name")})
	wantErr(t, err, codes.InvalidArgument, "name must be valid as a DNS name component")

	in := netSpec("ingress")
	in.Ingress = true
	resp, err = s.CreateNetwork(ctx, &api.CreateNetworkRequest{Spec: in})
	mustOK(t, err)
	ingress := resp.GetNetwork()
	in2 := netSpec("ingress2")
	in2.Ingress = true
	_, err = s.CreateNetwork(ctx, &api.CreateNetworkRequest{Spec: in2})
	wantErr(t, err, codes.AlreadyExists, "ingress network ("+ingress.GetId()+") is already present")

	for _, req := range []*api.GetNetworkRequest{{NetworkId: backend.GetId()}, {NetworkId: "backend"}, {Name: "backend"}, {NetworkId: backend.GetId()[:5]}} {
		got, err := s.GetNetwork(ctx, req)
		mustOK(t, err)
		if got.GetNetwork().GetId() != backend.GetId() {
			t.Fatalf("GetNetwork(%v) = %s", req, got.GetNetwork().GetId())
		}
	}
	_, err = s.GetNetwork(ctx, &api.GetNetworkRequest{Name: "nope"})
	wantErr(t, err, codes.NotFound, "network nope not found")

	list, err := s.ListNetworks(ctx, &api.ListNetworksRequest{Filters: &api.ListFilters{NamePrefixes: []string{"back"}}})
	mustOK(t, err)
	if len(list.GetNetworks()) != 1 || list.GetNetworks()[0].GetId() != backend.GetId() {
		t.Fatalf("listed %v", list.GetNetworks())
	}

	// In use by a service, then by a running task.
	spec := withPorts(serviceSpec("web"), &api.PortConfig{TargetPort: 80, PublishedPort: 8080})
	spec.Task.Networks = []*api.NetworkAttachmentConfig{{Target: "backend"}}
	svc := createService(t, s, spec)
	_, err = s.RemoveNetwork(ctx, &api.RemoveNetworkRequest{Name: "backend"})
	wantErr(t, err, codes.FailedPrecondition, "network "+backend.GetId()+" is in use by service "+svc.GetId())
	_, err = s.RemoveNetwork(ctx, &api.RemoveNetworkRequest{NetworkId: "ingress"})
	wantErr(t, err, codes.FailedPrecondition, "ingress network cannot be removed because service "+svc.GetId()+" depends on it")
	_, err = s.RemoveService(ctx, &api.RemoveServiceRequest{ServiceId: svc.GetId()})
	mustOK(t, err)
	put(t, st, &api.Task{Id: "t1", DesiredState: api.TaskState_TASK_STATE_RUNNING,
		Status:   &api.TaskStatus{State: api.TaskState_TASK_STATE_RUNNING},
		Networks: []*api.NetworkAttachment{{Network: backend}}})
	_, err = s.RemoveNetwork(ctx, &api.RemoveNetworkRequest{NetworkId: backend.GetId()})
	wantErr(t, err, codes.FailedPrecondition, "network "+backend.GetId()+" is in use by task t1")
	mustOK(t, st.Update(ctx, func(tx store.Tx) error {
		task := store.GetTask(tx, "t1")
		task.Status.State = api.TaskState_TASK_STATE_SHUTDOWN
		return tx.Update(task)
	}))
	_, err = s.RemoveNetwork(ctx, &api.RemoveNetworkRequest{NetworkId: backend.GetId()})
	mustOK(t, err)
	_, err = s.RemoveNetwork(ctx, &api.RemoveNetworkRequest{NetworkId: "ingress"})
	mustOK(t, err)
	_, err = s.RemoveNetwork(ctx, &api.RemoveNetworkRequest{NetworkId: "ingress"})
	wantErr(t, err, codes.NotFound, "network ingress not found")

	predefined := &api.Network{Id: "hostaaaaaaaaaaaaaaaaaaaaa", Spec: &api.NetworkSpec{Annotations: &api.Annotations{Name: "host", Labels: map[string]string{predefinedLabel: "true"}}}}
	put(t, st, predefined)
	_, err = s.RemoveNetwork(ctx, &api.RemoveNetworkRequest{Name: "host"})
	wantErr(t, err, codes.FailedPrecondition, "is a swarm predefined network and cannot be removed")
}
