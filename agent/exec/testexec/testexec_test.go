package testexec

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/openswarm/swarmd/agent/exec"
	"github.com/openswarm/swarmd/api"
)

func task(id, image string) *api.Task {
	return &api.Task{Id: id, Spec: &api.TaskSpec{Container: &api.ContainerSpec{Image: image}}}
}

func TestControllerLifecycle(t *testing.T) {
	ctx := context.Background()
	x := New(nil)
	eng := x.Engine()
	c, err := x.Controller(task("t1", "busybox"))
	if err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		name  string
		do    func() error
		want  error
		phase exec.Phase
	}{
		{"start before prepare", func() error { return c.Start(ctx) }, ErrNoSuchContainer, exec.PhaseAbsent},
		{"prepare", func() error { return c.Prepare(ctx) }, nil, exec.PhaseCreated},
		{"prepare again", func() error { return c.Prepare(ctx) }, exec.ErrTaskPrepared, exec.PhaseCreated},
		{"wait before start", func() error { return c.Wait(ctx) }, ErrNotStarted, exec.PhaseCreated},
		{"start", func() error { return c.Start(ctx) }, nil, exec.PhaseRunning},
		{"start again", func() error { return c.Start(ctx) }, exec.ErrTaskStarted, exec.PhaseRunning},
		{"exit 3", func() error { return eng.Exit("t1", 3) }, nil, exec.PhaseExited},
		{"start after exit", func() error { return c.Start(ctx) }, exec.ErrTaskStarted, exec.PhaseExited},
		{"shutdown after exit", func() error { return c.Shutdown(ctx) }, nil, exec.PhaseExited},
		{"remove", func() error { return c.Remove(ctx) }, nil, exec.PhaseAbsent},
		{"remove again", func() error { return c.Remove(ctx) }, nil, exec.PhaseAbsent},
	}
	for _, s := range steps {
		if err := s.do(); !errors.Is(err, s.want) || (s.want == nil && err != nil) {
			t.Fatalf("%s: %v, want %v", s.name, err, s.want)
		}
		if got := eng.State("t1").Phase; got != s.phase {
			t.Fatalf("after %s: phase %v, want %v", s.name, got, s.phase)
		}
	}
	if n := eng.Starts("t1"); n != 1 {
		t.Fatalf("started %d times", n)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Prepare(ctx); !errors.Is(err, ErrClosed) {
		t.Fatalf("prepare after close: %v", err)
	}
}

func TestWaitReturnsExit(t *testing.T) {
	tests := []struct {
		name string
		stop func(e *Engine, c exec.Controller) error
		code int
	}{
		{"exit 0", func(e *Engine, _ exec.Controller) error { return e.Exit("t1", 0) }, 0},
		{"exit 1", func(e *Engine, _ exec.Controller) error { return e.Exit("t1", 1) }, 1},
		{"shutdown", func(_ *Engine, c exec.Controller) error { return c.Shutdown(context.Background()) }, ExitCodeShutdown},
		{"terminate", func(_ *Engine, c exec.Controller) error { return c.Terminate(context.Background()) }, ExitCodeTerminate},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			x := New(nil)
			c, _ := x.Controller(task("t1", "busybox"))
			if err := c.Prepare(ctx); err != nil {
				t.Fatal(err)
			}
			if err := c.Start(ctx); err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { done <- c.Wait(ctx) }()
			if err := tc.stop(x.Engine(), c); err != nil {
				t.Fatal(err)
			}
			var err error
			select {
			case err = <-done:
			case <-time.After(10 * time.Second):
				t.Fatal("Wait did not return")
			}
			var exit *exec.ExitError
			switch {
			case tc.code == 0 && err != nil:
				t.Fatalf("Wait = %v, want nil", err)
			case tc.code != 0 && (!errors.As(err, &exit) || exit.Code != tc.code):
				t.Fatalf("Wait = %v, want exit %d", err, tc.code)
			}
		})
	}
}

func TestWaitAfterDeletion(t *testing.T) {
	ctx := context.Background()
	x := New(nil)
	c, _ := x.Controller(task("t1", "busybox"))
	_ = c.Prepare(ctx)
	_ = c.Start(ctx)
	x.Engine().DeleteContainer("t1")
	if err := c.Wait(ctx); !errors.Is(err, ErrNoSuchContainer) {
		t.Fatalf("Wait = %v", err)
	}
}

