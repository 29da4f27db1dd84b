package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/openswarm/swarmd/api"
	"google.golang.org/protobuf/proto"
)

var ctx = context.Background()

// stores returns a local store and a store behind a log proposer, so every
// behaviour is checked on both paths.
func stores(t *testing.T) map[string]*MemoryStore {
	local := NewMemoryStore(nil, WithClock(fixedClock()))
	t.Cleanup(local.Close)
	logged, _ := newLogStore(t)
	return map[string]*MemoryStore{"local": local, "proposed": logged}
}

func TestCRUDEveryKind(t *testing.T) {
	for name, s := range stores(t) {
		for _, k := range Kinds() {
			t.Run(name+"/"+string(k), func(t *testing.T) {
				id := "id-" + string(k)
				obj := sample(k, id, "name-"+string(k))
				create(t, s, obj)
				if obj.GetMeta().GetCreatedAt() == nil {
					t.Fatal("Create did not set the caller's CreatedAt")
				}

				got := get(s, k, id)
				if got == nil {
					t.Fatal("not found after create")
				}
				v1 := got.GetMeta().GetVersion().GetIndex()
				if v1 == 0 {
					t.Fatal("version not set by apply")
				}
				created := got.GetMeta().GetCreatedAt().AsTime()
				if !got.GetMeta().GetUpdatedAt().AsTime().Equal(created) {
					t.Fatal("UpdatedAt != CreatedAt after create")
				}
				if got.GetMeta().GetVersion() == obj.GetMeta().GetVersion() {
					t.Fatal("Get returned shared meta")
				}

				// Update: change a label.
				annotations(got).Labels["k"] = "v2"
				err := s.Update(ctx, func(tx Tx) error { return tx.Update(got) })
				if err != nil {
					t.Fatal(err)
				}
				upd := get(s, k, id)
				if annotations(upd).Labels["k"] != "v2" {
					t.Fatal("update not visible")
				}
				v2 := upd.GetMeta().GetVersion().GetIndex()
				if v2 <= v1 {
					t.Fatalf("version %d after update, was %d", v2, v1)
				}
				if !upd.GetMeta().GetCreatedAt().AsTime().Equal(created) {
					t.Fatal("update changed CreatedAt")
				}
				if !upd.GetMeta().GetUpdatedAt().AsTime().After(created) {
					t.Fatal("update did not advance UpdatedAt")
				}

				// Typed getters agree.
				s.View(func(tx ReadTx) {
					var typed api.StoreObject
					switch k {
					case KindNode:
						typed = GetNode(tx, id)
					case KindService:
						typed = GetService(tx, id)
					case KindTask:
						typed = GetTask(tx, id)
					case KindNetwork:
						typed = GetNetwork(tx, id)
					case KindCluster:
						typed = GetCluster(tx, id)
					case KindSecret:
						typed = GetSecret(tx, id)
					case KindConfig:
						typed = GetConfig(tx, id)
					}
					if !proto.Equal(typed, upd) {
						t.Fatal("typed getter differs")
					}
				})

				// Delete.
				if err := s.Update(ctx, func(tx Tx) error { return tx.Delete(k, id) }); err != nil {
					t.Fatal(err)
				}
				if get(s, k, id) != nil {
					t.Fatal("still there after delete")
				}
				err = s.Update(ctx, func(tx Tx) error { return tx.Delete(k, id) })
				if !errors.Is(err, ErrNotExist) {
					t.Fatalf("delete missing: %v, want ErrNotExist", err)
				}
				err = s.Update(ctx, func(tx Tx) error { return tx.Update(upd) })
				if !errors.Is(err, ErrNotExist) {
					t.Fatalf("update missing: %v, want ErrNotExist", err)
				}
			})
		}
	}
}

func TestCreateErrors(t *testing.T) {
	for name, s := range stores(t) {
		t.Run(name, func(t *testing.T) {
			create(t, s, sample(KindService, "s1", "web"))
			tests := []struct {
				name string
				obj  api.StoreObject
				want error
			}{
				{"same id", sample(KindService, "s1", "other"), ErrExist},
				{"no id", sample(KindService, "", "x"), ErrInvalidObject},
				{"nil", (*api.Service)(nil), ErrInvalidObject},
			}
			for _, tt := range tests {
				err := s.Update(ctx, func(tx Tx) error { return tx.Create(tt.obj) })
				if !errors.Is(err, tt.want) {
					t.Errorf("%s: %v, want %v", tt.name, err, tt.want)
				}
			}
		})
	}
}

