package update

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/openswarm/swarmd/api"
	"github.com/openswarm/swarmd/manager/orchestrator"
	"github.com/openswarm/swarmd/manager/state/store"
	"github.com/openswarm/swarmd/manager/state/store/storetest"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

func TestDecide(t *testing.T) {
	updating := &api.UpdateStatus{State: api.UpdateStatus_UPDATING}
	paused := &api.UpdateStatus{State: api.UpdateStatus_PAUSED}
	rbPaused := &api.UpdateStatus{State: api.UpdateStatus_ROLLBACK_PAUSED}
	completed := &api.UpdateStatus{State: api.UpdateStatus_COMPLETED}
	tests := []struct {
		name     string
		prev     prevRun
		version  uint64
		status   *api.UpdateStatus
		hasSlots bool
		want     action
	}{
		{"new update", prevRun{}, 5, nil, true, actStart},
		{"same version running", prevRun{exists: true, active: true, version: 5}, 5, updating, true, actIgnore},
		{"caller read an older service", prevRun{exists: true, active: true, version: 6}, 5, updating, true, actIgnore},
		{"newer spec replaces", prevRun{exists: true, active: true, version: 4}, 5, nil, true, actStart},
		{"newer spec with no dirty slot takes over the old one's", prevRun{exists: true, active: true, version: 4}, 5, nil, false, actStart},
		{"ended with slots half done", prevRun{exists: true, version: 4, leftover: true}, 5, nil, false, actStart},
		{"paused", prevRun{}, 5, paused, true, actIgnore},
		{"rollback paused", prevRun{exists: true, version: 5}, 5, rbPaused, true, actIgnore},
		{"same version ended, new dirty slots", prevRun{exists: true, version: 5}, 5, completed, true, actStart},
		{"in progress without slots: complete it", prevRun{}, 5, updating, false, actStart},
		{"nothing to do", prevRun{}, 5, completed, false, actIgnore},
		{"nothing at all", prevRun{}, 5, nil, false, actIgnore},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := decide(tt.prev, tt.version, tt.status, tt.hasSlots); got != tt.want {
				t.Errorf("decide = %v, want %v", got, tt.want)
			}
		})
	}
}

// env is a local store, a fake clock and a Supervisor; the test plays the
// orchestrator (orchestrate), the agents (agent) and the control API
// (updateService).
type env struct {
	t     *testing.T
	ctx   context.Context
	clock *clockwork.FakeClock
	store *store.MemoryStore
	sup   *Supervisor
}

const waitLimit = 10 * time.Second

func newEnv(t *testing.T) *env {
	clock := clockwork.NewFakeClockAt(t0)
	e := &env{t: t, ctx: t.Context(), clock: clock, store: storetest.New(t, nil, store.WithClock(clock.Now))}
	e.sup = e.newSupervisor()
	e.write(func(tx store.Tx) error {
		for _, id := range []string{"n1", "n2"} {
			if err := tx.Create(&api.Node{Id: id, Status: &api.NodeStatus{State: api.NodeStatus_READY}}); err != nil {
				return err
			}
		}
		return nil
	})
	return e
}

func (e *env) newSupervisor() *Supervisor {
	s := NewSupervisor(e.store, WithClock(e.clock), WithLogger(slog.New(slog.DiscardHandler)))
	e.t.Cleanup(s.Stop)
	return s
}

func (e *env) write(cb func(tx store.Tx) error) {
	e.t.Helper()
	if err := e.store.Update(e.ctx, cb); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) view(cb func(tx store.ReadTx)) { e.store.View(cb) }

