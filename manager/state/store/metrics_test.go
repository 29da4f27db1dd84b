package store

import (
	"context"
	"fmt"
	"maps"
	"testing"

	"github.com/openswarm/swarmd/api"
	"github.com/prometheus/client_golang/prometheus"
)

func taskIn(id string, state api.TaskState) *api.Task {
	t := sample(KindTask, id, id).(*api.Task)
	t.Status = &api.TaskStatus{State: state}
	return t
}

func nodeIn(id string, state api.NodeStatus_State) *api.Node {
	n := sample(KindNode, id, id).(*api.Node)
	n.Status = &api.NodeStatus{State: state}
	return n
}

func TestCensus(t *testing.T) {
	tests := []struct {
		name      string
		seed      []api.StoreObject
		change    func(tx Tx) error
		wantObj   map[Kind]int
		wantTasks map[api.TaskState]int
		wantNodes map[api.NodeStatus_State]int
	}{
		{
			name:      "empty",
			wantObj:   map[Kind]int{KindNode: 0, KindService: 0, KindTask: 0, KindNetwork: 0, KindCluster: 0, KindSecret: 0, KindConfig: 0},
			wantTasks: map[api.TaskState]int{},
			wantNodes: map[api.NodeStatus_State]int{},
		},
		{
			name: "every kind",
			seed: []api.StoreObject{
				nodeIn("n1", api.NodeStatus_READY), nodeIn("n2", api.NodeStatus_READY), nodeIn("n3", api.NodeStatus_DOWN),
				sample(KindService, "s1", "s1"), sample(KindNetwork, "net1", "net1"), sample(KindCluster, "c1", "c1"),
				sample(KindSecret, "sec1", "sec1"), sample(KindConfig, "cfg1", "cfg1"), sample(KindConfig, "cfg2", "cfg2"),
				taskIn("t1", api.TaskState_TASK_STATE_RUNNING), taskIn("t2", api.TaskState_TASK_STATE_RUNNING),
				taskIn("t3", api.TaskState_TASK_STATE_NEW), taskIn("t4", api.TaskState_TASK_STATE_FAILED),
			},
			wantObj:   map[Kind]int{KindNode: 3, KindService: 1, KindTask: 4, KindNetwork: 1, KindCluster: 1, KindSecret: 1, KindConfig: 2},
			wantTasks: map[api.TaskState]int{api.TaskState_TASK_STATE_RUNNING: 2, api.TaskState_TASK_STATE_NEW: 1, api.TaskState_TASK_STATE_FAILED: 1},
			wantNodes: map[api.NodeStatus_State]int{api.NodeStatus_READY: 2, api.NodeStatus_DOWN: 1},
		},
		{
			name: "after updates and deletes",
			seed: []api.StoreObject{
				nodeIn("n1", api.NodeStatus_READY), nodeIn("n2", api.NodeStatus_READY),
				taskIn("t1", api.TaskState_TASK_STATE_RUNNING), taskIn("t2", api.TaskState_TASK_STATE_RUNNING),
			},
			change: func(tx Tx) error {
				t1 := GetTask(tx, "t1")
				t1.Status.State = api.TaskState_TASK_STATE_SHUTDOWN
				if err := tx.Update(t1); err != nil {
					return err
				}
				n1 := GetNode(tx, "n1")
				n1.Status.State = api.NodeStatus_DISCONNECTED
				if err := tx.Update(n1); err != nil {
					return err
				}
				if err := DeleteTask(tx, "t2"); err != nil {
					return err
				}
				return tx.Create(taskIn("t3", api.TaskState_TASK_STATE_ORPHANED))
			},
			wantObj:   map[Kind]int{KindNode: 2, KindService: 0, KindTask: 2, KindNetwork: 0, KindCluster: 0, KindSecret: 0, KindConfig: 0},
			wantTasks: map[api.TaskState]int{api.TaskState_TASK_STATE_SHUTDOWN: 1, api.TaskState_TASK_STATE_ORPHANED: 1},
			wantNodes: map[api.NodeStatus_State]int{api.NodeStatus_READY: 1, api.NodeStatus_DISCONNECTED: 1},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, _ := newLogStore(t)
			if len(tc.seed) > 0 {
				create(t, s, tc.seed...)
			}
			if tc.change != nil {
				if err := s.Update(context.Background(), tc.change); err != nil {
					t.Fatal(err)
				}
			}
			c := s.Census()
			if !maps.Equal(c.Objects, tc.wantObj) {
				t.Errorf("objects %v, want %v", c.Objects, tc.wantObj)
			}
			if !maps.Equal(c.Tasks, tc.wantTasks) {
				t.Errorf("tasks %v, want %v", c.Tasks, tc.wantTasks)
			}
			if !maps.Equal(c.Nodes, tc.wantNodes) {
				t.Errorf("nodes %v, want %v", c.Nodes, tc.wantNodes)
			}
		})
	}
}

