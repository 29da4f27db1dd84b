package convert

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/mount"
	"github.com/docker/docker/api/types/swarm"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/openswarm/swarmd/api"
)

// cliCreateBody is what docker CLI 28 sends for
// `docker service create --name web --replicas 3 --publish 8080:80 img`.
const cliCreateBody = `{"Name":"web","Labels":{},"TaskTemplate":{"ContainerSpec":{"Image":"img","Init":false,"StopGracePeriod":10000000000,"DNSConfig":{},"Isolation":"default"},"Resources":{"Limits":{},"Reservations":{}},"RestartPolicy":{"Condition":"any","Delay":5000000000,"MaxAttempts":0},"Placement":{},"ForceUpdate":0,"Runtime":"container"},"Mode":{"Replicated":{"Replicas":3}},"UpdateConfig":{"Parallelism":1,"FailureAction":"pause","Monitor":5000000000,"MaxFailureRatio":0,"Order":"stop-first"},"RollbackConfig":{"Parallelism":1,"FailureAction":"pause","Monitor":5000000000,"MaxFailureRatio":0,"Order":"stop-first"},"EndpointSpec":{"Mode":"vip","Ports":[{"Protocol":"tcp","TargetPort":80,"PublishedPort":8080,"PublishMode":"ingress"}]}}`

func TestServiceSpecFromCLI(t *testing.T) {
	var ds swarm.ServiceSpec
	if err := json.Unmarshal([]byte(cliCreateBody), &ds); err != nil {
		t.Fatal(err)
	}
	s, err := ServiceSpecFromDocker(ds)
	if err != nil {
		t.Fatal(err)
	}
	want := &api.ServiceSpec{
		Annotations: &api.Annotations{Name: "web", Labels: map[string]string{}},
		Task: &api.TaskSpec{
			Container: &api.ContainerSpec{Image: "img", StopGracePeriod: durationpb.New(10 * time.Second)},
			Resources: &api.ResourceRequirements{Limits: &api.Resources{}, Reservations: &api.Resources{}},
			Restart:   &api.RestartPolicy{Condition: api.RestartPolicy_ANY, Delay: durationpb.New(5 * time.Second)},
			Placement: &api.Placement{},
		},
		Mode:     &api.ServiceSpec_Replicated{Replicated: &api.ReplicatedService{Replicas: 3}},
		Update:   &api.UpdateConfig{Parallelism: 1, Delay: durationpb.New(0), Monitor: durationpb.New(5 * time.Second)},
		Rollback: &api.UpdateConfig{Parallelism: 1, Delay: durationpb.New(0), Monitor: durationpb.New(5 * time.Second)},
		Endpoint: &api.EndpointSpec{Ports: []*api.PortConfig{{TargetPort: 80, PublishedPort: 8080}}},
	}
	if !proto.Equal(s, want) {
		t.Errorf("got  %v\nwant %v", s, want)
	}
	// Back to docker and again to swarmd: nothing is lost.
	back := serviceSpecToDocker(s)
	again, err := ServiceSpecFromDocker(back)
	if err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(again, s) {
		t.Errorf("round trip differs:\n%v\n%v", again, s)
	}
	if got := *back.Mode.Replicated.Replicas; got != 3 {
		t.Errorf("replicas %d", got)
	}
	if back.EndpointSpec.Ports[0].PublishMode != swarm.PortConfigPublishModeIngress || back.EndpointSpec.Ports[0].Protocol != swarm.PortConfigProtocolTCP {
		t.Errorf("ports %+v", back.EndpointSpec.Ports)
	}
}

