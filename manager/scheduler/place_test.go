package scheduler

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/openswarm/swarmd/api"
	"github.com/openswarm/swarmd/manager/orchestrator/orchestratortest"
	"github.com/openswarm/swarmd/manager/state/store"
	"google.golang.org/protobuf/proto"
)

var testAssigned = &api.TaskStatus{State: api.TaskState_TASK_STATE_ASSIGNED, Message: AssignedMessage}

// TestViewPlacesNewTasks checks placeNew: what it places, where, what it
// leaves, and that the stored versions of the placed tasks, when they
// come, change none of the view's counts.
func TestViewPlacesNewTasks(t *testing.T) {
	tests := []struct {
		name  string
		nodes []*api.Node
		held  []*api.Task // stored before: occupying nodes
		tasks []*api.Task // new
		want  map[string]string
	}{
		{
			name:  "five replicas on three nodes spread 2/2/1",
			nodes: nodes3(),
			tasks: mkTasks("t", "s", 5),
			want:  map[string]string{"t1": "n1", "t2": "n2", "t3": "n3", "t4": "n1", "t5": "n2"},
		},
		{
			name:  "the tasks already on the nodes count",
			nodes: nodes3(),
			held:  []*api.Task{mkTask("h1", "s", running("n1")), mkTask("h2", "s", running("n2"))},
			tasks: mkTasks("t", "s", 2),
			want:  map[string]string{"t1": "n3", "t2": "n1"},
		},
		{
			name:  "what fits no node is left pending",
			nodes: []*api.Node{mkNode("n1", nodeResources(cpu, gib)), mkNode("n2", nodeResources(cpu, gib))},
			tasks: mkTasks("t", "s", 3, reserve(cpu, 0)),
			want:  map[string]string{"t1": "n1", "t2": "n2", "t3": ""},
		},
		{
			name:  "a preset node is checked",
			nodes: []*api.Node{mkNode("n1"), mkNode("n2", nodeState(api.NodeStatus_DOWN))},
			tasks: []*api.Task{mkTask("g1", "g", preset("n1")), mkTask("g2", "g", preset("n2"))},
			want:  map[string]string{"g1": "n1", "g2": "n2"}, // g2 keeps its node, unassigned
		},
		{
			name:  "tasks not pending, or not meant to run, are not placed",
			nodes: nodes3(),
			tasks: []*api.Task{
				mkTask("new", "s", observed(api.TaskState_TASK_STATE_NEW)),
				mkTask("down", "s", desired(api.TaskState_TASK_STATE_SHUTDOWN)),
			},
			want: map[string]string{"new": "", "down": ""},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v := newView()
			index := uint64(1)
			for _, n := range tc.nodes {
				v.upsertNode(at(n, index))
				index++
			}
			for _, h := range tc.held {
				v.upsertTask(at(h, index))
				index++
			}
			placed := v.placeNew(tc.tasks, testAssigned)
			checkView(t, v)
			n := 0
			for _, tk := range tc.tasks {
				want := tc.want[tk.GetId()]
				assigned := tk.GetStatus().GetState() == api.TaskState_TASK_STATE_ASSIGNED
				if tk.GetNodeId() != want || assigned != (want != "" && v.tasks[tk.GetId()] != nil) {
					t.Errorf("task %s: node %q, state %s; want node %q", tk.GetId(), tk.GetNodeId(), tk.GetStatus().GetState(), want)
				}
				if assigned {
					n++
				} else if v.tasks[tk.GetId()] != nil {
					t.Errorf("task %s: not placed but recorded", tk.GetId())
				}
			}
			if len(placed) != n {
				t.Errorf("placeNew returned %d IDs for %d tasks placed", len(placed), n)
			}
			if v.needsPass() {
				t.Error("placing new tasks must not call for a pass")
			}
			// The store's versions of the placed tasks change nothing.
			before := countsOf(v)
			for _, tk := range tc.tasks {
				if tk.GetStatus().GetState() == api.TaskState_TASK_STATE_ASSIGNED {
					v.upsertTask(at(tk, index))
					index++
				}
			}
			checkView(t, v)
			if after := countsOf(v); !equalCounts(before, after) {
				t.Errorf("stored versions changed the counts: %v, then %v", before, after)
			}
			if v.needsPass() {
				t.Error("the stored versions of placed tasks must not call for a pass")
			}
		})
	}
}

func countsOf(v *view) map[string]int {
	out := make(map[string]int)
	for id, ni := range v.nodes {
		out[id] = ni.tasks
	}
	return out
}

