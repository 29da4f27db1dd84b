package replicated

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/openswarm/swarmd/api"
	"github.com/openswarm/swarmd/manager/orchestrator"
	"github.com/openswarm/swarmd/manager/orchestrator/orchestratortest"
	"github.com/openswarm/swarmd/manager/orchestrator/restart"
	"github.com/openswarm/swarmd/manager/state/store"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// fakeUpdater records what the orchestrator hands the update supervisor.
type fakeUpdater struct {
	mu      sync.Mutex
	updates map[string][]orchestrator.Slot // last slots per service
	cancels map[string]int
	changed chan struct{}
}

func newFakeUpdater() *fakeUpdater {
	return &fakeUpdater{updates: make(map[string][]orchestrator.Slot), cancels: make(map[string]int), changed: make(chan struct{}, 1)}
}

func (u *fakeUpdater) Update(_ context.Context, _ *api.Cluster, s *api.Service, slots []orchestrator.Slot) {
	u.mu.Lock()
	u.updates[s.GetId()] = slots
	u.mu.Unlock()
	u.signal()
}

func (u *fakeUpdater) Cancel(id string) {
	u.mu.Lock()
	u.cancels[id]++
	u.mu.Unlock()
	u.signal()
}

func (u *fakeUpdater) signal() {
	select {
	case u.changed <- struct{}{}:
	default:
	}
}

// waitFor waits until cond holds on what the updater recorded.
func (u *fakeUpdater) waitFor(t *testing.T, what string, cond func(u *fakeUpdater) bool) {
	t.Helper()
	deadline := time.NewTimer(orchestratortest.WaitTimeout)
	defer deadline.Stop()
	for {
		u.mu.Lock()
		ok := cond(u)
		u.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-u.changed:
		case <-deadline.C:
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// harness runs a replicated orchestrator and a restart supervisor on a
// local store with a fake clock.
type harness struct {
	t       *testing.T
	store   *store.MemoryStore
	clock   *clockwork.FakeClock
	updater *fakeUpdater
}

func newHarness(t *testing.T, objs ...api.StoreObject) *harness {
	t.Helper()
	h := &harness{t: t, store: orchestratortest.NewStore(t), clock: clockwork.NewFakeClockAt(t0), updater: newFakeUpdater()}
	h.create(objs...)
	return h
}

// start runs the orchestrator (with opts) and the restart supervisor
// until the end of the test.
func (h *harness) start(opts ...Option) {
	r := restart.New(h.store, restart.WithClock(h.clock), restart.WithLogger(orchestratortest.Quiet()))
	o := New(h.store, h.updater, r, append([]Option{WithClock(h.clock), WithLogger(orchestratortest.Quiet())}, opts...)...)
	orchestratortest.RunAll(h.t, o.Run, r.Run)
}

func (h *harness) create(objs ...api.StoreObject) {
	h.t.Helper()
	orchestratortest.Create(h.t, h.store, objs...)
}

// update changes the stored object of type T with that ID.
func update[T api.StoreObject](h *harness, id string, change func(T)) {
	h.t.Helper()
	orchestratortest.Update(h.t, h.store, id, change)
}

// updateSpec changes a service's spec as the control API does: the spec
// version moves on.
func (h *harness) updateSpec(id string, change func(*api.ServiceSpec)) {
	h.t.Helper()
	update(h, id, func(s *api.Service) {
		change(s.Spec)
		s.SpecVersion = &api.Version{Index: s.GetMeta().GetVersion().GetIndex()}
	})
}

func (h *harness) tasks(serviceID string) []*api.Task {
	var tasks []*api.Task
	h.store.View(func(tx store.ReadTx) { tasks, _ = store.FindTasks(tx, store.ByServiceID(serviceID)) })
	return tasks
}

// runnableSlots returns how many runnable tasks each slot of the service
// has.
func runnableSlots(tx store.ReadTx, serviceID string) map[uint64]int {
	tasks, _ := store.FindTasks(tx, store.ByServiceID(serviceID))
	out := make(map[uint64]int)
	for _, t := range tasks {
		if orchestrator.IsRunnable(t) {
			out[t.GetSlot()]++
		}
	}
	return out
}

// hasSlots reports whether the service's runnable tasks fill exactly
// slots 1..n, one each.
func hasSlots(serviceID string, n int) func(tx store.ReadTx) bool {
	return func(tx store.ReadTx) bool {
		slots := runnableSlots(tx, serviceID)
		if len(slots) != n {
			return false
		}
		for i := 1; i <= n; i++ {
			if slots[uint64(i)] != 1 {
				return false
			}
		}
		return true
	}
}

// waitFor waits until cond holds on the store, checking after every
// commit.
func (h *harness) waitFor(what string, cond func(tx store.ReadTx) bool) {
	h.t.Helper()
	orchestratortest.WaitFor(h.t, h.store, what, cond)
}

// settle plays scheduler and agents for a service: each task meant to
// run and not yet placed goes to place(task) (tasks for which place
// returns "" are left alone) and runs; each task being stopped stops.
func (h *harness) settle(serviceID string, place func(t *api.Task) string) {
	h.t.Helper()
	now := timestamppb.New(h.clock.Now())
	err := h.store.Update(context.Background(), func(tx store.Tx) error {
		tasks, err := store.FindTasks(tx, store.ByServiceID(serviceID))
		if err != nil {
			return err
		}
		for _, t := range tasks {
			st := t.GetStatus().GetState()
			switch {
			case t.GetDesiredState() == api.TaskState_TASK_STATE_RUNNING && st < api.TaskState_TASK_STATE_RUNNING:
				if t.NodeId == "" {
					t.NodeId = place(t)
				}
				if t.NodeId == "" {
					continue
				}
				t.Status = &api.TaskStatus{State: api.TaskState_TASK_STATE_RUNNING, Timestamp: now}
			case t.GetDesiredState() > api.TaskState_TASK_STATE_COMPLETE && st <= api.TaskState_TASK_STATE_RUNNING && st >= api.TaskState_TASK_STATE_ASSIGNED:
				t.Status = &api.TaskStatus{State: api.TaskState_TASK_STATE_SHUTDOWN, Timestamp: now}
			default:
				continue
			}
			if err := tx.Update(t); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		h.t.Fatalf("settle: %v", err)
	}
}

// roundRobin places tasks by slot over nodes.
func roundRobin(nodes ...string) func(t *api.Task) string {
	return func(t *api.Task) string { return nodes[int(t.GetSlot()-1)%len(nodes)] }
}

// to places every task on one node.
func to(n string) func(*api.Task) string { return func(*api.Task) string { return n } }

// barrier returns once the orchestrator has handled every change made so
// far: it creates a one-replica service and waits for its task.
func (h *harness) barrier(name string) {
	h.t.Helper()
	h.create(newService(name, 1))
	h.waitFor("barrier "+name, hasSlots(name, 1))
}

// count returns how many of the service's tasks match.
func count(tx store.ReadTx, serviceID string, match func(*api.Task) bool) int {
	tasks, _ := store.FindTasks(tx, store.ByServiceID(serviceID))
	n := 0
	for _, t := range tasks {
		if match(t) {
			n++
		}
	}
	return n
}
