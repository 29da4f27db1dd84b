package store

import (
	"testing"
	"time"
	"unsafe"

	"github.com/openswarm/swarmd/api"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// TestTasksShareSpecs: tasks stored with equal specs of one service share
// one TaskSpec in memory (a task updated keeps its previous version's);
// different specs or services do not; reads still return equal copies.
func TestTasksShareSpecs(t *testing.T) {
	spec := func(image string) *api.TaskSpec {
		return &api.TaskSpec{Container: &api.ContainerSpec{Image: image}}
	}
	task := func(id, service, image string) *api.Task {
		return &api.Task{Id: id, ServiceId: service, Slot: 1, Spec: spec(image),
			SpecVersion: &api.Version{Index: 7}, ServiceAnnotations: &api.Annotations{Name: "web", Labels: map[string]string{"a": "b"}},
			Endpoint: &api.Endpoint{Spec: &api.EndpointSpec{Mode: api.EndpointSpec_DNSRR}}}
	}
	tests := []struct {
		name   string
		a, b   *api.Task
		update bool // b is an update of a (same ID)
		shared bool
		// sharedService: the spec version, service annotations and
		// endpoint are shared.
		sharedService bool
	}{
		{name: "same service, same spec", a: task("t1", "s1", "nginx"), b: task("t2", "s1", "nginx"), shared: true, sharedService: true},
		{name: "same service, other spec", a: task("t1", "s1", "nginx"), b: task("t2", "s1", "redis"), sharedService: true},
		{name: "other service, same spec", a: task("t1", "s1", "nginx"), b: task("t2", "s2", "nginx")},
		{name: "update keeps the spec", a: task("t1", "", "nginx"), b: task("t1", "", "nginx"), update: true, shared: true, sharedService: true},
		{name: "update changes the spec", a: task("t1", "s1", "nginx"), b: task("t1", "s1", "redis"), update: true, sharedService: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := NewMemoryStore(nil, WithMutationCheck())
			defer s.Close()
			create(t, s, tc.a)
			var first *api.Task
			s.View(func(tx ReadTx) { first = Lookup[*api.Task](tx, tc.a.GetId()) })
			if tc.update {
				b := get(s, KindTask, tc.b.GetId()).(*api.Task)
				b.Spec = tc.b.Spec
				if err := s.Update(ctx, func(tx Tx) error { return tx.Update(b) }); err != nil {
					t.Fatal(err)
				}
			} else {
				create(t, s, tc.b)
			}
			var a, b *api.Task
			s.View(func(tx ReadTx) {
				a, b = Lookup[*api.Task](tx, tc.a.GetId()), Lookup[*api.Task](tx, tc.b.GetId())
			})
			if tc.update {
				a = first // the version b replaced
			}
			if got := a.GetSpec() == b.GetSpec(); got != tc.shared {
				t.Fatalf("specs shared = %v, want %v", got, tc.shared)
			}
			if got := a.GetSpecVersion() == b.GetSpecVersion() && a.GetServiceAnnotations() == b.GetServiceAnnotations() &&
				a.GetEndpoint() == b.GetEndpoint(); got != tc.sharedService {
				t.Fatalf("spec version, service annotations and endpoint shared = %v, want %v", got, tc.sharedService)
			}
			if !proto.Equal(b.GetSpec(), tc.b.GetSpec()) {
				t.Fatalf("stored spec %v, want %v", b.GetSpec(), tc.b.GetSpec())
			}
			if err := s.CheckUnmodified(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestTasksShareFields: stored tasks share equal node IDs, service IDs,
// statuses, versions and timestamps, and an update keeps its previous
// version's annotations and creation time; a local store, whose objects
// may share messages with stored ones, never modifies a stored message
// (the mutation check).
func TestTasksShareFields(t *testing.T) {
	task := func(id string) *api.Task {
		return &api.Task{Id: id, ServiceId: "svc", Slot: 1, NodeId: "node-1", Annotations: &api.Annotations{Name: "web.1"},
			Status: &api.TaskStatus{State: api.TaskState_TASK_STATE_ASSIGNED, Message: "assigned", Timestamp: timestamppb.New(time.Unix(5, 0))}}
	}
	sameString := func(a, b string) bool { return unsafe.StringData(a) == unsafe.StringData(b) }
	for _, tc := range []struct {
		name  string
		store func(t *testing.T) *MemoryStore
	}{
		{"proposed", func(t *testing.T) *MemoryStore { s, _ := newLogStore(t, WithMutationCheck()); return s }},
		{"local", func(t *testing.T) *MemoryStore {
			s := NewMemoryStore(nil, WithMutationCheck())
			t.Cleanup(s.Close)
			return s
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := tc.store(t)
			create(t, s, task("t1"), task("t2"))
			var a, b *api.Task
			s.View(func(tx ReadTx) { a, b = Lookup[*api.Task](tx, "t1"), Lookup[*api.Task](tx, "t2") })
			if !sameString(a.GetNodeId(), b.GetNodeId()) || !sameString(a.GetServiceId(), b.GetServiceId()) {
				t.Error("node or service IDs not shared")
			}
			if a.GetMeta().GetCreatedAt() != b.GetMeta().GetCreatedAt() {
				t.Error("creation times not shared")
			}
			if a.GetStatus() != b.GetStatus() || a.GetMeta().GetVersion() != b.GetMeta().GetVersion() {
				t.Error("equal statuses or versions not shared")
			}
			upd := Shallow(a)
			upd.DesiredState = api.TaskState_TASK_STATE_SHUTDOWN
			upd.Annotations = &api.Annotations{Name: "web.1"}
			if err := s.Update(ctx, func(tx Tx) error { return tx.UpdateOwned(upd) }); err != nil {
				t.Fatal(err)
			}
			var now *api.Task
			s.View(func(tx ReadTx) { now = Lookup[*api.Task](tx, "t1") })
			if now.GetAnnotations() != a.GetAnnotations() || now.GetMeta().GetCreatedAt() != a.GetMeta().GetCreatedAt() {
				t.Error("an update did not keep its previous version's annotations and creation time")
			}
			if err := s.CheckUnmodified(); err != nil {
				t.Fatal(err)
			}
		})
	}
}