func TestNameConflicts(t *testing.T) {
	for _, k := range Kinds() {
		t.Run(string(k), func(t *testing.T) {
			s := NewMemoryStore(nil)
			defer s.Close()
			create(t, s, sample(k, "a", "Web"))

			// Create with the same name in another case.
			err := s.Update(ctx, func(tx Tx) error { return tx.Create(sample(k, "b", "wEB")) })
			if uniqueNames(k) {
				if !errors.Is(err, ErrNameConflict) {
					t.Fatalf("create: %v, want ErrNameConflict", err)
				}
				create(t, s, sample(k, "b", "other"))
			} else if err != nil {
				t.Fatalf("create duplicate name of non-unique kind: %v", err)
			}

			// Rename b onto a's name.
			before := mustSave(t, s)
			b := get(s, k, "b")
			annotations(b).Name = "WEB"
			err = s.Update(ctx, func(tx Tx) error { return tx.Update(b) })
			if uniqueNames(k) {
				if !errors.Is(err, ErrNameConflict) {
					t.Fatalf("rename: %v, want ErrNameConflict", err)
				}
				if !proto.Equal(before, mustSave(t, s)) {
					t.Fatal("failed rename changed the store")
				}
			} else if err != nil {
				t.Fatal(err)
			}

			// Renaming an object to its own name in another case is fine.
			a := get(s, k, "a")
			annotations(a).Name = "WEB"
			if err := s.Update(ctx, func(tx Tx) error { return tx.Update(a) }); err != nil {
				t.Fatalf("recase own name: %v", err)
			}

			// A name freed in the same transaction can be taken in it.
			if uniqueNames(k) {
				err := s.Update(ctx, func(tx Tx) error {
					if err := tx.Delete(k, "a"); err != nil {
						return err
					}
					return tx.Create(sample(k, "c", "web"))
				})
				if err != nil {
					t.Fatalf("delete then create same name: %v", err)
				}
			}
		})
	}
}

func TestStaleVersion(t *testing.T) {
	for name, s := range stores(t) {
		t.Run(name, func(t *testing.T) {
			create(t, s, sample(KindService, "s1", "web"))
			stale := get(s, KindService, "s1")
			fresh := get(s, KindService, "s1")
			annotations(fresh).Labels["v"] = "1"
			if err := s.Update(ctx, func(tx Tx) error { return tx.Update(fresh) }); err != nil {
				t.Fatal(err)
			}
			before := mustSave(t, s)
			annotations(stale).Labels["v"] = "stale"
			err := s.Update(ctx, func(tx Tx) error { return tx.Update(stale) })
			if !errors.Is(err, ErrSequenceConflict) {
				t.Fatalf("got %v, want ErrSequenceConflict", err)
			}
			if !strings.Contains(err.Error(), "update out of sequence") {
				t.Fatalf("error text %q", err)
			}
			if !proto.Equal(before, mustSave(t, s)) {
				t.Fatal("stale update changed the store")
			}
		})
	}
}

func TestTxSeesOwnWrites(t *testing.T) {
	for name, s := range stores(t) {
		t.Run(name, func(t *testing.T) {
			create(t, s, sample(KindService, "old", "old"))
			err := s.Update(ctx, func(tx Tx) error {
				svc := sample(KindService, "s1", "web").(*api.Service)
				if err := tx.Create(svc); err != nil {
					return err
				}
				if GetService(tx, "s1") == nil {
					return errors.New("own create not visible")
				}
				got, err := FindServices(tx, ByName("WEB"))
				if err != nil || len(got) != 1 {
					return fmt.Errorf("find own create: %v %v", got, err)
				}
				// Update the object created in this transaction, twice.
				got[0].Spec.Annotations.Labels["n"] = "1"
				if err := tx.Update(got[0]); err != nil {
					return err
				}
				again := GetService(tx, "s1")
				again.Spec.Annotations.Labels["n"] = "2"
				if err := tx.Update(again); err != nil {
					return err
				}
				// Update an existing object twice.
				old := GetService(tx, "old")
				old.Spec.Annotations.Name = "renamed"
				if err := tx.Update(old); err != nil {
					return err
				}
				old = GetService(tx, "old")
				old.Spec.Annotations.Labels["n"] = "3"
				if err := tx.Update(old); err != nil {
					return err
				}
				// Delete and recreate under the same ID.
				if err := tx.Delete(KindService, "old"); err != nil {
					return err
				}
				if GetService(tx, "old") != nil {
					return errors.New("own delete not visible")
				}
				return tx.Create(sample(KindService, "old", "reborn"))
			})
			if err != nil {
				t.Fatal(err)
			}
			s.View(func(tx ReadTx) {
				if got := GetService(tx, "s1"); got.Spec.Annotations.Labels["n"] != "2" {
					t.Errorf("s1 labels %v", got.Spec.Annotations.Labels)
				}
				if got := GetService(tx, "old"); got.Spec.Annotations.Name != "reborn" {
					t.Errorf("old named %q", got.Spec.Annotations.Name)
				}
			})
		})
	}
}