func TestServiceSpecRoundTrip(t *testing.T) {
	grace, delay, window := 3*time.Second, time.Second, time.Minute
	attempts, mc, tc := uint64(4), uint64(2), uint64(6)
	tru := true
	cases := []struct {
		name string
		spec swarm.ServiceSpec
	}{
		{"global with everything", swarm.ServiceSpec{
			Annotations: swarm.Annotations{Name: "g", Labels: map[string]string{"a": "b"}},
			TaskTemplate: swarm.TaskSpec{
				ContainerSpec: &swarm.ContainerSpec{
					Image: "img:v2", Labels: map[string]string{"l": "v"}, Command: []string{"/app"}, Args: []string{"-x"},
					Hostname: "h", Env: []string{"A=1"}, Dir: "/w", User: "1000", Groups: []string{"g"},
					Init: &tru, StopSignal: "SIGINT", TTY: true, OpenStdin: true, ReadOnly: true,
					Mounts:          []mount.Mount{{Type: mount.TypeVolume, Source: "v", Target: "/v", ReadOnly: true}, {Type: mount.TypeTmpfs, Target: "/t"}},
					StopGracePeriod: &grace,
					Healthcheck: &container.HealthConfig{Test: []string{"CMD", "/app", "-probe", "http://localhost/health"},
						Interval: time.Second, Timeout: 2 * time.Second, StartPeriod: 3 * time.Second, Retries: 4},
					Hosts: []string{"10.0.0.1 db"},
				},
				Resources:     &swarm.ResourceRequirements{Limits: &swarm.Limit{NanoCPUs: 5e8, MemoryBytes: 1 << 20}, Reservations: &swarm.Resources{NanoCPUs: 1e8}},
				RestartPolicy: &swarm.RestartPolicy{Condition: swarm.RestartPolicyConditionOnFailure, Delay: &delay, MaxAttempts: &attempts, Window: &window},
				Placement: &swarm.Placement{Constraints: []string{"node.role==manager"}, MaxReplicas: 2,
					Preferences: []swarm.PlacementPreference{{Spread: &swarm.SpreadOver{SpreadDescriptor: "node.labels.zone"}}}},
				ForceUpdate: 2,
				Networks:    []swarm.NetworkAttachmentConfig{{Target: "backend", Aliases: []string{"web", "www"}}, {Target: "n2"}},
			},
			Mode:         swarm.ServiceMode{Global: &swarm.GlobalService{}},
			UpdateConfig: &swarm.UpdateConfig{Parallelism: 2, Delay: time.Second, FailureAction: "rollback", Monitor: time.Minute, MaxFailureRatio: 0.5, Order: "start-first"},
			EndpointSpec: &swarm.EndpointSpec{Mode: swarm.ResolutionModeDNSRR, Ports: []swarm.PortConfig{{Protocol: "udp", TargetPort: 53, PublishedPort: 53, PublishMode: "host"}}},
		}},
		{"replicated job", swarm.ServiceSpec{
			Annotations:  swarm.Annotations{Name: "j", Labels: map[string]string{}},
			TaskTemplate: swarm.TaskSpec{ContainerSpec: &swarm.ContainerSpec{Image: "img"}},
			Mode:         swarm.ServiceMode{ReplicatedJob: &swarm.ReplicatedJob{MaxConcurrent: &mc, TotalCompletions: &tc}},
		}},
		{"global job", swarm.ServiceSpec{
			Annotations:  swarm.Annotations{Name: "gj", Labels: map[string]string{}},
			TaskTemplate: swarm.TaskSpec{ContainerSpec: &swarm.ContainerSpec{Image: "img"}},
			Mode:         swarm.ServiceMode{GlobalJob: &swarm.GlobalJob{}},
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s, err := ServiceSpecFromDocker(tc.spec)
			if err != nil {
				t.Fatal(err)
			}
			again, err := ServiceSpecFromDocker(serviceSpecToDocker(s))
			if err != nil {
				t.Fatal(err)
			}
			if !proto.Equal(s, again) {
				t.Errorf("round trip differs:\n%v\n%v", s, again)
			}
		})
	}
}

