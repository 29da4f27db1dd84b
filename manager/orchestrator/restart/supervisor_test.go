package restart

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/openswarm/swarmd/api"
	"github.com/openswarm/swarmd/manager/orchestrator/orchestratortest"
	"github.com/openswarm/swarmd/manager/state/store"
	"google.golang.org/protobuf/proto"
)

func TestReplacement(t *testing.T) {
	const (
		running = api.TaskState_TASK_STATE_RUNNING
		failed  = api.TaskState_TASK_STATE_FAILED
		pending = api.TaskState_TASK_STATE_PENDING
		ready   = api.TaskState_TASK_STATE_READY
	)
	now := at(time.Hour)
	anyPolicy := policy(api.RestartPolicy_ANY, 5*time.Second, 0, 0)
	svc := newService("web", anyPolicy)
	noDelay := newService("web", policy(api.RestartPolicy_ANY, 0, 0, 0))
	none := newService("web", policy(api.RestartPolicy_NONE, 5*time.Second, 0, 0))
	global := globalService("agent", anyPolicy)
	job := jobService("batch", nil, 2)
	drained := readyNode("n1")
	drained.Spec.Availability = api.NodeAvailability_NODE_AVAILABILITY_DRAIN

	withHistory := func(task *api.Task, ds ...time.Duration) *api.Task {
		task.RestartHistory = stamps(ds...)
		return task
	}
	olderSpec := func(task *api.Task) *api.Task {
		task.SpecVersion = &api.Version{Index: 0}
		return task
	}
	tests := []struct {
		name    string
		svc     *api.Service
		task    *api.Task
		node    *api.Node
		want    bool          // a replacement
		desired api.TaskState // its desired state
		history []time.Duration
	}{
		{name: "failed: restarted after the delay", svc: svc, task: taskIn(svc, 3, "n1", failed, now), node: readyNode("n1"),
			want: true, desired: ready, history: []time.Duration{time.Hour}},
		{name: "history carried over", svc: svc, task: withHistory(taskIn(svc, 3, "n1", failed, now), 50*time.Minute), node: readyNode("n1"),
			want: true, desired: ready, history: []time.Duration{50 * time.Minute, time.Hour}},
		{name: "history of an older spec dropped", svc: svc, task: olderSpec(withHistory(taskIn(svc, 3, "n1", failed, now), 50*time.Minute)), node: readyNode("n1"),
			want: true, desired: ready, history: []time.Duration{time.Hour}},
		{name: "no delay: started at once", svc: noDelay, task: taskIn(noDelay, 3, "n1", failed, now), node: readyNode("n1"),
			want: true, desired: running, history: []time.Duration{time.Hour}},
		{name: "condition none", svc: none, task: taskIn(none, 3, "n1", failed, now), node: readyNode("n1")},
		{name: "moved off a down node: started at once, history kept", svc: none, task: withHistory(taskIn(none, 3, "n1", running, now), time.Minute), node: downNode("n1"),
			want: true, desired: running, history: []time.Duration{time.Minute}},
		{name: "moved off a gone node", svc: svc, task: taskIn(svc, 3, "n1", running, now), node: nil,
			want: true, desired: running},
		{name: "moved off a live node: waits for the old task", svc: svc, task: taskIn(svc, 3, "n1", running, now), node: drained,
			want: true, desired: ready},
		{name: "moved before it reached a node", svc: svc, task: taskIn(svc, 3, "", pending, now), node: nil,
			want: true, desired: running},
		{name: "moved within a pending delay", svc: svc, task: withHistory(taskIn(svc, 3, "n1", running, now), time.Hour-time.Second), node: downNode("n1"),
			want: true, desired: ready, history: []time.Duration{time.Hour - time.Second}},
		{name: "service removed", svc: nil, task: taskIn(svc, 3, "n1", failed, now), node: readyNode("n1")},
		{name: "global: same node", svc: global, task: taskIn(global, 0, "n1", failed, now), node: readyNode("n1"),
			want: true, desired: ready, history: []time.Duration{time.Hour}},
		{name: "global: node drained", svc: global, task: taskIn(global, 0, "n1", failed, now), node: drained},
		{name: "global: node down", svc: global, task: taskIn(global, 0, "n1", running, now), node: downNode("n1")},
		{name: "job: failed", svc: job, task: taskIn(job, 1, "n1", failed, now), node: readyNode("n1"),
			want: true, desired: ready, history: []time.Duration{time.Hour}},
		{name: "job: completed", svc: job, task: taskIn(job, 1, "n1", api.TaskState_TASK_STATE_COMPLETE, now), node: readyNode("n1")},
		{name: "job: older iteration", svc: jobService("batch", nil, 3), task: taskIn(job, 1, "n1", failed, now), node: readyNode("n1")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, why := replacement(tt.svc, tt.task, tt.node, now)
			if (got != nil) != tt.want {
				t.Fatalf("replacement = %v (%q), want one: %v", got, why, tt.want)
			}
			if why == "" {
				t.Errorf("no reason given")
			}
			if got == nil {
				return
			}
			if got.GetSlot() != tt.task.GetSlot() || got.GetId() == tt.task.GetId() {
				t.Errorf("replacement slot %d id %s, old slot %d id %s", got.GetSlot(), got.GetId(), tt.task.GetSlot(), tt.task.GetId())
			}
			if isGlobal := tt.svc.GetSpec().GetGlobal() != nil; isGlobal && got.GetNodeId() != tt.task.GetNodeId() || !isGlobal && got.GetNodeId() != "" {
				t.Errorf("replacement node %q (old %q)", got.GetNodeId(), tt.task.GetNodeId())
			}
			if got.GetDesiredState() != tt.desired && !(tt.desired == running && got.GetDesiredState() == api.TaskState_TASK_STATE_COMPLETE) {
				t.Errorf("desired %v, want %v", got.GetDesiredState(), tt.desired)
			}
			if h := durations(got.GetRestartHistory()); !equalDurations(h, tt.history) {
				t.Errorf("history %v, want %v", h, tt.history)
			}
			if !proto.Equal(got.GetJobIteration(), tt.svc.GetJobStatus().GetJobIteration()) {
				t.Errorf("job iteration %v", got.GetJobIteration())
			}
		})
	}
}

