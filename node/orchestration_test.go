package node

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/openswarm/swarmd/agent/exec/testexec"
	"github.com/openswarm/swarmd/api"
	"google.golang.org/protobuf/types/known/durationpb"
)

// These tests run whole swarms in-process (see testCluster): what a user
// of services sees, from the control API down to the containers the test
// executors run.

// threeNodes is a manager and two workers.
func threeNodes(t *testing.T) *testCluster {
	c := newTestCluster(t, "127.0.0.121")
	c.join("w1", "127.0.0.122", false)
	c.join("w2", "127.0.0.123", false)
	return c
}

// exitingImages makes containers of the given images exit at once with
// their code, on every node of c.
func (c *testCluster) exitingImages(codes map[string]int) {
	for _, cn := range c.nodes {
		cn.engine.SetHooks(testexec.Hooks{Exit: func(t *api.Task) (int, bool) {
			code, ok := codes[t.GetSpec().GetContainer().GetImage()]
			return code, ok
		}})
	}
}

func TestReplicatedServiceSpreadsScalesAndRemoves(t *testing.T) {
	c := threeNodes(t)
	svc := c.createService(replicated("web", 5))
	nodes := []string{"m1", "w1", "w2"}
	c.waitFor(20*time.Second, "5 replicas spread 2/2/1", svc.GetId(), func() bool {
		return spread(c.running(svc.GetId()), nodes...) == "1/2/2" && spread(c.containers(svc.GetId()), nodes...) == "1/2/2"
	})

	c.updateService(svc.GetId(), func(s *api.ServiceSpec) { s.GetReplicated().Replicas = 10 })
	c.waitFor(20*time.Second, "10 replicas spread 3/3/4", svc.GetId(), func() bool {
		return spread(c.running(svc.GetId()), nodes...) == "3/3/4" && total(c.containers(svc.GetId())) == 10
	})

	c.updateService(svc.GetId(), func(s *api.ServiceSpec) { s.GetReplicated().Replicas = 1 })
	c.waitFor(20*time.Second, "1 replica", svc.GetId(), func() bool {
		return total(c.running(svc.GetId())) == 1 && total(c.containers(svc.GetId())) == 1
	})

	if _, err := c.control().RemoveService(c.ctx(), &api.RemoveServiceRequest{ServiceId: svc.GetId()}); err != nil {
		t.Fatal(err)
	}
	// Tasks leave the store before their containers leave the engines:
	// wait for both (counting every container of each engine, not only
	// those of tasks the store still holds).
	c.waitFor(20*time.Second, "no task and no container left on any node", svc.GetId(), func() bool {
		if len(c.tasks(svc.GetId())) != 0 {
			return false
		}
		for _, cn := range c.nodes {
			if len(cn.engine.Containers()) != 0 {
				return false
			}
		}
		return true
	})
}

