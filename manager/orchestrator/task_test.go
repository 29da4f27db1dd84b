package orchestrator

import (
	"testing"
	"time"

	"github.com/openswarm/swarmd/api"
	"google.golang.org/protobuf/proto"
)

func service(mode string) *api.Service {
	s := &api.Service{
		Id:          "svc1",
		SpecVersion: &api.Version{Index: 7},
		Spec: &api.ServiceSpec{
			Annotations: &api.Annotations{Name: "web"},
			Task:        &api.TaskSpec{Container: &api.ContainerSpec{Image: "img:1"}},
			Endpoint:    &api.EndpointSpec{Ports: []*api.PortConfig{{TargetPort: 80, PublishedPort: 8080}}},
		},
		Endpoint: &api.Endpoint{Spec: &api.EndpointSpec{Ports: []*api.PortConfig{{TargetPort: 80, PublishedPort: 8080}}}},
	}
	switch mode {
	case "replicated":
		s.Spec.Mode = &api.ServiceSpec_Replicated{Replicated: &api.ReplicatedService{Replicas: 2}}
	case "global":
		s.Spec.Mode = &api.ServiceSpec_Global{Global: &api.GlobalService{}}
	case "replicated-job":
		s.Spec.Mode = &api.ServiceSpec_ReplicatedJob{ReplicatedJob: &api.ReplicatedJob{TotalCompletions: 3}}
		s.JobStatus = &api.JobStatus{JobIteration: &api.Version{Index: 2}}
	case "global-job":
		s.Spec.Mode = &api.ServiceSpec_GlobalJob{GlobalJob: &api.GlobalJob{}}
	}
	return s
}

func TestNewTask(t *testing.T) {
	now := time.Unix(1700000000, 0)
	tests := []struct {
		mode     string
		slot     uint64
		node     string
		name     string
		desired  api.TaskState
		iterated bool
	}{
		{mode: "replicated", slot: 3, name: "web.3", desired: api.TaskState_TASK_STATE_RUNNING},
		{mode: "global", node: "node1", name: "web.node1", desired: api.TaskState_TASK_STATE_RUNNING},
		{mode: "replicated-job", slot: 1, name: "web.1", desired: api.TaskState_TASK_STATE_COMPLETE, iterated: true},
		{mode: "global-job", node: "node2", name: "web.node2", desired: api.TaskState_TASK_STATE_COMPLETE},
	}
	for _, tt := range tests {
		t.Run(tt.mode, func(t *testing.T) {
			s := service(tt.mode)
			task := NewTask(s, tt.slot, tt.node, now)
			if task.GetId() == "" || task.GetServiceId() != "svc1" || task.GetSlot() != tt.slot || task.GetNodeId() != tt.node {
				t.Fatalf("identity wrong: %v", task)
			}
			if got := task.GetAnnotations().GetName(); got != tt.name {
				t.Errorf("name = %q, want %q", got, tt.name)
			}
			if task.GetDesiredState() != tt.desired || task.GetStatus().GetState() != api.TaskState_TASK_STATE_NEW {
				t.Errorf("states = %v/%v", task.GetDesiredState(), task.GetStatus().GetState())
			}
			if !proto.Equal(task.GetSpec(), s.GetSpec().GetTask()) || task.GetSpec() == s.GetSpec().GetTask() {
				t.Errorf("spec not a copy of the service's")
			}
			if (task.GetJobIteration() != nil) != tt.iterated {
				t.Errorf("job iteration = %v", task.GetJobIteration())
			}
			if IsTaskDirty(s, task) {
				t.Errorf("a new task is dirty")
			}
			shared := NewSharedTask(s, tt.slot, tt.node, now)
			if shared.GetSpec() != s.GetSpec().GetTask() || shared.GetServiceAnnotations() != s.GetSpec().GetAnnotations() {
				t.Errorf("NewSharedTask copied the service's messages")
			}
			shared.Id, shared.Spec, shared.ServiceAnnotations = task.GetId(), task.GetSpec(), task.GetServiceAnnotations()
			if !proto.Equal(shared, task) {
				t.Errorf("NewSharedTask = %v, NewTask = %v", shared, task)
			}
		})
	}
}

