package executor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/events"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/system"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/openswarm/swarmd/agent/exec"
	"github.com/openswarm/swarmd/api"
)

// fakeEngine answers each call with the error set for it, and holds at
// most one container.
type fakeEngine struct {
	ctr        *container.InspectResponse
	inspectErr error
	imageErr   error
	createErr  error
	startErr   error
	stopErr    error
	killErr    error
	removeErr  error
	created    *container.Config
	createdHC  *container.HostConfig
}

func (f *fakeEngine) Info(context.Context) (system.Info, error) { return system.Info{}, nil }

func (f *fakeEngine) ContainerCreate(_ context.Context, cfg *container.Config, hc *container.HostConfig, _ *network.NetworkingConfig, _ *ocispec.Platform, _ string) (container.CreateResponse, error) {
	switch {
	case f.createErr != nil:
		return container.CreateResponse{}, f.createErr
	case f.ctr != nil: // as the engine: the name is taken
		return container.CreateResponse{}, fmt.Errorf("Conflict. The container name is already in use: %w", cerrdefs.ErrConflict)
	case f.imageErr != nil: // as the engine: create looks the image up
		return container.CreateResponse{}, f.imageErr
	}
	f.created = cfg
	f.createdHC = hc
	return container.CreateResponse{ID: "c1"}, nil
}

func (f *fakeEngine) ContainerInspect(_ context.Context, name string) (container.InspectResponse, error) {
	if f.inspectErr != nil {
		return container.InspectResponse{}, f.inspectErr
	}
	if f.ctr == nil {
		return container.InspectResponse{}, fmt.Errorf("No such container: %s: %w", name, cerrdefs.ErrNotFound)
	}
	return *f.ctr, nil
}

func (f *fakeEngine) ContainerStart(context.Context, string, container.StartOptions) error {
	return f.startErr
}

func (f *fakeEngine) ContainerStop(context.Context, string, container.StopOptions) error {
	return f.stopErr
}

func (f *fakeEngine) ContainerKill(context.Context, string, string) error { return f.killErr }

func (f *fakeEngine) ContainerRemove(context.Context, string, container.RemoveOptions) error {
	return f.removeErr
}

func (f *fakeEngine) ContainerWait(context.Context, string, container.WaitCondition) (<-chan container.WaitResponse, <-chan error) {
	return nil, nil
}

func (f *fakeEngine) ContainerLogs(context.Context, string, container.LogsOptions) (io.ReadCloser, error) {
	return io.NopCloser(strings.NewReader("")), nil
}

func (f *fakeEngine) Events(context.Context, events.ListOptions) (<-chan events.Message, <-chan error) {
	return nil, nil
}

func ownContainer(taskID string, st *container.State) *container.InspectResponse {
	return &container.InspectResponse{
		ContainerJSONBase: &container.ContainerJSONBase{ID: "c1", State: st},
		Config:            &container.Config{Labels: map[string]string{LabelTaskID: taskID}},
	}
}

func TestControllerPrepare(t *testing.T) {
	unavailable := fmt.Errorf("engine: %w", cerrdefs.ErrUnavailable)
	tests := []struct {
		name      string
		engine    *fakeEngine
		wantIs    error
		wantRetry bool
		wantText  string
	}{
		{name: "created", engine: &fakeEngine{}},
		{name: "already there", engine: &fakeEngine{ctr: ownContainer("task1", &container.State{Status: container.StateCreated})}, wantIs: exec.ErrTaskPrepared},
		{name: "name taken by another task", engine: &fakeEngine{ctr: ownContainer("other", &container.State{})}, wantText: "does not belong to task task1"},
		{name: "no image", engine: &fakeEngine{imageErr: fmt.Errorf("x: %w", cerrdefs.ErrNotFound)}, wantText: "No such image: img:1"},
		{name: "image lookup unavailable", engine: &fakeEngine{imageErr: unavailable}, wantRetry: true},
		{name: "engine unreachable", engine: &fakeEngine{createErr: unavailable}, wantRetry: true},
		{name: "engine unreachable after a conflict", engine: &fakeEngine{ctr: ownContainer("task1", &container.State{}), inspectErr: unavailable}, wantRetry: true},
		{name: "name conflict", engine: &fakeEngine{createErr: fmt.Errorf("name in use: %w", cerrdefs.ErrConflict)}, wantRetry: true},
		{name: "bad spec", engine: &fakeEngine{createErr: fmt.Errorf("bad: %w", cerrdefs.ErrInvalidArgument)}, wantText: "bad"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newController(tt.engine, testTask(nil), "node1", testLogger())
			err := c.Prepare(t.Context())
			switch {
			case tt.wantIs == nil && !tt.wantRetry && tt.wantText == "":
				if err != nil {
					t.Fatalf("prepare: %v", err)
				}
				if tt.engine.created == nil || tt.engine.created.Labels[LabelTaskID] != "task1" {
					t.Errorf("created %+v", tt.engine.created)
				}
				return
			case err == nil:
				t.Fatal("no error")
			}
			if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
				t.Errorf("err = %v, want %v", err, tt.wantIs)
			}
			if got := errors.Is(err, exec.ErrTaskRetry); got != tt.wantRetry {
				t.Errorf("err = %v: temporary %v, want %v", err, got, tt.wantRetry)
			}
			if tt.wantText != "" && !strings.Contains(err.Error(), tt.wantText) {
				t.Errorf("err = %q, want it to contain %q", err, tt.wantText)
			}
		})
	}
}