// createService creates svc (image v1) with n tasks running on n1: one per
// slot, or one per node for a global service.
func (e *env) createService(svc *api.Service, n int) {
	svc = proto.CloneOf(svc)
	svc.Spec.Task.Container.Image = "v1"
	e.write(func(tx store.Tx) error {
		if err := tx.Create(svc); err != nil {
			return err
		}
		for i := 1; i <= n; i++ {
			var task *api.Task
			if isGlobal(svc) {
				task = orchestrator.NewTask(svc, 0, fmt.Sprintf("n%d", i), e.clock.Now())
			} else {
				task = orchestrator.NewTask(svc, uint64(i), "", e.clock.Now())
				task.NodeId = "n1"
			}
			task.Status.State = stRunning
			if err := tx.Create(task); err != nil {
				return err
			}
		}
		return nil
	})
}

// updateService changes the spec as the control API does.
func (e *env) updateService(change func(*api.ServiceSpec)) {
	e.write(func(tx store.Tx) error {
		svc := store.GetService(tx, testService)
		spec := proto.CloneOf(svc.Spec)
		change(spec)
		svc.PreviousSpec, svc.Spec = svc.Spec, spec
		svc.SpecVersion = &api.Version{Index: svc.GetMeta().GetVersion().GetIndex()}
		svc.UpdateStatus = nil
		return tx.Update(svc)
	})
}

func image(img string) func(*api.ServiceSpec) {
	return func(s *api.ServiceSpec) { s.Task.Container.Image = img }
}

// orchestrate hands the slots holding dirty tasks to sup, as the
// orchestrators do.
func (e *env) orchestrate(sup *Supervisor) {
	var svc *api.Service
	var tasks []*api.Task
	e.view(func(tx store.ReadTx) {
		svc = store.GetService(tx, testService)
		tasks, _ = store.FindTasks(tx, store.ByServiceID(testService))
	})
	var slots []orchestrator.Slot
	if isGlobal(svc) {
		for _, sl := range orchestrator.SlotsByNode(tasks) {
			slots = append(slots, sl)
		}
	} else {
		for _, sl := range orchestrator.SlotsByNumber(tasks) {
			slots = append(slots, sl)
		}
	}
	slots = slices.DeleteFunc(slots, func(sl orchestrator.Slot) bool {
		return len(sl) == 1 && !orchestrator.IsTaskDirty(svc, sl[0])
	})
	sup.Update(e.ctx, nil, svc, slots)
}

// agent plays the scheduler and the agents once: tasks asked to stop
// stop, tasks waiting at READY get ready on n2, tasks asked to run run,
// or fail if fail says so.
func (e *env) agent(fail func(*api.Task) bool) {
	e.write(func(tx store.Tx) error {
		tasks, err := store.FindTasks(tx, store.ByServiceID(testService))
		if err != nil {
			return err
		}
		for _, t := range tasks {
			st, desired := t.GetStatus().GetState(), t.GetDesiredState()
			next := st
			switch {
			case desired >= stShutdown:
				if st >= stAssigned && st <= stRunning {
					next = stShutdown
				}
			case st >= stRunning:
			case desired == stRunning && fail != nil && fail(t):
				next = stFailed
			case desired == stRunning:
				next = stRunning
			case desired == stReady:
				next = stReady
			}
			if next == st {
				continue
			}
			if t.NodeId == "" {
				t.NodeId = "n2"
			}
			t.Status = &api.TaskStatus{State: next, Timestamp: timestamppb.New(e.clock.Now())}
			if err := tx.Update(t); err != nil {
				return err
			}
		}
		return nil
	})
}

// agentHasWork reports whether agent would change any of tasks.
func agentHasWork(tasks []*api.Task) bool {
	for _, t := range tasks {
		st, desired := t.GetStatus().GetState(), t.GetDesiredState()
		if desired >= stShutdown {
			if st >= stAssigned && st <= stRunning {
				return true
			}
		} else if st < desired && st < stRunning {
			return true
		}
	}
	return false
}

// runAgents plays the agents until done holds, waiting after each round
// for the updater to give them work.
func (e *env) runAgents(what string, done func([]*api.Task) bool) {
	e.t.Helper()
	for range 10 {
		e.agent(nil)
		e.waitFor(what, func(_ *api.Service, tasks []*api.Task) bool { return done(tasks) || agentHasWork(tasks) })
		if _, tasks := e.state(); done(tasks) {
			return
		}
	}
	_, tasks := e.state()
	e.t.Fatalf("agents cannot get %s:\n%s", what, dump(tasks))
}

