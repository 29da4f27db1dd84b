package executor

import (
	"context"
	"os/exec"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/network"
)

func TestContainerAddr(t *testing.T) {
	withNets := func(nets map[string]*network.EndpointSettings) container.InspectResponse {
		return container.InspectResponse{
			ContainerJSONBase: &container.ContainerJSONBase{Name: "/c"},
			NetworkSettings:   &container.NetworkSettings{Networks: nets},
		}
	}
	cases := []struct {
		name string
		ctr  container.InspectResponse
		want string
	}{
		{"bridge first", withNets(map[string]*network.EndpointSettings{"a": {IPAddress: "10.0.0.5"}, "bridge": {IPAddress: "172.17.0.2"}}), "172.17.0.2"},
		{"first by name", withNets(map[string]*network.EndpointSettings{"b": {IPAddress: "10.0.1.5"}, "a": {IPAddress: "10.0.0.5"}}), "10.0.0.5"},
		{"no address", withNets(map[string]*network.EndpointSettings{"host": {}}), ""},
		{"no settings", container.InspectResponse{ContainerJSONBase: &container.ContainerJSONBase{Name: "/c"}}, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := containerAddr(tc.ctr)
			if tc.want == "" {
				if err == nil {
					t.Fatalf("address %s, want an error", got)
				}
				return
			}
			if err != nil || got.String() != tc.want {
				t.Fatalf("got %s, %v; want %s", got, err, tc.want)
			}
		})
	}
}

// TestTaskAddr: only tasks the executor made a controller for resolve, a
// container that does not run does not, and a removed task is forgotten.
func TestTaskAddr(t *testing.T) {
	eng := &fakeEngine{}
	e := newExecutor(eng, "node1", nil)
	ctx := context.Background()
	if _, err := e.TaskAddr(ctx, "task1"); err == nil {
		t.Fatal("an unknown task resolved")
	}
	ctlr, err := e.Controller(testTask(nil))
	if err != nil {
		t.Fatal(err)
	}
	id := testTask(nil).GetId()
	eng.ctr = &container.InspectResponse{
		ContainerJSONBase: &container.ContainerJSONBase{Name: "/c", State: &container.State{Running: false}},
		NetworkSettings:   &container.NetworkSettings{Networks: map[string]*network.EndpointSettings{"bridge": {IPAddress: "172.17.0.9"}}},
	}
	if _, err := e.TaskAddr(ctx, id); err == nil {
		t.Fatal("a stopped container resolved")
	}
	eng.ctr.State.Running = true
	if a, err := e.TaskAddr(ctx, id); err != nil || a.String() != "172.17.0.9" {
		t.Fatalf("TaskAddr = %s, %v", a, err)
	}
	eng.ctr = nil // cached: no second inspect needed
	if a, err := e.TaskAddr(ctx, id); err != nil || a.String() != "172.17.0.9" {
		t.Fatalf("cached TaskAddr = %s, %v", a, err)
	}
	if err := ctlr.Remove(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := e.TaskAddr(ctx, id); err == nil {
		t.Fatal("a removed task still resolves")
	}
}

// WatchExit: the channel closes when the container's process exits (a
// real child process stands in for it), not before; a stopped container,
// or one whose PID changed meanwhile, is refused.
func TestWatchExit(t *testing.T) {
	eng := &fakeEngine{}
	e := newExecutor(eng, "node1", nil)
	ctx := context.Background()
	if _, err := e.WatchExit(ctx, "task1"); err == nil {
		t.Fatal("an unknown task is watched")
	}
	if _, err := e.Controller(testTask(nil)); err != nil {
		t.Fatal(err)
	}
	id := testTask(nil).GetId()
	proc := exec.Command("sleep", "60")
	if err := proc.Start(); err != nil {
		t.Skipf("no sleep command: %v", err)
	}
	t.Cleanup(func() { _ = proc.Process.Kill(); _ = proc.Wait() })
	eng.ctr = &container.InspectResponse{ContainerJSONBase: &container.ContainerJSONBase{Name: "/c",
		State: &container.State{Running: false, Pid: proc.Process.Pid}}}
	if _, err := e.WatchExit(ctx, id); err == nil {
		t.Fatal("a stopped container is watched")
	}
	eng.ctr.State.Running = true
	exited, err := e.WatchExit(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-exited:
		t.Fatal("exit seen while the process runs")
	default:
	}
	if err := proc.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-exited:
	case <-time.After(10 * time.Second):
		t.Fatal("the process exited, the channel did not close")
	}
}
