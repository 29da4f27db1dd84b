package executor

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"os"
	osexec "os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/client"
	"github.com/openswarm/swarmd/agent/exec"
	"github.com/openswarm/swarmd/api"
	"google.golang.org/protobuf/types/known/durationpb"
)

// The program the test image runs: it writes a line to stdout and one to
// stderr, then exits with $EXIT_CODE if set, or else waits for SIGTERM.
// "/app fail" exits 1 at once (a failing healthcheck).
const testProgram = `package main

import (
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"syscall"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "fail" {
		os.Exit(1)
	}
	fmt.Println("hello stdout")
	fmt.Fprintln(os.Stderr, "hello stderr")
	if c := os.Getenv("EXIT_CODE"); c != "" {
		n, _ := strconv.Atoi(c)
		os.Exit(n)
	}
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGTERM)
	<-ch
}
`

// buildTestImage builds the test program and imports it as an image, with
// no registry: a static binary alone in a tarball.
func buildTestImage(t *testing.T, cli *client.Client, tag string) {
	t.Helper()
	dir := t.TempDir()
	src := filepath.Join(dir, "main.go")
	if err := os.WriteFile(src, []byte(testProgram), 0o644); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "app")
	build := osexec.Command("go", "build", "-o", bin, src)
	build.Dir = dir
	build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GO111MODULE=off")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build test program: %v\n%s", err, out)
	}
	data, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	tarPath := filepath.Join(dir, "app.tar")
	f, err := os.Create(tarPath)
	if err != nil {
		t.Fatal(err)
	}
	tw := tar.NewWriter(f)
	if err := tw.WriteHeader(&tar.Header{Name: "app", Mode: 0o755, Size: int64(len(data)), Typeflag: tar.TypeReg, ModTime: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if _, err := tw.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	imp := osexec.Command("docker", "import", "--change", `ENTRYPOINT ["/app"]`, tarPath, tag)
	if out, err := imp.CombinedOutput(); err != nil {
		t.Fatalf("docker import: %v\n%s", err, out)
	}
	t.Cleanup(func() {
		if _, err := cli.ImageRemove(context.Background(), tag, image.RemoveOptions{Force: true, PruneChildren: true}); err != nil {
			t.Logf("remove image %s: %v", tag, err)
		}
	})
}

type engineEnv struct {
	cli    *client.Client
	exec   *Executor
	image  string
	prefix string
}

// task returns a task of a service of its own, running the test image.
func (e *engineEnv) task(t *testing.T, mut func(*api.ContainerSpec)) *api.Task {
	t.Helper()
	id := strings.ToLower(strings.NewReplacer("/", "-", "_", "-").Replace(t.Name()))
	task := &api.Task{
		Id:                 fmt.Sprintf("%s-%s", e.prefix, id),
		ServiceId:          "svc-" + e.prefix,
		Slot:               1,
		NodeId:             e.exec.nodeID,
		ServiceAnnotations: &api.Annotations{Name: "exectest"},
		Spec: &api.TaskSpec{Container: &api.ContainerSpec{
			Image:           e.image,
			StopGracePeriod: durationpb.New(5 * time.Second),
		}},
	}
	if mut != nil {
		mut(task.Spec.Container)
	}
	name := containerName(task, e.exec.nodeID)
	t.Cleanup(func() {
		err := e.cli.ContainerRemove(context.Background(), name, container.RemoveOptions{Force: true, RemoveVolumes: true})
		if err != nil && !strings.Contains(err.Error(), "No such container") {
			t.Logf("remove container %s: %v", name, err)
		}
	})
	return task
}

func (e *engineEnv) controller(t *testing.T, task *api.Task) *Controller {
	t.Helper()
	c, err := e.exec.Controller(task)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c.(*Controller)
}

func testContext(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), d)
	t.Cleanup(cancel)
	return ctx
}

func mustInspect(t *testing.T, ctx context.Context, c *Controller, want exec.Phase) exec.RuntimeState {
	t.Helper()
	rs, err := c.Inspect(ctx)
	if err != nil {
		t.Fatalf("inspect: %v", err)
	}
	if rs.Phase != want {
		t.Fatalf("phase = %v, want %v", rs.Phase, want)
	}
	return rs
}

type logCollector struct {
	mu   sync.Mutex
	msgs []*api.LogMessage
}

func (l *logCollector) Publish(_ context.Context, m *api.LogMessage) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.msgs = append(l.msgs, m)
	return nil
}

