package controlapi

import (
	"time"

	"github.com/openswarm/swarmd/api"
	"github.com/openswarm/swarmd/ca"
	"github.com/openswarm/swarmd/manager/dispatcher"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
)

// Defaults docker applies to what a spec leaves unset. Pure functions.
const (
	defaultStopGracePeriod = 10 * time.Second
	defaultRestartDelay    = 5 * time.Second
	defaultUpdateMonitor   = 5 * time.Second
	defaultUpdateParallel  = 1
	defaultReplicas        = 1
)

// applyServiceDefaults fills what spec leaves unset, in place, as docker
// does (swarmkit's defaults.InterpolateService plus the mode docker's API
// defaults to):
//
//   - mode: replicated, 1 replica (a replicated mode that is set keeps
//     its replica count, 0 included)
//   - container stop grace period 10s
//   - resources and placement: empty
//   - restart policy: condition any, delay 5s; a policy without delay
//     gets 5s
//   - update and rollback configs (not for jobs, which may have no
//     update config): parallelism 1, failure action pause, monitor 5s,
//     max failure ratio 0, order stop-first; a config without monitor
//     gets 5s
//   - endpoint: VIP mode (published ports default to TCP and ingress
//     mode, the zero values)
//
// Explicit zero values inside a message (parallelism 0: all at once,
// condition none) are the user's and kept. Nil-safe on a nil task spec.
func applyServiceDefaults(spec *api.ServiceSpec) {
	if spec == nil {
		return
	}
	switch m := spec.GetMode().(type) {
	case nil:
		spec.Mode = &api.ServiceSpec_Replicated{Replicated: &api.ReplicatedService{Replicas: defaultReplicas}}
	case *api.ServiceSpec_Replicated:
		if m.Replicated == nil {
			m.Replicated = &api.ReplicatedService{} // as a proto copy has it
		}
	case *api.ServiceSpec_Global:
		if m.Global == nil {
			m.Global = &api.GlobalService{}
		}
	case *api.ServiceSpec_ReplicatedJob:
		if m.ReplicatedJob == nil {
			m.ReplicatedJob = &api.ReplicatedJob{}
		}
	case *api.ServiceSpec_GlobalJob:
		if m.GlobalJob == nil {
			m.GlobalJob = &api.GlobalJob{}
		}
	}
	if t := spec.GetTask(); t != nil {
		if c := t.GetContainer(); c != nil && c.StopGracePeriod == nil {
			c.StopGracePeriod = durationpb.New(defaultStopGracePeriod)
		}
		if t.Resources == nil {
			t.Resources = &api.ResourceRequirements{}
		}
		if t.Restart == nil {
			// Jobs too: the restart supervisor treats "any" as
			// "on-failure" for them (a completed job never restarts),
			// as swarmkit does.
			t.Restart = &api.RestartPolicy{Condition: api.RestartPolicy_ANY}
		}
		if t.Restart.Delay == nil {
			t.Restart.Delay = durationpb.New(defaultRestartDelay)
		}
		if t.Placement == nil {
			t.Placement = &api.Placement{}
		}
	}
	if !isJob(spec) {
		spec.Update = updateConfigDefaults(spec.Update)
		spec.Rollback = updateConfigDefaults(spec.Rollback)
	}
	if spec.Endpoint == nil {
		spec.Endpoint = &api.EndpointSpec{Mode: api.EndpointSpec_VIP}
	}
}

func updateConfigDefaults(uc *api.UpdateConfig) *api.UpdateConfig {
	if uc == nil {
		return &api.UpdateConfig{
			Parallelism:   defaultUpdateParallel,
			FailureAction: api.UpdateConfig_PAUSE,
			Monitor:       durationpb.New(defaultUpdateMonitor),
			Order:         api.UpdateConfig_STOP_FIRST,
		}
	}
	if uc.Monitor == nil {
		uc.Monitor = durationpb.New(defaultUpdateMonitor)
	}
	return uc
}

// applyClusterDefaults fills, in place, what a cluster update leaves
// unset or zero: the dispatcher heartbeat period (5s) and the node
// certificate expiry (90 days); a spec without raft settings keeps cur's,
// which cannot change at run time anyway.
func applyClusterDefaults(spec, cur *api.ClusterSpec) {
	if spec.Dispatcher == nil {
		spec.Dispatcher = &api.DispatcherConfig{}
	}
	if spec.Dispatcher.GetHeartbeatPeriod().AsDuration() == 0 {
		spec.Dispatcher.HeartbeatPeriod = durationpb.New(dispatcher.DefaultHeartbeatPeriod)
	}
	if spec.CaConfig == nil {
		spec.CaConfig = &api.CAConfig{}
	}
	if spec.CaConfig.GetNodeCertExpiry().AsDuration() == 0 {
		spec.CaConfig.NodeCertExpiry = durationpb.New(ca.DefaultNodeCertExpiry)
	}
	if spec.Raft == nil && cur.GetRaft() != nil {
		spec.Raft = proto.CloneOf(cur.GetRaft())
	}
}