func TestIsTaskDirty(t *testing.T) {
	s := service("replicated")
	clean := NewTask(s, 1, "", time.Now())
	tests := []struct {
		name   string
		change func(s *api.Service, task *api.Task)
		want   bool
	}{
		{"unchanged", func(*api.Service, *api.Task) {}, false},
		{"image", func(s *api.Service, _ *api.Task) { s.Spec.Task.Container.Image = "img:2" }, true},
		{"force update", func(s *api.Service, _ *api.Task) { s.Spec.Task.ForceUpdate++ }, true},
		{"replicas only", func(s *api.Service, _ *api.Task) {
			s.Spec.Mode = &api.ServiceSpec_Replicated{Replicated: &api.ReplicatedService{Replicas: 9}}
		}, false},
		{"ports", func(s *api.Service, _ *api.Task) { s.Spec.Endpoint.Ports[0].PublishedPort = 9090 }, true},
		{"ports before allocation", func(s *api.Service, task *api.Task) {
			s.Spec.Endpoint.Ports[0].PublishedPort = 9090
			task.Endpoint = nil
		}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s2, task := proto.CloneOf(s), proto.CloneOf(clean)
			tt.change(s2, task)
			if got := IsTaskDirty(s2, task); got != tt.want {
				t.Errorf("IsTaskDirty = %v, want %v", got, tt.want)
			}
			// DirtyCheck gives the same answer, also to a task sharing
			// the first one's messages, and to a new task among them.
			isDirty := DirtyCheck(s2)
			sharing := proto.CloneOf(task)
			sharing.Spec, sharing.Endpoint = task.Spec, task.Endpoint
			fresh := NewTask(s2, 2, "", time.Now())
			for i, tk := range []*api.Task{task, sharing, fresh, task} {
				want := tt.want
				if tk == fresh {
					want = IsTaskDirty(s2, fresh)
				}
				if got := isDirty(tk); got != want {
					t.Errorf("DirtyCheck, task %d: %v, want %v", i, got, want)
				}
			}
		})
	}
}

func TestNodeEligibility(t *testing.T) {
	node := func(state api.NodeStatus_State, av api.NodeAvailability) *api.Node {
		return &api.Node{Status: &api.NodeStatus{State: state}, Spec: &api.NodeSpec{Availability: av}}
	}
	tests := []struct {
		name          string
		n             *api.Node
		accepts, keep bool
	}{
		{"missing", nil, false, false},
		{"ready active", node(api.NodeStatus_READY, api.NodeAvailability_NODE_AVAILABILITY_ACTIVE), true, true},
		{"unknown active", node(api.NodeStatus_UNKNOWN, api.NodeAvailability_NODE_AVAILABILITY_ACTIVE), true, true},
		{"down", node(api.NodeStatus_DOWN, api.NodeAvailability_NODE_AVAILABILITY_ACTIVE), false, false},
		{"paused", node(api.NodeStatus_READY, api.NodeAvailability_NODE_AVAILABILITY_PAUSE), false, true},
		{"drained", node(api.NodeStatus_READY, api.NodeAvailability_NODE_AVAILABILITY_DRAIN), false, false},
	}
	for _, tt := range tests {
		if got := NodeAcceptsTasks(tt.n); got != tt.accepts {
			t.Errorf("%s: NodeAcceptsTasks = %v", tt.name, got)
		}
		if got := NodeKeepsTasks(tt.n); got != tt.keep {
			t.Errorf("%s: NodeKeepsTasks = %v", tt.name, got)
		}
	}
}

func TestNeedsAllocation(t *testing.T) {
	bare := func() *api.Service {
		return &api.Service{Spec: &api.ServiceSpec{
			Annotations: &api.Annotations{Name: "web"},
			Task:        &api.TaskSpec{Container: &api.ContainerSpec{Image: "img:1"}},
		}}
	}
	tests := []struct {
		name   string
		change func(s *api.Service)
		want   bool
	}{
		{"nothing to allocate", func(*api.Service) {}, false},
		{"endpoint recorded as specified", func(s *api.Service) {
			s.Spec.Endpoint = &api.EndpointSpec{Mode: api.EndpointSpec_DNSRR}
			s.Endpoint = &api.Endpoint{Spec: &api.EndpointSpec{Mode: api.EndpointSpec_DNSRR}}
		}, false},
		{"published port", func(s *api.Service) {
			s.Spec.Endpoint = &api.EndpointSpec{Ports: []*api.PortConfig{{TargetPort: 80}}}
		}, true},
		{"host-mode port", func(s *api.Service) {
			s.Spec.Endpoint = &api.EndpointSpec{Ports: []*api.PortConfig{{TargetPort: 80, PublishMode: api.PortConfig_HOST}}}
		}, true},
		{"network", func(s *api.Service) {
			s.Spec.Task.Networks = []*api.NetworkAttachmentConfig{{Target: "net1"}}
		}, true},
		{"ports removed, endpoint not yet re-allocated", func(s *api.Service) {
			s.Endpoint = &api.Endpoint{Spec: &api.EndpointSpec{Ports: []*api.PortConfig{{TargetPort: 80}}}}
		}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := bare()
			tt.change(s)
			if got := NeedsAllocation(s); got != tt.want {
				t.Fatalf("NeedsAllocation = %v, want %v", got, tt.want)
			}
			want := api.TaskState_TASK_STATE_PENDING
			if tt.want {
				want = api.TaskState_TASK_STATE_NEW
			}
			if got := NewTask(s, 1, "", time.Now()).GetStatus().GetState(); got != want {
				t.Fatalf("NewTask status = %v, want %v", got, want)
			}
		})
	}
}