func TestNodeDownDrainAndRebalance(t *testing.T) {
	c := threeNodes(t)
	svc := c.createService(replicated("web", 6))
	nodes := []string{"m1", "w1", "w2"}
	c.waitFor(20*time.Second, "6 replicas spread 2/2/2", svc.GetId(), func() bool {
		return spread(c.running(svc.GetId()), nodes...) == "2/2/2"
	})

	// w2's swarmd stops: after the heartbeat grace (1.5s here) its node is
	// DOWN and its two tasks run elsewhere.
	down := time.Now()
	c.stop("w2")
	c.waitFor(20*time.Second, "w2's tasks replaced on m1 and w1", svc.GetId(), func() bool {
		r := c.running(svc.GetId())
		return r["m1"]+r["w1"] == 6
	})
	t.Logf("tasks of the DOWN node replaced %s after it stopped", time.Since(down).Round(time.Millisecond))

	// w2 comes back: without rebalancing nothing moves to it. A second
	// service converging proves the orchestrators have seen w2 again.
	c.start("w2", "", Config{})
	probe := c.createService(replicated("probe", 3))
	c.waitFor(20*time.Second, "probe service spread over all three nodes", probe.GetId(), func() bool {
		return spread(c.running(probe.GetId()), nodes...) == "1/1/1"
	})
	if r := c.running(svc.GetId()); r["w2"] != 0 || r["m1"]+r["w1"] != 6 {
		t.Fatalf("tasks moved back to w2 without rebalancing: %v", r)
	}

	// Drain w1: its tasks move to m1 and w2.
	c.updateNode("w1", func(s *api.NodeSpec) { s.Availability = api.NodeAvailability_NODE_AVAILABILITY_DRAIN })
	c.waitFor(20*time.Second, "drained w1 empty", svc.GetId(), func() bool {
		r := c.running(svc.GetId())
		return r["w1"] == 0 && r["m1"]+r["w2"] == 6 && c.containers(svc.GetId())["w1"] == 0
	})

	// With rebalancing on, an active w1 gets its share back.
	cl := c.cluster()
	cl.Spec.Orchestration = &api.OrchestrationConfig{TaskHistoryRetentionLimit: 5, Rebalance: true}
	if _, err := c.control().UpdateCluster(c.ctx(), &api.UpdateClusterRequest{ClusterId: cl.GetId(), ClusterVersion: cl.GetMeta().GetVersion(), Spec: cl.GetSpec()}); err != nil {
		t.Fatal(err)
	}
	c.updateNode("w1", func(s *api.NodeSpec) { s.Availability = api.NodeAvailability_NODE_AVAILABILITY_ACTIVE })
	c.waitFor(30*time.Second, "rebalanced 2/2/2", svc.GetId(), func() bool {
		return spread(c.running(svc.GetId()), nodes...) == "2/2/2"
	})
}

func TestRestartPolicy(t *testing.T) {
	c := newTestCluster(t, "127.0.0.121")
	c.exitingImages(map[string]int{"crash:1": 1, "done:1": 0})

	// A task that keeps failing restarts with a growing delay, up to its
	// max attempts.
	spec := replicated("crash", 1)
	spec.Task.Container.Image = "crash:1"
	spec.Task.Restart = &api.RestartPolicy{Condition: api.RestartPolicy_ANY, Delay: durationpb.New(200 * time.Millisecond), MaxAttempts: 3}
	crash := c.createService(spec)
	c.waitFor(30*time.Second, "1 task and 3 restarts, all failed", crash.GetId(), func() bool {
		ts := c.tasks(crash.GetId())
		if len(ts) != 4 {
			return false
		}
		for _, tk := range ts {
			if tk.GetStatus().GetState() != api.TaskState_TASK_STATE_FAILED {
				return false
			}
		}
		return true
	})
	ts := c.tasks(crash.GetId())
	starts := make([]time.Time, 0, len(ts))
	for _, tk := range ts {
		starts = append(starts, tk.GetMeta().GetCreatedAt().AsTime())
	}
	sortTimes(starts)
	var gaps []time.Duration
	for i := 1; i < len(starts); i++ {
		gaps = append(gaps, starts[i].Sub(starts[i-1]))
	}
	// A replacement is created as soon as its predecessor fails and
	// started after the delay: the gap before the second and the third
	// replacement hold the first (200ms) and the doubled second delay.
	t.Logf("gaps between the tasks of the slot: %v", gaps)
	if gaps[1] < 200*time.Millisecond || gaps[2] < 400*time.Millisecond {
		t.Errorf("restart delay does not grow from 200ms: %v", gaps)
	}

	// on-failure: a task that completes is not restarted.
	spec = replicated("done", 1)
	spec.Task.Container.Image = "done:1"
	spec.Task.Restart = &api.RestartPolicy{Condition: api.RestartPolicy_ON_FAILURE, Delay: durationpb.New(100 * time.Millisecond)}
	done := c.createService(spec)
	c.waitFor(20*time.Second, "the task COMPLETE", done.GetId(), func() bool {
		ts := c.tasks(done.GetId())
		return len(ts) == 1 && ts[0].GetStatus().GetState() == api.TaskState_TASK_STATE_COMPLETE
	})
	// A later service converging shows the orchestrators had their pass.
	probe := c.createService(replicated("probe", 1))
	c.waitFor(20*time.Second, "probe running", probe.GetId(), func() bool { return total(c.running(probe.GetId())) == 1 })
	if n := len(c.tasks(done.GetId())); n != 1 {
		t.Fatalf("a completed task with condition on-failure was restarted: %d tasks", n)
	}
}

