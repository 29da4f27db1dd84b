package agent

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/openswarm/swarmd/agent/exec/testexec"
	"github.com/openswarm/swarmd/api"
	"github.com/openswarm/swarmd/manager/dispatcher"
	"github.com/openswarm/swarmd/manager/state/store"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
)

// nodeIDCreds says which node calls, in the "node-id" metadata the test
// dispatcher's NodeIdentity reads (a manager reads the verified
// certificate instead).
type nodeIDCreds string

func (c nodeIDCreds) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"node-id": string(c)}, nil
}

func (nodeIDCreds) RequireTransportSecurity() bool { return false }

func identityFromMetadata(ctx context.Context) (string, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	if v := md.Get("node-id"); len(v) == 1 && v[0] != "" {
		return v[0], nil
	}
	return "", errors.New("no node-id metadata")
}

// cluster is a dispatcher over a local store, served on 127.0.0.1.
type cluster struct {
	t     *testing.T
	store *store.MemoryStore
	d     *dispatcher.Dispatcher
	addr  string
	ctx   context.Context
	runs  chan error
}

func newCluster(t *testing.T) *cluster {
	t.Helper()
	c := &cluster{t: t, store: store.NewMemoryStore(nil), runs: make(chan error, 1)}
	c.d = dispatcher.New(c.store, dispatcher.Config{
		Logger:               slog.New(slog.DiscardHandler),
		NodeIdentity:         identityFromMetadata,
		AssignmentBatchDelay: -1,
	})
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c.addr = lis.Addr().String()
	srv := grpc.NewServer()
	api.RegisterDispatcherServer(srv, c.d)
	go func() { _ = srv.Serve(lis) }()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	c.ctx = ctx
	t.Cleanup(func() {
		cancel()
		srv.Stop()
		c.d.Stop()
	})
	c.start()
	return c
}

// start runs the dispatcher (again) and waits until it serves.
func (c *cluster) start() {
	go func() { c.runs <- c.d.Run(c.ctx) }()
	eventually(c.t, "dispatcher running", func() bool { return c.d.String() != "dispatcher(stopped)" })
}

func (c *cluster) update(cb func(tx store.Tx) error) {
	c.t.Helper()
	if err := c.store.Update(context.Background(), cb); err != nil {
		c.t.Fatal(err)
	}
}

func (c *cluster) task(id string) *api.Task {
	var t *api.Task
	c.store.View(func(tx store.ReadTx) { t = store.GetTask(tx, id) })
	return t
}

func (c *cluster) waitTaskState(id string, state api.TaskState) *api.Task {
	c.t.Helper()
	var t *api.Task
	eventually(c.t, "task "+id+" "+state.String(), func() bool {
		t = c.task(id)
		return t.GetStatus().GetState() == state
	})
	return t
}

func (c *cluster) setDesired(id string, desired api.TaskState) {
	c.t.Helper()
	c.update(func(tx store.Tx) error {
		t := store.GetTask(tx, id)
		t.DesiredState = desired
		return tx.Update(t)
	})
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		<-tick.C
	}
}

func assignedTask(id, node string) *api.Task {
	return &api.Task{
		Id: id, NodeId: node, ServiceId: "svc1", Slot: 1, DesiredState: api.TaskState_TASK_STATE_RUNNING,
		Annotations: &api.Annotations{Name: "web.1"},
		Spec:        &api.TaskSpec{Container: &api.ContainerSpec{Image: "busybox"}},
		Status:      &api.TaskStatus{State: api.TaskState_TASK_STATE_ASSIGNED, Message: "scheduler assigned task to node"},
	}
}

// startAgent runs an agent for node against c with a testexec executor.
func startAgent(t *testing.T, c *cluster, node string, eng *testexec.Engine, dbPath string) *Agent {
	t.Helper()
	a, err := New(Config{
		Remotes:      NewRemotes(1, c.addr),
		Credentials:  insecure.NewCredentials(),
		DialOptions:  []grpc.DialOption{grpc.WithPerRPCCredentials(nodeIDCreds(node))},
		Logger:       slog.New(slog.DiscardHandler),
		MaxBackoff:   200 * time.Millisecond,
		Executor:     eng.Executor(testexec.DefaultDescription("host-" + node)),
		WorkerDBPath: dbPath,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("agent Run: %v", err)
		}
	})
	select {
	case <-a.Ready():
	case err := <-done:
		t.Fatalf("agent Run: %v", err)
	case <-time.After(20 * time.Second):
		t.Fatal("agent never got a session")
	}
	return a
}

