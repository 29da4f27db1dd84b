package executor

import (
	"errors"
	"reflect"
	"testing"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/system"
	"github.com/docker/go-connections/nat"
	"github.com/openswarm/swarmd/agent/exec"
	"github.com/openswarm/swarmd/api"
	"google.golang.org/protobuf/proto"
)

const zeroTS = "0001-01-01T00:00:00Z"

func inspected(st *container.State) container.InspectResponse {
	return container.InspectResponse{ContainerJSONBase: &container.ContainerJSONBase{ID: "c1", State: st}}
}

func TestRuntimeState(t *testing.T) {
	tests := []struct {
		name string
		in   container.InspectResponse
		want exec.RuntimeState
	}{
		{"absent", container.InspectResponse{}, exec.RuntimeState{Phase: exec.PhaseAbsent}},
		{
			"created",
			inspected(&container.State{Status: container.StateCreated, StartedAt: zeroTS, FinishedAt: zeroTS}),
			exec.RuntimeState{Phase: exec.PhaseCreated, Container: &api.ContainerStatus{ContainerId: "c1"}},
		},
		{
			"running",
			inspected(&container.State{Status: container.StateRunning, Running: true, Pid: 42, StartedAt: "2024-01-01T00:00:00.5Z"}),
			exec.RuntimeState{Phase: exec.PhaseRunning, Container: &api.ContainerStatus{ContainerId: "c1", Pid: 42}},
		},
		{
			"paused counts as running",
			inspected(&container.State{Status: container.StatePaused, Running: true, Paused: true, Pid: 7, StartedAt: "2024-01-01T00:00:00Z"}),
			exec.RuntimeState{Phase: exec.PhaseRunning, Container: &api.ContainerStatus{ContainerId: "c1", Pid: 7}},
		},
		{
			"exited",
			inspected(&container.State{Status: container.StateExited, ExitCode: 3, StartedAt: "2024-01-01T00:00:00Z", FinishedAt: "2024-01-01T00:00:01Z"}),
			exec.RuntimeState{Phase: exec.PhaseExited, ExitCode: 3, Container: &api.ContainerStatus{ContainerId: "c1", ExitCode: 3}},
		},
		{
			"exited with 0",
			inspected(&container.State{Status: container.StateExited, StartedAt: "2024-01-01T00:00:00Z"}),
			exec.RuntimeState{Phase: exec.PhaseExited, Container: &api.ContainerStatus{ContainerId: "c1"}},
		},
		{
			"failed to start",
			inspected(&container.State{Status: container.StateCreated, ExitCode: 127, StartedAt: zeroTS, Error: "exec: not found"}),
			exec.RuntimeState{Phase: exec.PhaseCreated, Container: &api.ContainerStatus{ContainerId: "c1"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := runtimeState(tt.in)
			if got.Phase != tt.want.Phase || got.ExitCode != tt.want.ExitCode {
				t.Errorf("phase, exit = %v %d, want %v %d", got.Phase, got.ExitCode, tt.want.Phase, tt.want.ExitCode)
			}
			if !reflect.DeepEqual(got.Container.GetContainerId(), tt.want.Container.GetContainerId()) ||
				got.Container.GetPid() != tt.want.Container.GetPid() || got.Container.GetExitCode() != tt.want.Container.GetExitCode() {
				t.Errorf("container = %v, want %v", got.Container, tt.want.Container)
			}
		})
	}
}

func TestExitResult(t *testing.T) {
	if err := exitResult(0, false, ""); err != nil {
		t.Errorf("exit 0: %v", err)
	}
	var ee *exec.ExitError
	err := exitResult(2, false, "")
	if !errors.As(err, &ee) || ee.Code != 2 || ee.Cause != nil {
		t.Errorf("exit 2: %v", err)
	}
	err = exitResult(137, true, "")
	if !errors.As(err, &ee) || ee.Code != 137 || !errors.Is(err, errOOMKilled) {
		t.Errorf("oom: %v", err)
	}
	if got, want := err.Error(), "task: non-zero exit (137): OOMKilled"; got != want {
		t.Errorf("oom text = %q, want %q", got, want)
	}
	if err := exitResult(0, false, "boom"); err == nil || errors.As(err, &ee) {
		t.Errorf("wait error: %v", err)
	}
}

func TestUnhealthy(t *testing.T) {
	if unhealthy(nil) || unhealthy(&container.State{}) || unhealthy(&container.State{Health: &container.Health{Status: container.Healthy}}) {
		t.Error("healthy or unchecked container reported unhealthy")
	}
	if !unhealthy(&container.State{Health: &container.Health{Status: container.Unhealthy}}) {
		t.Error("unhealthy container not reported")
	}
}

func TestHasHealthcheck(t *testing.T) {
	for _, tt := range []struct {
		test []string
		want bool
	}{{nil, false}, {[]string{"NONE"}, false}, {[]string{"CMD", "true"}, true}} {
		task := testTask(func(t *api.Task) { t.Spec.Container.Healthcheck = &api.HealthConfig{Test: tt.test} })
		if got := hasHealthcheck(task); got != tt.want {
			t.Errorf("hasHealthcheck(%q) = %v, want %v", tt.test, got, tt.want)
		}
	}
}

func TestNodeDescription(t *testing.T) {
	d := nodeDescription(system.Info{
		Name: "host1", OSType: "linux", Architecture: "x86_64", NCPU: 4, MemTotal: 8 << 30,
		ServerVersion: "20.10.7", Labels: []string{"zone=a", "bare", "=x"},
	})
	if d.GetHostname() != "host1" || d.GetPlatform().GetOs() != "linux" || d.GetPlatform().GetArchitecture() != "x86_64" {
		t.Errorf("description = %v", d)
	}
	if d.GetResources().GetNanoCpus() != 4e9 || d.GetResources().GetMemoryBytes() != 8<<30 {
		t.Errorf("resources = %v", d.GetResources())
	}
	if d.GetEngine().GetEngineVersion() != "20.10.7" || !reflect.DeepEqual(d.GetEngine().GetLabels(), map[string]string{"zone": "a", "bare": ""}) {
		t.Errorf("engine = %v", d.GetEngine())
	}
}

func TestTemporary(t *testing.T) {
	if temporary(nil) || temporary(errors.New("x")) {
		t.Error("plain error is temporary")
	}
	if err := classify("op", errors.New("x")); errors.Is(err, exec.ErrTaskRetry) {
		t.Errorf("classify plain error: %v", err)
	}
}

func TestPublishedPorts(t *testing.T) {
	pm := nat.PortMap{
		"80/tcp":  {{HostIP: "0.0.0.0", HostPort: "8080"}, {HostIP: "::", HostPort: "8080"}},
		"53/udp":  {{HostIP: "0.0.0.0", HostPort: "5353"}},
		"443/tcp": nil, // exposed, not published
		"81/tcp":  {{HostIP: "0.0.0.0", HostPort: ""}},
	}
	got := publishedPorts(pm)
	want := []*api.PortConfig{
		{Protocol: api.PortConfig_UDP, TargetPort: 53, PublishedPort: 5353, PublishMode: api.PortConfig_HOST},
		{Protocol: api.PortConfig_TCP, TargetPort: 80, PublishedPort: 8080, PublishMode: api.PortConfig_HOST},
	}
	if len(got) != len(want) {
		t.Fatalf("got %v", got)
	}
	for i := range want {
		if !proto.Equal(got[i], want[i]) {
			t.Errorf("port %d: %v, want %v", i, got[i], want[i])
		}
	}
}
