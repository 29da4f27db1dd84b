package executor

import (
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/mount"
	"github.com/docker/go-connections/nat"
	"github.com/openswarm/swarmd/api"
	"google.golang.org/protobuf/types/known/durationpb"
)

func testTask(mut func(*api.Task)) *api.Task {
	t := &api.Task{
		Id:                 "task1",
		ServiceId:          "svc1",
		Slot:               2,
		NodeId:             "node1",
		ServiceAnnotations: &api.Annotations{Name: "web"},
		Spec: &api.TaskSpec{Container: &api.ContainerSpec{
			Image: "img:1",
		}},
	}
	if mut != nil {
		mut(t)
	}
	return t
}

func TestContainerNames(t *testing.T) {
	tests := []struct {
		name     string
		task     *api.Task
		nodeID   string
		want     string
		wantTask string
	}{
		{"replicated", testTask(nil), "node1", "web.2.task1", "web.2"},
		{"global", testTask(func(t *api.Task) { t.Slot = 0 }), "node1", "web.node1.task1", "web.node1"},
		{"global without node in task", testTask(func(t *api.Task) { t.Slot, t.NodeId = 0, "" }), "nodeX", "web.nodeX.task1", "web.nodeX"},
		{"no service name", testTask(func(t *api.Task) { t.ServiceAnnotations = nil }), "node1", "svc1.2.task1", "svc1.2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, name, err := containerConfig(tt.task, tt.nodeID)
			if err != nil {
				t.Fatal(err)
			}
			if name != tt.want {
				t.Errorf("name = %q, want %q", name, tt.want)
			}
			if got := taskName(tt.task, tt.nodeID); got != tt.wantTask {
				t.Errorf("task name = %q, want %q", got, tt.wantTask)
			}
		})
	}
}

