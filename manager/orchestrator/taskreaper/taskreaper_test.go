package taskreaper

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/openswarm/swarmd/api"
	"github.com/openswarm/swarmd/manager/orchestrator"
	"github.com/openswarm/swarmd/manager/orchestrator/replicated"
	"github.com/openswarm/swarmd/manager/orchestrator/restart"
	"github.com/openswarm/swarmd/manager/state/store"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// waitTimeout bounds every wait of these tests; waits end as soon as
// their condition holds.
const waitTimeout = 20 * time.Second

var quiet = slog.New(slog.DiscardHandler)

// newStore returns a local store whose creation times come from clock.
func newStore(t *testing.T, clock clockwork.Clock) *store.MemoryStore {
	s := store.NewMemoryStore(nil, store.WithClock(clock.Now))
	t.Cleanup(s.Close)
	return s
}

func write(t *testing.T, s *store.MemoryStore, cb func(tx store.Tx) error) {
	t.Helper()
	if err := s.Update(context.Background(), cb); err != nil {
		t.Fatalf("write: %v", err)
	}
}

func create(t *testing.T, s *store.MemoryStore, objs ...api.StoreObject) {
	t.Helper()
	write(t, s, func(tx store.Tx) error {
		for _, o := range objs {
			if err := tx.Create(o); err != nil {
				return err
			}
		}
		return nil
	})
}

// runAll runs fns until the end of the test.
func runAll(t *testing.T, fns ...func(context.Context) error) {
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	var wg sync.WaitGroup
	for _, run := range fns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := run(ctx); err != nil {
				t.Errorf("Run: %v", err)
			}
		}()
	}
	t.Cleanup(func() {
		cancel()
		wg.Wait()
	})
}