func TestCallbackErrorAppliesNothing(t *testing.T) {
	for name, s := range stores(t) {
		t.Run(name, func(t *testing.T) {
			boom := errors.New("boom")
			err := s.Update(ctx, func(tx Tx) error {
				if err := tx.Create(sample(KindTask, "t1", "")); err != nil {
					return err
				}
				return boom
			})
			if !errors.Is(err, boom) {
				t.Fatalf("got %v", err)
			}
			if get(s, KindTask, "t1") != nil {
				t.Fatal("write of failed transaction applied")
			}
			// A transaction used after its callback returned does nothing.
			var leaked Tx
			_ = s.Update(ctx, func(tx Tx) error { leaked = tx; return nil })
			if err := leaked.Create(sample(KindTask, "t9", "")); err == nil {
				t.Fatal("write through a finished transaction succeeded")
			}
			if leaked.Get(KindTask, "t9") != nil {
				t.Fatal("read through a finished transaction")
			}
			if _, err := leaked.Find(KindTask, All); err == nil {
				t.Fatal("find through a finished transaction succeeded")
			}
			// A panic in the callback leaves the store usable.
			func() {
				defer func() { _ = recover() }()
				_ = s.Update(ctx, func(tx Tx) error { panic("oops") })
			}()
			create(t, s, sample(KindTask, "t2", ""))
		})
	}
}

func TestCopies(t *testing.T) {
	s := NewMemoryStore(nil)
	defer s.Close()
	obj := sample(KindService, "s1", "web").(*api.Service)
	create(t, s, obj)
	obj.Spec.Annotations.Labels["k"] = "caller changed it" // after Create
	ch, cancel := s.Watch()
	defer cancel()

	got := get(s, KindService, "s1").(*api.Service)
	if got.Spec.Annotations.Labels["k"] != "v" {
		t.Fatal("Create stored the caller's object")
	}
	got.Spec.Annotations.Labels["k"] = "reader changed it"
	if get(s, KindService, "s1").(*api.Service).Spec.Annotations.Labels["k"] != "v" {
		t.Fatal("Get returned the stored object")
	}
	got = get(s, KindService, "s1").(*api.Service)
	if err := s.Update(ctx, func(tx Tx) error { return tx.Update(got) }); err != nil {
		t.Fatal(err)
	}
	ev := nextEvent(t, ch)
	if ev.Object.(*api.Service).Spec.Annotations.Labels["k"] != "v" || ev.Old.(*api.Service).Spec.Annotations.Labels["k"] != "v" {
		t.Fatal("event objects differ from what was stored")
	}
	snap := mustSave(t, s)
	snap.Services[0].Spec.Annotations.Labels["k"] = "saver changed it"
	if get(s, KindService, "s1").(*api.Service).Spec.Annotations.Labels["k"] != "v" {
		t.Fatal("Save returned the stored object")
	}
}