func TestAgentRunsTasksAgainstDispatcher(t *testing.T) {
	c := newCluster(t)
	c.update(func(tx store.Tx) error { return tx.Create(assignedTask("t1", "n1")) })
	eng := testexec.NewEngine()
	a := startAgent(t, c, "n1", eng, filepath.Join(t.TempDir(), "worker", "tasks.db"))

	// The executor described the node.
	eventually(t, "node registered", func() bool { return a.Node().GetDescription().GetHostname() == "host-n1" })

	// The task written as ASSIGNED runs.
	running := c.waitTaskState("t1", api.TaskState_TASK_STATE_RUNNING)
	if running.GetStatus().GetMessage() != "started" || running.GetStatus().GetContainer().GetContainerId() == "" {
		t.Fatalf("running status %v", running.GetStatus())
	}
	if got := eng.Running(); !slices.Equal(got, []string{"t1"}) {
		t.Fatalf("running on the node: %v", got)
	}

	// A task assigned later (an incremental change set) that exits 1.
	c.update(func(tx store.Tx) error { return tx.Create(assignedTask("t2", "n1")) })
	c.waitTaskState("t2", api.TaskState_TASK_STATE_RUNNING)
	if err := eng.Exit("t2", 1); err != nil {
		t.Fatal(err)
	}
	failed := c.waitTaskState("t2", api.TaskState_TASK_STATE_FAILED)
	if failed.GetStatus().GetErr() != "task: non-zero exit (1)" || failed.GetStatus().GetContainer().GetExitCode() != 1 {
		t.Fatalf("failed status %v", failed.GetStatus())
	}

	// Desired SHUTDOWN: the task stops, then — no longer the node's
	// business — its container is removed.
	c.setDesired("t1", api.TaskState_TASK_STATE_SHUTDOWN)
	st := c.waitTaskState("t1", api.TaskState_TASK_STATE_SHUTDOWN)
	if st.GetStatus().GetMessage() != "shutdown" {
		t.Fatalf("shutdown status %v", st.GetStatus())
	}
	c.setDesired("t2", api.TaskState_TASK_STATE_SHUTDOWN)
	eventually(t, "containers removed", func() bool { return len(eng.Containers()) == 0 })
	eventually(t, "worker forgot the tasks", func() bool { return len(a.Worker().Tasks()) == 0 })
	if eng.Starts("t1") != 1 || eng.Starts("t2") != 1 {
		t.Fatalf("starts t1=%d t2=%d", eng.Starts("t1"), eng.Starts("t2"))
	}
}

func TestAgentReportsAcrossSessions(t *testing.T) {
	c := newCluster(t)
	c.update(func(tx store.Tx) error { return tx.Create(assignedTask("t1", "n1")) })
	eng := testexec.NewEngine()
	startAgent(t, c, "n1", eng, "")
	c.waitTaskState("t1", api.TaskState_TASK_STATE_RUNNING)

	// The manager goes away; the task exits meanwhile.
	c.d.Stop()
	<-c.runs
	if err := eng.Exit("t1", 0); err != nil {
		t.Fatal(err)
	}
	c.start()
	done := c.waitTaskState("t1", api.TaskState_TASK_STATE_COMPLETE)
	if done.GetStatus().GetMessage() != "finished" {
		t.Fatalf("status %v", done.GetStatus())
	}
	if eng.Starts("t1") != 1 {
		t.Fatalf("started %d times", eng.Starts("t1"))
	}
}

func TestAgentRestartReadoptsTasks(t *testing.T) {
	c := newCluster(t)
	c.update(func(tx store.Tx) error {
		if err := tx.Create(assignedTask("t1", "n1")); err != nil {
			return err
		}
		return tx.Create(assignedTask("t2", "n1"))
	})
	eng := testexec.NewEngine()
	dbPath := filepath.Join(t.TempDir(), "worker", "tasks.db")

	// The first agent runs both tasks, then stops (swarmd restarts); the
	// containers keep running.
	ctx, cancel := context.WithCancel(context.Background())
	a1, err := New(Config{
		Remotes: NewRemotes(1, c.addr), Credentials: insecure.NewCredentials(),
		DialOptions: []grpc.DialOption{grpc.WithPerRPCCredentials(nodeIDCreds("n1"))},
		Logger:      slog.New(slog.DiscardHandler), Executor: eng.Executor(nil), WorkerDBPath: dbPath,
	})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- a1.Run(ctx) }()
	c.waitTaskState("t1", api.TaskState_TASK_STATE_RUNNING)
	c.waitTaskState("t2", api.TaskState_TASK_STATE_RUNNING)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := eng.Exit("t2", 2); err != nil {
		t.Fatal(err)
	}

	// The second agent finds t1 running and t2 exited.
	startAgent(t, c, "n1", eng, dbPath)
	c.waitTaskState("t2", api.TaskState_TASK_STATE_FAILED)
	if err := eng.Exit("t1", 0); err != nil {
		t.Fatal(err)
	}
	c.waitTaskState("t1", api.TaskState_TASK_STATE_COMPLETE)
	if eng.Starts("t1") != 1 || eng.Starts("t2") != 1 {
		t.Fatalf("starts t1=%d t2=%d", eng.Starts("t1"), eng.Starts("t2"))
	}
}

func TestAgentWithoutExecutorRunsNoTasks(t *testing.T) {
	c := newCluster(t)
	c.update(func(tx store.Tx) error { return tx.Create(assignedTask("t1", "n1")) })
	a, err := New(Config{
		Remotes: NewRemotes(1, c.addr), Credentials: insecure.NewCredentials(),
		DialOptions: []grpc.DialOption{grpc.WithPerRPCCredentials(nodeIDCreds("n1"))},
		Logger:      slog.New(slog.DiscardHandler),
		Description: func() *api.NodeDescription { return &api.NodeDescription{Hostname: "plain"} },
	})
	if err != nil {
		t.Fatal(err)
	}
	if a.Worker() != nil {
		t.Fatal("an agent without an executor has a worker")
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	<-a.Ready()
	eventually(t, "node registered", func() bool { return a.Node().GetDescription().GetHostname() == "plain" })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if st := c.task("t1").GetStatus().GetState(); st != api.TaskState_TASK_STATE_ASSIGNED {
		t.Fatalf("task moved to %v", st)
	}
}
