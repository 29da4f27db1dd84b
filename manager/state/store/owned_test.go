package store

import (
	"testing"

	"github.com/openswarm/swarmd/api"
	"google.golang.org/protobuf/proto"
)

// TestOwnedWrites checks that CreateOwned and UpdateOwned store what they
// were given, on a local store (the object itself) and through a
// proposer (its encoding), and that an update derived with Shallow from a
// stored object shares its messages without modifying them.
func TestOwnedWrites(t *testing.T) {
	for _, tc := range []struct {
		name  string
		store func(t *testing.T) *MemoryStore
		// same: the store keeps the very objects given to it.
		same bool
	}{
		{"local", func(t *testing.T) *MemoryStore {
			s := NewMemoryStore(nil, WithMutationCheck())
			t.Cleanup(s.Close)
			return s
		}, true},
		{"proposed", func(t *testing.T) *MemoryStore {
			s, _ := newLogStore(t, WithMutationCheck())
			return s
		}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := tc.store(t)
			svc := sample(KindService, "svc", "web").(*api.Service)
			create(t, s, svc)
			var stored *api.Service
			s.View(func(tx ReadTx) { stored = Lookup[*api.Service](tx, "svc") })

			// A task sharing the stored service's task spec.
			task := &api.Task{Id: "t1", ServiceId: "svc", Slot: 1, Spec: stored.GetSpec().GetTask(),
				Status: &api.TaskStatus{State: api.TaskState_TASK_STATE_PENDING}}
			if err := s.Update(ctx, func(tx Tx) error { return tx.CreateOwned(task) }); err != nil {
				t.Fatal(err)
			}
			var got *api.Task
			s.View(func(tx ReadTx) { got = Lookup[*api.Task](tx, "t1") })
			if (got == task) != tc.same {
				t.Errorf("stored task is the one given: %v, want %v", got == task, tc.same)
			}
			if !proto.Equal(got.GetSpec(), svc.GetSpec().GetTask()) || got.GetMeta().GetVersion().GetIndex() == 0 {
				t.Fatalf("stored task %v", got)
			}

			upd := Shallow(got)
			if upd == got || upd.GetSpec() != got.GetSpec() {
				t.Fatal("Shallow did not return a new object sharing the messages")
			}
			upd.NodeId = "n1"
			upd.Status = &api.TaskStatus{State: api.TaskState_TASK_STATE_ASSIGNED}
			if err := s.Update(ctx, func(tx Tx) error { return tx.UpdateOwned(upd) }); err != nil {
				t.Fatal(err)
			}
			var now *api.Task
			s.View(func(tx ReadTx) { now = Lookup[*api.Task](tx, "t1") })
			if now.GetNodeId() != "n1" || now.GetStatus().GetState() != api.TaskState_TASK_STATE_ASSIGNED ||
				now.GetMeta().GetVersion().GetIndex() <= got.GetMeta().GetVersion().GetIndex() ||
				!now.GetMeta().GetCreatedAt().AsTime().Equal(got.GetMeta().GetCreatedAt().AsTime()) {
				t.Fatalf("after UpdateOwned: %v", now)
			}
			if got.GetNodeId() != "" || got.GetStatus().GetState() != api.TaskState_TASK_STATE_PENDING {
				t.Fatal("the previous stored version changed")
			}

			// A stale owned update fails and changes nothing.
			stale := Shallow(got)
			stale.NodeId = "n2"
			if err := s.Update(ctx, func(tx Tx) error { return tx.UpdateOwned(stale) }); err == nil {
				t.Fatal("stale UpdateOwned succeeded")
			}
			if err := s.CheckUnmodified(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestTxReadsAfterWrites: within a transaction, a read after a write of the
// object just read (update, delete, then an index scan) sees the write.
func TestTxReadsAfterWrites(t *testing.T) {
	for _, tc := range []struct {
		name  string
		write func(tx Tx, cur *api.Task) error
		want  string // node ID read back; "-" for no task
	}{
		{"update", func(tx Tx, cur *api.Task) error { u := Shallow(cur); u.NodeId = "n2"; return tx.UpdateOwned(u) }, "n2"},
		{"delete", func(tx Tx, cur *api.Task) error { return tx.Delete(KindTask, cur.GetId()) }, "-"},
		{"update then scan", func(tx Tx, cur *api.Task) error {
			u := Shallow(cur)
			u.NodeId = "n3"
			if err := tx.UpdateOwned(u); err != nil {
				return err
			}
			_, err := FindTasks(tx, ByNodeID("n3"))
			return err
		}, "n3"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := NewMemoryStore(nil, WithMutationCheck())
			defer s.Close()
			create(t, s, &api.Task{Id: "t1", ServiceId: "svc", Slot: 1, NodeId: "n1"})
			err := s.Update(ctx, func(tx Tx) error {
				cur := Lookup[*api.Task](tx, "t1")
				if err := tc.write(tx, cur); err != nil {
					return err
				}
				got := "-"
				if now := Lookup[*api.Task](tx, "t1"); now != nil {
					got = now.GetNodeId()
				}
				if got != tc.want {
					t.Errorf("read back %q, want %q", got, tc.want)
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if err := s.CheckUnmodified(); err != nil {
				t.Fatal(err)
			}
		})
	}
}