// updated returns a condition: each of slots has one runnable task, and
// it runs img.
func updated(img string, slots ...uint64) func([]*api.Task) bool {
	return func(tasks []*api.Task) bool {
		bySlot := orchestrator.SlotsByNumber(tasks)
		for _, n := range slots {
			sl := bySlot[n]
			if len(sl) != 1 || sl[0].GetSpec().GetContainer().GetImage() != img || sl[0].GetStatus().GetState() != stRunning {
				return false
			}
		}
		return true
	}
}

// setTask changes one task as its agent would.
func (e *env) setTask(id string, state api.TaskState) {
	e.write(func(tx store.Tx) error {
		t := store.GetTask(tx, id)
		t.Status = &api.TaskStatus{State: state, Timestamp: timestamppb.New(e.clock.Now())}
		return tx.Update(t)
	})
}

// waitFor waits until cond holds in the store.
func (e *env) waitFor(what string, cond func(s *api.Service, tasks []*api.Task) bool) {
	e.t.Helper()
	ch, cancel := e.store.Watch()
	defer cancel()
	deadline := time.After(waitLimit)
	for {
		s, tasks := e.state()
		if cond(s, tasks) {
			return
		}
		select {
		case <-ch:
		case <-deadline:
			e.t.Fatalf("timed out waiting for %s; service %v; tasks:\n%s", what, s.GetUpdateStatus(), dump(tasks))
		}
	}
}

func (e *env) state() (*api.Service, []*api.Task) {
	var s *api.Service
	var tasks []*api.Task
	e.view(func(tx store.ReadTx) {
		s = store.GetService(tx, testService)
		tasks, _ = store.FindTasks(tx, store.ByServiceID(testService))
	})
	return s, tasks
}

// waitTimer waits until the updater sleeps on the clock.
func (e *env) waitTimer() {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(e.ctx, waitLimit)
	defer cancel()
	if err := e.clock.BlockUntilContext(ctx, 1); err != nil {
		s, tasks := e.state()
		e.t.Fatalf("the updater does not wait on the clock: %v; status %v; tasks:\n%s", err, s.GetUpdateStatus(), dump(tasks))
	}
}

// waitIdle waits until sup has no updater of the test service running.
func waitIdle(t *testing.T, sup *Supervisor) {
	t.Helper()
	sup.mu.Lock()
	r := sup.runs[testService]
	sup.mu.Unlock()
	if r == nil {
		return
	}
	select {
	case <-r.done:
	case <-time.After(waitLimit):
		t.Fatal("the updater does not end")
	}
}

func dump(tasks []*api.Task) string {
	var s string
	for _, t := range tasks {
		s += fmt.Sprintf("  %s slot %d node %q %s desired %v observed %v\n", t.Id, t.Slot, t.NodeId,
			t.GetSpec().GetContainer().GetImage(), t.DesiredState, t.GetStatus().GetState())
	}
	return s
}

// runnable returns the slots of the runnable tasks running img (with that
// desired state, unless 0).
func runnable(tasks []*api.Task, img string, desired api.TaskState) []uint64 {
	var slots []uint64
	for _, t := range tasks {
		if orchestrator.IsRunnable(t) && t.GetSpec().GetContainer().GetImage() == img && (desired == 0 || t.DesiredState == desired) {
			slots = append(slots, t.Slot)
		}
	}
	slices.Sort(slots)
	return slots
}

func count(tasks []*api.Task, img string) int {
	n := 0
	for _, t := range tasks {
		if t.GetSpec().GetContainer().GetImage() == img {
			n++
		}
	}
	return n
}