func equalCounts(a, b map[string]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, n := range a {
		if b[k] != n {
			return false
		}
	}
	return true
}

// waitLoaded waits until the runner's scheduler has loaded the store,
// after which Place places.
func waitLoaded(t *testing.T, r *runner) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for {
		r.sch.mu.Lock()
		loaded := r.sch.view != nil
		r.sch.mu.Unlock()
		if loaded {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the scheduler did not load the store")
		}
		time.Sleep(time.Millisecond)
	}
}

// TestPlaceBeforeLoadPlacesNothing: a scheduler that has not loaded the
// store (not leading yet) leaves new tasks pending.
func TestPlaceBeforeLoadPlacesNothing(t *testing.T) {
	sch := New(newStore(t))
	tasks := mkTasks("t", "s", 2)
	want := make([]*api.Task, len(tasks))
	for i, tk := range tasks {
		want[i] = proto.CloneOf(tk)
	}
	sch.Place(tasks)(nil)
	for i := range tasks {
		if !proto.Equal(tasks[i], want[i]) {
			t.Fatalf("task %s changed: %v", tasks[i].GetId(), tasks[i])
		}
	}
}

// TestPlacedTasksAreWrittenOnce: tasks placed at creation are stored
// ASSIGNED by the write that creates them, the scheduler writes them no
// more, and counts them when it places the next tasks.
func TestPlacedTasksAreWrittenOnce(t *testing.T) {
	s := newStore(t)
	create(t, s, objects(nodes3()...)...)
	r := startRunner(t, s)
	waitLoaded(t, r)

	first := mkTasks("a", "s", 3)
	settle := r.sch.Place(first)
	create(t, s, objects(first...)...)
	settle(nil)
	versions := make(map[string]uint64)
	s.View(func(tx store.ReadTx) {
		for _, tk := range first {
			stored := store.GetTask(tx, tk.GetId())
			if stored.GetStatus().GetState() != api.TaskState_TASK_STATE_ASSIGNED || stored.GetNodeId() == "" {
				t.Fatalf("task %s stored %s on %q, want ASSIGNED", tk.GetId(), stored.GetStatus().GetState(), stored.GetNodeId())
			}
			versions[tk.GetId()] = version(stored)
		}
	})

	// Three more of the service, created pending: one per node, as the
	// placed ones count.
	later := mkTasks("b", "s", 3)
	create(t, s, objects(later...)...)
	orchestratortest.WaitFor(t, s, "the later tasks assigned", assignedTo("", ids(later)...))
	perNode := make(map[string]int)
	s.View(func(tx store.ReadTx) {
		for _, tk := range concat(first, later) {
			stored := store.GetTask(tx, tk.GetId())
			perNode[stored.GetNodeId()]++
			if v, ok := versions[tk.GetId()]; ok && version(stored) != v {
				t.Errorf("placed task %s written again (version %d, created at %d)", tk.GetId(), version(stored), v)
			}
		}
	})
	for _, n := range []string{"n1", "n2", "n3"} {
		if perNode[n] != 2 {
			t.Fatalf("tasks per node %v, want 2 each", perNode)
		}
	}
}

// TestPlaceSettle: when the write carrying placed tasks fails, the
// places of those the store does not hold are freed for others; a write
// reported failed may still have created them (a proposal that timed out,
// then committed): the store decides.
func TestPlaceSettle(t *testing.T) {
	tests := []struct {
		name    string
		written bool  // the task reached the store
		err     error // what the write returned
		next    func(tx store.ReadTx) bool
	}{
		{"not written: its place is freed", false, errors.New("proposal failed"), assignedTo("n1", "next")},
		{"written despite an error: its place is kept", true, context.DeadlineExceeded,
			pendingWith("no suitable node (insufficient resources on 1 node)", "next")},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newStore(t)
			create(t, s, mkNode("n1", nodeResources(cpu, gib)))
			r := startRunner(t, s)
			waitLoaded(t, r)

			first := mkTask("first", "s", reserve(cpu, 0))
			settle := r.sch.Place([]*api.Task{first})
			if first.GetNodeId() != "n1" {
				t.Fatalf("first task placed on %q, want n1", first.GetNodeId())
			}
			if tc.written {
				create(t, s, first)
			}
			settle(tc.err)

			create(t, s, mkTask("next", "s", reserve(cpu, 0)))
			orchestratortest.WaitFor(t, s, "the next task decided", tc.next)
		})
	}
}
