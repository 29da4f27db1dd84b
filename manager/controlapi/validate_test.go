package controlapi

import (
	"math"
	"strings"
	"testing"
	"time"

	"github.com/openswarm/swarmd/api"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/durationpb"
)

func TestValidateServiceSpec(t *testing.T) {
	neg := dur(-time.Second)
	tests := []struct {
		name   string
		mutate func(*api.ServiceSpec)
		want   string // "" = valid
	}{
		{"valid", func(*api.ServiceSpec) {}, ""},
		{"stack name with underscore", func(s *api.ServiceSpec) { s.Annotations.Name = "app_web-1" }, ""},
		{"no name", func(s *api.ServiceSpec) { s.Annotations.Name = "" }, "meta: name must be provided"},
		{"no annotations", func(s *api.ServiceSpec) { s.Annotations = nil }, "meta: name must be provided"},
		{"bad name", func(s *api.ServiceSpec) { s.Annotations.Name = "web.1" }, "name must be valid as a DNS name component"},
		{"leading dash", func(s *api.ServiceSpec) { s.Annotations.Name = "-web" }, "name must be valid as a DNS name component"},
		{"long name", func(s *api.ServiceSpec) { s.Annotations.Name = strings.Repeat("a", 64) }, "name must be 63 characters or fewer"},
		{"63 chars", func(s *api.ServiceSpec) { s.Annotations.Name = strings.Repeat("a", 63) }, ""},
		{"no task", func(s *api.ServiceSpec) { s.Task = nil }, "TaskSpec: missing runtime"},
		{"no container", func(s *api.ServiceSpec) { s.Task.Container = nil }, "TaskSpec: missing runtime"},
		{"no image", func(s *api.ServiceSpec) { s.Task.Container.Image = "" }, "ContainerSpec: image reference must be provided"},
		{"bad image", func(s *api.ServiceSpec) { s.Task.Container.Image = "Busybox" }, `ContainerSpec: "Busybox" is not a valid repository/tag`},
		{"bad image tag", func(s *api.ServiceSpec) { s.Task.Container.Image = "busybox:-x" }, "is not a valid repository/tag"},
		{"registry image", func(s *api.ServiceSpec) { s.Task.Container.Image = "localhost:5000/team/app:v1.2" }, ""},
		{"digest image", func(s *api.ServiceSpec) {
			s.Task.Container.Image = "busybox@sha256:" + strings.Repeat("ab", 32)
		}, ""},
		{"short digest", func(s *api.ServiceSpec) {
			s.Task.Container.Image = "busybox@sha256:" + strings.Repeat("ab", 20)
		}, "is not a valid repository/tag"},
		{"negative replicas", func(s *api.ServiceSpec) {
			s.Mode = &api.ServiceSpec_Replicated{Replicated: &api.ReplicatedService{Replicas: math.MaxUint64}}
		}, "Number of replicas must be non-negative"},
		{"no mode", func(s *api.ServiceSpec) { s.Mode = nil }, "Unrecognized service mode"},
		{"job with update", func(s *api.ServiceSpec) {
			s.Mode = &api.ServiceSpec_ReplicatedJob{ReplicatedJob: &api.ReplicatedJob{}}
			s.Update = &api.UpdateConfig{}
		}, "Jobs may not have an update config"},
		{"job concurrency", func(s *api.ServiceSpec) {
			s.Mode = &api.ServiceSpec_ReplicatedJob{ReplicatedJob: &api.ReplicatedJob{MaxConcurrent: math.MaxUint64}}
		}, "Maximum concurrent jobs must not be negative"},
		{"constraint ok", func(s *api.ServiceSpec) {
			s.Task.Placement = &api.Placement{Constraints: []string{"node.role == manager", "node.labels.zone!=a"}}
		}, ""},
		{"constraint operator", func(s *api.ServiceSpec) {
			s.Task.Placement = &api.Placement{Constraints: []string{"node.role >= manager"}}
		}, "constraint expected one operator from ==, !="},
		{"constraint key", func(s *api.ServiceSpec) {
			s.Task.Placement = &api.Placement{Constraints: []string{"n ode==x"}}
		}, "key 'n ode' is invalid"},
		{"constraint value", func(s *api.ServiceSpec) {
			s.Task.Placement = &api.Placement{Constraints: []string{"node.role=="}}
		}, "value '' is invalid"},
		{"spread without label", func(s *api.ServiceSpec) {
			s.Task.Placement = &api.Placement{Preferences: []*api.PlacementPreference{{}}}
		}, "Placement: spread descriptor must be provided"},
		{"restart delay", func(s *api.ServiceSpec) { s.Task.Restart = &api.RestartPolicy{Delay: neg} }, "TaskSpec: restart-delay cannot be negative"},
		{"restart window", func(s *api.ServiceSpec) { s.Task.Restart = &api.RestartPolicy{Window: neg} }, "TaskSpec: restart-window cannot be negative"},
		{"restart condition", func(s *api.ServiceSpec) { s.Task.Restart = &api.RestartPolicy{Condition: 9} }, "TaskSpec: restart-condition 9 is not one of none, on-failure, any"},
		{"invalid duration", func(s *api.ServiceSpec) {
			s.Task.Restart = &api.RestartPolicy{Delay: &durationpb.Duration{Seconds: 1, Nanos: -1}}
		}, "TaskSpec: restart-delay: invalid duration"},
		{"grace period", func(s *api.ServiceSpec) { s.Task.Container.StopGracePeriod = neg }, "ContainerSpec: stop-grace-period cannot be negative"},
		{"update delay", func(s *api.ServiceSpec) { s.Update = &api.UpdateConfig{Delay: neg} }, "TaskSpec: update-delay cannot be negative"},
		{"update monitor", func(s *api.ServiceSpec) { s.Update = &api.UpdateConfig{Monitor: neg} }, "TaskSpec: update-monitor cannot be negative"},
		{"update ratio", func(s *api.ServiceSpec) { s.Update = &api.UpdateConfig{MaxFailureRatio: 1.5} }, "TaskSpec: update-maxfailureratio cannot be less than 0 or bigger than 1"},
		{"update ratio NaN", func(s *api.ServiceSpec) {
			s.Update = &api.UpdateConfig{MaxFailureRatio: float32(math.NaN())}
		}, "update-maxfailureratio"},
		{"update parallelism", func(s *api.ServiceSpec) { s.Update = &api.UpdateConfig{Parallelism: math.MaxUint64} }, "TaskSpec: update-parallelism cannot be negative"},
		{"update action", func(s *api.ServiceSpec) { s.Update = &api.UpdateConfig{FailureAction: 7} }, "TaskSpec: update-failure-action 7"},
		{"update order", func(s *api.ServiceSpec) { s.Update = &api.UpdateConfig{Order: 3} }, "TaskSpec: update-order 3"},
		{"rollback monitor", func(s *api.ServiceSpec) { s.Rollback = &api.UpdateConfig{Monitor: neg} }, "TaskSpec: rollback-monitor cannot be negative"},
		{"cpu", func(s *api.ServiceSpec) {
			s.Task.Resources = &api.ResourceRequirements{Limits: &api.Resources{NanoCpus: 10}}
		}, "invalid cpu value 1e-08: Must be at least 0.001"},
		{"memory", func(s *api.ServiceSpec) {
			s.Task.Resources = &api.ResourceRequirements{Reservations: &api.Resources{MemoryBytes: 1024}}
		}, "invalid memory value 1024: Must be at least 4MiB"},
		{"duplicate mount", func(s *api.ServiceSpec) {
			s.Task.Container.Mounts = []*api.Mount{{Target: "/data"}, {Type: api.Mount_VOLUME, Target: "/data"}}
		}, "ContainerSpec: duplicate mount point: /data"},
		{"mount without target", func(s *api.ServiceSpec) { s.Task.Container.Mounts = []*api.Mount{{Source: "/x"}} }, "ContainerSpec: mount target must be provided"},
		{"health interval", func(s *api.ServiceSpec) {
			s.Task.Container.Healthcheck = &api.HealthConfig{Interval: &durationpb.Duration{Nanos: 10}}
		}, "ContainerSpec: Interval in HealthConfig cannot be less than 1ms"},
		{"health retries", func(s *api.ServiceSpec) { s.Task.Container.Healthcheck = &api.HealthConfig{Retries: -1} }, "ContainerSpec: Retries in HealthConfig cannot be negative"},
		{"secret ref", func(s *api.ServiceSpec) {
			s.Task.Container.Secrets = []*api.SecretReference{{SecretName: "x"}}
		}, "malformed secret reference"},
		{"secret target", func(s *api.ServiceSpec) {
			s.Task.Container.Secrets = []*api.SecretReference{{SecretId: "a", SecretName: "x"}}
		}, "malformed secret reference, no target provided"},
		{"secret conflict", func(s *api.ServiceSpec) {
			s.Task.Container.Secrets = []*api.SecretReference{
				{SecretId: "a", SecretName: "x", File: &api.FileTarget{Name: "f"}},
				{SecretId: "b", SecretName: "y", File: &api.FileTarget{Name: "f"}},
			}
		}, "secret references 'x' and 'y' have a conflicting target: 'f'"},
		{"config file name", func(s *api.ServiceSpec) {
			s.Task.Container.Configs = []*api.ConfigReference{{ConfigId: "a", ConfigName: "x", File: &api.FileTarget{}}}
		}, "malformed file config reference, invalid target file name provided"},
		{"network target", func(s *api.ServiceSpec) { s.Task.Networks = []*api.NetworkAttachmentConfig{{}} }, "TaskSpec: network target must be provided"},
		{"duplicate ports", func(s *api.ServiceSpec) {
			withPorts(s, &api.PortConfig{TargetPort: 80, PublishedPort: 8080}, &api.PortConfig{TargetPort: 81, PublishedPort: 8080})
		}, "EndpointSpec: duplicate published ports provided"},
		{"same port other protocol", func(s *api.ServiceSpec) {
			withPorts(s, &api.PortConfig{TargetPort: 53, PublishedPort: 53}, &api.PortConfig{TargetPort: 53, PublishedPort: 53, Protocol: api.PortConfig_UDP})
		}, ""},
		{"dynamic ports", func(s *api.ServiceSpec) {
			withPorts(s, &api.PortConfig{TargetPort: 80}, &api.PortConfig{TargetPort: 81})
		}, ""},
		{"no target port", func(s *api.ServiceSpec) { withPorts(s, &api.PortConfig{PublishedPort: 8080}) }, "EndpointSpec: invalid target port 0"},
		{"published port range", func(s *api.ServiceSpec) {
			withPorts(s, &api.PortConfig{TargetPort: 80, PublishedPort: 70000})
		}, "EndpointSpec: invalid published port 70000"},
		{"dnsrr ingress", func(s *api.ServiceSpec) {
			withPorts(s, &api.PortConfig{TargetPort: 80, PublishedPort: 8080})
			s.Endpoint.Mode = api.EndpointSpec_DNSRR
		}, "EndpointSpec: port published with ingress mode can't be used with dnsrr mode"},
		{"dnsrr host", func(s *api.ServiceSpec) {
			withPorts(s, &api.PortConfig{TargetPort: 80, PublishedPort: 8080, PublishMode: api.PortConfig_HOST})
			s.Endpoint.Mode = api.EndpointSpec_DNSRR
		}, ""},
		{"protocol", func(s *api.ServiceSpec) {
			withPorts(s, &api.PortConfig{TargetPort: 80, Protocol: 5})
		}, "EndpointSpec: protocol 5 is not one of tcp, udp, sctp"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec := serviceSpec("web")
			tt.mutate(spec)
			err := validateServiceSpec(spec)
			if tt.want == "" {
				mustOK(t, err)
				return
			}
			wantErr(t, err, codes.InvalidArgument, tt.want)
		})
	}
	wantErr(t, validateServiceSpec(nil), codes.InvalidArgument, "invalid argument")
}

