package dispatcher

import (
	"testing"
	"time"

	"github.com/openswarm/swarmd/api"
	"github.com/openswarm/swarmd/manager/state/store"
	"google.golang.org/protobuf/proto"
)

func meshService(id string, ports ...*api.PortConfig) *api.Service {
	return &api.Service{Id: id, Spec: &api.ServiceSpec{Annotations: &api.Annotations{Name: id}}, Endpoint: &api.Endpoint{Ports: ports}}
}

func meshTask(id, svc, node string, state, desired api.TaskState) *api.Task {
	return &api.Task{Id: id, ServiceId: svc, NodeId: node, DesiredState: desired, Status: &api.TaskStatus{State: state}}
}

func meshNode(id string, state api.NodeStatus_State, tunnel string) *api.Node {
	return &api.Node{Id: id, Status: &api.NodeStatus{State: state}, Description: &api.NodeDescription{MeshTunnel: tunnel}}
}

func TestMeshTable(t *testing.T) {
	const (
		running  = api.TaskState_TASK_STATE_RUNNING
		shutdown = api.TaskState_TASK_STATE_SHUTDOWN
		starting = api.TaskState_TASK_STATE_STARTING
	)
	tcp80 := &api.PortConfig{TargetPort: 80, PublishedPort: 8080}
	udp53 := &api.PortConfig{Protocol: api.PortConfig_UDP, TargetPort: 53, PublishedPort: 5353}
	host := &api.PortConfig{TargetPort: 80, PublishedPort: 9090, PublishMode: api.PortConfig_HOST}
	nodes := map[string]*api.Node{
		"n1":   meshNode("n1", api.NodeStatus_READY, "10.0.0.1:7946"),
		"n2":   meshNode("n2", api.NodeStatus_READY, "10.0.0.2:7946"),
		"down": meshNode("down", api.NodeStatus_DOWN, "10.0.0.3:7946"),
		"old":  meshNode("old", api.NodeStatus_READY, ""),
	}
	cases := []struct {
		name  string
		svcs  []*api.Service
		tasks map[string][]*api.Task
		want  *api.MeshMessage
	}{
		{"nothing published", []*api.Service{meshService("s")}, nil, &api.MeshMessage{}},
		{"host mode is not the mesh's", []*api.Service{meshService("s", host)}, nil, &api.MeshMessage{}},
		{"running tasks on ready nodes only",
			[]*api.Service{meshService("s", tcp80)},
			map[string][]*api.Task{"s": {
				meshTask("t2", "s", "n2", running, running),
				meshTask("t1", "s", "n1", running, running),
				meshTask("t3", "s", "n1", starting, running),
				meshTask("t4", "s", "n1", running, shutdown),
				meshTask("t5", "s", "down", running, running),
				meshTask("t6", "s", "old", running, running),
			}},
			&api.MeshMessage{Ports: []*api.MeshPort{{PublishedPort: 8080, TargetPort: 80, ServiceId: "s", Backends: []*api.MeshBackend{
				{TaskId: "t1", NodeId: "n1", Tunnel: "10.0.0.1:7946"}, {TaskId: "t2", NodeId: "n2", Tunnel: "10.0.0.2:7946"},
			}}}}},
		{"ports sorted, a port without tasks stays bound",
			[]*api.Service{meshService("b", udp53), meshService("a", tcp80)},
			map[string][]*api.Task{"b": {meshTask("t9", "b", "n1", running, running)}},
			&api.MeshMessage{Ports: []*api.MeshPort{
				{PublishedPort: 8080, TargetPort: 80, ServiceId: "a"},
				{Protocol: api.PortConfig_UDP, PublishedPort: 5353, TargetPort: 53, ServiceId: "b", Backends: []*api.MeshBackend{{TaskId: "t9", NodeId: "n1", Tunnel: "10.0.0.1:7946"}}},
			}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var published []*api.Service
			for _, s := range tc.svcs {
				if len(ingressPorts(s)) > 0 {
					published = append(published, s)
				}
			}
			if got := meshTable(published, tc.tasks, nodes); !proto.Equal(got, tc.want) {
				t.Errorf("got  %v\nwant %v", got, tc.want)
			}
		})
	}
}

// TestMeshStream: a node's Mesh stream gets the table at once and again
// when a task starts running and when it stops.
func TestMeshStream(t *testing.T) {
	h := newHarness(t, func(tx store.Tx) error {
		for _, o := range []api.StoreObject{
			meshNode("n1", api.NodeStatus_READY, "10.0.0.1:7946"),
			meshService("s", &api.PortConfig{TargetPort: 80, PublishedPort: 8080}),
			meshTask("t1", "s", "n1", api.TaskState_TASK_STATE_STARTING, api.TaskState_TASK_STATE_RUNNING),
		} {
			if err := tx.Create(o); err != nil {
				return err
			}
		}
		return nil
	}, nil)
	a := h.connect("n1", &api.NodeDescription{MeshTunnel: "10.0.0.1:7946"})
	stream, err := h.client.Mesh(a.ctx, &api.MeshRequest{SessionId: a.session})
	if err != nil {
		t.Fatal(err)
	}
	msgs := make(chan *api.MeshMessage, 10)
	go func() {
		for {
			m, err := stream.Recv()
			if err != nil {
				close(msgs)
				return
			}
			msgs <- m
		}
	}()
	next := func(want int) {
		t.Helper()
		deadline := time.After(10 * time.Second)
		for {
			select {
			case m, ok := <-msgs:
				if !ok {
					t.Fatal("mesh stream ended")
				}
				if len(m.GetPorts()) == 1 && len(m.GetPorts()[0].GetBackends()) == want {
					return
				}
			case <-deadline:
				t.Fatalf("no table with %d backends", want)
			}
		}
	}
	next(0)
	setState := func(st api.TaskState) {
		h.update(func(tx store.Tx) error {
			tk := store.GetTask(tx, "t1")
			tk.Status.State = st
			return tx.Update(tk)
		})
	}
	setState(api.TaskState_TASK_STATE_RUNNING)
	next(1)
	setState(api.TaskState_TASK_STATE_FAILED)
	next(0)

	bad, err := h.client.Mesh(h.as("n1"), &api.MeshRequest{SessionId: "nosuch"})
	if err == nil {
		_, err = bad.Recv() // a server stream's error comes with the first message
	}
	if err == nil {
		t.Error("a mesh stream without a valid session was served")
	}
}

func TestMeshRelevant(t *testing.T) {
	ingress := map[string]bool{"s": true}
	cases := []struct {
		name    string
		ev      store.Event
		ingress map[string]bool
		want    bool
	}{
		{"any service", store.Event{Object: meshService("x")}, nil, true},
		{"a node while ports are published", store.Event{Object: meshNode("n", api.NodeStatus_READY, "")}, ingress, true},
		{"a node while none is", store.Event{Object: meshNode("n", api.NodeStatus_READY, "")}, nil, false},
		{"a task of a publishing service", store.Event{Object: meshTask("t", "s", "n", 0, 0)}, ingress, true},
		{"a task of another service", store.Event{Object: meshTask("t", "other", "n", 0, 0)}, ingress, false},
		{"a restore", store.Event{Action: store.EventRestore}, nil, true},
	}
	for _, tc := range cases {
		if got := meshRelevant(tc.ev, tc.ingress); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}
