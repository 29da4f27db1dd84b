package executor

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/events"
	"github.com/openswarm/swarmd/agent/exec"
)

// healthEngine is a fakeEngine whose container goes through the health
// states of steps, one per inspection after the events subscription, and
// sends an event before each.
type healthEngine struct {
	fakeEngine
	mu         sync.Mutex
	steps      []string
	subscribed bool
	events     chan events.Message
}

func (h *healthEngine) ContainerInspect(ctx context.Context, name string) (container.InspectResponse, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.subscribed && len(h.steps) > 1 {
		h.steps = h.steps[1:]
	}
	ci := *h.ctr
	st := *ci.State
	st.Health = &container.Health{Status: container.HealthStatus(h.steps[0])}
	if h.steps[0] == "" {
		st.Health = nil
	}
	if h.steps[0] == "exited" {
		st.Health, st.Running, st.Status = &container.Health{Status: container.Starting}, false, container.StateExited
	}
	ci.ContainerJSONBase = &container.ContainerJSONBase{ID: ci.ID, State: &st}
	return ci, nil
}

func (h *healthEngine) Events(context.Context, events.ListOptions) (<-chan events.Message, <-chan error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.subscribed = true
	h.events = make(chan events.Message, len(h.steps))
	for range h.steps {
		h.events <- events.Message{Action: events.ActionHealthStatus}
	}
	return h.events, nil
}

// TestControllerStartWaitsForHealth: a container with a healthcheck
// counts as started once healthy (the task is RUNNING only then), fails
// the task if it turns unhealthy first, and is left to Wait if it exits
// meanwhile; without a healthcheck Start does not wait.
func TestControllerStartWaitsForHealth(t *testing.T) {
	started := "2024-01-01T00:00:00Z"
	tests := []struct {
		name       string
		fresh      bool // created by Prepare, else restarted worker
		steps      []string
		wantIs     error
		subscribed bool
	}{
		{name: "no healthcheck", fresh: true, steps: []string{""}},
		{name: "healthy at once", fresh: true, steps: []string{"healthy"}},
		{name: "starting, then healthy", fresh: true, steps: []string{"starting", "starting", "healthy"}, subscribed: true},
		{name: "starting, then unhealthy", fresh: true, steps: []string{"starting", "unhealthy"}, wantIs: ErrContainerUnhealthy, subscribed: true},
		{name: "exits while starting", fresh: true, steps: []string{"starting", "exited"}, subscribed: true},
		{name: "started before, still starting, then healthy", steps: []string{"starting", "healthy"}, wantIs: exec.ErrTaskStarted, subscribed: true},
		{name: "started before, unhealthy", steps: []string{"unhealthy"}, wantIs: ErrContainerUnhealthy},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			eng := &healthEngine{steps: tt.steps}
			st := &container.State{Status: container.StateRunning, Running: true, StartedAt: started}
			eng.ctr = ownContainer("task1", st)
			c := newController(eng, testTask(nil), "node1", testLogger())
			if tt.fresh {
				c.fresh = "c1"
			}
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			err := c.Start(ctx)
			if !errors.Is(err, tt.wantIs) || (tt.wantIs == nil && err != nil) {
				t.Fatalf("start: %v, want %v", err, tt.wantIs)
			}
			if eng.subscribed != tt.subscribed {
				t.Fatalf("subscribed to events: %v, want %v", eng.subscribed, tt.subscribed)
			}
		})
	}

	// Never healthy: Start waits until its context ends.
	eng := &healthEngine{steps: []string{"starting"}}
	eng.ctr = ownContainer("task1", &container.State{Status: container.StateRunning, Running: true, StartedAt: started})
	c := newController(eng, testTask(nil), "node1", testLogger())
	c.fresh = "c1"
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	if err := c.Start(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("start of a container never healthy: %v", err)
	}
}