func hasStatus(state api.UpdateStatus_UpdateState, msg string) func(*api.Service, []*api.Task) bool {
	return func(s *api.Service, _ []*api.Task) bool {
		return s.GetUpdateStatus().GetState() == state && s.GetUpdateStatus().GetMessage() == msg
	}
}

func TestSupervisorRollsInBatches(t *testing.T) {
	e := newEnv(t)
	e.createService(newService("v1", 4, updateConfig(2, 10*time.Second, 5*time.Second, api.UpdateConfig_PAUSE, 0, api.UpdateConfig_STOP_FIRST)), 4)
	e.updateService(image("v2"))
	e.orchestrate(e.sup)
	e.orchestrate(e.sup) // the same update: nothing more

	e.waitFor("the first batch", func(s *api.Service, tasks []*api.Task) bool {
		return slices.Equal(runnable(tasks, "v2", stReady), []uint64{1, 2}) &&
			slices.Equal(runnable(tasks, "v1", 0), []uint64{3, 4})
	})
	s, tasks := e.state()
	if st := s.GetUpdateStatus(); st.GetState() != api.UpdateStatus_UPDATING || st.GetMessage() != "update in progress" || !st.GetStartedAt().AsTime().Equal(t0) {
		t.Fatalf("status = %v", st)
	}
	if n := count(tasks, "v2"); n != 2 {
		t.Fatalf("%d new tasks, want 2", n)
	}

	e.agent(nil) // the old tasks stop
	e.waitFor("the first batch to start", func(_ *api.Service, tasks []*api.Task) bool {
		return slices.Equal(runnable(tasks, "v2", stRunning), []uint64{1, 2})
	})
	e.agent(nil) // the new tasks run
	e.waitTimer()
	e.clock.Advance(9 * time.Second)
	if _, tasks := e.state(); count(tasks, "v2") != 2 {
		t.Fatalf("second batch before the delay:\n%s", dump(tasks))
	}
	e.clock.Advance(time.Second)
	e.waitFor("the second batch", func(_ *api.Service, tasks []*api.Task) bool {
		return slices.Equal(runnable(tasks, "v2", 0), []uint64{1, 2, 3, 4})
	})
	e.agent(nil)
	e.waitFor("the second batch to start", func(_ *api.Service, tasks []*api.Task) bool {
		return slices.Equal(runnable(tasks, "v2", stRunning), []uint64{1, 2, 3, 4})
	})
	e.agent(nil)
	e.waitTimer() // the monitor period
	if s, _ := e.state(); s.GetUpdateStatus().GetState() != api.UpdateStatus_UPDATING {
		t.Fatalf("completed before the monitor period: %v", s.GetUpdateStatus())
	}
	e.clock.Advance(5 * time.Second)
	e.waitFor("completion", hasStatus(api.UpdateStatus_COMPLETED, "update completed"))
	waitIdle(t, e.sup)

	s, tasks = e.state()
	if got := s.GetUpdateStatus().GetCompletedAt().AsTime(); !got.Equal(t0.Add(15 * time.Second)) {
		t.Errorf("CompletedAt = %v, want t0+15s", got)
	}
	if len(tasks) != 8 || count(tasks, "v2") != 4 || len(runnable(tasks, "v1", 0)) != 0 {
		t.Errorf("tasks after the update:\n%s", dump(tasks))
	}
}