func TestValidReference(t *testing.T) {
	for ref, want := range map[string]bool{
		"busybox":                              true,
		"busybox:1.36":                         true,
		"library/busybox:latest":               true,
		"docker.io/library/busybox":            true,
		"registry.example.com:5000/a/b/c":      true,
		"[::1]:5000/app":                       true,
		"my_app__x.y-z":                        true,
		"Registry.Example.com/app":             true,
		"swarmd-test/app:v2":                   true,
		"Busybox":                              false,
		"busybox:":                             false,
		"busybox::1":                           false,
		"/busybox":                             false,
		"busybox/":                             false,
		"bus box":                              false,
		"busybox@sha256:abc":                   false,
		strings.Repeat("a", 64):                false,
		"localhost/" + strings.Repeat("a", 64): true,
		"app:" + strings.Repeat("t", 129):      false,
	} {
		if got := validReference(ref); got != want {
			t.Errorf("validReference(%q) = %v, want %v", ref, got, want)
		}
	}
}

func TestValidateNodeSpec(t *testing.T) {
	tests := []struct {
		spec *api.NodeSpec
		want string
	}{
		{&api.NodeSpec{}, ""},
		{&api.NodeSpec{Availability: api.NodeAvailability_NODE_AVAILABILITY_DRAIN, DesiredRole: api.NodeRole_NODE_ROLE_MANAGER}, ""},
		{nil, "invalid argument"},
		{&api.NodeSpec{Availability: 7}, "NodeSpec: availability 7 is not one of active, pause, drain"},
		{&api.NodeSpec{DesiredRole: 3}, "NodeSpec: role 3"},
		{&api.NodeSpec{Membership: 4}, "NodeSpec: membership 4"},
	}
	for _, tt := range tests {
		err := validateNodeSpec(tt.spec)
		if tt.want == "" {
			mustOK(t, err)
			continue
		}
		wantErr(t, err, codes.InvalidArgument, tt.want)
	}
}