func TestContainerConfig(t *testing.T) {
	tests := []struct {
		name    string
		task    *api.Task
		wantErr bool
		check   func(t *testing.T, cfg *container.Config, host *container.HostConfig)
	}{
		{
			name: "labels",
			task: testTask(func(t *api.Task) {
				t.Spec.Container.Labels = map[string]string{"a": "b", LabelTaskID: "spoofed"}
			}),
			check: func(t *testing.T, cfg *container.Config, _ *container.HostConfig) {
				want := map[string]string{
					"a":              "b",
					LabelTask:        "",
					LabelTaskID:      "task1",
					LabelTaskName:    "web.2",
					LabelServiceID:   "svc1",
					LabelServiceName: "web",
					LabelNodeID:      "node1",
				}
				if !reflect.DeepEqual(cfg.Labels, want) {
					t.Errorf("labels = %v, want %v", cfg.Labels, want)
				}
			},
		},
		{
			name: "process",
			task: testTask(func(t *api.Task) {
				c := t.Spec.Container
				c.Command = []string{"/bin/sh", "-c"}
				c.Args = []string{"echo hi"}
				c.Env = []string{"A=1", "B=2"}
				c.Dir = "/w"
				c.User = "nobody"
				c.Groups = []string{"wheel"}
				c.Hostname = "h"
				c.Tty = true
				c.OpenStdin = true
				c.StopSignal = "SIGINT"
				c.ReadOnly = true
				c.Init = true
				c.Hosts = []string{"10.0.0.1 a b", "c:10.0.0.2"}
			}),
			check: func(t *testing.T, cfg *container.Config, host *container.HostConfig) {
				if cfg.Image != "img:1" || !reflect.DeepEqual([]string(cfg.Entrypoint), []string{"/bin/sh", "-c"}) ||
					!reflect.DeepEqual([]string(cfg.Cmd), []string{"echo hi"}) {
					t.Errorf("image/entrypoint/cmd = %q %q %q", cfg.Image, cfg.Entrypoint, cfg.Cmd)
				}
				if !reflect.DeepEqual(cfg.Env, []string{"A=1", "B=2"}) {
					t.Errorf("env = %q", cfg.Env)
				}
				if cfg.WorkingDir != "/w" || cfg.User != "nobody" || cfg.Hostname != "h" || !cfg.Tty || !cfg.OpenStdin || cfg.StopSignal != "SIGINT" {
					t.Errorf("config = %+v", cfg)
				}
				if !host.ReadonlyRootfs || host.Init == nil || !*host.Init || !reflect.DeepEqual(host.GroupAdd, []string{"wheel"}) {
					t.Errorf("host config = %+v", host)
				}
				if want := []string{"a:10.0.0.1", "b:10.0.0.1", "c:10.0.0.2"}; !reflect.DeepEqual(host.ExtraHosts, want) {
					t.Errorf("extra hosts = %q, want %q", host.ExtraHosts, want)
				}
				if host.RestartPolicy.Name != container.RestartPolicyDisabled {
					t.Errorf("restart policy = %q", host.RestartPolicy.Name)
				}
			},
		},
		{
			name: "no command keeps the image's entrypoint",
			task: testTask(nil),
			check: func(t *testing.T, cfg *container.Config, host *container.HostConfig) {
				if cfg.Entrypoint != nil || cfg.Cmd != nil {
					t.Errorf("entrypoint/cmd = %q %q", cfg.Entrypoint, cfg.Cmd)
				}
				if host.Init != nil || cfg.ExposedPorts != nil || host.PortBindings != nil || host.Mounts != nil {
					t.Errorf("unexpected host config %+v", host)
				}
			},
		},
		{
			name: "host ports only",
			task: testTask(func(t *api.Task) {
				t.Endpoint = &api.Endpoint{Ports: []*api.PortConfig{
					{TargetPort: 80, PublishedPort: 8080, PublishMode: api.PortConfig_HOST},
					{TargetPort: 53, Protocol: api.PortConfig_UDP, PublishMode: api.PortConfig_HOST},
					{TargetPort: 443, PublishedPort: 30443, PublishMode: api.PortConfig_INGRESS},
				}}
			}),
			check: func(t *testing.T, cfg *container.Config, host *container.HostConfig) {
				wantExposed := nat.PortSet{"80/tcp": {}, "53/udp": {}}
				if !reflect.DeepEqual(cfg.ExposedPorts, wantExposed) {
					t.Errorf("exposed = %v, want %v", cfg.ExposedPorts, wantExposed)
				}
				wantBind := nat.PortMap{
					"80/tcp": {{HostPort: "8080"}},
					"53/udp": {{}},
				}
				if !reflect.DeepEqual(host.PortBindings, wantBind) {
					t.Errorf("bindings = %v, want %v", host.PortBindings, wantBind)
				}
			},
		},
		{
			name: "ports from the endpoint spec",
			task: testTask(func(t *api.Task) {
				t.Endpoint = &api.Endpoint{Spec: &api.EndpointSpec{Ports: []*api.PortConfig{
					{TargetPort: 80, PublishedPort: 81, PublishMode: api.PortConfig_HOST},
				}}}
			}),
			check: func(t *testing.T, _ *container.Config, host *container.HostConfig) {
				if want := (nat.PortMap{"80/tcp": {{HostPort: "81"}}}); !reflect.DeepEqual(host.PortBindings, want) {
					t.Errorf("bindings = %v, want %v", host.PortBindings, want)
				}
			},
		},
		{
			name: "resources",
			task: testTask(func(t *api.Task) {
				t.Spec.Resources = &api.ResourceRequirements{
					Limits:       &api.Resources{NanoCpus: 1500000000, MemoryBytes: 64 << 20},
					Reservations: &api.Resources{MemoryBytes: 32 << 20},
				}
			}),
			check: func(t *testing.T, _ *container.Config, host *container.HostConfig) {
				r := host.Resources
				if r.NanoCPUs != 1500000000 || r.Memory != 64<<20 || r.MemoryReservation != 32<<20 {
					t.Errorf("resources = %+v", r)
				}
			},
		},
		{
			name: "mounts",
			task: testTask(func(t *api.Task) {
				t.Spec.Container.Mounts = []*api.Mount{
					{Type: api.Mount_BIND, Source: "/src", Target: "/dst", ReadOnly: true},
					{Type: api.Mount_VOLUME, Source: "vol", Target: "/data"},
					{Type: api.Mount_TMPFS, Target: "/tmp"},
				}
			}),
			check: func(t *testing.T, _ *container.Config, host *container.HostConfig) {
				want := []mount.Mount{
					{Type: mount.TypeBind, Source: "/src", Target: "/dst", ReadOnly: true},
					{Type: mount.TypeVolume, Source: "vol", Target: "/data"},
					{Type: mount.TypeTmpfs, Target: "/tmp"},
				}
				if !reflect.DeepEqual(host.Mounts, want) {
					t.Errorf("mounts = %+v, want %+v", host.Mounts, want)
				}
			},
		},
		{
			name:    "bind mount without source",
			task:    testTask(func(t *api.Task) { t.Spec.Container.Mounts = []*api.Mount{{Type: api.Mount_BIND, Target: "/x"}} }),
			wantErr: true,
		},
		{
			name: "tmpfs with source",
			task: testTask(func(t *api.Task) {
				t.Spec.Container.Mounts = []*api.Mount{{Type: api.Mount_TMPFS, Source: "s", Target: "/x"}}
			}),
			wantErr: true,
		},
		{
			name: "default stop timeout",
			task: testTask(nil),
			check: func(t *testing.T, cfg *container.Config, _ *container.HostConfig) {
				if cfg.StopTimeout == nil || *cfg.StopTimeout != 10 {
					t.Errorf("stop timeout = %v, want 10", cfg.StopTimeout)
				}
			},
		},
		{
			name: "stop timeout rounded up",
			task: testTask(func(t *api.Task) { t.Spec.Container.StopGracePeriod = durationpb.New(2500 * time.Millisecond) }),
			check: func(t *testing.T, cfg *container.Config, _ *container.HostConfig) {
				if cfg.StopTimeout == nil || *cfg.StopTimeout != 3 {
					t.Errorf("stop timeout = %v, want 3", cfg.StopTimeout)
				}
			},
		},
		{
			name: "zero stop grace period",
			task: testTask(func(t *api.Task) { t.Spec.Container.StopGracePeriod = durationpb.New(0) }),
			check: func(t *testing.T, cfg *container.Config, _ *container.HostConfig) {
				if cfg.StopTimeout == nil || *cfg.StopTimeout != 0 {
					t.Errorf("stop timeout = %v, want 0", cfg.StopTimeout)
				}
			},
		},
		{
			name: "healthcheck",
			task: testTask(func(t *api.Task) {
				t.Spec.Container.Healthcheck = &api.HealthConfig{
					Test: []string{"CMD", "true"}, Interval: durationpb.New(time.Second),
					Timeout: durationpb.New(2 * time.Second), Retries: 3, StartPeriod: durationpb.New(5 * time.Second),
				}
			}),
			check: func(t *testing.T, cfg *container.Config, _ *container.HostConfig) {
				want := &container.HealthConfig{Test: []string{"CMD", "true"}, Interval: time.Second, Timeout: 2 * time.Second, Retries: 3, StartPeriod: 5 * time.Second}
				if !reflect.DeepEqual(cfg.Healthcheck, want) {
					t.Errorf("healthcheck = %+v, want %+v", cfg.Healthcheck, want)
				}
			},
		},
		{name: "no container spec", task: testTask(func(t *api.Task) { t.Spec.Container = nil }), wantErr: true},
		{name: "no image", task: testTask(func(t *api.Task) { t.Spec.Container.Image = "" }), wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, host, _, err := containerConfig(tt.task, "node1")
			if tt.wantErr {
				if err == nil {
					t.Fatal("no error")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, cfg, host)
		})
	}
}

func TestExecutorControllerNeedsContainerSpec(t *testing.T) {
	e := newExecutor(nil, "node1", nil)
	if _, err := e.Controller(testTask(func(t *api.Task) { t.Spec.Container = nil })); !errors.Is(err, ErrNoContainerSpec) {
		t.Fatalf("err = %v, want %v", err, ErrNoContainerSpec)
	}
	if _, err := e.Controller(testTask(nil)); err != nil {
		t.Fatal(err)
	}
}
