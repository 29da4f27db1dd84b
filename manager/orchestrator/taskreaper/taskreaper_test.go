package taskreaper

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/openswarm/swarmd/api"
	"github.com/openswarm/swarmd/manager/orchestrator"
	"github.com/openswarm/swarmd/manager/orchestrator/orchestratortest"
	"github.com/openswarm/swarmd/manager/orchestrator/replicated"
	"github.com/openswarm/swarmd/manager/orchestrator/restart"
	"github.com/openswarm/swarmd/manager/state/store"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// newStore returns a local store whose creation times come from clock.
func newStore(t *testing.T, clock clockwork.Clock) *store.MemoryStore {
	return orchestratortest.NewStore(t, store.WithClock(clock.Now))
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
	orchestratortest.Create(t, s, cluster(2), &api.Node{Id: "n1"}, svc)
	// Slot 1 had five tasks that ended; the sixth runs.
	for i := range 6 {
		task := orchestrator.NewTask(svc, 1, "", clock.Now())
		task.Id, task.NodeId = fmt.Sprintf("t%d", i), "n1"
		task.Status = &api.TaskStatus{State: sFailed, Timestamp: timestamppb.New(clock.Now())}
		task.DesiredState = dShutdown
		if i == 5 {
			task.Status.State, task.DesiredState = sRunning, dRunning
		}
		orchestratortest.Create(t, s, task)
		clock.Advance(time.Second)
	}
	orchestratortest.RunAll(t, New(s, WithClock(clock), WithLogger(orchestratortest.Quiet())).Run)
	orchestratortest.WaitFor(t, s, "two stopped tasks kept", func(tx store.ReadTx) bool {
		got := taskIDs(tx, store.BySlot("web", 1))
		return len(got) == 3 && got["t3"] && got["t4"] && got["t5"]
	})

	// A lower limit trims further as soon as the cluster says so.
	orchestratortest.Write(t, s, func(tx store.Tx) error {
		c := store.GetCluster(tx, "c")
		c.Spec.Orchestration.TaskHistoryRetentionLimit = 1
		return tx.Update(c)
	})
	orchestratortest.WaitFor(t, s, "one stopped task kept", func(tx store.ReadTx) bool {
		got := taskIDs(tx, store.BySlot("web", 1))
		return len(got) == 2 && got["t4"] && got["t5"]
	})

	// The next task to end pushes the oldest out.
	orchestratortest.Write(t, s, func(tx store.Tx) error {
		task := store.GetTask(tx, "t5")
		task.DesiredState = dShutdown
		task.Status = &api.TaskStatus{State: sShutdown, Timestamp: timestamppb.New(clock.Now())}
		return tx.Update(task)
	})
	orchestratortest.WaitFor(t, s, "the newest stopped task kept", func(tx store.ReadTx) bool {
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
	orchestratortest.Create(t, s, &api.Node{Id: "n1", Status: &api.NodeStatus{State: api.NodeStatus_READY}, Spec: &api.NodeSpec{}}, service("web", 3))
	r := restart.New(s, restart.WithClock(clock), restart.WithLogger(orchestratortest.Quiet()))
	o := replicated.New(s, noUpdater{}, r, replicated.WithClock(clock), replicated.WithLogger(orchestratortest.Quiet()))
	orchestratortest.RunAll(t, o.Run, New(s, WithClock(clock), WithLogger(orchestratortest.Quiet())).Run)
	orchestratortest.WaitFor(t, s, "three tasks", func(tx store.ReadTx) bool { return len(taskIDs(tx, store.ByServiceID("web"))) == 3 })

	// The tasks run on n1; two of them stop, one never was assigned.
	setAll := func(change func(*api.Task)) {
		orchestratortest.Write(t, s, func(tx store.Tx) error {
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
	orchestratortest.Write(t, s, func(tx store.Tx) error { return store.DeleteService(tx, "web") })
	orchestratortest.WaitFor(t, s, "only the running ones left, desired REMOVE", func(tx store.ReadTx) bool {
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
	orchestratortest.WaitFor(t, s, "every task deleted", func(tx store.ReadTx) bool { return len(taskIDs(tx, store.ByServiceID("web"))) == 0 })
}

type noUpdater struct{}

func (noUpdater) Update(context.Context, *api.Cluster, *api.Service, []orchestrator.Slot) {}
func (noUpdater) Cancel(string)                                                           {}