func TestSupervisorOrder(t *testing.T) {
	tests := []struct {
		order api.UpdateConfig_UpdateOrder
		// desired states of the old and new task before and after the
		// new one runs
		oldBefore, newBefore, oldAfter api.TaskState
	}{
		{api.UpdateConfig_STOP_FIRST, stShutdown, stReady, stShutdown},
		{api.UpdateConfig_START_FIRST, stRunning, stRunning, stShutdown},
	}
	for _, tt := range tests {
		t.Run(tt.order.String(), func(t *testing.T) {
			e := newEnv(t)
			e.createService(newService("v1", 1, updateConfig(1, 0, time.Second, api.UpdateConfig_PAUSE, 0, tt.order)), 1)
			e.updateService(image("v2"))
			e.orchestrate(e.sup)
			desired := func(tasks []*api.Task, img string) api.TaskState {
				for _, t := range tasks {
					if t.GetSpec().GetContainer().GetImage() == img {
						return t.DesiredState
					}
				}
				return -1
			}
			e.waitFor("the new task", func(_ *api.Service, tasks []*api.Task) bool { return count(tasks, "v2") == 1 })
			_, tasks := e.state()
			if o, n := desired(tasks, "v1"), desired(tasks, "v2"); o != tt.oldBefore || n != tt.newBefore {
				t.Fatalf("old %v new %v, want %v %v", o, n, tt.oldBefore, tt.newBefore)
			}
			if tt.order == api.UpdateConfig_STOP_FIRST {
				e.agent(nil) // the old task stops, then the new one may start
				e.waitFor("the new task to start", func(_ *api.Service, tasks []*api.Task) bool { return desired(tasks, "v2") == stRunning })
			}
			e.agent(nil)
			e.waitFor("the old task to be shut down", func(_ *api.Service, tasks []*api.Task) bool {
				return desired(tasks, "v1") == tt.oldAfter && slices.Equal(runnable(tasks, "v2", stRunning), []uint64{1})
			})
			e.agent(nil)
			e.waitTimer()
			e.clock.Advance(time.Second)
			e.waitFor("completion", hasStatus(api.UpdateStatus_COMPLETED, "update completed"))
		})
	}
}

// A stop-first update does not wait for an old task whose node is down.
func TestSupervisorOldTaskOnDownNode(t *testing.T) {
	e := newEnv(t)
	e.createService(newService("v1", 1, updateConfig(1, 0, time.Second, api.UpdateConfig_PAUSE, 0, api.UpdateConfig_STOP_FIRST)), 1)
	e.updateService(image("v2"))
	e.orchestrate(e.sup)
	e.waitFor("the new task", func(_ *api.Service, tasks []*api.Task) bool {
		return slices.Equal(runnable(tasks, "v2", stReady), []uint64{1})
	})
	e.write(func(tx store.Tx) error {
		n := store.GetNode(tx, "n1")
		n.Status.State = api.NodeStatus_DOWN
		return tx.Update(n)
	})
	e.waitFor("the new task to start", func(_ *api.Service, tasks []*api.Task) bool {
		return slices.Equal(runnable(tasks, "v2", stRunning), []uint64{1})
	})
}

func TestSupervisorGlobal(t *testing.T) {
	e := newEnv(t)
	svc := newService("v1", 0, updateConfig(0, 0, time.Second, api.UpdateConfig_PAUSE, 0, api.UpdateConfig_STOP_FIRST))
	svc.Spec.Mode = &api.ServiceSpec_Global{Global: &api.GlobalService{}}
	e.createService(svc, 2)
	e.updateService(image("v2"))
	e.orchestrate(e.sup)
	e.waitFor("new tasks on both nodes", func(_ *api.Service, tasks []*api.Task) bool {
		var nodes []string
		for _, t := range tasks {
			if t.GetSpec().GetContainer().GetImage() == "v2" && t.Slot == 0 {
				nodes = append(nodes, t.NodeId)
			}
		}
		slices.Sort(nodes)
		return slices.Equal(nodes, []string{"n1", "n2"})
	})
}