func TestControllerStart(t *testing.T) {
	started := "2024-01-01T00:00:00Z"
	tests := []struct {
		name   string
		engine *fakeEngine
		wantIs error
		ok     bool
	}{
		{name: "created", engine: &fakeEngine{ctr: ownContainer("task1", &container.State{Status: container.StateCreated, StartedAt: zeroTS})}, ok: true},
		{name: "running", engine: &fakeEngine{ctr: ownContainer("task1", &container.State{Status: container.StateRunning, Running: true, StartedAt: started})}, wantIs: exec.ErrTaskStarted},
		{name: "exited", engine: &fakeEngine{ctr: ownContainer("task1", &container.State{Status: container.StateExited, StartedAt: started})}, wantIs: exec.ErrTaskStarted},
		{name: "absent", engine: &fakeEngine{}},
		{name: "unavailable", engine: &fakeEngine{ctr: ownContainer("task1", &container.State{Status: container.StateCreated}), startErr: cerrdefs.ErrUnavailable}, wantIs: exec.ErrTaskRetry},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := newController(tt.engine, testTask(nil), "node1", testLogger()).Start(t.Context())
			switch {
			case tt.ok:
				if err != nil {
					t.Fatalf("start: %v", err)
				}
			case err == nil:
				t.Fatal("no error")
			case tt.wantIs != nil && !errors.Is(err, tt.wantIs):
				t.Errorf("err = %v, want %v", err, tt.wantIs)
			}
		})
	}
}

func TestControllerStopKillRemoveIgnoreGone(t *testing.T) {
	gone := fmt.Errorf("No such container: x: %w", cerrdefs.ErrNotFound)
	f := &fakeEngine{
		stopErr:   gone,
		killErr:   fmt.Errorf("Container x is not running: %w", cerrdefs.ErrConflict),
		removeErr: gone,
	}
	c := newController(f, testTask(nil), "node1", testLogger())
	ctx := t.Context()
	if err := c.Shutdown(ctx); err != nil {
		t.Errorf("shutdown: %v", err)
	}
	if err := c.Terminate(ctx); err != nil {
		t.Errorf("terminate: %v", err)
	}
	if err := c.Remove(ctx); err != nil {
		t.Errorf("remove: %v", err)
	}
	f.killErr = cerrdefs.ErrUnavailable
	if err := c.Terminate(ctx); !errors.Is(err, exec.ErrTaskRetry) {
		t.Errorf("terminate with the engine down: %v", err)
	}
	rs, err := c.Inspect(ctx)
	if err != nil || rs.Phase != exec.PhaseAbsent {
		t.Errorf("inspect = %v, %v; want absent", rs, err)
	}
}

func TestControllerClosed(t *testing.T) {
	c := newController(&fakeEngine{}, testTask(nil), "node1", testLogger())
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	for name, err := range map[string]error{
		"prepare": c.Prepare(ctx),
		"start":   c.Start(ctx),
		"wait":    c.Wait(ctx),
		"update":  c.Update(ctx, testTask(nil)),
		"logs":    c.Logs(ctx, nil, &api.LogSubscriptionOptions{}),
	} {
		if !errors.Is(err, ErrControllerClosed) {
			t.Errorf("%s after close: %v", name, err)
		}
	}
}

func testLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }
