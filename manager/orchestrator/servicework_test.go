package orchestrator

import (
	"context"
	"slices"
	"testing"

	"github.com/openswarm/swarmd/api"
	"github.com/openswarm/swarmd/manager/state/store"
)

func TestServiceWorkTakeAndRequeue(t *testing.T) {
	w := NewServiceWork()
	if !w.Pending() {
		t.Fatal("a new ServiceWork has nothing pending; want everything")
	}
	first := w.Take()
	if w.Pending() || !first.All || !first.Orphans {
		t.Fatalf("after Take: pending %v, taken %+v; want nothing left, everything taken", w.Pending(), first)
	}
	w.Services["b"] = true
	second := w.Take()
	second.Services["c"] = true // what Expand adds is the pass's own
	w.Services["a"] = true
	w.Requeue(second)
	w.Requeue(first)
	if got := w.IDs(); !slices.Equal(got, []string{"a", "b", "c"}) || !w.All || !w.Orphans {
		t.Fatalf("after Requeue: %v, all %v, orphans %v; want [a b c], all, orphans", got, w.All, w.Orphans)
	}
	w.Take()
	w.Restore()
	if !w.All || !w.Orphans || len(w.Services) != 0 {
		t.Fatalf("after Restore: %+v; want all and orphans only", w)
	}
}

