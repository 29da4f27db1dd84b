package controlapi

import (
	"testing"
	"time"

	"github.com/openswarm/swarmd/api"
	"google.golang.org/protobuf/proto"
)

func TestApplyServiceDefaults(t *testing.T) {
	update := func() *api.UpdateConfig {
		return &api.UpdateConfig{Parallelism: 1, FailureAction: api.UpdateConfig_PAUSE, Monitor: dur(5 * time.Second), Order: api.UpdateConfig_STOP_FIRST}
	}
	tests := []struct {
		name string
		in   *api.ServiceSpec
		want *api.ServiceSpec
	}{
		{
			name: "bare replicated",
			in: &api.ServiceSpec{
				Annotations: &api.Annotations{Name: "web"},
				Task:        &api.TaskSpec{Container: &api.ContainerSpec{Image: "busybox"}},
			},
			want: &api.ServiceSpec{
				Annotations: &api.Annotations{Name: "web"},
				Task: &api.TaskSpec{
					Container: &api.ContainerSpec{Image: "busybox", StopGracePeriod: dur(10 * time.Second)},
					Resources: &api.ResourceRequirements{},
					Restart:   &api.RestartPolicy{Condition: api.RestartPolicy_ANY, Delay: dur(5 * time.Second)},
					Placement: &api.Placement{},
				},
				Mode:     &api.ServiceSpec_Replicated{Replicated: &api.ReplicatedService{Replicas: 1}},
				Update:   update(),
				Rollback: update(),
				Endpoint: &api.EndpointSpec{Mode: api.EndpointSpec_VIP},
			},
		},
		{
			name: "explicit values kept",
			in: &api.ServiceSpec{
				Task: &api.TaskSpec{
					Container: &api.ContainerSpec{StopGracePeriod: dur(time.Second)},
					Restart:   &api.RestartPolicy{Condition: api.RestartPolicy_NONE},
				},
				Mode:     &api.ServiceSpec_Global{Global: &api.GlobalService{}},
				Update:   &api.UpdateConfig{Parallelism: 0, Order: api.UpdateConfig_START_FIRST},
				Endpoint: &api.EndpointSpec{Mode: api.EndpointSpec_DNSRR},
			},
			want: &api.ServiceSpec{
				Task: &api.TaskSpec{
					Container: &api.ContainerSpec{StopGracePeriod: dur(time.Second)},
					Resources: &api.ResourceRequirements{},
					Restart:   &api.RestartPolicy{Condition: api.RestartPolicy_NONE, Delay: dur(5 * time.Second)},
					Placement: &api.Placement{},
				},
				Mode:     &api.ServiceSpec_Global{Global: &api.GlobalService{}},
				Update:   &api.UpdateConfig{Parallelism: 0, Order: api.UpdateConfig_START_FIRST, Monitor: dur(5 * time.Second)},
				Rollback: update(),
				Endpoint: &api.EndpointSpec{Mode: api.EndpointSpec_DNSRR},
			},
		},
		{
			name: "job: no update config",
			in: &api.ServiceSpec{
				Task: &api.TaskSpec{Container: &api.ContainerSpec{}},
				Mode: &api.ServiceSpec_ReplicatedJob{},
			},
			want: &api.ServiceSpec{
				Task: &api.TaskSpec{
					Container: &api.ContainerSpec{StopGracePeriod: dur(10 * time.Second)},
					Resources: &api.ResourceRequirements{},
					Restart:   &api.RestartPolicy{Condition: api.RestartPolicy_ANY, Delay: dur(5 * time.Second)},
					Placement: &api.Placement{},
				},
				Mode:     &api.ServiceSpec_ReplicatedJob{ReplicatedJob: &api.ReplicatedJob{}},
				Endpoint: &api.EndpointSpec{},
			},
		},
		{
			name: "no task spec",
			in:   &api.ServiceSpec{Mode: &api.ServiceSpec_Replicated{}},
			want: &api.ServiceSpec{
				Mode:     &api.ServiceSpec_Replicated{Replicated: &api.ReplicatedService{}},
				Update:   update(),
				Rollback: update(),
				Endpoint: &api.EndpointSpec{},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := proto.CloneOf(tt.in)
			applyServiceDefaults(got)
			if !proto.Equal(got, tt.want) {
				t.Fatalf("got %v\nwant %v", got, tt.want)
			}
			// Idempotent.
			again := proto.CloneOf(got)
			applyServiceDefaults(again)
			if !proto.Equal(again, got) {
				t.Fatalf("second application changed %v into %v", got, again)
			}
		})
	}
	applyServiceDefaults(nil) // no panic
}

func TestApplyClusterDefaults(t *testing.T) {
	cur := &api.ClusterSpec{Raft: &api.RaftConfig{HeartbeatTick: 1, ElectionTick: 10}}
	spec := &api.ClusterSpec{Dispatcher: &api.DispatcherConfig{HeartbeatPeriod: dur(0)}}
	applyClusterDefaults(spec, cur)
	want := &api.ClusterSpec{
		Dispatcher: &api.DispatcherConfig{HeartbeatPeriod: dur(5 * time.Second)},
		CaConfig:   &api.CAConfig{NodeCertExpiry: dur(2160 * time.Hour)},
		Raft:       &api.RaftConfig{HeartbeatTick: 1, ElectionTick: 10},
	}
	if !proto.Equal(spec, want) {
		t.Fatalf("got %v, want %v", spec, want)
	}
	spec = &api.ClusterSpec{
		Dispatcher: &api.DispatcherConfig{HeartbeatPeriod: dur(time.Second)},
		CaConfig:   &api.CAConfig{NodeCertExpiry: dur(2 * time.Hour)},
		Raft:       &api.RaftConfig{SnapshotInterval: 7},
	}
	want = proto.CloneOf(spec)
	applyClusterDefaults(spec, cur)
	if !proto.Equal(spec, want) {
		t.Fatalf("set values changed: got %v, want %v", spec, want)
	}
}