func TestWaitHonoursContext(t *testing.T) {
	x := New(nil)
	c, _ := x.Controller(task("t1", "busybox"))
	ctx, cancel := context.WithCancel(context.Background())
	_ = c.Prepare(ctx)
	_ = c.Start(ctx)
	cancel()
	if err := c.Wait(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Wait = %v", err)
	}
}

func TestHooks(t *testing.T) {
	ctx := context.Background()
	x := New(nil)
	eng := x.Engine()
	release := make(chan struct{})
	eng.SetHooks(Hooks{
		Prepare: func(ctx context.Context, t *api.Task) error {
			if t.GetId() == "slow" {
				return Block(release)(ctx, t)
			}
			return RejectImages("missing:1")(ctx, t)
		},
		Exit: func(t *api.Task) (int, bool) { return 7, t.GetSpec().GetContainer().GetImage() == "oneshot" },
	})

	bad, _ := x.Controller(task("bad", "missing:1"))
	if err := bad.Prepare(ctx); err == nil || err.Error() != "No such image: missing:1" {
		t.Fatalf("prepare of a missing image: %v", err)
	}
	if got := eng.State("bad").Phase; got != exec.PhaseAbsent {
		t.Fatalf("failed prepare left a %v container", got)
	}

	one, _ := x.Controller(task("one", "oneshot"))
	_ = one.Prepare(ctx)
	if err := one.Start(ctx); err != nil {
		t.Fatal(err)
	}
	var exit *exec.ExitError
	if err := one.Wait(ctx); !errors.As(err, &exit) || exit.Code != 7 {
		t.Fatalf("oneshot Wait = %v", err)
	}

	slow, _ := x.Controller(task("slow", "busybox"))
	done := make(chan error, 1)
	go func() { done <- slow.Prepare(ctx) }()
	select {
	case err := <-done:
		t.Fatalf("blocked Prepare returned %v", err)
	default:
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	blocked, _ := x.Controller(task("slow", "busybox"))
	if err := blocked.Prepare(cctx); !errors.Is(err, exec.ErrTaskPrepared) {
		t.Fatalf("second prepare: %v", err)
	}
}

func TestRestartSeesContainers(t *testing.T) {
	ctx := context.Background()
	x := New(nil)
	for _, id := range []string{"a", "b", "c"} {
		c, _ := x.Controller(task(id, "busybox"))
		_ = c.Prepare(ctx)
		if id != "c" {
			_ = c.Start(ctx)
		}
	}
	_ = x.Engine().Exit("b", 2)

	y := x.Engine().Executor(DefaultDescription("again"))
	if got := y.Engine().Running(); !slices.Equal(got, []string{"a"}) {
		t.Fatalf("running after restart %v", got)
	}
	if got := y.Engine().Containers(); !slices.Equal(got, []string{"a", "b", "c"}) {
		t.Fatalf("containers after restart %v", got)
	}
	want := map[string]exec.Phase{"a": exec.PhaseRunning, "b": exec.PhaseExited, "c": exec.PhaseCreated, "d": exec.PhaseAbsent}
	for id, phase := range want {
		c, _ := y.Controller(task(id, "busybox"))
		rs, err := c.(exec.Inspector).Inspect(ctx)
		if err != nil || rs.Phase != phase {
			t.Fatalf("inspect %s = %v, %v; want %v", id, rs.Phase, err, phase)
		}
	}
	c, _ := y.Controller(task("a", "busybox"))
	if err := c.Start(ctx); !errors.Is(err, exec.ErrTaskStarted) {
		t.Fatalf("start of a running task after restart: %v", err)
	}
	if n := y.Engine().Starts("a"); n != 1 {
		t.Fatalf("started %d times", n)
	}
}

func TestDescribe(t *testing.T) {
	x := New(DefaultDescription("h1"))
	d, err := x.Describe(context.Background())
	if err != nil || d.GetHostname() != "h1" || d.GetPlatform().GetOs() != "linux" {
		t.Fatalf("Describe = %v, %v", d, err)
	}
	d.Hostname = "changed"
	x.SetDescription(&api.NodeDescription{Hostname: "h2", Engine: &api.EngineDescription{Labels: map[string]string{"zone": "a"}}})
	d, _ = x.Describe(context.Background())
	if d.GetHostname() != "h2" || d.GetEngine().GetLabels()["zone"] != "a" {
		t.Fatalf("Describe after SetDescription = %v", d)
	}
}