func TestServiceWorkExpand(t *testing.T) {
	isGlobal := func(s *api.Service) bool { return s.GetSpec().GetGlobal() != nil }
	ours := func(t *api.Task) bool { return t.GetSlot() == 0 }
	global := func(id string) *api.Service {
		return &api.Service{Id: id, Spec: &api.ServiceSpec{Annotations: &api.Annotations{Name: id},
			Mode: &api.ServiceSpec_Global{Global: &api.GlobalService{}}}}
	}
	replicated := &api.Service{Id: "r", Spec: &api.ServiceSpec{Annotations: &api.Annotations{Name: "r"},
		Mode: &api.ServiceSpec_Replicated{Replicated: &api.ReplicatedService{Replicas: 1}}}}
	task := func(id, service string, slot uint64, desired api.TaskState) *api.Task {
		return &api.Task{Id: id, ServiceId: service, Slot: slot, DesiredState: desired}
	}
	s := store.NewMemoryStore(nil)
	defer s.Close()
	err := s.Update(context.Background(), func(tx store.Tx) error {
		for _, o := range []api.StoreObject{
			global("g1"), global("g2"), replicated,
			task("t1", "gone", 0, api.TaskState_TASK_STATE_RUNNING),            // orphan of ours
			task("t2", "gone-too", 0, api.TaskState_TASK_STATE_REMOVE),         // not runnable
			task("t3", "gone-replicated", 1, api.TaskState_TASK_STATE_RUNNING), // not ours
			task("t4", "g1", 0, api.TaskState_TASK_STATE_RUNNING),              // its service exists
		} {
			if err := tx.Create(o); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name         string
		all, orphans bool
		want         []string
	}{
		{"noted only", false, false, []string{"x"}},
		{"all", true, false, []string{"g1", "g2", "x"}},
		{"orphans", false, true, []string{"gone", "x"}},
		{"everything", true, true, []string{"g1", "g2", "gone", "x"}},
	} {
		w := ServiceWork{Services: map[string]bool{"x": true}, All: tc.all, Orphans: tc.orphans}
		var err error
		s.View(func(tx store.ReadTx) { err = w.Expand(tx, isGlobal, ours) })
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if got := w.IDs(); !slices.Equal(got, tc.want) {
			t.Errorf("%s: Expand gives %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestServiceWorkNotePlaced(t *testing.T) {
	isGlobal := func(s *api.Service) bool { return s.GetSpec().GetGlobal() != nil }
	ours := func(t *api.Task) bool { return t.GetSlot() == 0 }
	globalSvc := &api.Service{Id: "g", Spec: &api.ServiceSpec{Mode: &api.ServiceSpec_Global{Global: &api.GlobalService{}}}}
	otherSvc := &api.Service{Id: "r", Spec: &api.ServiceSpec{}}
	running := &api.Task{Id: "t", ServiceId: "g", DesiredState: api.TaskState_TASK_STATE_RUNNING,
		Status: &api.TaskStatus{State: api.TaskState_TASK_STATE_RUNNING}}
	failed := &api.Task{Id: "t", ServiceId: "g", DesiredState: api.TaskState_TASK_STATE_RUNNING,
		Status: &api.TaskStatus{State: api.TaskState_TASK_STATE_FAILED}}
	slotted := &api.Task{Id: "t", ServiceId: "g", Slot: 1, DesiredState: api.TaskState_TASK_STATE_RUNNING}
	ready := &api.Node{Id: "n", Status: &api.NodeStatus{State: api.NodeStatus_READY}}
	down := &api.Node{Id: "n", Status: &api.NodeStatus{State: api.NodeStatus_DOWN}}
	for _, tc := range []struct {
		name     string
		ev       store.Event
		services []string
		all      bool
	}{
		{"service of the kind", store.Event{Action: store.EventUpdate, Object: globalSvc, Old: globalSvc}, []string{"g"}, false},
		{"service of another kind", store.Event{Action: store.EventCreate, Object: otherSvc}, nil, false},
		{"task created", store.Event{Action: store.EventCreate, Object: running}, []string{"g"}, false},
		{"task stopped", store.Event{Action: store.EventUpdate, Object: failed, Old: running}, []string{"g"}, false},
		{"task unchanged", store.Event{Action: store.EventUpdate, Object: running, Old: running}, nil, false},
		{"task not ours", store.Event{Action: store.EventCreate, Object: slotted}, nil, false},
		{"runnable task removed", store.Event{Action: store.EventRemove, Object: running}, []string{"g"}, false},
		{"node went down", store.Event{Action: store.EventUpdate, Object: down, Old: ready}, nil, true},
		{"node unchanged", store.Event{Action: store.EventUpdate, Object: ready, Old: ready}, nil, false},
		{"node created", store.Event{Action: store.EventCreate, Object: ready}, nil, true},
	} {
		w := ServiceWork{Services: map[string]bool{}}
		w.NotePlaced(tc.ev, isGlobal, ours)
		if got := w.IDs(); !slices.Equal(got, tc.services) || w.All != tc.all || w.Orphans {
			t.Errorf("%s: noted %v, all %v, orphans %v; want %v, all %v", tc.name, got, w.All, w.Orphans, tc.services, tc.all)
		}
	}
	w := ServiceWork{Services: map[string]bool{}}
	w.NotePlaced(store.Event{Action: store.EventRestore}, isGlobal, ours)
	if !w.All || !w.Orphans {
		t.Errorf("restore: %+v; want all and orphans", w)
	}
}

func TestReadPlacedReadsNodesOnlyForWork(t *testing.T) {
	s := store.NewMemoryStore(nil)
	defer s.Close()
	global := &api.Service{Id: "g1", Spec: &api.ServiceSpec{Annotations: &api.Annotations{Name: "g"},
		Mode: &api.ServiceSpec_Global{Global: &api.GlobalService{}}}}
	if err := s.Update(context.Background(), func(tx store.Tx) error {
		if err := tx.Create(&api.Cluster{Id: "c1", Spec: &api.ClusterSpec{Annotations: &api.Annotations{Name: "default"}}}); err != nil {
			return err
		}
		return tx.Create(&api.Node{Id: "n1", Spec: &api.NodeSpec{}})
	}); err != nil {
		t.Fatal(err)
	}
	ours := func(*api.Task) bool { return false }
	read := func() PlacedPass {
		w := NewServiceWork()
		var p PlacedPass
		var err error
		s.View(func(tx store.ReadTx) { p, err = w.ReadPlaced(tx, IsGlobal, ours) })
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	if p := read(); p.Cluster.GetId() != "c1" || len(p.IDs) != 0 || p.Nodes != nil {
		t.Fatalf("without a global service: %+v; want the cluster, no IDs, no nodes read", p)
	}
	if err := s.Update(context.Background(), func(tx store.Tx) error { return tx.Create(global) }); err != nil {
		t.Fatal(err)
	}
	if p := read(); !slices.Equal(p.IDs, []string{"g1"}) || len(p.Nodes) != 1 {
		t.Fatalf("with a global service: IDs %v, %d nodes; want [g1], 1 node", p.IDs, len(p.Nodes))
	}
}