func TestRestartWritesShutdownAndReplacement(t *testing.T) {
	st := orchestratortest.NewStore(t)
	clock := clockwork.NewFakeClockAt(t0)
	svc := newService("web", policy(api.RestartPolicy_ANY, 5*time.Second, 0, 0))
	old := taskIn(svc, 2, "n1", api.TaskState_TASK_STATE_FAILED, t0)
	orchestratortest.Create(t, st, readyNode("n1"), svc, old)
	r := New(st, WithClock(clock), WithLogger(orchestratortest.Quiet()))

	repl := restartTask(t, st, r, old.GetId())
	if got := getTask(st, old.GetId()).GetDesiredState(); got != api.TaskState_TASK_STATE_SHUTDOWN {
		t.Errorf("old task desired %v, want SHUTDOWN", got)
	}
	if repl == nil || repl.GetSlot() != 2 || repl.GetDesiredState() != api.TaskState_TASK_STATE_READY {
		t.Fatalf("replacement %v", repl)
	}
	if due, _ := StartAt(repl); !due.Equal(t0.Add(5 * time.Second)) {
		t.Errorf("due at %v, want 5s after the restart", due.Sub(t0))
	}

	// Restarting a task already shut down writes nothing.
	if again := restartTask(t, st, r, old.GetId()); again != nil {
		t.Errorf("second restart created %v", again)
	}
	if n := len(slotTasks(st, "web", 2)); n != 2 {
		t.Errorf("slot has %d tasks, want 2", n)
	}
}

func TestRestartOfAStaleTaskConflicts(t *testing.T) {
	st := orchestratortest.NewStore(t)
	svc := newService("web", nil)
	old := taskIn(svc, 1, "n1", api.TaskState_TASK_STATE_FAILED, t0)
	orchestratortest.Create(t, st, readyNode("n1"), svc, old)
	stale := getTask(st, old.GetId())
	setState(t, st, old.GetId(), api.TaskState_TASK_STATE_REJECTED, t0)

	r := New(st, WithClock(clockwork.NewFakeClockAt(t0)), WithLogger(orchestratortest.Quiet()))
	err := st.Update(context.Background(), func(tx store.Tx) error {
		return r.Restart(context.Background(), tx, nil, svc, stale)
	})
	if !errors.Is(err, store.ErrSequenceConflict) {
		t.Fatalf("Restart of a stale task: %v, want ErrSequenceConflict", err)
	}
	if n := len(slotTasks(st, "web", 1)); n != 1 {
		t.Errorf("slot has %d tasks, want 1: nothing written", n)
	}
}

func TestMaxAttemptsWithinWindow(t *testing.T) {
	st := orchestratortest.NewStore(t)
	clock := clockwork.NewFakeClockAt(t0)
	svc := newService("web", policy(api.RestartPolicy_ANY, 0, 2, time.Minute))
	first := taskIn(svc, 1, "n1", api.TaskState_TASK_STATE_RUNNING, t0)
	orchestratortest.Create(t, st, readyNode("n1"), svc, first)
	r := New(st, WithClock(clock), WithLogger(orchestratortest.Quiet()))

	// fail makes the task with that ID fail now and restarts it.
	fail := func(id string) *api.Task {
		setState(t, st, id, api.TaskState_TASK_STATE_FAILED, clock.Now())
		return restartTask(t, st, r, id)
	}
	a := fail(first.GetId())
	clock.Advance(10 * time.Second)
	b := fail(a.GetId())
	clock.Advance(10 * time.Second)
	if c := fail(b.GetId()); c != nil {
		t.Fatalf("third restart within the window: %v", c)
	}
	var svcNow *api.Service
	st.View(func(tx store.ReadTx) { svcNow = store.GetService(tx, "web") })
	if !SlotGaveUp(svcNow, slotTasks(st, "web", 1)) {
		t.Errorf("slot not reported as given up")
	}

	// The same failures spread over more than the window are allowed.
	st2 := orchestratortest.NewStore(t)
	first2 := taskIn(svc, 1, "n1", api.TaskState_TASK_STATE_RUNNING, clock.Now())
	orchestratortest.Create(t, st2, readyNode("n1"), svc, first2)
	r2 := New(st2, WithClock(clock), WithLogger(orchestratortest.Quiet()))
	id := first2.GetId()
	for i := range 4 {
		setState(t, st2, id, api.TaskState_TASK_STATE_FAILED, clock.Now())
		next := restartTask(t, st2, r2, id)
		if next == nil {
			t.Fatalf("restart %d refused", i+1)
		}
		id = next.GetId()
		clock.Advance(40 * time.Second)
	}
}