func sortTimes(ts []time.Time) {
	for i := 1; i < len(ts); i++ {
		for j := i; j > 0 && ts[j].Before(ts[j-1]); j-- {
			ts[j], ts[j-1] = ts[j-1], ts[j]
		}
	}
}

// images counts the running containers of the service per image.
func (c *testCluster) images(serviceID string) map[string]int {
	out := map[string]int{}
	for _, t := range c.tasks(serviceID) {
		if t.GetStatus().GetState() == api.TaskState_TASK_STATE_RUNNING && t.GetDesiredState() <= api.TaskState_TASK_STATE_RUNNING {
			out[t.GetSpec().GetContainer().GetImage()]++
		}
	}
	return out
}

func TestRollingUpdateFailurePausesOrRollsBack(t *testing.T) {
	c := threeNodes(t)
	c.exitingImages(map[string]int{"app:bad": 1})
	tests := []struct {
		action    api.UpdateConfig_FailureAction
		wantState api.UpdateStatus_UpdateState
		wantMsg   string
	}{
		{api.UpdateConfig_PAUSE, api.UpdateStatus_PAUSED, "update paused due to failure or early termination of task"},
		{api.UpdateConfig_ROLLBACK, api.UpdateStatus_ROLLBACK_COMPLETED, "rollback completed"},
	}
	for _, tt := range tests {
		t.Run(tt.action.String(), func(t *testing.T) {
			spec := replicated("app-"+strings.ToLower(tt.action.String()), 4)
			// The delay between batches lets the first batch's failures
			// be seen before a second batch could start (a task that
			// fails after RUNNING ends its batch like one that runs).
			spec.Update = &api.UpdateConfig{Parallelism: 2, Delay: durationpb.New(time.Second), FailureAction: tt.action, Monitor: durationpb.New(time.Second)}
			spec.Rollback = &api.UpdateConfig{Parallelism: 2, Monitor: durationpb.New(200 * time.Millisecond)}
			svc := c.createService(spec)
			c.waitFor(20*time.Second, "4 replicas of app:1", svc.GetId(), func() bool { return c.images(svc.GetId())["app:1"] == 4 })

			c.updateService(svc.GetId(), func(s *api.ServiceSpec) { s.Task.Container.Image = "app:bad" })
			c.waitFor(30*time.Second, tt.wantState.String(), svc.GetId(), func() bool {
				us := c.service(svc.GetId()).GetUpdateStatus()
				return us.GetState() == tt.wantState && strings.HasPrefix(us.GetMessage(), tt.wantMsg)
			})
			s := c.service(svc.GetId())
			t.Logf("update status: %s %q", s.GetUpdateStatus().GetState(), s.GetUpdateStatus().GetMessage())
			if tt.action == api.UpdateConfig_PAUSE {
				// Paused after the first batch: the two slots not reached
				// still run the old image.
				if got := c.images(svc.GetId())["app:1"]; got < 2 {
					t.Fatalf("after the pause %d tasks run app:1, want at least 2", got)
				}
				// docker service rollback restores the previous spec.
				resp, err := c.control().UpdateService(c.ctx(), &api.UpdateServiceRequest{ServiceId: svc.GetId(), ServiceVersion: s.GetMeta().GetVersion(), Rollback: api.UpdateServiceRequest_PREVIOUS})
				if err != nil {
					t.Fatalf("rollback: %v", err)
				}
				if img := resp.GetService().GetSpec().GetTask().GetContainer().GetImage(); img != "app:1" {
					t.Fatalf("rolled back to %s", img)
				}
			}
			c.waitFor(30*time.Second, "4 replicas of app:1 again", svc.GetId(), func() bool {
				im := c.images(svc.GetId())
				return im["app:1"] == 4 && im["app:bad"] == 0
			})
		})
	}
}

