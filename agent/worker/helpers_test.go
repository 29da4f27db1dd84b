package worker

import (
	"context"
	"log/slog"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/openswarm/swarmd/agent/exec/testexec"
	"github.com/openswarm/swarmd/api"
)

// recorder is a StatusReporter that keeps every report; waiters are woken
// on each.
type recorder struct {
	mu      sync.Mutex
	reports map[string][]*api.TaskStatus
	forgot  map[string]bool
	changed chan struct{} // closed and replaced on every report
}

func newRecorder() *recorder {
	return &recorder{reports: map[string][]*api.TaskStatus{}, forgot: map[string]bool{}, changed: make(chan struct{})}
}

func (r *recorder) Report(id string, st *api.TaskStatus) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.reports[id] = append(r.reports[id], st)
	close(r.changed)
	r.changed = make(chan struct{})
}

func (r *recorder) Forget(id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.forgot[id] = true
	close(r.changed)
	r.changed = make(chan struct{})
}

// states returns the states reported for a task, in order.
func (r *recorder) states(id string) []api.TaskState {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []api.TaskState
	for _, st := range r.reports[id] {
		out = append(out, st.GetState())
	}
	return out
}

func (r *recorder) last(id string) *api.TaskStatus {
	r.mu.Lock()
	defer r.mu.Unlock()
	if l := r.reports[id]; len(l) > 0 {
		return l[len(l)-1]
	}
	return nil
}

// waitState waits until the last report of a task is in state.
func (r *recorder) waitState(t *testing.T, id string, state api.TaskState) *api.TaskStatus {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		r.mu.Lock()
		ch := r.changed
		r.mu.Unlock()
		if st := r.last(id); st.GetState() == state {
			return st
		}
		select {
		case <-ch:
		case <-deadline:
			t.Fatalf("task %s: reported %v, never %v", id, r.states(id), state)
		}
	}
}

// eventually polls cond until it holds, failing the test after a while.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		<-tick.C
	}
}

// node is a worker under test over a testexec engine.
type node struct {
	t      *testing.T
	w      *Worker
	x      *testexec.Executor
	eng    *testexec.Engine
	rec    *recorder
	clock  *clockwork.FakeClock
	dbPath string
	cancel context.CancelFunc
	done   chan error
}

// startNode runs a worker with a task DB at dbPath ("" : a new temp file)
// over eng (nil: a new engine).
func startNode(t *testing.T, eng *testexec.Engine, dbPath string) *node {
	t.Helper()
	if eng == nil {
		eng = testexec.NewEngine()
	}
	if dbPath == "" {
		dbPath = filepath.Join(t.TempDir(), "worker", "tasks.db")
	}
	n := &node{t: t, eng: eng, x: eng.Executor(nil), rec: newRecorder(), clock: clockwork.NewFakeClock(), dbPath: dbPath, done: make(chan error, 1)}
	w, err := New(Config{Executor: n.x, DBPath: dbPath, Reporter: n.rec, Clock: n.clock, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	n.w = w
	ctx, cancel := context.WithCancel(context.Background())
	n.cancel = cancel
	go func() { n.done <- w.Run(ctx) }()
	t.Cleanup(n.stop)
	select {
	case <-w.Ready():
	case err := <-n.done:
		t.Fatalf("worker Run: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("worker not ready")
	}
	return n
}

// stop stops the worker (the tasks keep running in the engine).
func (n *node) stop() {
	if n.cancel == nil {
		return
	}
	n.cancel()
	n.cancel = nil
	select {
	case err := <-n.done:
		if err != nil {
			n.t.Errorf("worker Run: %v", err)
		}
	case <-time.After(10 * time.Second):
		n.t.Error("worker did not stop")
	}
}

func (n *node) assign(changes ...*api.AssignmentChange) {
	n.t.Helper()
	if err := n.w.Assign(context.Background(), changes); err != nil {
		n.t.Fatal(err)
	}
}

func (n *node) update(changes ...*api.AssignmentChange) {
	n.t.Helper()
	if err := n.w.Update(context.Background(), changes); err != nil {
		n.t.Fatal(err)
	}
}

func newTask(id string, desired api.TaskState) *api.Task {
	return &api.Task{
		Id: id, NodeId: "n1", DesiredState: desired,
		Meta:   &api.Meta{Version: &api.Version{Index: 1}},
		Spec:   &api.TaskSpec{Container: &api.ContainerSpec{Image: "busybox"}},
		Status: &api.TaskStatus{State: api.TaskState_TASK_STATE_ASSIGNED, Message: "scheduler assigned task to node"},
	}
}

// withDesired returns a copy of t as the manager would send it with
// another desired state (and a new version).
func withDesired(t *api.Task, desired api.TaskState) *api.Task {
	return &api.Task{Id: t.Id, NodeId: t.NodeId, Spec: t.Spec, Status: t.Status, DesiredState: desired,
		Meta: &api.Meta{Version: &api.Version{Index: t.GetMeta().GetVersion().GetIndex() + 1}}}
}

func withImage(t *api.Task, image string) *api.Task {
	t.Spec = &api.TaskSpec{Container: &api.ContainerSpec{Image: image}}
	return t
}

func upd(o any) *api.AssignmentChange { return change(o, api.AssignmentChange_UPDATE) }
func rmv(o any) *api.AssignmentChange { return change(o, api.AssignmentChange_REMOVE) }
func change(o any, a api.AssignmentChange_Action) *api.AssignmentChange {
	c := &api.AssignmentChange{Action: a, Assignment: &api.Assignment{}}
	switch o := o.(type) {
	case *api.Task:
		c.Assignment.Item = &api.Assignment_Task{Task: o}
	case *api.Secret:
		c.Assignment.Item = &api.Assignment_Secret{Secret: o}
	case *api.Config:
		c.Assignment.Item = &api.Assignment_Config{Config: o}
	}
	return c
}

const (
	stAssigned  = api.TaskState_TASK_STATE_ASSIGNED
	stAccepted  = api.TaskState_TASK_STATE_ACCEPTED
	stPreparing = api.TaskState_TASK_STATE_PREPARING
	stReady     = api.TaskState_TASK_STATE_READY
	stStarting  = api.TaskState_TASK_STATE_STARTING
	stRunning   = api.TaskState_TASK_STATE_RUNNING
	stComplete  = api.TaskState_TASK_STATE_COMPLETE
	stShutdown  = api.TaskState_TASK_STATE_SHUTDOWN
	stFailed    = api.TaskState_TASK_STATE_FAILED
	stRejected  = api.TaskState_TASK_STATE_REJECTED
	stRemove    = api.TaskState_TASK_STATE_REMOVE
)

var toRunning = []api.TaskState{stAccepted, stPreparing, stReady, stStarting, stRunning}

func contains(list []string, s string) bool { return slices.Contains(list, s) }