// TestApplyDeterministic feeds the log of one store to two fresh stores and
// checks all three end identical, including across a failing request.
func TestApplyDeterministic(t *testing.T) {
	src, p := newLogStore(t)
	for i := 0; i < 20; i++ {
		create(t, src,
			sample(KindService, fmt.Sprintf("s%d", i), fmt.Sprintf("svc-%d", i)),
			bigTask(fmt.Sprintf("t%d", i), fmt.Sprintf("s%d", i), uint64(i+1), 10),
		)
	}
	stale := get(src, KindService, "s3")
	for i := 0; i < 5; i++ {
		svc := get(src, KindService, "s3")
		annotations(svc).Labels["round"] = fmt.Sprint(i)
		if err := src.Update(ctx, func(tx Tx) error { return tx.Update(svc) }); err != nil {
			t.Fatal(err)
		}
	}
	create(t, src, sample(KindSecret, "sec", "sec"))
	annotations(stale).Labels["x"] = "y"
	if err := src.Update(ctx, func(tx Tx) error { return tx.Delete(KindTask, "t0") }); err != nil {
		t.Fatal(err)
	}

	// Failing requests forged into the stream: a good create with a name
	// conflict (mid-stream) and with a stale update (at the end).
	forge := func(bad api.StoreObject, kind api.StoreAction_Kind) []byte {
		good, _ := api.NewStoreAction(api.StoreAction_CREATE, sample(KindConfig, "cfg", "cfg"))
		conflicting, _ := api.NewStoreAction(kind, bad)
		data, _ := proto.Marshal(&api.InternalRaftRequest{Actions: []*api.StoreAction{good, conflicting}})
		return data
	}
	nameClash := forge(sample(KindService, "s-new", "SVC-0"), api.StoreAction_CREATE)
	staleUpdate := forge(stale, api.StoreAction_UPDATE)
	applyBad := func(s *MemoryStore, index uint64, data []byte, want error) {
		t.Helper()
		before := mustSave(t, s)
		if err := s.Apply(index, decodeActions(data)); !errors.Is(err, want) {
			t.Fatalf("forged request: %v, want %v", err, want)
		}
		if !proto.Equal(before, mustSave(t, s)) {
			t.Fatal("failed request changed the store")
		}
	}

	entries := p.entries()
	replay := func(s *MemoryStore) {
		for i, e := range entries {
			if err := s.Apply(e.index, decodeActions(e.data)); (err == nil) != (e.err == nil) {
				t.Fatalf("entry %d: %v, source had %v", i, err, e.err)
			}
			if i == len(entries)/2 {
				applyBad(s, e.index, nameClash, ErrNameConflict)
			}
		}
		applyBad(s, entries[len(entries)-1].index+1, staleUpdate, ErrSequenceConflict)
	}
	a, b := NewMemoryStore(nil), NewMemoryStore(nil)
	replay(a)
	replay(b)
	want := mustSave(t, src)
	for name, s := range map[string]*MemoryStore{"a": a, "b": b} {
		if got := mustSave(t, s); !proto.Equal(got, want) {
			t.Fatalf("store %s differs from the source", name)
		}
	}
	if len(want.Tasks) != 19 || len(want.Services) != 20 || len(want.Secrets) != 1 {
		t.Fatalf("unexpected content: %d tasks %d services %d secrets", len(want.Tasks), len(want.Services), len(want.Secrets))
	}
}

func TestApplyRejectsMalformed(t *testing.T) {
	s := NewMemoryStore(nil)
	create(t, s, sample(KindNode, "n1", "n1"))
	before := mustSave(t, s)
	good, _ := api.NewStoreAction(api.StoreAction_CREATE, sample(KindNode, "n2", "n2"))
	tests := []struct {
		name   string
		action *api.StoreAction
		want   error
	}{
		{"nil action", nil, ErrInvalidObject},
		{"no object", &api.StoreAction{Kind: api.StoreAction_CREATE}, ErrInvalidObject},
		{"unknown kind", &api.StoreAction{Target: &api.StoreAction_Node{Node: &api.Node{Id: "n3"}}}, ErrInvalidObject},
		{"no id", &api.StoreAction{Kind: api.StoreAction_CREATE, Target: &api.StoreAction_Node{Node: &api.Node{}}}, ErrInvalidObject},
		{"exists", &api.StoreAction{Kind: api.StoreAction_CREATE, Target: &api.StoreAction_Node{Node: &api.Node{Id: "n1"}}}, ErrExist},
		{"remove missing", &api.StoreAction{Kind: api.StoreAction_REMOVE, Target: &api.StoreAction_Node{Node: &api.Node{Id: "zz"}}}, ErrNotExist},
	}
	for i, tt := range tests {
		g := proto.CloneOf(good)
		err := s.Apply(uint64(100+i), []*api.StoreAction{g, tt.action})
		if !errors.Is(err, tt.want) {
			t.Errorf("%s: %v, want %v", tt.name, err, tt.want)
		}
		if !proto.Equal(before, mustSave(t, s)) {
			t.Fatalf("%s: store changed", tt.name)
		}
	}
}

// queuedProposer holds proposals until the test applies them, like raft
// with several proposals in flight.
type queuedProposer struct {
	s       *MemoryStore
	pending chan queued
}