func TestUnschedulableTasksStayPendingWithTheReason(t *testing.T) {
	c := threeNodes(t)
	spec := replicated("big", 3)
	spec.Task.Resources = &api.ResourceRequirements{Reservations: &api.Resources{MemoryBytes: 100 << 30}}
	svc := c.createService(spec)
	want := "no suitable node (insufficient resources on 3 nodes)"
	c.waitFor(20*time.Second, "3 PENDING tasks with the reason", svc.GetId(), func() bool {
		ts := c.tasks(svc.GetId())
		if len(ts) != 3 {
			return false
		}
		for _, tk := range ts {
			if tk.GetStatus().GetState() != api.TaskState_TASK_STATE_PENDING || tk.GetStatus().GetErr() != want {
				return false
			}
		}
		return true
	})
	// Asking for what the nodes have lets them run.
	c.updateService(svc.GetId(), func(s *api.ServiceSpec) { s.Task.Resources.Reservations.MemoryBytes = 1 << 30 })
	c.waitFor(20*time.Second, "3 tasks running once they fit", svc.GetId(), func() bool {
		return total(c.running(svc.GetId())) == 3 && total(c.containers(svc.GetId())) == 3
	})
}

func TestGlobalServiceFollowsNodes(t *testing.T) {
	c := newTestCluster(t, "127.0.0.121")
	c.join("w1", "127.0.0.122", false)
	spec := &api.ServiceSpec{
		Annotations: &api.Annotations{Name: "agent"},
		Task: &api.TaskSpec{
			Container: &api.ContainerSpec{Image: "agent:1"},
			Placement: &api.Placement{Constraints: []string{"node.labels.monitor!=off"}},
		},
		Mode: &api.ServiceSpec_Global{Global: &api.GlobalService{}},
	}
	svc := c.createService(spec)
	want := func(counts map[string]int) func() bool {
		return func() bool {
			r := c.running(svc.GetId())
			for name, n := range counts {
				if r[name] != n || c.containers(svc.GetId())[name] != n {
					return false
				}
			}
			return total(r) == total(counts)
		}
	}
	c.waitFor(20*time.Second, "one task on each of m1, w1", svc.GetId(), want(map[string]int{"m1": 1, "w1": 1}))

	c.join("w2", "127.0.0.123", false)
	c.waitFor(20*time.Second, "a task on the new node w2", svc.GetId(), want(map[string]int{"m1": 1, "w1": 1, "w2": 1}))

	c.updateNode("w1", func(s *api.NodeSpec) { s.Availability = api.NodeAvailability_NODE_AVAILABILITY_DRAIN })
	c.waitFor(20*time.Second, "none on drained w1", svc.GetId(), want(map[string]int{"m1": 1, "w2": 1}))
	c.updateNode("w1", func(s *api.NodeSpec) { s.Availability = api.NodeAvailability_NODE_AVAILABILITY_ACTIVE })
	c.waitFor(20*time.Second, "back on active w1", svc.GetId(), want(map[string]int{"m1": 1, "w1": 1, "w2": 1}))

	c.updateNode("w2", func(s *api.NodeSpec) {
		s.Annotations = &api.Annotations{Labels: map[string]string{"monitor": "off"}}
	})
	c.waitFor(20*time.Second, "none on w2 once its label excludes it", svc.GetId(), want(map[string]int{"m1": 1, "w1": 1}))

	// w1's swarmd stops: its node goes DOWN and no task replaces it
	// elsewhere (one per node).
	c.stop("w1")
	c.waitFor(20*time.Second, "w1's task shut down in the store", svc.GetId(), func() bool {
		return total(c.running(svc.GetId())) == 1 && c.running(svc.GetId())["m1"] == 1
	})
}

