package restart

import (
	"context"
	"testing"
	"time"

	"github.com/openswarm/swarmd/api"
	"github.com/openswarm/swarmd/manager/orchestrator"
	"github.com/openswarm/swarmd/manager/orchestrator/orchestratortest"
	"github.com/openswarm/swarmd/manager/state/store"
	"google.golang.org/protobuf/types/known/timestamppb"
)

func newService(id string, rp *api.RestartPolicy) *api.Service {
	return &api.Service{
		Id:          id,
		SpecVersion: &api.Version{Index: 1},
		Spec: &api.ServiceSpec{
			Annotations: &api.Annotations{Name: id},
			Task:        &api.TaskSpec{Container: &api.ContainerSpec{Image: "img"}, Restart: rp},
			Mode:        &api.ServiceSpec_Replicated{Replicated: &api.ReplicatedService{Replicas: 1}},
		},
	}
}

func globalService(id string, rp *api.RestartPolicy) *api.Service {
	s := newService(id, rp)
	s.Spec.Mode = &api.ServiceSpec_Global{Global: &api.GlobalService{}}
	return s
}

func jobService(id string, rp *api.RestartPolicy, iteration uint64) *api.Service {
	s := newService(id, rp)
	s.Spec.Mode = &api.ServiceSpec_ReplicatedJob{ReplicatedJob: &api.ReplicatedJob{MaxConcurrent: 1, TotalCompletions: 1}}
	s.JobStatus = &api.JobStatus{JobIteration: &api.Version{Index: iteration}}
	return s
}

func readyNode(id string) *api.Node {
	return &api.Node{
		Id:     id,
		Spec:   &api.NodeSpec{Annotations: &api.Annotations{Name: id}},
		Status: &api.NodeStatus{State: api.NodeStatus_READY},
	}
}

func downNode(id string) *api.Node {
	n := readyNode(id)
	n.Status.State = api.NodeStatus_DOWN
	return n
}

// taskIn returns a task of s in slot on node, observed in state at now.
func taskIn(s *api.Service, slot uint64, node string, state api.TaskState, now time.Time) *api.Task {
	var t *api.Task
	if orchestrator.IsGlobal(s) || orchestrator.IsGlobalJob(s) {
		t = orchestrator.NewTask(s, 0, node, now)
	} else {
		t = orchestrator.NewTask(s, slot, "", now)
		t.NodeId = node
	}
	t.Status = &api.TaskStatus{State: state, Timestamp: timestamppb.New(now)}
	return t
}

// setState records that the task with that ID reached state at now, as
// the dispatcher would.
func setState(t *testing.T, s *store.MemoryStore, id string, state api.TaskState, now time.Time) {
	t.Helper()
	orchestratortest.Update(t, s, id, func(task *api.Task) {
		task.Status = &api.TaskStatus{State: state, Timestamp: timestamppb.New(now)}
	})
}

func getTask(s *store.MemoryStore, id string) *api.Task {
	var t *api.Task
	s.View(func(tx store.ReadTx) { t = store.GetTask(tx, id) })
	return t
}

func slotTasks(s *store.MemoryStore, serviceID string, slot uint64) []*api.Task {
	var tasks []*api.Task
	s.View(func(tx store.ReadTx) { tasks, _ = store.FindTasks(tx, store.BySlot(serviceID, slot)) })
	return tasks
}

// restartTask calls r.Restart for the stored task with that ID, in a
// transaction, as an orchestrator would, and returns the replacement (nil
// if none).
func restartTask(t *testing.T, st *store.MemoryStore, r *Supervisor, id string) *api.Task {
	t.Helper()
	before := map[string]bool{}
	var svcID string
	err := st.Update(context.Background(), func(tx store.Tx) error {
		task := store.GetTask(tx, id)
		svcID = task.GetServiceId()
		all, _ := store.FindTasks(tx, store.ByServiceID(svcID))
		for _, o := range all {
			before[o.GetId()] = true
		}
		clusters, _ := store.FindClusters(tx, store.All)
		var c *api.Cluster
		if len(clusters) > 0 {
			c = clusters[0]
		}
		return r.Restart(context.Background(), tx, c, store.GetService(tx, svcID), task)
	})
	if err != nil {
		t.Fatalf("restart %s: %v", id, err)
	}
	var repl *api.Task
	st.View(func(tx store.ReadTx) {
		all, _ := store.FindTasks(tx, store.ByServiceID(svcID))
		for _, o := range all {
			if !before[o.GetId()] {
				repl = o
			}
		}
	})
	return repl
}

func desiredIs(id string, want api.TaskState) func(tx store.ReadTx) bool {
	return func(tx store.ReadTx) bool { return store.GetTask(tx, id).GetDesiredState() == want }
}

// running is a supervisor's Run in the background.
type running struct {
	cancel context.CancelFunc
	done   chan error
}

// startRun runs r.Run until stop or the end of the test.
func startRun(t *testing.T, r *Supervisor) *running {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), orchestratortest.WaitTimeout)
	rr := &running{cancel: cancel, done: make(chan error, 1)}
	go func() { rr.done <- r.Run(ctx) }()
	t.Cleanup(func() { rr.stop(t) })
	return rr
}

func (rr *running) stop(t *testing.T) {
	if rr.done == nil {
		return
	}
	rr.cancel()
	if err := <-rr.done; err != nil {
		t.Errorf("Run: %v", err)
	}
	rr.done = nil
}