type queued struct {
	actions []*api.StoreAction
	result  chan error
}

func (p *queuedProposer) ProposeValue(ctx context.Context, actions []*api.StoreAction) error {
	data, err := proto.Marshal(&api.InternalRaftRequest{Actions: actions})
	if err != nil {
		return err
	}
	q := queued{actions: decodeActions(data), result: make(chan error, 1)}
	p.pending <- q
	select {
	case err := <-q.result:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

func TestConcurrentInFlightUpdates(t *testing.T) {
	p := &queuedProposer{pending: make(chan queued)}
	s := NewMemoryStore(p)
	p.s = s
	defer s.Close()

	// Seed through the proposer.
	go func() {
		q := <-p.pending
		q.result <- s.Apply(1, q.actions)
	}()
	create(t, s, sample(KindService, "s1", "web"))

	// Two updates computed from the same version, both in flight.
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = s.Update(ctx, func(tx Tx) error {
				svc := GetService(tx, "s1")
				svc.Spec.Annotations.Labels["writer"] = fmt.Sprint(i)
				return tx.Update(svc)
			})
		}()
	}
	first, second := <-p.pending, <-p.pending // both computed before either applies
	first.result <- s.Apply(2, first.actions)
	second.result <- s.Apply(3, second.actions)
	wg.Wait()

	ok, conflicts := 0, 0
	for _, err := range errs {
		switch {
		case err == nil:
			ok++
		case errors.Is(err, ErrSequenceConflict):
			conflicts++
		default:
			t.Fatalf("unexpected error %v", err)
		}
	}
	if ok != 1 || conflicts != 1 {
		t.Fatalf("%d succeeded, %d conflicted; want 1 and 1", ok, conflicts)
	}
	svc := get(s, KindService, "s1")
	if svc.GetMeta().GetVersion().GetIndex() != 2 {
		t.Fatalf("version %d, want 2", svc.GetMeta().GetVersion().GetIndex())
	}
}

func TestTxTooLarge(t *testing.T) {
	s, p := newLogStore(t, WithMaxProposalBytes(64<<10))
	err := s.Update(ctx, func(tx Tx) error {
		for i := 0; i < 100; i++ {
			if err := tx.Create(bigTask(fmt.Sprintf("t%d", i), "s", uint64(i+1), 1000)); err != nil {
				return err
			}
		}
		return nil
	})
	if !errors.Is(err, ErrTxTooLarge) {
		t.Fatalf("got %v, want ErrTxTooLarge", err)
	}
	if len(p.entries()) != 0 {
		t.Fatal("oversize transaction was proposed")
	}
	if n := len(mustSave(t, s).Tasks); n != 0 {
		t.Fatalf("%d tasks stored", n)
	}
}

func TestSaveRestore(t *testing.T) {
	src := NewMemoryStore(nil)
	for _, k := range Kinds() {
		for i := 0; i < 3; i++ {
			create(t, src, sample(k, fmt.Sprintf("%s-%d", k, i), fmt.Sprintf("%s-name-%d", k, i)))
		}
	}
	snap := mustSave(t, src)

	dst := NewMemoryStore(nil)
	create(t, dst, sample(KindService, "junk", "junk"))
	ch, cancel := dst.Watch()
	defer cancel()
	if err := dst.Restore(proto.CloneOf(snap)); err != nil {
		t.Fatal(err)
	}
	if ev := nextEvent(t, ch); ev.Action != EventRestore {
		t.Fatalf("event %v, want restore", ev.Action)
	}
	if got := mustSave(t, dst); !proto.Equal(got, snap) {
		t.Fatal("restored store differs")
	}
	// Indexes were rebuilt.
	dst.View(func(tx ReadTx) {
		svcs, err := FindServices(tx, ByName("service-name-1"))
		if err != nil || len(svcs) != 1 {
			t.Fatalf("find after restore: %v %v", svcs, err)
		}
	})

	// A snapshot with a duplicate ID fails and changes nothing.
	bad := proto.CloneOf(snap)
	bad.Tasks = append(bad.Tasks, proto.CloneOf(bad.Tasks[0]))
	if err := dst.Restore(bad); !errors.Is(err, ErrExist) {
		t.Fatalf("duplicate restore: %v", err)
	}
	if got := mustSave(t, dst); !proto.Equal(got, snap) {
		t.Fatal("failed restore changed the store")
	}
}