func TestJobsRunToCompletion(t *testing.T) {
	c := threeNodes(t)
	c.exitingImages(map[string]int{"job:1": 0})
	spec := &api.ServiceSpec{
		Annotations: &api.Annotations{Name: "batch"},
		Task:        &api.TaskSpec{Container: &api.ContainerSpec{Image: "job:1"}},
		Mode:        &api.ServiceSpec_ReplicatedJob{ReplicatedJob: &api.ReplicatedJob{MaxConcurrent: 2, TotalCompletions: 5}},
	}
	svc := c.createService(spec)
	completed := func() int {
		n := 0
		for _, tk := range c.tasks(svc.GetId()) {
			if tk.GetStatus().GetState() == api.TaskState_TASK_STATE_COMPLETE {
				n++
			}
		}
		return n
	}
	c.waitFor(20*time.Second, "5 completions", svc.GetId(), func() bool { return completed() == 5 })

	global := c.createService(&api.ServiceSpec{
		Annotations: &api.Annotations{Name: "everywhere"},
		Task:        &api.TaskSpec{Container: &api.ContainerSpec{Image: "job:1"}},
		Mode:        &api.ServiceSpec_GlobalJob{GlobalJob: &api.GlobalJob{}},
	})
	c.waitFor(20*time.Second, "the global job complete on 3 nodes", global.GetId(), func() bool {
		ts := c.tasks(global.GetId())
		done := map[string]bool{}
		for _, tk := range ts {
			if tk.GetStatus().GetState() == api.TaskState_TASK_STATE_COMPLETE {
				done[tk.GetNodeId()] = true
			}
		}
		return len(done) == 3 && len(ts) == 3
	})
	// Completed tasks are not run again: the counts stay put while a
	// later service converges.
	probe := c.createService(replicated("probe", 3))
	c.waitFor(20*time.Second, "probe running", probe.GetId(), func() bool { return total(c.running(probe.GetId())) == 3 })
	if n, all := completed(), len(c.tasks(svc.GetId())); n != 5 || all != 5 {
		t.Fatalf("replicated job: %d complete of %d tasks, want 5 of 5", n, all)
	}
	if n := len(c.tasks(global.GetId())); n != 3 {
		t.Fatalf("global job: %d tasks, want 3", n)
	}
	for name, cn := range c.nodes {
		for _, id := range cn.engine.Containers() {
			if cn.engine.Starts(id) > 1 {
				t.Errorf("%s started task %s %d times", name, id, cn.engine.Starts(id))
			}
		}
	}
}

func TestLeaderChangeDuringRollingUpdate(t *testing.T) {
	c := newTestCluster(t, "127.0.0.121")
	c.join("m2", "127.0.0.124", true)
	c.join("m3", "127.0.0.125", true)
	c.join("w1", "127.0.0.122", false)
	spec := replicated("web", 6)
	spec.Update = &api.UpdateConfig{Parallelism: 2, Delay: durationpb.New(time.Second), Monitor: durationpb.New(200 * time.Millisecond)}
	svc := c.createService(spec)
	c.waitFor(20*time.Second, "6 replicas of app:1", svc.GetId(), func() bool { return c.images(svc.GetId())["app:1"] == 6 })

	c.updateService(svc.GetId(), func(s *api.ServiceSpec) { s.Task.Container.Image = "app:2" })
	c.waitFor(20*time.Second, "the first batch updated", svc.GetId(), func() bool { return c.images(svc.GetId())["app:2"] >= 2 })
	c.stop("m1") // the leader, mid-update
	c.waitFor(60*time.Second, "update completed on the new leader", svc.GetId(), func() bool {
		return c.service(svc.GetId()).GetUpdateStatus().GetState() == api.UpdateStatus_COMPLETED && c.images(svc.GetId())["app:2"] == 6
	})
	// No extra task: every slot has one task meant to run, and exactly 6
	// containers run.
	slots := map[uint64]int{}
	for _, tk := range c.tasks(svc.GetId()) {
		if tk.GetDesiredState() <= api.TaskState_TASK_STATE_RUNNING {
			slots[tk.GetSlot()]++
		}
	}
	if len(slots) != 6 {
		t.Errorf("slots meant to run: %v", slots)
	}
	for s, n := range slots {
		if n != 1 {
			t.Errorf("slot %d has %d tasks meant to run", s, n)
		}
	}
	// m1's swarmd is stopped, not its engine: what it ran still runs there
	// (until it comes back and shuts it down); the others run exactly 6.
	live := c.containers(svc.GetId())
	delete(live, "m1")
	if n := total(live); n != 6 {
		t.Errorf("%d containers run on the live nodes, want 6", n)
	}
	// The nodes still running stayed READY through the leader change.
	resp, err := c.control().ListNodes(context.Background(), &api.ListNodesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range resp.GetNodes() {
		name := c.nodeName(n.GetId())
		if name != "m1" && n.GetStatus().GetState() != api.NodeStatus_READY {
			t.Errorf("node %s is %s after the leader change", name, n.GetStatus().GetState())
		}
	}
}
