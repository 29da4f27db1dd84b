package restart

import (
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/openswarm/swarmd/api"
	"github.com/openswarm/swarmd/manager/orchestrator/orchestratortest"
	"github.com/openswarm/swarmd/manager/state/store"
)

func TestDue(t *testing.T) {
	rp := policy(api.RestartPolicy_ANY, 5*time.Second, 0, 0)
	waitingTask := func(history ...time.Duration) *api.Task {
		return &api.Task{Spec: &api.TaskSpec{Restart: rp}, RestartHistory: stamps(history...)}
	}
	now := at(time.Minute)
	cands := []candidate{
		{task: waitingTask()},                               // nothing to wait for
		{task: waitingTask(50 * time.Second)},               // due at 55s
		{task: waitingTask(time.Minute)},                    // due at 1m5s
		{task: waitingTask(58 * time.Second)},               // due at 1m3s
		{task: waitingTask(), blocked: true},                // its predecessor runs
		{task: waitingTask(50*time.Second, 55*time.Second)}, // second in a row: due at 1m5s
		{task: waitingTask(time.Second), blocked: true},     // due, but blocked
		{task: waitingTask(55 * time.Second)},               // due exactly now
	}
	start, next := due(now, cands)
	if len(start) != 3 {
		t.Errorf("%d to start, want 3", len(start))
	}
	if want := at(time.Minute + 3*time.Second); !next.Equal(want) {
		t.Errorf("next wake %v, want %v", next.Sub(t0), want.Sub(t0))
	}
	if _, next := due(now, cands[:1]); !next.IsZero() {
		t.Errorf("next wake %v with nothing waiting on time", next)
	}
}

// failAndRestart makes the task with that ID fail at the clock's time and
// restarts it, returning the replacement.
func failAndRestart(t *testing.T, st *store.MemoryStore, r *Supervisor, clock clockwork.Clock, id string) *api.Task {
	t.Helper()
	setState(t, st, id, api.TaskState_TASK_STATE_FAILED, clock.Now())
	repl := restartTask(t, st, r, id)
	if repl == nil {
		t.Fatalf("task %s not replaced", id)
	}
	return repl
}

func TestRunGrowingDelay(t *testing.T) {
	st := orchestratortest.NewStore(t)
	clock := clockwork.NewFakeClockAt(t0)
	svc := newService("web", policy(api.RestartPolicy_ANY, 5*time.Second, 0, 0))
	first := taskIn(svc, 1, "n1", api.TaskState_TASK_STATE_RUNNING, t0)
	orchestratortest.Create(t, st, readyNode("n1"), svc, first)
	r := New(st, WithClock(clock), WithLogger(orchestratortest.Quiet()))
	startRun(t, r)

	id := first.GetId()
	for _, delay := range []time.Duration{5 * time.Second, 10 * time.Second, 20 * time.Second, 40 * time.Second, 40 * time.Second} {
		repl := failAndRestart(t, st, r, clock, id)
		id = repl.GetId()
		orchestratortest.BlockUntilTimers(t, clock, 1) // Run saw it and waits for its delay
		clock.Advance(delay - time.Millisecond)
		orchestratortest.BlockUntilTimers(t, clock, 1) // still waiting: nothing started
		if got := getTask(st, id).GetDesiredState(); got != api.TaskState_TASK_STATE_READY {
			t.Fatalf("delay %v: desired %v before the delay is over", delay, got)
		}
		clock.Advance(time.Millisecond)
		orchestratortest.WaitFor(t, st, "replacement started after "+delay.String(), desiredIs(id, api.TaskState_TASK_STATE_RUNNING))
		setState(t, st, id, api.TaskState_TASK_STATE_RUNNING, clock.Now())
		clock.Advance(time.Second) // runs a second, then fails: one more in a row
	}

	// A replacement that ran long enough starts the backoff over.
	clock.Advance(ResetAfter + MaxBackoff)
	repl := failAndRestart(t, st, r, clock, id)
	if due, _ := StartAt(repl); due.Sub(clock.Now()) != 5*time.Second {
		t.Errorf("after a long run the delay is %v, want 5s", due.Sub(clock.Now()))
	}
}