func TestSupervisorFailurePauses(t *testing.T) {
	e := newEnv(t)
	e.createService(newService("v1", 4, updateConfig(2, 10*time.Second, 5*time.Second, api.UpdateConfig_PAUSE, 0, api.UpdateConfig_STOP_FIRST)), 4)
	e.updateService(image("v2"))
	e.orchestrate(e.sup)
	e.waitFor("the first batch", func(_ *api.Service, tasks []*api.Task) bool { return count(tasks, "v2") == 2 })
	e.agent(nil)
	e.waitFor("the first batch to start", func(_ *api.Service, tasks []*api.Task) bool {
		return slices.Equal(runnable(tasks, "v2", stRunning), []uint64{1, 2})
	})
	var failed string
	e.agent(func(t *api.Task) bool {
		if t.Slot == 1 {
			failed = t.Id
			return true
		}
		return false
	})
	e.waitFor("the pause", hasStatus(api.UpdateStatus_PAUSED, "update paused due to failure or early termination of task "+failed))
	waitIdle(t, e.sup)

	// Nothing moves any more, whatever the clock and the orchestrators do.
	before, tasksBefore := e.state()
	e.clock.Advance(time.Minute)
	e.orchestrate(e.sup)
	waitIdle(t, e.sup)
	after, tasksAfter := e.state()
	if !proto.Equal(before, after) || len(tasksAfter) != len(tasksBefore) {
		t.Errorf("changed after the pause: %v\n%s", after.GetUpdateStatus(), dump(tasksAfter))
	}
	if got := runnable(tasksAfter, "v1", stRunning); !slices.Equal(got, []uint64{3, 4}) {
		t.Errorf("slots 3 and 4 touched:\n%s", dump(tasksAfter))
	}
}

func TestSupervisorFailureRollsBack(t *testing.T) {
	e := newEnv(t)
	svc := newService("v1", 4, updateConfig(2, 0, 5*time.Second, api.UpdateConfig_ROLLBACK, 0, api.UpdateConfig_STOP_FIRST))
	svc.Spec.Rollback = updateConfig(0, 0, 5*time.Second, api.UpdateConfig_PAUSE, 0, api.UpdateConfig_STOP_FIRST)
	e.createService(svc, 4)
	e.updateService(image("v2"))
	e.orchestrate(e.sup)
	e.waitFor("the first batch", func(_ *api.Service, tasks []*api.Task) bool { return count(tasks, "v2") == 2 })
	e.agent(nil)
	e.waitFor("the first batch to start", func(_ *api.Service, tasks []*api.Task) bool {
		return slices.Equal(runnable(tasks, "v2", stRunning), []uint64{1, 2})
	})
	_, tasks := e.state()
	var first string
	for _, t := range tasks {
		if t.Slot == 1 && t.GetSpec().GetContainer().GetImage() == "v2" {
			first = t.Id
		}
	}
	e.setTask(first, stFailed) // the new image fails in slot 1
	e.waitFor("the rollback", func(s *api.Service, _ []*api.Task) bool {
		return s.GetSpec().GetTask().GetContainer().GetImage() == "v1" &&
			s.GetPreviousSpec().GetTask().GetContainer().GetImage() == "v2" &&
			hasStatus(api.UpdateStatus_ROLLBACK_STARTED, "update rolled back due to failure or early termination of task "+first)(s, nil)
	})
	s, _ := e.state()
	if !s.GetUpdateStatus().GetStartedAt().AsTime().Equal(t0) {
		t.Errorf("StartedAt = %v, want the update's", s.GetUpdateStatus().GetStartedAt().AsTime())
	}

	// The orchestrators update the service to its previous spec: slots 1
	// and 2 get new v1 tasks, with the Rollback config (all at once).
	e.orchestrate(e.sup)
	e.waitFor("the rollback's tasks", func(_ *api.Service, tasks []*api.Task) bool {
		return slices.Equal(runnable(tasks, "v1", 0), []uint64{1, 2, 3, 4}) && len(runnable(tasks, "v2", 0)) == 0
	})
	e.runAgents("every slot back on v1", updated("v1", 1, 2, 3, 4))
	e.waitTimer()
	e.clock.Advance(5 * time.Second)
	e.waitFor("the rollback to complete", hasStatus(api.UpdateStatus_ROLLBACK_COMPLETED, "rollback completed"))
	_, tasks = e.state()
	if n := count(tasks, "v1"); n != 6 {
		t.Errorf("%d tasks of v1, want 4 old and 2 new:\n%s", n, dump(tasks))
	}
}

