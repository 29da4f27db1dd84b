package jobs

import (
	"testing"

	"github.com/jonboulle/clockwork"
	"github.com/openswarm/swarmd/api"
	"github.com/openswarm/swarmd/manager/orchestrator"
	"github.com/openswarm/swarmd/manager/orchestrator/orchestratortest"
	"github.com/openswarm/swarmd/manager/orchestrator/restart"
	"github.com/openswarm/swarmd/manager/state/store"
	"google.golang.org/protobuf/types/known/timestamppb"
)

type harness struct {
	t     *testing.T
	store *store.MemoryStore
	clock *clockwork.FakeClock
}

// start runs a jobs orchestrator and a restart supervisor on a local
// store holding objs, until the end of the test.
func start(t *testing.T, objs ...api.StoreObject) *harness {
	t.Helper()
	h := &harness{t: t, store: orchestratortest.NewStore(t), clock: clockwork.NewFakeClockAt(t0)}
	orchestratortest.Create(t, h.store, objs...)
	r := restart.New(h.store, restart.WithClock(h.clock), restart.WithLogger(orchestratortest.Quiet()))
	o := New(h.store, r, WithClock(h.clock), WithLogger(orchestratortest.Quiet()))
	orchestratortest.RunAll(t, o.Run, r.Run)
	return h
}

func (h *harness) write(cb func(tx store.Tx) error) {
	h.t.Helper()
	orchestratortest.Write(h.t, h.store, cb)
}

// waitFor waits until cond holds on the store, checking after every
// commit.
func (h *harness) waitFor(what string, cond func(tx store.ReadTx) bool) {
	h.t.Helper()
	orchestratortest.WaitFor(h.t, h.store, what, cond)
}

// finish makes the tasks of the job that are meant to run and have not
// stopped end in state: the task with an ID in fail FAILED, the others
// COMPLETE; tasks being stopped report SHUTDOWN. It returns how many
// ended.
func (h *harness) finish(serviceID string, fail map[string]bool) int {
	h.t.Helper()
	n := 0
	now := timestamppb.New(h.clock.Now())
	h.write(func(tx store.Tx) error {
		tasks, _ := store.FindTasks(tx, store.ByServiceID(serviceID))
		for _, t := range tasks {
			switch {
			case orchestrator.HasStopped(t):
				continue
			case !orchestrator.IsRunnable(t):
				t.Status = &api.TaskStatus{State: stShutdown, Timestamp: now}
			case t.GetDesiredState() != api.TaskState_TASK_STATE_COMPLETE:
				continue
			case fail[t.GetId()]:
				t.Status = &api.TaskStatus{State: stFailed, Timestamp: now}
				n++
			default:
				t.Status = &api.TaskStatus{State: stComplete, Timestamp: now}
				n++
			}
			if t.NodeId == "" {
				t.NodeId = "n1"
			}
			if err := tx.Update(t); err != nil {
				return err
			}
		}
		return nil
	})
	return n
}

// counts returns the job's tasks of iteration it: how many run (runnable,
// not stopped), completed, and in all.
func counts(tx store.ReadTx, serviceID string, it uint64) (active, done, all int) {
	tasks, _ := store.FindTasks(tx, store.ByServiceID(serviceID))
	for _, t := range tasks {
		if t.GetJobIteration().GetIndex() != it {
			continue
		}
		all++
		switch {
		case completed(t):
			done++
		case orchestrator.IsRunnable(t) && !orchestrator.HasStopped(t):
			active++
		}
	}
	return active, done, all
}

func TestRunReplicatedJobToCompletion(t *testing.T) {
	h := start(t, readyNode("n1"), replicatedJob("batch", 2, 5, 1))
	for done := 0; done < 5; {
		want := min(2, 5-done)
		h.waitFor("tasks to run", func(tx store.ReadTx) bool {
			active, _, _ := counts(tx, "batch", 1)
			return active == want
		})
		done += h.finish("batch", nil)
	}
	h.waitFor("five completions", func(tx store.ReadTx) bool {
		active, done, all := counts(tx, "batch", 1)
		return active == 0 && done == 5 && all == 5
	})
	// Completed tasks stay; nothing runs again.
	h.write(func(tx store.Tx) error { return tx.Create(readyNode("n2")) })
	h.write(func(tx store.Tx) error { return tx.Create(replicatedJob("marker", 1, 1, 1)) })
	h.waitFor("the marker runs", func(tx store.ReadTx) bool { a, _, _ := counts(tx, "marker", 1); return a == 1 })
	h.store.View(func(tx store.ReadTx) {
		if active, done, all := counts(tx, "batch", 1); active != 0 || done != 5 || all != 5 {
			t.Errorf("after completion: %d running, %d done, %d tasks", active, done, all)
		}
	})
}