func TestRunWaitsForTheOldTask(t *testing.T) {
	tests := []struct {
		name    string
		release func(t *testing.T, st *store.MemoryStore, oldID string, now time.Time)
	}{
		{"old task stops", func(t *testing.T, st *store.MemoryStore, oldID string, now time.Time) {
			setState(t, st, oldID, api.TaskState_TASK_STATE_SHUTDOWN, now)
		}},
		{"old task's node goes down", func(t *testing.T, st *store.MemoryStore, _ string, _ time.Time) {
			orchestratortest.Update(t, st, "n1", func(n *api.Node) { n.Status.State = api.NodeStatus_DOWN })
		}},
		{"old task's node is removed", func(t *testing.T, st *store.MemoryStore, _ string, _ time.Time) {
			if err := st.Update(t.Context(), func(tx store.Tx) error { return store.DeleteNode(tx, "n1") }); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := orchestratortest.NewStore(t)
			clock := clockwork.NewFakeClockAt(t0)
			svc := newService("web", nil)
			old := taskIn(svc, 1, "n1", api.TaskState_TASK_STATE_RUNNING, t0)
			marker := newService("marker", nil)
			orchestratortest.Create(t, st, readyNode("n1"), svc, old, marker)
			r := New(st, WithClock(clock), WithLogger(orchestratortest.Quiet()))
			startRun(t, r)

			// The node is drained: the task moves, its replacement waits.
			repl := restartTask(t, st, r, old.GetId())
			if repl.GetDesiredState() != api.TaskState_TASK_STATE_READY {
				t.Fatalf("replacement desired %v, want READY", repl.GetDesiredState())
			}
			// A replacement that is due anyway shows Run has seen the first.
			other := taskIn(marker, 1, "n2", api.TaskState_TASK_STATE_FAILED, t0)
			other.DesiredState = api.TaskState_TASK_STATE_READY
			orchestratortest.Create(t, st, other)
			orchestratortest.WaitFor(t, st, "the marker started", desiredIs(other.GetId(), api.TaskState_TASK_STATE_RUNNING))
			if got := getTask(st, repl.GetId()).GetDesiredState(); got != api.TaskState_TASK_STATE_READY {
				t.Fatalf("replacement desired %v while the old task runs", got)
			}

			tt.release(t, st, old.GetId(), clock.Now())
			orchestratortest.WaitFor(t, st, "replacement started", desiredIs(repl.GetId(), api.TaskState_TASK_STATE_RUNNING))
		})
	}
}

func TestRunAfterLeaderChange(t *testing.T) {
	st := orchestratortest.NewStore(t)
	clock := clockwork.NewFakeClockAt(t0)
	svc := jobService("batch", policy(api.RestartPolicy_ON_FAILURE, 5*time.Second, 2, 0), 1)
	first := taskIn(svc, 1, "n1", api.TaskState_TASK_STATE_RUNNING, t0)
	orchestratortest.Create(t, st, readyNode("n1"), svc, first)

	// The first leader restarts the task and loses leadership before the
	// delay is over.
	leader1 := New(st, WithClock(clock), WithLogger(orchestratortest.Quiet()))
	run1 := startRun(t, leader1)
	repl := failAndRestart(t, st, leader1, clock, first.GetId())
	orchestratortest.BlockUntilTimers(t, clock, 1)
	clock.Advance(3 * time.Second)
	run1.stop(t)

	// The next leader's supervisor starts it when the delay is over.
	leader2 := New(st, WithClock(clock), WithLogger(orchestratortest.Quiet()))
	startRun(t, leader2)
	orchestratortest.BlockUntilTimers(t, clock, 1)
	clock.Advance(2*time.Second - time.Millisecond)
	orchestratortest.BlockUntilTimers(t, clock, 1)
	if got := getTask(st, repl.GetId()).GetDesiredState(); got != api.TaskState_TASK_STATE_READY {
		t.Fatalf("desired %v before the delay is over", got)
	}
	clock.Advance(time.Millisecond)
	orchestratortest.WaitFor(t, st, "job replacement started", desiredIs(repl.GetId(), api.TaskState_TASK_STATE_COMPLETE))

	// It counts the first leader's restart: one more, then no more.
	clock.Advance(time.Second)
	second := failAndRestart(t, st, leader2, clock, repl.GetId())
	clock.Advance(time.Minute)
	setState(t, st, second.GetId(), api.TaskState_TASK_STATE_FAILED, clock.Now())
	if third := restartTask(t, st, New(st, WithClock(clock), WithLogger(orchestratortest.Quiet())), second.GetId()); third != nil {
		t.Fatalf("a third restart with max attempts 2: %v", third)
	}
}