func TestSupervisorMonitorWindow(t *testing.T) {
	tests := []struct {
		name   string
		after  time.Duration // the first new task fails this long after it ran
		paused bool
	}{
		{name: "failure within the monitor period", after: 3 * time.Second, paused: true},
		{name: "failure after the monitor period", after: 6 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			e.createService(newService("v1", 2, updateConfig(1, 10*time.Second, 5*time.Second, api.UpdateConfig_PAUSE, 0, api.UpdateConfig_STOP_FIRST)), 2)
			e.updateService(image("v2"))
			e.orchestrate(e.sup)
			e.runAgents("slot 1 updated", updated("v2", 1))
			e.waitTimer() // the delay, from when slot 1's new task ran
			e.clock.Advance(tt.after)
			_, tasks := e.state()
			for _, task := range tasks {
				if task.Slot == 1 && task.GetSpec().GetContainer().GetImage() == "v2" {
					e.setTask(task.Id, stFailed)
				}
			}
			if tt.paused {
				e.waitFor("the pause", func(s *api.Service, _ []*api.Task) bool {
					return s.GetUpdateStatus().GetState() == api.UpdateStatus_PAUSED
				})
				return
			}
			e.clock.Advance(10*time.Second - tt.after)
			e.runAgents("slot 2 updated", updated("v2", 2))
			e.waitTimer()
			e.clock.Advance(5 * time.Second)
			e.waitFor("completion", hasStatus(api.UpdateStatus_COMPLETED, "update completed"))
		})
	}
}

func TestSupervisorMaxFailureRatio(t *testing.T) {
	tests := []struct {
		name   string
		fail   []uint64 // slots whose new task fails
		paused bool
	}{
		{name: "1 failure of 4 tolerated", fail: []uint64{2}},
		{name: "2 failures of 4 tolerated", fail: []uint64{1, 3}},
		{name: "3 failures of 4 pause", fail: []uint64{1, 2, 4}, paused: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			e.createService(newService("v1", 4, updateConfig(0, 0, 5*time.Second, api.UpdateConfig_PAUSE, 0.5, api.UpdateConfig_START_FIRST)), 4)
			e.updateService(image("v2"))
			e.orchestrate(e.sup)
			e.runAgents("every slot updated", updated("v2", 1, 2, 3, 4))
			e.waitTimer() // the monitor period
			e.clock.Advance(time.Second)
			_, tasks := e.state()
			for _, task := range tasks {
				if slices.Contains(tt.fail, task.Slot) && task.GetSpec().GetContainer().GetImage() == "v2" {
					e.setTask(task.Id, stFailed)
				}
			}
			if tt.paused {
				e.waitFor("the pause", func(s *api.Service, _ []*api.Task) bool {
					return s.GetUpdateStatus().GetState() == api.UpdateStatus_PAUSED
				})
				return
			}
			e.clock.Advance(4 * time.Second)
			e.waitFor("completion", hasStatus(api.UpdateStatus_COMPLETED, "update completed"))
		})
	}
}

func TestSupervisorCancel(t *testing.T) {
	e := newEnv(t)
	e.createService(newService("v1", 4, updateConfig(2, 10*time.Second, time.Second, api.UpdateConfig_PAUSE, 0, api.UpdateConfig_STOP_FIRST)), 4)
	e.updateService(image("v2"))
	e.orchestrate(e.sup)
	e.waitFor("the first batch", func(_ *api.Service, tasks []*api.Task) bool { return count(tasks, "v2") == 2 })
	e.sup.mu.Lock()
	r := e.sup.runs[testService]
	e.sup.mu.Unlock()
	e.sup.Cancel(testService)
	select {
	case <-r.done:
	case <-time.After(waitLimit):
		t.Fatal("the updater does not end")
	}

	e.agent(nil) // the old tasks stop: nobody starts the new ones
	e.clock.Advance(time.Minute)
	s, tasks := e.state()
	if got := runnable(tasks, "v2", stReady); !slices.Equal(got, []uint64{1, 2}) || count(tasks, "v2") != 2 {
		t.Errorf("tasks after cancel:\n%s", dump(tasks))
	}
	if s.GetUpdateStatus().GetState() != api.UpdateStatus_UPDATING {
		t.Errorf("status after cancel: %v", s.GetUpdateStatus())
	}
}

