package store

import (
	"fmt"
	"testing"

	"github.com/openswarm/swarmd/api"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
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

// TestShallow: Shallow copies every field of every kind (each field of the
// sample set to a non-default value), sharing messages, lists and maps.
func TestShallow(t *testing.T) {
	for _, k := range Kinds() {
		t.Run(string(k), func(t *testing.T) {
			obj := newObject(k, "id1")
			fillFields(obj.ProtoReflect())
			got := Shallow(obj)
			if got == obj || !proto.Equal(got, obj) {
				t.Fatalf("Shallow = %v, want a new %v", got, obj)
			}
			obj.ProtoReflect().Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
				if fd.Message() != nil && !fd.IsList() && !fd.IsMap() &&
					got.ProtoReflect().Get(fd).Message().Interface() != v.Message().Interface() {
					t.Errorf("field %s copied, not shared", fd.Name())
				}
				return true
			})
		})
	}
}

// fillFields sets every field of m, recursively for messages up to a
// small depth, to a non-default value.
func fillFields(m protoreflect.Message) { fillDepth(m, 3) }

func fillDepth(m protoreflect.Message, depth int) {
	fields := m.Descriptor().Fields()
	for i := 0; i < fields.Len(); i++ {
		fd := fields.Get(i)
		if fd.ContainingOneof() != nil && m.WhichOneof(fd.ContainingOneof()) != nil {
			continue
		}
		switch {
		case fd.IsMap():
			mp := m.Mutable(fd).Map()
			mp.Set(scalar(fd.MapKey()).MapKey(), elem(m, fd.MapValue(), mp.NewValue, depth))
		case fd.IsList():
			l := m.Mutable(fd).List()
			l.Append(elem(m, fd, l.NewElement, depth))
		case fd.Message() != nil:
			if depth > 0 {
				fillDepth(m.Mutable(fd).Message(), depth-1)
			}
		default:
			m.Set(fd, scalar(fd))
		}
	}
}

func elem(m protoreflect.Message, fd protoreflect.FieldDescriptor, newValue func() protoreflect.Value, depth int) protoreflect.Value {
	if fd.Message() == nil {
		return scalar(fd)
	}
	v := newValue()
	if depth > 0 {
		fillDepth(v.Message(), depth-1)
	}
	return v
}

func scalar(fd protoreflect.FieldDescriptor) protoreflect.Value {
	switch fd.Kind() {
	case protoreflect.BoolKind:
		return protoreflect.ValueOfBool(true)
	case protoreflect.EnumKind:
		return protoreflect.ValueOfEnum(1)
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		return protoreflect.ValueOfInt32(7)
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		return protoreflect.ValueOfInt64(7)
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		return protoreflect.ValueOfUint32(7)
	case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		return protoreflect.ValueOfUint64(7)
	case protoreflect.FloatKind:
		return protoreflect.ValueOfFloat32(7)
	case protoreflect.DoubleKind:
		return protoreflect.ValueOfFloat64(7)
	case protoreflect.StringKind:
		return protoreflect.ValueOfString("x")
	case protoreflect.BytesKind:
		return protoreflect.ValueOfBytes([]byte("x"))
	}
	panic(fmt.Sprintf("kind %v", fd.Kind()))
}