func TestServiceSpecFromDockerRefuses(t *testing.T) {
	base := func() swarm.ServiceSpec {
		return swarm.ServiceSpec{Annotations: swarm.Annotations{Name: "x"}, TaskTemplate: swarm.TaskSpec{ContainerSpec: &swarm.ContainerSpec{Image: "img"}}}
	}
	one := uint64(1)
	cases := []struct {
		name  string
		tweak func(*swarm.ServiceSpec)
		want  string
	}{
		{"no container", func(s *swarm.ServiceSpec) { s.TaskTemplate.ContainerSpec = nil }, "TaskTemplate.ContainerSpec: missing"},
		{"two modes", func(s *swarm.ServiceSpec) {
			s.Mode = swarm.ServiceMode{Replicated: &swarm.ReplicatedService{Replicas: &one}, Global: &swarm.GlobalService{}}
		}, "Mode: only one of"},
		{"restart condition", func(s *swarm.ServiceSpec) {
			s.TaskTemplate.RestartPolicy = &swarm.RestartPolicy{Condition: "sometimes"}
		}, `invalid RestartCondition: "sometimes"`},
		{"failure action", func(s *swarm.ServiceSpec) { s.UpdateConfig = &swarm.UpdateConfig{FailureAction: "explode"} }, `UpdateConfig.FailureAction: unrecognized update failure action "explode"`},
		{"rollback of rollback", func(s *swarm.ServiceSpec) { s.RollbackConfig = &swarm.UpdateConfig{FailureAction: "rollback"} }, "RollbackConfig.FailureAction"},
		{"order", func(s *swarm.ServiceSpec) { s.UpdateConfig = &swarm.UpdateConfig{Order: "random"} }, `UpdateConfig.Order: unrecognized update order "random"`},
		{"ratio", func(s *swarm.ServiceSpec) { s.UpdateConfig = &swarm.UpdateConfig{MaxFailureRatio: 2} }, "UpdateConfig.MaxFailureRatio"},
		{"negative delay", func(s *swarm.ServiceSpec) { s.UpdateConfig = &swarm.UpdateConfig{Delay: -time.Second} }, "UpdateConfig.Delay"},
		{"resolution mode", func(s *swarm.ServiceSpec) { s.EndpointSpec = &swarm.EndpointSpec{Mode: "magic"} }, `EndpointSpec.Mode: invalid resolution mode "magic"`},
		{"protocol", func(s *swarm.ServiceSpec) {
			s.EndpointSpec = &swarm.EndpointSpec{Ports: []swarm.PortConfig{{Protocol: "icmp", TargetPort: 1}}}
		}, `EndpointSpec.Ports[0].Protocol: invalid protocol "icmp"`},
		{"publish mode", func(s *swarm.ServiceSpec) {
			s.EndpointSpec = &swarm.EndpointSpec{Ports: []swarm.PortConfig{{PublishMode: "everywhere", TargetPort: 1}}}
		}, `EndpointSpec.Ports[0].PublishMode: invalid publish mode "everywhere"`},
		{"mount type", func(s *swarm.ServiceSpec) {
			s.TaskTemplate.ContainerSpec.Mounts = []mount.Mount{{Type: "nfs", Target: "/x"}}
		}, `TaskTemplate.ContainerSpec.Mounts[0].Type: invalid mount type "nfs"`},
		{"mount target", func(s *swarm.ServiceSpec) {
			s.TaskTemplate.ContainerSpec.Mounts = []mount.Mount{{Type: mount.TypeBind, Source: "/x"}}
		}, "TaskTemplate.ContainerSpec.Mounts[0].Target: missing"},
		{"capabilities", func(s *swarm.ServiceSpec) { s.TaskTemplate.ContainerSpec.CapabilityAdd = []string{"NET_ADMIN"} }, "TaskTemplate.ContainerSpec.CapabilityAdd: not supported"},
		{"sysctls", func(s *swarm.ServiceSpec) { s.TaskTemplate.ContainerSpec.Sysctls = map[string]string{"a": "b"} }, "TaskTemplate.ContainerSpec.Sysctls"},
		{"network without target", func(s *swarm.ServiceSpec) {
			s.TaskTemplate.Networks = []swarm.NetworkAttachmentConfig{{Target: "net"}, {Aliases: []string{"a"}}}
		}, "TaskTemplate.Networks[1].Target: missing"},
		{"network driver options", func(s *swarm.ServiceSpec) {
			s.TaskTemplate.Networks = []swarm.NetworkAttachmentConfig{{Target: "net", DriverOpts: map[string]string{"a": "b"}}}
		}, "TaskTemplate.Networks[0].DriverOpts: not supported"},
		{"deprecated network without target", func(s *swarm.ServiceSpec) {
			//lint:ignore SA1019 the deprecated field is what is tested
			s.Networks = []swarm.NetworkAttachmentConfig{{}}
		}, "Networks[0].Target: missing"},
		{"log driver", func(s *swarm.ServiceSpec) { s.TaskTemplate.LogDriver = &swarm.Driver{Name: "syslog"} }, "TaskTemplate.LogDriver"},
		{"plugin runtime", func(s *swarm.ServiceSpec) { s.TaskTemplate.Runtime = swarm.RuntimePlugin }, "TaskTemplate.Runtime"},
		{"pids limit", func(s *swarm.ServiceSpec) {
			s.TaskTemplate.Resources = &swarm.ResourceRequirements{Limits: &swarm.Limit{Pids: 10}}
		}, "TaskTemplate.Resources.Limits.Pids"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := base()
			tc.tweak(&s)
			_, err := ServiceSpecFromDocker(s)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

func TestServiceToDocker(t *testing.T) {
	svc := &api.Service{
		Id:   "s1",
		Meta: &api.Meta{Version: &api.Version{Index: 7}},
		Spec: &api.ServiceSpec{Annotations: &api.Annotations{Name: "web"}, Task: &api.TaskSpec{Container: &api.ContainerSpec{Image: "img"}},
			Mode: &api.ServiceSpec_Replicated{Replicated: &api.ReplicatedService{Replicas: 2}}},
		PreviousSpec: &api.ServiceSpec{Annotations: &api.Annotations{Name: "web"}, Task: &api.TaskSpec{Container: &api.ContainerSpec{Image: "old"}}},
		Endpoint: &api.Endpoint{Ports: []*api.PortConfig{{TargetPort: 80, PublishedPort: 8080}},
			VirtualIps: []*api.Endpoint_VirtualIP{{NetworkId: "n", Addr: "10.0.0.2/24"}}},
		UpdateStatus: &api.UpdateStatus{State: api.UpdateStatus_ROLLBACK_COMPLETED, Message: "rollback completed"},
	}
	d := ServiceToDocker(svc)
	if d.ID != "s1" || d.Version.Index != 7 || d.Spec.Name != "web" || *d.Spec.Mode.Replicated.Replicas != 2 {
		t.Errorf("service %+v", d)
	}
	if d.PreviousSpec == nil || d.PreviousSpec.TaskTemplate.ContainerSpec.Image != "old" {
		t.Errorf("previous spec %+v", d.PreviousSpec)
	}
	if d.UpdateStatus == nil || d.UpdateStatus.State != swarm.UpdateStateRollbackCompleted || d.UpdateStatus.StartedAt != nil {
		t.Errorf("update status %+v", d.UpdateStatus)
	}
	if len(d.Endpoint.Ports) != 1 || d.Endpoint.Ports[0].PublishMode != swarm.PortConfigPublishModeIngress || d.Endpoint.VirtualIPs[0].Addr != "10.0.0.2/24" {
		t.Errorf("endpoint %+v", d.Endpoint)
	}
	if d.JobStatus != nil {
		t.Error("a replicated service has a job status")
	}
	if d.Spec.Labels == nil {
		t.Error("labels must be {} (the CLI prints them), not null")
	}
}

func TestTaskToDocker(t *testing.T) {
	task := &api.Task{
		Id: "t1", ServiceId: "s1", Slot: 2, NodeId: "n1",
		DesiredState: api.TaskState_TASK_STATE_RUNNING,
		Status: &api.TaskStatus{State: api.TaskState_TASK_STATE_FAILED, Err: "task: non-zero exit (1)",
			Container: &api.ContainerStatus{ContainerId: "c", Pid: 0, ExitCode: 1}},
		Spec: &api.TaskSpec{Container: &api.ContainerSpec{Image: "img"}},
	}
	d := TaskToDocker(task)
	if d.Status.State != swarm.TaskStateFailed || d.DesiredState != swarm.TaskStateRunning || d.Slot != 2 ||
		d.Status.ContainerStatus.ExitCode != 1 || d.Status.Err != "task: non-zero exit (1)" {
		t.Errorf("task %+v", d)
	}
	for st := range api.TaskState_name {
		name := TaskState(api.TaskState(st))
		back, ok := taskStateFromDocker(string(name))
		if !ok || back != api.TaskState(st) {
			t.Errorf("state %v → %q → %v", api.TaskState(st), name, back)
		}
	}
}

func TestNodes(t *testing.T) {
	n := &api.Node{
		Id:            "n1",
		Spec:          &api.NodeSpec{DesiredRole: api.NodeRole_NODE_ROLE_MANAGER, Availability: api.NodeAvailability_NODE_AVAILABILITY_DRAIN, Annotations: &api.Annotations{Labels: map[string]string{"zone": "a"}}},
		Description:   &api.NodeDescription{Hostname: "h1", Engine: &api.EngineDescription{EngineVersion: "20.10", Labels: map[string]string{"disk": "ssd"}}},
		Status:        &api.NodeStatus{State: api.NodeStatus_READY, Addr: "10.0.0.1"},
		ManagerStatus: &api.ManagerStatus{Leader: true, Reachability: api.RaftMemberStatus_REACHABLE, Addr: "10.0.0.1:2377"},
	}
	d := NodeToDocker(n)
	if d.Spec.Role != swarm.NodeRoleManager || d.Spec.Availability != swarm.NodeAvailabilityDrain || d.Status.State != swarm.NodeStateReady ||
		d.ManagerStatus == nil || d.ManagerStatus.Reachability != swarm.ReachabilityReachable || !d.ManagerStatus.Leader {
		t.Errorf("node %+v", d)
	}
	spec, err := NodeSpecFromDocker(d.Spec)
	if err != nil {
		t.Fatal(err)
	}
	if spec.GetDesiredRole() != api.NodeRole_NODE_ROLE_MANAGER || spec.GetAvailability() != api.NodeAvailability_NODE_AVAILABILITY_DRAIN ||
		spec.GetAnnotations().GetLabels()["zone"] != "a" || spec.GetMembership() != api.NodeMembership_NODE_MEMBERSHIP_ACCEPTED {
		t.Errorf("spec %v", spec)
	}
	for _, bad := range []swarm.NodeSpec{{Role: "boss"}, {Availability: "sometimes"}} {
		if _, err := NodeSpecFromDocker(bad); err == nil || !strings.HasPrefix(err.Error(), "invalid ") {
			t.Errorf("%+v: error %v", bad, err)
		}
	}
}

func TestMergeSwarmSpec(t *testing.T) {
	keep := uint64(0)
	limit := int64(10)
	cur := &api.ClusterSpec{
		Annotations:   &api.Annotations{Name: "default"},
		Orchestration: &api.OrchestrationConfig{TaskHistoryRetentionLimit: 5},
		Raft:          &api.RaftConfig{SnapshotInterval: 10000, KeepOldSnapshots: 1, HeartbeatTick: 1, ElectionTick: 10},
		Dispatcher:    &api.DispatcherConfig{HeartbeatPeriod: durationpb.New(5 * time.Second)},
		CaConfig: &api.CAConfig{NodeCertExpiry: durationpb.New(90 * 24 * time.Hour),
			ExternalCas: []*api.ExternalCA{{Url: "https://flag-ca"}}},
	}
	cases := []struct {
		name  string
		spec  swarm.Spec
		check func(*api.ClusterSpec) bool
		err   string
	}{
		{"zero keeps everything", swarm.Spec{}, func(s *api.ClusterSpec) bool {
			if len(s.GetCaConfig().GetExternalCas()) != 1 {
				return false
			}
			return s.GetOrchestration().GetTaskHistoryRetentionLimit() == 5 && s.GetRaft().GetSnapshotInterval() == 10000 &&
				s.GetDispatcher().GetHeartbeatPeriod().AsDuration() == 5*time.Second && s.GetAnnotations().GetName() == "default"
		}, ""},
		{"set values", swarm.Spec{
			Orchestration: swarm.OrchestrationConfig{TaskHistoryRetentionLimit: &limit},
			Raft:          swarm.RaftConfig{KeepOldSnapshots: &keep, ElectionTick: 20},
			Dispatcher:    swarm.DispatcherConfig{HeartbeatPeriod: time.Second},
			CAConfig:      swarm.CAConfig{NodeCertExpiry: time.Hour, ExternalCAs: []*swarm.ExternalCA{{Protocol: "cfssl", URL: "https://ca"}}},
		}, func(s *api.ClusterSpec) bool {
			return s.GetOrchestration().GetTaskHistoryRetentionLimit() == 10 && s.GetRaft().GetKeepOldSnapshots() == 0 &&
				s.GetRaft().GetElectionTick() == 20 && s.GetRaft().GetHeartbeatTick() == 1 &&
				s.GetDispatcher().GetHeartbeatPeriod().AsDuration() == time.Second &&
				s.GetCaConfig().GetNodeCertExpiry().AsDuration() == time.Hour && s.GetCaConfig().GetExternalCas()[0].GetUrl() == "https://ca"
		}, ""},
		{"bad external CA", swarm.Spec{CAConfig: swarm.CAConfig{ExternalCAs: []*swarm.ExternalCA{{Protocol: "acme", URL: "x"}}}}, nil, "CAConfig.ExternalCAs[0].Protocol"},
		{"negative heartbeat", swarm.Spec{Dispatcher: swarm.DispatcherConfig{HeartbeatPeriod: -time.Second}}, nil, "Dispatcher.HeartbeatPeriod"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := proto.CloneOf(cur)
			got, err := MergeSwarmSpec(cur, tc.spec)
			if !proto.Equal(before, cur) {
				t.Fatal("MergeSwarmSpec modified its input")
			}
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !tc.check(got) {
				t.Errorf("merged %v", got)
			}
		})
	}
	sw := SwarmFromCluster(&api.Cluster{Id: "c", Spec: cur, RootCa: &api.RootCA{JoinTokens: &api.JoinTokens{Worker: "SWMTKN-w"}}})
	if sw.JoinTokens.Worker != "SWMTKN-w" || *sw.Spec.Orchestration.TaskHistoryRetentionLimit != 5 || sw.Spec.Raft.ElectionTick != 10 {
		t.Errorf("swarm %+v", sw)
	}
	back, err := MergeSwarmSpec(&api.ClusterSpec{}, sw.Spec)
	if err != nil || !proto.Equal(back, mustEnsure(cur)) {
		t.Errorf("inspect → update round trip: %v, %v", back, err)
	}
}

func mustEnsure(s *api.ClusterSpec) *api.ClusterSpec {
	c := proto.CloneOf(s)
	ensureClusterSpec(c)
	return c
}

func TestFilters(t *testing.T) {
	svcs := []*api.Service{
		{Id: "abc1", Spec: &api.ServiceSpec{Annotations: &api.Annotations{Name: "web", Labels: map[string]string{"tier": "front"}},
			Mode: &api.ServiceSpec_Replicated{Replicated: &api.ReplicatedService{}}}},
		{Id: "def2", Spec: &api.ServiceSpec{Annotations: &api.Annotations{Name: "agent"}, Mode: &api.ServiceSpec_Global{Global: &api.GlobalService{}}}},
	}
	svcCases := []struct {
		args filters.Args
		want []string
		err  string
	}{
		{filters.NewArgs(), []string{"abc1", "def2"}, ""},
		{filters.NewArgs(filters.Arg("id", "ab")), []string{"abc1"}, ""},
		{filters.NewArgs(filters.Arg("name", "ag")), []string{"def2"}, ""},
		{filters.NewArgs(filters.Arg("label", "tier=front")), []string{"abc1"}, ""},
		{filters.NewArgs(filters.Arg("label", "tier=back")), nil, ""},
		{filters.NewArgs(filters.Arg("mode", "global")), []string{"def2"}, ""},
		{filters.NewArgs(filters.Arg("mode", "sometimes")), nil, "Invalid filter: 'mode'='sometimes'"},
		{filters.NewArgs(filters.Arg("colour", "red")), nil, "invalid filter 'colour'"},
	}
	for _, tc := range svcCases {
		match, err := ServiceFilter(tc.args)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%v: error %v, want %q", tc.args, err, tc.err)
			}
			continue
		}
		var got []string
		for _, s := range svcs {
			if match(s) {
				got = append(got, s.Id)
			}
		}
		if strings.Join(got, ",") != strings.Join(tc.want, ",") {
			t.Errorf("%v: %v, want %v", tc.args, got, tc.want)
		}
	}

	nodes := []*api.Node{
		{Id: "n1", Spec: &api.NodeSpec{DesiredRole: api.NodeRole_NODE_ROLE_MANAGER, Membership: api.NodeMembership_NODE_MEMBERSHIP_ACCEPTED},
			Description: &api.NodeDescription{Hostname: "alpha"}},
		{Id: "n2", Spec: &api.NodeSpec{Annotations: &api.Annotations{Labels: map[string]string{"zone": "b"}}, Membership: api.NodeMembership_NODE_MEMBERSHIP_ACCEPTED},
			Description: &api.NodeDescription{Hostname: "beta", Engine: &api.EngineDescription{Labels: map[string]string{"disk": "ssd"}}}},
	}
	nodeCases := []struct {
		args filters.Args
		want string
		err  string
	}{
		{filters.NewArgs(filters.Arg("role", "manager")), "n1", ""},
		{filters.NewArgs(filters.Arg("role", "worker")), "n2", ""},
		{filters.NewArgs(filters.Arg("name", "be")), "n2", ""},
		{filters.NewArgs(filters.Arg("node.label", "zone=b")), "n2", ""},
		{filters.NewArgs(filters.Arg("label", "disk")), "n2", ""},
		{filters.NewArgs(filters.Arg("membership", "pending")), "", ""},
		{filters.NewArgs(filters.Arg("role", "boss")), "", "Invalid role filter: 'boss'"},
		{filters.NewArgs(filters.Arg("hostname", "x")), "", "invalid filter 'hostname'"},
	}
	for _, tc := range nodeCases {
		match, err := NodeFilter(tc.args)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%v: error %v, want %q", tc.args, err, tc.err)
			}
			continue
		}
		var got []string
		for _, n := range nodes {
			if match(n) {
				got = append(got, n.Id)
			}
		}
		if strings.Join(got, ",") != tc.want {
			t.Errorf("%v: %v, want %v", tc.args, got, tc.want)
		}
	}

	tasks := []*api.Task{
		{Id: "t1", Slot: 1, ServiceAnnotations: &api.Annotations{Name: "web", Labels: map[string]string{"com.docker.stack.namespace": "st"}}, DesiredState: api.TaskState_TASK_STATE_RUNNING},
		{Id: "t2", NodeId: "n9", ServiceAnnotations: &api.Annotations{Name: "agent"}, DesiredState: api.TaskState_TASK_STATE_SHUTDOWN},
	}
	taskCases := []struct {
		args filters.Args
		want string
		err  string
	}{
		{filters.NewArgs(filters.Arg("desired-state", "running")), "t1", ""},
		{filters.NewArgs(filters.Arg("desired-state", "shutdown")), "t2", ""},
		{filters.NewArgs(filters.Arg("name", "web.1")), "t1", ""},
		{filters.NewArgs(filters.Arg("name", "agent.n9")), "t2", ""},
		{filters.NewArgs(filters.Arg("service", "web"), filters.Arg("_up-to-date", "true")), "t1,t2", ""},
		{filters.NewArgs(filters.Arg("label", "com.docker.stack.namespace=st")), "t1", ""},
		{filters.NewArgs(filters.Arg("label", "com.docker.stack.namespace=other")), "", ""},
		{filters.NewArgs(filters.Arg("desired-state", "flying")), "", "Invalid desired-state filter: 'flying'"},
		{filters.NewArgs(filters.Arg("colour", "x")), "", "invalid filter 'colour'"},
	}
	for _, tc := range taskCases {
		match, err := TaskFilter(tc.args)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%v: error %v, want %q", tc.args, err, tc.err)
			}
			continue
		}
		var got []string
		for _, tk := range tasks {
			if match(tk) {
				got = append(got, tk.Id)
			}
		}
		if strings.Join(got, ",") != tc.want {
			t.Errorf("%v: %v, want %v", tc.args, got, tc.want)
		}
	}
}