func TestSupervisorLeaderChange(t *testing.T) {
	e := newEnv(t)
	e.createService(newService("v1", 4, updateConfig(2, 10*time.Second, 5*time.Second, api.UpdateConfig_PAUSE, 0, api.UpdateConfig_STOP_FIRST)), 4)
	e.updateService(image("v2"))
	e.orchestrate(e.sup)
	e.waitFor("the first batch", func(_ *api.Service, tasks []*api.Task) bool { return count(tasks, "v2") == 2 })
	e.agent(nil)
	e.waitFor("the first batch to start", func(_ *api.Service, tasks []*api.Task) bool {
		return slices.Equal(runnable(tasks, "v2", stRunning), []uint64{1, 2})
	})
	e.agent(nil)
	e.waitTimer() // between the batches
	e.sup.Stop()  // the leader goes
	e.clock.Advance(3 * time.Second)

	svcBefore, before := e.state()
	updated := make(map[string]*api.Task)
	for _, t := range before {
		if t.Slot <= 2 {
			updated[t.Id] = t
		}
	}
	sup := e.newSupervisor() // the new leader's
	e.orchestrate(sup)
	e.waitFor("the second batch", func(_ *api.Service, tasks []*api.Task) bool {
		return slices.Equal(runnable(tasks, "v2", stReady), []uint64{3, 4})
	})
	e.agent(nil)
	e.waitFor("the second batch to start", func(_ *api.Service, tasks []*api.Task) bool {
		return slices.Equal(runnable(tasks, "v2", stRunning), []uint64{1, 2, 3, 4})
	})
	e.agent(nil)
	e.waitTimer()
	e.clock.Advance(5 * time.Second)
	e.waitFor("completion", hasStatus(api.UpdateStatus_COMPLETED, "update completed"))

	s, tasks := e.state()
	if !proto.Equal(s.GetUpdateStatus().GetStartedAt(), svcBefore.GetUpdateStatus().GetStartedAt()) ||
		!s.GetUpdateStatus().GetStartedAt().AsTime().Equal(t0) {
		t.Errorf("StartedAt = %v, want the first leader's %v", s.GetUpdateStatus().GetStartedAt().AsTime(), t0)
	}
	if len(tasks) != 8 {
		t.Errorf("%d tasks, want 8:\n%s", len(tasks), dump(tasks))
	}
	for _, task := range tasks {
		if old, ok := updated[task.Id]; ok && !proto.Equal(old, task) {
			t.Errorf("task %s of an updated slot changed: %v", task.Id, task)
		}
	}
}

// A store restored from a snapshot (a follower catching up, say) is
// re-read: the update goes on.
func TestSupervisorStoreRestore(t *testing.T) {
	e := newEnv(t)
	e.createService(newService("v1", 2, updateConfig(1, 0, time.Second, api.UpdateConfig_PAUSE, 0, api.UpdateConfig_STOP_FIRST)), 2)
	e.updateService(image("v2"))
	e.orchestrate(e.sup)
	e.waitFor("slot 1's new task", func(_ *api.Service, tasks []*api.Task) bool {
		return slices.Equal(runnable(tasks, "v2", stReady), []uint64{1})
	})
	snap, err := e.store.Save()
	if err != nil {
		t.Fatal(err)
	}
	if err := e.store.Restore(snap); err != nil {
		t.Fatal(err)
	}
	e.runAgents("every slot updated", updated("v2", 1, 2))
	e.waitTimer()
	e.clock.Advance(time.Second)
	e.waitFor("completion", hasStatus(api.UpdateStatus_COMPLETED, "update completed"))
}