func TestRunFailedTasksRestarted(t *testing.T) {
	tests := []struct {
		name     string
		cond     api.RestartPolicy_Condition
		replaced bool
	}{
		{"on-failure", api.RestartPolicy_ON_FAILURE, true},
		{"any means on-failure", api.RestartPolicy_ANY, true},
		{"none", api.RestartPolicy_NONE, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			job := replicatedJob("batch", 1, 2, 1)
			job.Spec.Task.Restart.Condition = tt.cond
			h := start(t, readyNode("n1"), job)
			var first string
			h.waitFor("first task", func(tx store.ReadTx) bool {
				tasks, _ := store.FindTasks(tx, store.ByServiceID("batch"))
				if len(tasks) == 1 {
					first = tasks[0].GetId()
				}
				return len(tasks) == 1
			})
			h.finish("batch", map[string]bool{first: true})
			if !tt.replaced {
				h.waitFor("the next slot starts; the failed one stays empty", func(tx store.ReadTx) bool {
					tasks, _ := store.FindTasks(tx, store.BySlot("batch", 2))
					return len(tasks) == 1 && store.GetTask(tx, first).GetDesiredState() == api.TaskState_TASK_STATE_SHUTDOWN
				})
				return
			}
			h.waitFor("a replacement in slot 1", func(tx store.ReadTx) bool {
				tasks, _ := store.FindTasks(tx, store.BySlot("batch", 1))
				return len(tasks) == 2
			})
			h.finish("batch", nil)
			h.waitFor("slot 2 runs", func(tx store.ReadTx) bool {
				tasks, _ := store.FindTasks(tx, store.BySlot("batch", 2))
				return len(tasks) == 1
			})
			h.finish("batch", nil)
			h.waitFor("done", func(tx store.ReadTx) bool { _, done, all := counts(tx, "batch", 1); return done == 2 && all == 3 })
		})
	}
}

func TestRunNewIteration(t *testing.T) {
	h := start(t, readyNode("n1"), replicatedJob("batch", 2, 3, 1))
	h.waitFor("two tasks", func(tx store.ReadTx) bool { a, _, _ := counts(tx, "batch", 1); return a == 2 })
	var finished string
	h.store.View(func(tx store.ReadTx) {
		tasks, _ := store.FindTasks(tx, store.BySlot("batch", 1))
		finished = tasks[0].GetId()
	})
	h.write(func(tx store.Tx) error { // slot 1 completes, slot 2 keeps running
		t := store.GetTask(tx, finished)
		t.NodeId, t.Status = "n1", &api.TaskStatus{State: stComplete, Timestamp: timestamppb.New(h.clock.Now())}
		return tx.Update(t)
	})
	h.write(func(tx store.Tx) error {
		tasks, _ := store.FindTasks(tx, store.BySlot("batch", 2))
		t := tasks[0]
		t.NodeId, t.Status = "n1", &api.TaskStatus{State: stRunning, Timestamp: timestamppb.New(h.clock.Now())}
		return tx.Update(t)
	})
	h.waitFor("slot 3 starts", func(tx store.ReadTx) bool { a, d, _ := counts(tx, "batch", 1); return a == 2 && d == 1 })

	// The job is updated: iteration 2 starts from zero.
	h.write(func(tx store.Tx) error {
		s := store.GetService(tx, "batch")
		s.JobStatus.JobIteration.Index = 2
		return tx.Update(s)
	})
	h.waitFor("iteration 2 runs, iteration 1 is retired", func(tx store.ReadTx) bool {
		active, done, _ := counts(tx, "batch", 2)
		tasks, _ := store.FindTasks(tx, store.ByServiceID("batch"))
		retired := true
		for _, t := range tasks {
			if t.GetJobIteration().GetIndex() != 1 {
				continue
			}
			switch {
			case t.GetStatus().GetState() == stRunning: // may still run: shut down first
				retired = retired && t.GetDesiredState() == api.TaskState_TASK_STATE_SHUTDOWN
			default:
				retired = retired && t.GetDesiredState() == api.TaskState_TASK_STATE_REMOVE
			}
		}
		return active == 2 && done == 0 && retired
	})
	h.finish("batch", nil) // the old running task stops; the new ones complete
	h.waitFor("every task of iteration 1 removed", func(tx store.ReadTx) bool {
		tasks, _ := store.FindTasks(tx, store.ByServiceID("batch"))
		for _, t := range tasks {
			if t.GetJobIteration().GetIndex() == 1 && t.GetDesiredState() != api.TaskState_TASK_STATE_REMOVE {
				return false
			}
		}
		return true
	})
}

func TestRunGlobalJob(t *testing.T) {
	h := start(t, readyNode("a"), readyNode("b"), globalJob("sweep", 1))
	onNodes := func(tx store.ReadTx) map[string]int {
		tasks, _ := store.FindTasks(tx, store.ByServiceID("sweep"))
		out := map[string]int{}
		for _, t := range tasks {
			out[t.GetNodeId()]++
		}
		return out
	}
	h.waitFor("a task per node", func(tx store.ReadTx) bool { n := onNodes(tx); return n["a"] == 1 && n["b"] == 1 })
	h.finish("sweep", nil)
	h.waitFor("both complete", func(tx store.ReadTx) bool { _, done, _ := counts(tx, "sweep", 1); return done == 2 })

	// A node that joins runs it too; the others do not run it again.
	h.write(func(tx store.Tx) error { return tx.Create(readyNode("c")) })
	h.waitFor("a task on the new node", func(tx store.ReadTx) bool { return onNodes(tx)["c"] == 1 })
	h.store.View(func(tx store.ReadTx) {
		if n := onNodes(tx); n["a"] != 1 || n["b"] != 1 {
			t.Errorf("tasks per node %v", n)
		}
	})
}