// cancellingCollector collects log messages and cancels the subscription
// once it has some.
type cancellingCollector struct {
	logCollector
	after  int
	cancel context.CancelFunc
}

func (l *cancellingCollector) Publish(ctx context.Context, m *api.LogMessage) error {
	l.logCollector.Publish(ctx, m)
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.msgs) >= l.after {
		l.cancel()
	}
	return nil
}

func TestEngine(t *testing.T) {
	if os.Getenv("SWARMD_DOCKER_TESTS") != "1" {
		t.Skip("set SWARMD_DOCKER_TESTS=1 to run the tests against the local Docker Engine")
	}
	cli, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	prefix := fmt.Sprintf("x%d%d", os.Getpid(), time.Now().UnixNano()%1e6)
	env := &engineEnv{
		cli:    cli,
		exec:   New(cli, "node-"+prefix, nil),
		image:  "swarmd-executor-test:" + prefix,
		prefix: prefix,
	}
	buildTestImage(t, cli, env.image)

	t.Run("describe", func(t *testing.T) {
		d, err := env.exec.Describe(testContext(t, 30*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		if d.GetHostname() == "" || d.GetPlatform().GetOs() != "linux" || d.GetResources().GetNanoCpus() < 1e9 ||
			d.GetResources().GetMemoryBytes() <= 0 || d.GetEngine().GetEngineVersion() == "" {
			t.Errorf("description = %v", d)
		}
	})

	t.Run("lifecycle", func(t *testing.T) {
		ctx := testContext(t, 60*time.Second)
		task := env.task(t, nil)
		c := env.controller(t, task)
		mustInspect(t, ctx, c, exec.PhaseAbsent)

		if err := c.Prepare(ctx); err != nil {
			t.Fatalf("prepare: %v", err)
		}
		if err := c.Prepare(ctx); !errors.Is(err, exec.ErrTaskPrepared) {
			t.Fatalf("second prepare: %v, want %v", err, exec.ErrTaskPrepared)
		}
		rs := mustInspect(t, ctx, c, exec.PhaseCreated)
		ci, err := env.cli.ContainerInspect(ctx, rs.Container.GetContainerId())
		if err != nil {
			t.Fatal(err)
		}
		if got := ci.Config.Labels[LabelTaskID]; got != task.GetId() {
			t.Errorf("task ID label = %q", got)
		}
		if want := "/" + containerName(task, env.exec.nodeID); ci.Name != want {
			t.Errorf("container name = %q, want %q", ci.Name, want)
		}

		if err := c.Start(ctx); err != nil {
			t.Fatalf("start: %v", err)
		}
		if err := c.Start(ctx); !errors.Is(err, exec.ErrTaskStarted) {
			t.Fatalf("second start: %v, want %v", err, exec.ErrTaskStarted)
		}
		rs = mustInspect(t, ctx, c, exec.PhaseRunning)
		if rs.Container.GetPid() == 0 {
			t.Errorf("running container has no pid: %v", rs.Container)
		}

		// The program writes its lines as it starts: poll until both are
		// in the logs.
		var out, errLine *api.LogMessage
		for out == nil || errLine == nil {
			if ctx.Err() != nil {
				t.Fatalf("logs never showed both lines: stdout %v, stderr %v", out, errLine)
			}
			var lc logCollector
			if err := c.Logs(ctx, &lc, &api.LogSubscriptionOptions{Tail: -1}); err != nil {
				t.Fatalf("logs: %v", err)
			}
			out, errLine = nil, nil
			for _, m := range lc.msgs {
				switch {
				case string(m.GetData()) == "hello stdout\n" && m.GetStream() == api.LogStream_LOG_STREAM_STDOUT:
					out = m
				case string(m.GetData()) == "hello stderr\n" && m.GetStream() == api.LogStream_LOG_STREAM_STDERR:
					errLine = m
				default:
					t.Fatalf("unexpected log message %v", m)
				}
			}
		}
		for _, m := range []*api.LogMessage{out, errLine} {
			if m.GetTimestamp() == nil || time.Since(m.GetTimestamp().AsTime()) > time.Minute {
				t.Errorf("bad timestamp in %v", m)
			}
			if m.GetContext().GetTaskId() != task.GetId() || m.GetContext().GetServiceId() != task.GetServiceId() || m.GetContext().GetNodeId() != env.exec.nodeID {
				t.Errorf("bad context in %v", m)
			}
		}
		var onlyErr logCollector
		if err := c.Logs(ctx, &onlyErr, &api.LogSubscriptionOptions{Tail: -1, Streams: []api.LogStream{api.LogStream_LOG_STREAM_STDERR}}); err != nil {
			t.Fatalf("logs: %v", err)
		}
		if len(onlyErr.msgs) != 1 || onlyErr.msgs[0].GetStream() != api.LogStream_LOG_STREAM_STDERR {
			t.Errorf("stderr logs = %v", onlyErr.msgs)
		}

		// Following the logs of a running container goes on until the
		// subscription ends.
		followCtx, cancelFollow := context.WithCancel(ctx)
		follow := &cancellingCollector{after: 2, cancel: cancelFollow}
		if err := c.Logs(followCtx, follow, &api.LogSubscriptionOptions{Tail: -1, Follow: true}); !errors.Is(err, context.Canceled) {
			t.Fatalf("followed logs: %v, want %v", err, context.Canceled)
		}
		if len(follow.msgs) != 2 {
			t.Errorf("followed %d lines, want 2", len(follow.msgs))
		}
		var none logCollector
		if err := c.Logs(ctx, &none, &api.LogSubscriptionOptions{Tail: 0}); err != nil || len(none.msgs) != 0 {
			t.Errorf("logs with tail 0: %v, %v", none.msgs, err)
		}

		waitErr := make(chan error, 1)
		go func() { waitErr <- c.Wait(ctx) }()
		if err := c.Shutdown(ctx); err != nil {
			t.Fatalf("shutdown: %v", err)
		}
		if err := <-waitErr; err != nil {
			t.Fatalf("wait: %v", err)
		}
		if err := c.Wait(ctx); err != nil {
			t.Fatalf("wait after exit: %v", err)
		}
		rs = mustInspect(t, ctx, c, exec.PhaseExited)
		if rs.ExitCode != 0 {
			t.Errorf("exit code = %d", rs.ExitCode)
		}
		if err := c.Start(ctx); !errors.Is(err, exec.ErrTaskStarted) {
			t.Errorf("start after exit: %v, want %v", err, exec.ErrTaskStarted)
		}
		if err := c.Shutdown(ctx); err != nil {
			t.Errorf("shutdown of an exited container: %v", err)
		}
		if err := c.Terminate(ctx); err != nil {
			t.Errorf("terminate of an exited container: %v", err)
		}

		if err := c.Remove(ctx); err != nil {
			t.Fatalf("remove: %v", err)
		}
		mustInspect(t, ctx, c, exec.PhaseAbsent)
		if err := c.Remove(ctx); err != nil {
			t.Errorf("second remove: %v", err)
		}
		if err := c.Shutdown(ctx); err != nil {
			t.Errorf("shutdown of a removed container: %v", err)
		}
		if err := c.Terminate(ctx); err != nil {
			t.Errorf("terminate of a removed container: %v", err)
		}
	})

	t.Run("exit code", func(t *testing.T) {
		ctx := testContext(t, 60*time.Second)
		c := env.controller(t, env.task(t, func(s *api.ContainerSpec) { s.Env = []string{"EXIT_CODE=3"} }))
		if err := c.Prepare(ctx); err != nil {
			t.Fatalf("prepare: %v", err)
		}
		if err := c.Start(ctx); err != nil {
			t.Fatalf("start: %v", err)
		}
		err := c.Wait(ctx)
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.Code != 3 {
			t.Fatalf("wait: %v, want exit code 3", err)
		}
		// Following the logs of an exited container ends with them.
		var lc logCollector
		if err := c.Logs(ctx, &lc, &api.LogSubscriptionOptions{Tail: -1, Follow: true}); err != nil {
			t.Fatalf("followed logs: %v", err)
		}
		if len(lc.msgs) != 2 {
			t.Errorf("logs = %v, want 2 lines", lc.msgs)
		}
		rs := mustInspect(t, ctx, c, exec.PhaseExited)
		if rs.ExitCode != 3 || rs.Container.GetExitCode() != 3 {
			t.Errorf("runtime state = %+v", rs)
		}
	})

	t.Run("tty logs", func(t *testing.T) {
		ctx := testContext(t, 60*time.Second)
		c := env.controller(t, env.task(t, func(s *api.ContainerSpec) {
			s.Tty = true
			s.Env = []string{"EXIT_CODE=0"}
		}))
		if err := c.Prepare(ctx); err != nil {
			t.Fatalf("prepare: %v", err)
		}
		if err := c.Start(ctx); err != nil {
			t.Fatalf("start: %v", err)
		}
		if err := c.Wait(ctx); err != nil {
			t.Fatalf("wait: %v", err)
		}
		var lc logCollector
		if err := c.Logs(ctx, &lc, &api.LogSubscriptionOptions{Tail: -1}); err != nil {
			t.Fatalf("logs: %v", err)
		}
		var got []string
		for _, m := range lc.msgs {
			if m.GetStream() != api.LogStream_LOG_STREAM_STDOUT || m.GetTimestamp() == nil {
				t.Errorf("bad message %v", m)
			}
			got = append(got, strings.TrimRight(string(m.GetData()), "\r\n"))
		}
		if len(got) != 2 || got[0] != "hello stdout" || got[1] != "hello stderr" {
			t.Errorf("tty lines = %q", got)
		}
	})

	t.Run("terminate", func(t *testing.T) {
		ctx := testContext(t, 60*time.Second)
		c := env.controller(t, env.task(t, nil))
		if err := c.Prepare(ctx); err != nil {
			t.Fatalf("prepare: %v", err)
		}
		if err := c.Start(ctx); err != nil {
			t.Fatalf("start: %v", err)
		}
		if err := c.Terminate(ctx); err != nil {
			t.Fatalf("terminate: %v", err)
		}
		var ee *exec.ExitError
		if err := c.Wait(ctx); !errors.As(err, &ee) || ee.Code != 137 {
			t.Fatalf("wait: %v, want exit code 137", err)
		}
	})

	t.Run("unhealthy", func(t *testing.T) {
		ctx := testContext(t, 60*time.Second)
		c := env.controller(t, env.task(t, func(s *api.ContainerSpec) {
			s.Healthcheck = &api.HealthConfig{
				Test:     []string{"CMD", "/app", "fail"},
				Interval: durationpb.New(200 * time.Millisecond),
				Timeout:  durationpb.New(5 * time.Second),
				Retries:  1,
			}
		}))
		if err := c.Prepare(ctx); err != nil {
			t.Fatalf("prepare: %v", err)
		}
		// Start waits for the container to be healthy: unhealthy first,
		// the task fails before it runs; Wait sees it too.
		if err := c.Start(ctx); !errors.Is(err, ErrContainerUnhealthy) {
			t.Fatalf("start: %v, want %v", err, ErrContainerUnhealthy)
		}
		if err := c.Wait(ctx); !errors.Is(err, ErrContainerUnhealthy) {
			t.Fatalf("wait: %v, want %v", err, ErrContainerUnhealthy)
		}
	})

	t.Run("missing image", func(t *testing.T) {
		ctx := testContext(t, 30*time.Second)
		ref := "swarmd-no-such-image:" + prefix
		c := env.controller(t, env.task(t, func(s *api.ContainerSpec) { s.Image = ref }))
		err := c.Prepare(ctx)
		if err == nil || err.Error() != "No such image: "+ref {
			t.Fatalf("prepare: %v, want No such image: %s", err, ref)
		}
		if errors.Is(err, exec.ErrTaskRetry) {
			t.Errorf("missing image is a temporary error: %v", err)
		}
		mustInspect(t, ctx, c, exec.PhaseAbsent)
	})

	t.Run("do", func(t *testing.T) {
		// The worker's state machine drives the controller from ASSIGNED
		// to COMPLETE.
		ctx := testContext(t, 60*time.Second)
		task := env.task(t, func(s *api.ContainerSpec) { s.Env = []string{"EXIT_CODE=0"} })
		task.DesiredState = api.TaskState_TASK_STATE_RUNNING
		task.Status = &api.TaskStatus{State: api.TaskState_TASK_STATE_ASSIGNED}
		c := env.controller(t, task)
		for task.Status.GetState() < api.TaskState_TASK_STATE_COMPLETE {
			st, err := exec.Do(ctx, task, c)
			if err != nil {
				t.Fatalf("do from %v: %v", task.Status.GetState(), err)
			}
			task.Status = st
		}
		if got := task.Status.GetState(); got != api.TaskState_TASK_STATE_COMPLETE {
			t.Fatalf("state = %v (%s), want COMPLETE", got, task.Status.GetErr())
		}
		if task.Status.GetContainer().GetContainerId() == "" {
			t.Errorf("no container in status %v", task.Status)
		}
	})
}