// TestCensusDoesNotCopy: a census costs the same few allocations whatever
// the number of objects.
func TestCensusDoesNotCopy(t *testing.T) {
	s, _ := newLogStore(t)
	objs := make([]api.StoreObject, 0, 5000)
	for i := range 5000 {
		objs = append(objs, taskIn(fmt.Sprintf("t%05d", i), api.TaskState_TASK_STATE_RUNNING))
	}
	create(t, s, objs...)
	if allocs := testing.AllocsPerRun(10, func() { s.Census() }); allocs > 50 {
		t.Fatalf("a census of 5000 tasks makes %v allocations, want a few", allocs)
	}
}

func TestCollector(t *testing.T) {
	s, _ := newLogStore(t)
	create(t, s, nodeIn("n1", api.NodeStatus_READY), taskIn("t1", api.TaskState_TASK_STATE_RUNNING),
		taskIn("t2", api.TaskState_TASK_STATE_RUNNING), taskIn("t3", api.TaskState_TASK_STATE_REJECTED))
	var current *MemoryStore
	reg := prometheus.NewRegistry()
	reg.MustRegister(NewCollector(func() *MemoryStore { return current }))

	gather := func() map[string]float64 {
		t.Helper()
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]float64{}
		for _, mf := range mfs {
			for _, m := range mf.GetMetric() {
				out[mf.GetName()+"{"+m.GetLabel()[0].GetValue()+"}"] = m.GetGauge().GetValue()
			}
		}
		return out
	}
	if got := gather(); len(got) != 0 {
		t.Fatalf("without a store: %v, want nothing", got)
	}
	current = s
	got := gather()
	want := map[string]float64{
		"swarmd_store_objects{node}": 1, "swarmd_store_objects{task}": 3, "swarmd_store_objects{secret}": 0,
		"swarmd_tasks{running}": 2, "swarmd_tasks{rejected}": 1, "swarmd_tasks{new}": 0, "swarmd_tasks{orphaned}": 0,
		"swarmd_nodes{ready}": 1, "swarmd_nodes{down}": 0, "swarmd_nodes{unknown}": 0, "swarmd_nodes{disconnected}": 0,
	}
	for k, v := range want {
		if g, ok := got[k]; !ok || g != v {
			t.Errorf("%s = %v (reported: %v), want %v", k, g, ok, v)
		}
	}
	if n := len(got); n != numKinds+len(api.TaskState_name)+len(api.NodeStatus_State_name) {
		t.Errorf("%d series, want one per kind and state", n)
	}
}

func BenchmarkCensus100kTasks(b *testing.B) {
	s, _ := newLogStore(b)
	for i := range 100 {
		objs := make([]api.StoreObject, 0, 1000)
		for j := range 1000 {
			objs = append(objs, taskIn(fmt.Sprintf("t%03d-%03d", i, j), api.TaskState(64*(j%13))))
		}
		create(b, s, objs...)
	}
	b.ResetTimer()
	for b.Loop() {
		s.Census()
	}
}