// waitFor waits until cond holds on the store, checking after every
// commit.
func waitFor(t *testing.T, s *store.MemoryStore, what string, cond func(tx store.ReadTx) bool) {
	t.Helper()
	ch, cancel := s.Watch(func(e store.Event) bool { return e.Action == store.EventCommit })
	defer cancel()
	deadline := time.NewTimer(waitTimeout)
	defer deadline.Stop()
	for {
		ok := false
		s.View(func(tx store.ReadTx) { ok = cond(tx) })
		if ok {
			return
		}
		select {
		case <-ch:
		case <-deadline.C:
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

func taskIDs(tx store.ReadTx, by store.By) map[string]bool {
	tasks, _ := store.FindTasks(tx, by)
	out := map[string]bool{}
	for _, t := range tasks {
		out[t.GetId()] = true
	}
	return out
}

func cluster(limit int64) *api.Cluster {
	return &api.Cluster{Id: "c", Spec: &api.ClusterSpec{
		Annotations:   &api.Annotations{Name: "default"},
		Orchestration: &api.OrchestrationConfig{TaskHistoryRetentionLimit: limit},
	}}
}

func service(id string, replicas uint64) *api.Service {
	return &api.Service{Id: id, SpecVersion: &api.Version{}, Spec: &api.ServiceSpec{
		Annotations: &api.Annotations{Name: id},
		Task:        &api.TaskSpec{Container: &api.ContainerSpec{Image: "img"}},
		Mode:        &api.ServiceSpec_Replicated{Replicated: &api.ReplicatedService{Replicas: replicas}},
	}}
}

func TestRunKeepsTheHistoryLimit(t *testing.T) {
	clock := clockwork.NewFakeClockAt(t0)
	s := newStore(t, clock)
	svc := service("web", 1)
	create(t, s, cluster(2), &api.Node{Id: "n1"}, svc)
	// Slot 1 had five tasks that ended; the sixth runs.
	for i := range 6 {
		task := orchestrator.NewTask(svc, 1, "", clock.Now())
		task.Id, task.NodeId = fmt.Sprintf("t%d", i), "n1"
		task.Status = &api.TaskStatus{State: sFailed, Timestamp: timestamppb.New(clock.Now())}
		task.DesiredState = dShutdown
		if i == 5 {
			task.Status.State, task.DesiredState = sRunning, dRunning
		}
		create(t, s, task)
		clock.Advance(time.Second)
	}
	runAll(t, New(s, WithClock(clock), WithLogger(quiet)).Run)
	waitFor(t, s, "two stopped tasks kept", func(tx store.ReadTx) bool {
		got := taskIDs(tx, store.BySlot("web", 1))
		return len(got) == 3 && got["t3"] && got["t4"] && got["t5"]
	})

	// A lower limit trims further as soon as the cluster says so.
	write(t, s, func(tx store.Tx) error {
		c := store.GetCluster(tx, "c")
		c.Spec.Orchestration.TaskHistoryRetentionLimit = 1
		return tx.Update(c)
	})
	waitFor(t, s, "one stopped task kept", func(tx store.ReadTx) bool {
		got := taskIDs(tx, store.BySlot("web", 1))
		return len(got) == 2 && got["t4"] && got["t5"]
	})

	// The next task to end pushes the oldest out.
	write(t, s, func(tx store.Tx) error {
		task := store.GetTask(tx, "t5")
		task.DesiredState = dShutdown
		task.Status = &api.TaskStatus{State: sShutdown, Timestamp: timestamppb.New(clock.Now())}
		return tx.Update(task)
	})
	waitFor(t, s, "the newest stopped task kept", func(tx store.ReadTx) bool {
		got := taskIDs(tx, store.BySlot("web", 1))
		return len(got) == 1 && got["t5"]
	})
}

// TestRunRemovedService runs the replicated orchestrator with the
// reaper: the tasks of a removed service get desired REMOVE and are
// deleted once they stopped.
func TestRunRemovedService(t *testing.T) {
	clock := clockwork.NewFakeClockAt(t0)
	s := newStore(t, clock)
	create(t, s, &api.Node{Id: "n1", Status: &api.NodeStatus{State: api.NodeStatus_READY}, Spec: &api.NodeSpec{}}, service("web", 3))
	r := restart.New(s, restart.WithClock(clock), restart.WithLogger(quiet))
	o := replicated.New(s, noUpdater{}, r, replicated.WithClock(clock), replicated.WithLogger(quiet))
	runAll(t, o.Run, New(s, WithClock(clock), WithLogger(quiet)).Run)
	waitFor(t, s, "three tasks", func(tx store.ReadTx) bool { return len(taskIDs(tx, store.ByServiceID("web"))) == 3 })

	// The tasks run on n1; two of them stop, one never was assigned.
	setAll := func(change func(*api.Task)) {
		write(t, s, func(tx store.Tx) error {
			tasks, _ := store.FindTasks(tx, store.ByServiceID("web"))
			for _, task := range tasks {
				change(task)
				if err := tx.Update(task); err != nil {
					return err
				}
			}
			return nil
		})
	}
	setAll(func(task *api.Task) {
		if task.GetSlot() < 3 {
			task.NodeId = "n1"
			task.Status = &api.TaskStatus{State: sRunning, Timestamp: timestamppb.New(clock.Now())}
		}
	})
	write(t, s, func(tx store.Tx) error { return store.DeleteService(tx, "web") })
	waitFor(t, s, "only the running ones left, desired REMOVE", func(tx store.ReadTx) bool {
		tasks, _ := store.FindTasks(tx, store.ByServiceID("web"))
		for _, task := range tasks {
			if task.GetDesiredState() != dRemove {
				return false
			}
		}
		return len(tasks) == 2
	})
	setAll(func(task *api.Task) {
		task.Status = &api.TaskStatus{State: sShutdown, Timestamp: timestamppb.New(clock.Now())}
	})
	waitFor(t, s, "every task deleted", func(tx store.ReadTx) bool { return len(taskIDs(tx, store.ByServiceID("web"))) == 0 })
}

type noUpdater struct{}

func (noUpdater) Update(context.Context, *api.Cluster, *api.Service, []orchestrator.Slot) {}
func (noUpdater) Cancel(string)                                                           {}