func TestValidateClusterSpec(t *testing.T) {
	base := func() *api.ClusterSpec {
		return &api.ClusterSpec{
			Annotations:   &api.Annotations{Name: "default"},
			Dispatcher:    &api.DispatcherConfig{HeartbeatPeriod: dur(5 * time.Second)},
			CaConfig:      &api.CAConfig{NodeCertExpiry: dur(90 * 24 * time.Hour)},
			Orchestration: &api.OrchestrationConfig{TaskHistoryRetentionLimit: 5},
			Raft:          &api.RaftConfig{HeartbeatTick: 1, ElectionTick: 10},
		}
	}
	tests := []struct {
		name   string
		mutate func(*api.ClusterSpec)
		want   string
	}{
		{"valid", func(*api.ClusterSpec) {}, ""},
		{"sparse", func(s *api.ClusterSpec) { *s = api.ClusterSpec{Annotations: s.Annotations} }, ""},
		{"zero expiry means default", func(s *api.ClusterSpec) { s.CaConfig.NodeCertExpiry = dur(0) }, ""},
		{"rename", func(s *api.ClusterSpec) { s.Annotations.Name = "other" }, "modification of cluster name is not allowed"},
		{"short expiry", func(s *api.ClusterSpec) { s.CaConfig.NodeCertExpiry = dur(59 * time.Minute) }, "minimum certificate expiry time is: 1h0m0s"},
		{"exactly 1h", func(s *api.ClusterSpec) { s.CaConfig.NodeCertExpiry = dur(time.Hour) }, ""},
		{"negative heartbeat", func(s *api.ClusterSpec) { s.Dispatcher.HeartbeatPeriod = dur(-time.Second) }, "heartbeat time period cannot be a negative duration"},
		{"retention", func(s *api.ClusterSpec) { s.Orchestration.TaskHistoryRetentionLimit = -1 }, "Orchestration: task history retention limit cannot be negative"},
		{"raft ticks", func(s *api.ClusterSpec) { s.Raft.ElectionTick = 1 }, "Raft: election tick (1) must be greater than heartbeat tick (1)"},
		{"external CA", func(s *api.ClusterSpec) {
			s.CaConfig.ExternalCas = []*api.ExternalCA{{Url: "https://ca.example.com/api/v1/cfssl/sign"}}
		}, ""},
		{"external CA URL", func(s *api.ClusterSpec) { s.CaConfig.ExternalCas = []*api.ExternalCA{{Url: "nope"}} }, `CAConfig: invalid external CA URL "nope"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec := base()
			tt.mutate(spec)
			err := validateClusterSpec(spec, "default")
			if tt.want == "" {
				mustOK(t, err)
				return
			}
			wantErr(t, err, codes.InvalidArgument, tt.want)
		})
	}
	wantErr(t, validateClusterSpec(nil, "default"), codes.InvalidArgument, "invalid argument")
}

func TestValidateNetworkSpec(t *testing.T) {
	tests := []struct {
		spec *api.NetworkSpec
		code codes.Code
		want string
	}{
		{&api.NetworkSpec{Annotations: &api.Annotations{Name: "backend"}, Driver: "overlay"}, codes.OK, ""},
		{&api.NetworkSpec{Annotations: &api.Annotations{Name: "n"}, Ipam: []*api.IPAMConfig{{Subnet: "10.1.0.0/16", Range: "10.1.2.0/24", Gateway: "10.1.0.1"}}}, codes.OK, ""},
		{nil, codes.InvalidArgument, "invalid argument"},
		{&api.NetworkSpec{}, codes.InvalidArgument, "meta: name must be provided"},
		{&api.NetworkSpec{Annotations: &api.Annotations{Name: "a b"}}, codes.InvalidArgument, "name must be valid as a DNS name component"},
		{&api.NetworkSpec{Annotations: &api.Annotations{Name: "i"}, Ingress: true, Attachable: true}, codes.InvalidArgument, "ingress network cannot be attachable"},
		{&api.NetworkSpec{Annotations: &api.Annotations{Name: "n", Labels: map[string]string{predefinedLabel: "true"}}}, codes.PermissionDenied, "is for internally created predefined networks"},
		{&api.NetworkSpec{Annotations: &api.Annotations{Name: "n"}, Ipam: []*api.IPAMConfig{{Subnet: "10.1.0.0"}}}, codes.InvalidArgument, "ipam configuration: invalid subnet 10.1.0.0"},
		{&api.NetworkSpec{Annotations: &api.Annotations{Name: "n"}, Ipam: []*api.IPAMConfig{{Subnet: "10.1.0.0/16", Range: "10.2.0.0/24"}}}, codes.InvalidArgument, "ipam configuration: subnet 10.1.0.0/16 does not contain range 10.2.0.0/24"},
		{&api.NetworkSpec{Annotations: &api.Annotations{Name: "n"}, Ipam: []*api.IPAMConfig{{Subnet: "10.1.0.0/16", Gateway: "10.9.0.1"}}}, codes.InvalidArgument, "ipam configuration: subnet 10.1.0.0/16 does not contain gateway 10.9.0.1"},
		{&api.NetworkSpec{Annotations: &api.Annotations{Name: "n"}, Ipam: []*api.IPAMConfig{{Subnet: "10.1.0.0/16", Gateway: "x"}}}, codes.InvalidArgument, "ipam configuration: invalid gateway x"},
	}
	for _, tt := range tests {
		err := validateNetworkSpec(tt.spec)
		if tt.code == codes.OK {
			mustOK(t, err)
			continue
		}
		wantErr(t, err, tt.code, tt.want)
	}
}

func TestValidateSecretAndConfigSpec(t *testing.T) {
	named := func(n string) *api.Annotations { return &api.Annotations{Name: n} }
	secrets := []struct {
		spec *api.SecretSpec
		want string
	}{
		{&api.SecretSpec{Annotations: named("db.password_v1"), Data: []byte("x")}, ""},
		{&api.SecretSpec{Annotations: named("ext"), Driver: "vault"}, ""},
		{nil, "invalid argument"},
		{&api.SecretSpec{Data: []byte("x")}, "name must be provided"},
		{&api.SecretSpec{Annotations: named("-x"), Data: []byte("x")}, "invalid name, only 64 [a-zA-Z0-9-_.] characters allowed"},
		{&api.SecretSpec{Annotations: named(strings.Repeat("s", 65)), Data: []byte("x")}, "invalid name"},
		{&api.SecretSpec{Annotations: named("s")}, "secret data must be larger than 0 and less than 512000 bytes"},
		{&api.SecretSpec{Annotations: named("s"), Data: make([]byte, MaxSecretSize)}, "secret data must be larger than 0 and less than 512000 bytes"},
		{&api.SecretSpec{Annotations: named("s"), Data: make([]byte, MaxSecretSize-1)}, ""},
	}
	for _, tt := range secrets {
		err := validateSecretSpec(tt.spec)
		if tt.want == "" {
			mustOK(t, err)
			continue
		}
		wantErr(t, err, codes.InvalidArgument, tt.want)
	}
	configs := []struct {
		spec *api.ConfigSpec
		want string
	}{
		{&api.ConfigSpec{Annotations: named("nginx.conf"), Data: []byte("x")}, ""},
		{&api.ConfigSpec{Annotations: named("c"), Data: make([]byte, MaxConfigSize-1)}, ""},
		{&api.ConfigSpec{Annotations: named("c"), Data: make([]byte, MaxConfigSize)}, "config data must be larger than 0 and less than 1024000 bytes"},
		{&api.ConfigSpec{Annotations: named("c")}, "config data must be larger than 0"},
		{&api.ConfigSpec{Annotations: named("c d"), Data: []byte("x")}, "invalid name"},
	}
	for _, tt := range configs {
		err := validateConfigSpec(tt.spec)
		if tt.want == "" {
			mustOK(t, err)
			continue
		}
		wantErr(t, err, codes.InvalidArgument, tt.want)
	}
}