func TestTypedDeletes(t *testing.T) {
	s := NewMemoryStore(nil)
	defer s.Close()
	deletes := map[Kind]func(Tx, string) error{
		KindNode: DeleteNode, KindService: DeleteService, KindTask: DeleteTask,
		KindNetwork: DeleteNetwork, KindCluster: DeleteCluster, KindSecret: DeleteSecret,
		KindConfig: DeleteConfig,
	}
	for k, del := range deletes {
		create(t, s, sample(k, "x", "x"))
		if err := s.Update(ctx, func(tx Tx) error { return del(tx, "x") }); err != nil {
			t.Fatalf("%s: %v", k, err)
		}
		if get(s, k, "x") != nil {
			t.Fatalf("%s not deleted", k)
		}
	}
	if err := s.Update(ctx, func(tx Tx) error { return tx.Delete("bogus", "x") }); !errors.Is(err, ErrInvalidObject) {
		t.Fatalf("unknown kind: %v", err)
	}
}

func TestViewAndWatchCallbackError(t *testing.T) {
	s := NewMemoryStore(nil)
	defer s.Close()
	boom := errors.New("boom")
	ch, cancel, err := s.ViewAndWatch(func(ReadTx) error { return boom })
	if !errors.Is(err, boom) || ch != nil || cancel != nil {
		t.Fatalf("got %v %v", ch, err)
	}
	if s.queue.Len() != 0 {
		t.Fatal("watch left subscribed")
	}
	// Several filters: any may match.
	ch, cancel, err = s.ViewAndWatch(nil, MatchKind(KindNode), MatchKind(KindSecret))
	if err != nil {
		t.Fatal(err)
	}
	defer cancel()
	create(t, s, sample(KindTask, "t", ""), sample(KindSecret, "sec", "sec"))
	if ev := nextEvent(t, ch); ev.Kind() != KindSecret {
		t.Fatalf("got %v %v", ev.Action, ev.Kind())
	}
}

// TestSharedObjectsReadOnly: watch events, Lookup and Each hand out the
// stored objects themselves; CheckUnmodified finds any that was modified
// through them, and finds nothing when they were only read.
func TestSharedObjectsReadOnly(t *testing.T) {
	tests := []struct {
		name    string
		modify  func(t *testing.T, s *MemoryStore, ev Event)
		wantErr bool
	}{
		{name: "read only", modify: func(*testing.T, *MemoryStore, Event) {}},
		{name: "event object", wantErr: true, modify: func(_ *testing.T, _ *MemoryStore, ev Event) {
			ev.Object.(*api.Service).Spec.Annotations.Labels["k"] = "watcher changed it"
		}},
		{name: "event old object", wantErr: true, modify: func(_ *testing.T, _ *MemoryStore, ev Event) {
			ev.Old.(*api.Service).Spec.Annotations.Labels["k"] = "watcher changed it"
		}},
		{name: "lookup", wantErr: true, modify: func(_ *testing.T, s *MemoryStore, _ Event) {
			s.View(func(tx ReadTx) { Lookup[*api.Service](tx, "s1").Spec.Annotations.Name = "renamed" })
		}},
		{name: "each", wantErr: true, modify: func(t *testing.T, s *MemoryStore, _ Event) {
			s.View(func(tx ReadTx) {
				err := Each(tx, All, func(svc *api.Service) bool { svc.Meta.Version.Index = 99; return true })
				if err != nil {
					t.Fatal(err)
				}
			})
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := NewMemoryStore(nil, WithMutationCheck())
			defer s.Close()
			create(t, s, sample(KindService, "s1", "web"))
			ch, cancel := s.Watch()
			defer cancel()
			got := get(s, KindService, "s1").(*api.Service)
			got.Spec.Annotations.Labels["k"] = "w"
			if err := s.Update(ctx, func(tx Tx) error { return tx.Update(got) }); err != nil {
				t.Fatal(err)
			}
			ev := nextEvent(t, ch)
			s.View(func(tx ReadTx) {
				if Lookup[*api.Service](tx, "s1") != ev.Object {
					t.Error("Lookup and the event do not share the stored object")
				}
			})
			tc.modify(t, s, ev)
			err := s.CheckUnmodified()
			if tc.wantErr != errors.Is(err, ErrModified) {
				t.Fatalf("CheckUnmodified = %v, want ErrModified: %v", err, tc.wantErr)
			}
		})
	}
}
