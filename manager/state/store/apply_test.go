package store

import (
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/openswarm/swarmd/api"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// reqGen generates random requests against the current state of a store:
// creates of taken IDs and names, updates from current, stale and in-request
// versions, removes of missing objects, several actions per request on the
// same objects, and the odd malformed request.
type reqGen struct {
	rng   *rand.Rand
	s     *MemoryStore // the state requests are generated against
	index uint64
	stamp *timestamppb.Timestamp
}

var (
	genKinds  = []Kind{KindService, KindTask, KindNode, KindSecret}
	genNames  = []string{"", "web", "WEB", "db", "Db", "api", "cache", "web-1", "a", "b", "c", "d", "e", "f", "g", "h"}
	genStates = []api.TaskState{api.TaskState_TASK_STATE_NEW, api.TaskState_TASK_STATE_READY, api.TaskState_TASK_STATE_RUNNING, api.TaskState_TASK_STATE_SHUTDOWN}
)

func (g *reqGen) pick(s []string) string { return s[g.rng.IntN(len(s))] }

func (g *reqGen) id(k Kind) string { return fmt.Sprintf("%s%d", k[:2], g.rng.IntN(8)) }

func (g *reqGen) object(k Kind, id string, version uint64) api.StoreObject {
	meta := &api.Meta{Version: &api.Version{Index: version}, CreatedAt: g.stamp, UpdatedAt: g.stamp}
	labels := map[string]string{"r": fmt.Sprint(g.rng.IntN(1000))}
	ann := func() *api.Annotations { return &api.Annotations{Name: g.pick(genNames), Labels: labels} }
	switch k {
	case KindService:
		return &api.Service{Id: id, Meta: meta, Spec: &api.ServiceSpec{Annotations: ann()}}
	case KindSecret:
		return &api.Secret{Id: id, Meta: meta, Spec: &api.SecretSpec{Annotations: ann(), Data: []byte("x")}}
	case KindTask:
		t := &api.Task{
			Id:           id,
			Meta:         meta,
			ServiceId:    g.pick([]string{"", "se1", "se2"}),
			Slot:         uint64(g.rng.IntN(3)),
			NodeId:       g.pick([]string{"", "no1", "no2"}),
			DesiredState: genStates[g.rng.IntN(len(genStates))],
			Status:       &api.TaskStatus{State: genStates[g.rng.IntN(len(genStates))]},
		}
		if g.rng.IntN(3) == 0 {
			t.Annotations = ann()
		}
		if g.rng.IntN(2) == 0 {
			t.ServiceAnnotations = &api.Annotations{Name: g.pick(genNames)}
		}
		return t
	case KindNode:
		n := &api.Node{
			Id:          id,
			Meta:        meta,
			Role:        api.NodeRole(g.rng.IntN(2)),
			Spec:        &api.NodeSpec{Membership: api.NodeMembership(g.rng.IntN(2))},
			Description: &api.NodeDescription{Hostname: g.pick(genNames)},
		}
		if g.rng.IntN(2) == 0 {
			n.Spec.Annotations = ann()
		}
		return n
	}
	panic(k)
}

// next returns a request for the store's current state.
func (g *reqGen) next() testReq {
	if g.rng.IntN(3) != 0 {
		g.index++ // else share the previous request's log entry
	}
	if g.rng.IntN(200) == 0 {
		a, _ := api.NewStoreAction(api.StoreAction_CREATE, g.object(KindTask, "zz", 0))
		return testReq{Index: 0, Actions: []*api.StoreAction{a}}
	}
	n := 1
	if g.rng.IntN(3) == 0 {
		n = 2 + g.rng.IntN(4)
	}
	// base and exists: versions and existence as the request's earlier
	// actions leave them, to generate mostly plausible actions.
	base := make(map[objKey]uint64)
	exists := make(map[objKey]bool)
	var actions []*api.StoreAction
	for range n {
		k := genKinds[g.rng.IntN(len(genKinds))]
		id := g.id(k)
		key := objKey{k, id}
		if g.rng.IntN(100) == 0 {
			actions = append(actions, &api.StoreAction{Kind: api.StoreAction_UPDATE})
			continue
		}
		cur := get(g.s, k, id)
		there, ok := exists[key]
		if !ok {
			there = cur != nil
		}
		// Mostly creates of missing objects, updates and removes of
		// existing ones.
		r := g.rng.IntN(20)
		if !there {
			r = []int{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 5, 5, 19, 19}[r]
		}
		var a *api.StoreAction
		switch {
		case r < 2:
			a, _ = api.NewStoreAction(api.StoreAction_CREATE, g.object(k, id, 0))
			if !there {
				base[key] = 0
				exists[key] = true
			}
		case r < 13:
			v, ok := base[key]
			if !ok && cur != nil {
				v = cur.GetMeta().GetVersion().GetIndex()
			}
			if there {
				base[key] = v
			}
			switch g.rng.IntN(10) {
			case 0:
				v++ // stale or from the future
			case 1:
				if v > 1 {
					v--
				}
			}
			a, _ = api.NewStoreAction(api.StoreAction_UPDATE, g.object(k, id, v))
		default:
			a, _ = api.NewStoreAction(api.StoreAction_REMOVE, newObject(k, id))
			exists[key] = false
		}
		actions = append(actions, a)
	}
	return testReq{Index: g.index, Actions: actions}
}

// testReq is one request for ApplyBatch.
type testReq struct {
	Index   uint64
	Actions []*api.StoreAction
}

// applyReqs calls s.ApplyBatch with reqs.
func applyReqs(s *MemoryStore, reqs []testReq) []error {
	indexes := make([]uint64, len(reqs))
	requests := make([][]*api.StoreAction, len(reqs))
	for i, r := range reqs {
		indexes[i], requests[i] = r.Index, r.Actions
	}
	return s.ApplyBatch(indexes, requests)
}

// cloneRequest deep-copies r, so that two stores can each own one.
func cloneRequest(r testReq) testReq {
	c := testReq{Index: r.Index}
	for _, a := range r.Actions {
		c.Actions = append(c.Actions, proto.CloneOf(a))
	}
	return c
}

// collect gathers the events of ch until the commit of index last.
func collect(ch <-chan Event, last uint64) <-chan []Event {
	out := make(chan []Event, 1)
	go func() {
		var evs []Event
		for ev := range ch {
			evs = append(evs, ev)
			if ev.Action == EventCommit && ev.Index == last {
				break
			}
		}
		out <- evs
	}()
	return out
}

func errText(err error) string {
	if err == nil {
		return "<nil>"
	}
	return err.Error()
}

// TestApplyBatchMatchesApply feeds random request streams to one store one
// Apply at a time and to another in ApplyBatch calls of random sizes: states,
// errors and events must be identical, and every index must agree with the
// objects.
func TestApplyBatchMatchesApply(t *testing.T) {
	seeds := 30
	if testing.Short() {
		seeds = 5
	}
	for seed := range seeds {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(uint64(seed), 42))
			one, batched := NewMemoryStore(nil), NewMemoryStore(nil)
			defer one.Close()
			defer batched.Close()
			ch1, cancel1 := one.Watch()
			defer cancel1()
			ch2, cancel2 := batched.Watch()
			defer cancel2()
			g := &reqGen{rng: rng, s: one, stamp: timestamppb.New(time.Unix(1, 0))}

			const total = 600
			var pending []testReq
			var want []error
			failed, multi, multiOK := 0, 0, 0
			why := make(map[string]int)
			maxBatch := 1 + rng.IntN(64)
			for i := 0; i < total; i++ {
				r := g.next()
				pending = append(pending, cloneRequest(r))
				err := one.Apply(r.Index, r.Actions)
				want = append(want, err)
				if err != nil {
					failed++
					for _, e := range []error{ErrExist, ErrNotExist, ErrNameConflict, ErrSequenceConflict, ErrInvalidObject} {
						if errors.Is(err, e) {
							why[e.Error()]++
						}
					}
				}
				if len(r.Actions) > 1 {
					multi++
					if err == nil {
						multiOK++
					}
				}
				if len(pending) >= 1+rng.IntN(maxBatch) || i == total-1 {
					got := applyReqs(batched, pending)
					if len(got) != len(pending) {
						t.Fatalf("%d errors for %d requests", len(got), len(pending))
					}
					for j, err := range got {
						w := want[len(want)-len(pending)+j]
						if errText(err) != errText(w) {
							t.Fatalf("request %d: ApplyBatch: %v; Apply: %v", i-len(pending)+1+j, err, w)
						}
						if err != nil && !errors.Is(err, errors.Unwrap(err)) {
							t.Fatal("unwrappable error")
						}
					}
					if a, b := mustSave(t, one), mustSave(t, batched); !proto.Equal(a, b) {
						t.Fatalf("after request %d: states differ", i)
					}
					pending = pending[:0]
				}
			}
			if failed == 0 || failed == total {
				t.Fatalf("%d of %d requests failed: the generator is off", failed, total)
			}
			t.Logf("%d requests (%d with several actions, %d of them applied), %d failed: %v", total, multi, multiOK, failed, why)
			checkIndexes(t, one)
			checkIndexes(t, batched)

			// Same events: close both streams with one more request.
			last := g.index + 1
			got1, got2 := collect(ch1, last), collect(ch2, last)
			for _, s := range []*MemoryStore{one, batched} {
				a, _ := api.NewStoreAction(api.StoreAction_CREATE, &api.Config{Id: "end"})
				if err := s.Apply(last, []*api.StoreAction{a}); err != nil {
					t.Fatal(err)
				}
			}
			ev1, ev2 := <-got1, <-got2
			if len(ev1) != len(ev2) {
				t.Fatalf("%d events from Apply, %d from ApplyBatch", len(ev1), len(ev2))
			}
			for i := range ev1 {
				a, b := ev1[i], ev2[i]
				if a.Action != b.Action || a.Index != b.Index || !proto.Equal(a.Object, b.Object) || !proto.Equal(a.Old, b.Old) {
					t.Fatalf("event %d: %v@%d %v / %v@%d %v", i, a.Action, a.Index, a.Object, b.Action, b.Index, b.Object)
				}
			}
		})
	}
}

// checkIndexes compares every selector's results, and the census, with a
// scan of all objects.
func checkIndexes(t *testing.T, s *MemoryStore) {
	t.Helper()
	census := s.Census()
	s.View(func(tx ReadTx) {
		tasks, nodes := map[api.TaskState]int{}, map[api.NodeStatus_State]int{}
		for _, o := range mustFind(t, tx, KindTask) {
			tasks[o.(*api.Task).GetStatus().GetState()]++
		}
		for _, o := range mustFind(t, tx, KindNode) {
			nodes[o.(*api.Node).GetStatus().GetState()]++
		}
		if !maps.Equal(tasks, census.Tasks) || !maps.Equal(nodes, census.Nodes) {
			t.Fatalf("census: tasks %v, nodes %v; scan: tasks %v, nodes %v", census.Tasks, census.Nodes, tasks, nodes)
		}
	})
	s.View(func(tx ReadTx) {
		for _, k := range Kinds() {
			all, err := tx.Find(k, All)
			if err != nil {
				t.Fatal(err)
			}
			type sel struct {
				by   By
				key  func(api.StoreObject) (string, bool) // sort key, selected
				kind Kind
			}
			byID := func(o api.StoreObject) (string, bool) { return o.GetId(), true }
			var sels []sel
			for _, n := range genNames {
				sels = append(sels,
					sel{ByName(n), func(o api.StoreObject) (string, bool) {
						return o.GetId(), lowerName(o) != "" && lowerName(o) == strings.ToLower(n)
					}, ""},
					sel{ByNamePrefix(n), func(o api.StoreObject) (string, bool) {
						ln := lowerName(o)
						key := ln + "\x00" + o.GetId()
						if k == KindTask {
							key = o.GetId() // scanned, not indexed
						}
						return key, ln != "" && strings.HasPrefix(ln, strings.ToLower(n))
					}, ""})
			}
			for _, p := range []string{"", string(k[:2]) + "1", "x"} {
				sels = append(sels, sel{ByIDPrefix(p), func(o api.StoreObject) (string, bool) {
					return o.GetId(), strings.HasPrefix(o.GetId(), p)
				}, ""})
			}
			for _, v := range []string{"", "se1", "se2"} {
				sels = append(sels, sel{ByServiceID(v), func(o api.StoreObject) (string, bool) {
					task := o.(*api.Task)
					return fmt.Sprintf("%020d/%s", task.GetSlot(), o.GetId()), v != "" && task.GetServiceId() == v
				}, KindTask})
				for slot := range uint64(3) {
					sels = append(sels, sel{BySlot(v, slot), func(o api.StoreObject) (string, bool) {
						task := o.(*api.Task)
						return o.GetId(), v != "" && slot != 0 && task.GetServiceId() == v && task.GetSlot() == slot
					}, KindTask})
				}
			}
			for _, v := range []string{"", "no1", "no2"} {
				sels = append(sels, sel{ByNodeID(v), func(o api.StoreObject) (string, bool) {
					return o.GetId(), v != "" && o.(*api.Task).GetNodeId() == v
				}, KindTask})
			}
			for _, st := range genStates {
				sels = append(sels,
					sel{ByDesiredState(st), func(o api.StoreObject) (string, bool) {
						return o.GetId(), o.(*api.Task).GetDesiredState() == st
					}, KindTask},
					sel{ByTaskState(st), func(o api.StoreObject) (string, bool) {
						return o.GetId(), o.(*api.Task).GetStatus().GetState() == st
					}, KindTask})
			}
			for r := range 3 {
				sels = append(sels,
					sel{ByRole(api.NodeRole(r)), func(o api.StoreObject) (string, bool) {
						return o.GetId(), o.(*api.Node).GetRole() == api.NodeRole(r)
					}, KindNode},
					sel{ByMembership(api.NodeMembership(r)), func(o api.StoreObject) (string, bool) {
						return o.GetId(), o.(*api.Node).GetSpec().GetMembership() == api.NodeMembership(r)
					}, KindNode})
			}
			sels = append(sels, sel{All, byID, ""})
			for _, sl := range sels {
				if sl.kind != "" && sl.kind != k {
					continue
				}
				got, err := tx.Find(k, sl.by)
				if err != nil {
					t.Fatalf("%s %v: %v", k, sl.by, err)
				}
				type entry struct{ key, id string }
				var want []entry
				for _, o := range all {
					if key, ok := sl.key(o); ok {
						want = append(want, entry{key, o.GetId()})
					}
				}
				slices.SortFunc(want, func(a, b entry) int { return strings.Compare(a.key, b.key) })
				ids := make([]string, len(got))
				for i, o := range got {
					ids[i] = o.GetId()
				}
				wantIDs := make([]string, len(want))
				for i, e := range want {
					wantIDs[i] = e.id
				}
				if !slices.Equal(ids, wantIDs) {
					t.Fatalf("%s %v: %v, want %v", k, sl.by, ids, wantIDs)
				}
				if n, err := Count(tx, k, sl.by); err != nil || n != len(wantIDs) {
					t.Fatalf("Count %s %v: %d %v, want %d", k, sl.by, n, err, len(wantIDs))
				}
			}
		}
	})
}

// Events of a batch are published after its commit: a watcher that sees the
// first request's event already reads the last request's write.
func TestApplyBatchPublishesAfterCommit(t *testing.T) {
	s := NewMemoryStore(nil)
	defer s.Close()
	ch, cancel := s.Watch()
	defer cancel()
	var reqs []testReq
	for i := range 50 {
		a, _ := api.NewStoreAction(api.StoreAction_CREATE, sample(KindTask, fmt.Sprintf("t%02d", i), ""))
		reqs = append(reqs, testReq{Index: uint64(10 + i/10), Actions: []*api.StoreAction{a}})
	}
	// A failing request in the middle publishes nothing.
	bad, _ := api.NewStoreAction(api.StoreAction_REMOVE, &api.Task{Id: "missing"})
	reqs = slices.Insert(reqs, 25, testReq{Index: 12, Actions: []*api.StoreAction{bad}})
	done := make(chan error, 1)
	go func() {
		ev := nextEvent(t, ch)
		if ev.Action != EventCreate || ev.Object.GetId() != "t00" {
			done <- fmt.Errorf("first event %v %v", ev.Action, ev.Object)
			return
		}
		if get(s, KindTask, "t49") == nil {
			done <- errors.New("event published before the batch was committed")
			return
		}
		for i := 0; i < 99; i++ { // the rest: 49 creates, 50 commits
			ev := nextEvent(t, ch)
			want, id := EventCommit, ""
			if i%2 == 1 {
				want, id = EventCreate, fmt.Sprintf("t%02d", (i+1)/2)
			}
			if ev.Action != want || (id != "" && ev.Object.GetId() != id) || ev.Index != uint64(10+(i+1)/2/10) {
				done <- fmt.Errorf("event %d: %v %v @%d", i+1, ev.Action, ev.Object, ev.Index)
				return
			}
		}
		done <- nil
	}()
	errs := applyReqs(s, reqs)
	for i, err := range errs {
		if (err != nil) != (i == 25) {
			t.Fatalf("request %d: %v", i, err)
		}
	}
	if !errors.Is(errs[25], ErrNotExist) {
		t.Fatalf("bad request: %v", errs[25])
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if len(applyReqs(s, nil)) != 0 {
		t.Fatal("errors for no requests")
	}
	// Mismatched slices apply nothing and fail every request.
	before := mustSave(t, s)
	a, _ := api.NewStoreAction(api.StoreAction_CREATE, sample(KindTask, "x", ""))
	errs = s.ApplyBatch([]uint64{100}, [][]*api.StoreAction{{a}, {}})
	if len(errs) != 2 || !errors.Is(errs[0], ErrInvalidObject) || !errors.Is(errs[1], ErrInvalidObject) {
		t.Fatalf("mismatched batch: %v", errs)
	}
	if !proto.Equal(before, mustSave(t, s)) {
		t.Fatal("mismatched batch changed the store")
	}
}

// A failing request of several actions leaves no trace, even when it
// rewrote objects the batch wrote before it, and later requests of the
// batch see the state without it.
func TestApplyBatchFailedRequestUndone(t *testing.T) {
	s := NewMemoryStore(nil)
	defer s.Close()
	create(t, s, sample(KindService, "s1", "web"), sample(KindTask, "t1", ""))
	before := mustSave(t, s)
	svc := func(id, name string, v uint64) *api.StoreAction {
		o := sample(KindService, id, name)
		o.SetMeta(&api.Meta{Version: &api.Version{Index: v}})
		a, _ := api.NewStoreAction(api.StoreAction_UPDATE, o)
		return a
	}
	act := func(kind api.StoreAction_Kind, o api.StoreObject) *api.StoreAction {
		a, _ := api.NewStoreAction(kind, o)
		return a
	}
	v := get(s, KindService, "s1").GetMeta().GetVersion().GetIndex()
	reqs := []testReq{{
		// Renames s1, frees "web", takes it with s2, removes t1, then
		// fails.
		Index: 100,
		Actions: []*api.StoreAction{
			svc("s1", "other", v),
			act(api.StoreAction_CREATE, sample(KindService, "s2", "WEB")),
			act(api.StoreAction_REMOVE, &api.Task{Id: "t1"}),
			act(api.StoreAction_CREATE, sample(KindTask, "t2", "")),
			svc("s1", "again", v),
			act(api.StoreAction_REMOVE, &api.Task{Id: "t1"}), // gone: fails
		},
	}, {
		// Sees s1 still named web.
		Index:   100,
		Actions: []*api.StoreAction{act(api.StoreAction_CREATE, sample(KindService, "s3", "web"))},
	}}
	errs := applyReqs(s, reqs)
	if !errors.Is(errs[0], ErrNotExist) || !errors.Is(errs[1], ErrNameConflict) {
		t.Fatalf("errors %v", errs)
	}
	if !proto.Equal(before, mustSave(t, s)) {
		t.Fatal("failed requests changed the store")
	}
	checkIndexes(t, s)
}

// Readers running during ApplyBatch see each batch whole or not at all, in
// every index; the race detector checks that published nodes are never
// written.
func TestApplyBatchConcurrentReaders(t *testing.T) {
	s := NewMemoryStore(nil)
	defer s.Close()
	const batches, perBatch = 60, 40
	done := make(chan struct{})
	errc := make(chan error, 4)
	for r := 0; r < 3; r++ {
		go func() {
			for {
				select {
				case <-done:
					errc <- nil
					return
				default:
				}
				var err error
				s.View(func(tx ReadTx) {
					n, _ := Count(tx, KindTask, All)
					byNode, _ := Count(tx, KindTask, ByNodeID("node"))
					running, _ := Count(tx, KindTask, ByTaskState(api.TaskState_TASK_STATE_RUNNING))
					services, _ := Count(tx, KindService, ByNamePrefix("svc-"))
					switch {
					case n%perBatch != 0:
						err = fmt.Errorf("%d tasks: part of a batch", n)
					case byNode != n:
						err = fmt.Errorf("%d tasks, %d by node", n, byNode)
					case running != n/2 && running != n/2-perBatch/2:
						err = fmt.Errorf("%d tasks, %d running", n, running)
					case services != n/perBatch:
						err = fmt.Errorf("%d tasks, %d services", n, services)
					}
				})
				if err != nil {
					errc <- err
					return
				}
			}
		}()
	}
	index := uint64(0)
	for b := 0; b < batches; b++ {
		var reqs []testReq
		for j := 0; j < perBatch; j++ {
			index++
			task := &api.Task{Id: fmt.Sprintf("t%03d-%02d", b, j), NodeId: "node", Status: &api.TaskStatus{}}
			a, _ := api.NewStoreAction(api.StoreAction_CREATE, task)
			reqs = append(reqs, testReq{Index: index, Actions: []*api.StoreAction{a}})
		}
		// Half of the previous batch's tasks start running.
		if b > 0 {
			s.View(func(tx ReadTx) {
				for j := 0; j < perBatch/2; j++ {
					task := GetTask(tx, fmt.Sprintf("t%03d-%02d", b-1, j))
					task.Status.State = api.TaskState_TASK_STATE_RUNNING
					a, _ := api.NewStoreAction(api.StoreAction_UPDATE, task)
					reqs = append(reqs, testReq{Index: index, Actions: []*api.StoreAction{a}})
				}
			})
		}
		svc, _ := api.NewStoreAction(api.StoreAction_CREATE, sample(KindService, fmt.Sprint("s", b), fmt.Sprint("svc-", b)))
		reqs = append(reqs, testReq{Index: index, Actions: []*api.StoreAction{svc}})
		for i, err := range applyReqs(s, reqs) {
			if err != nil {
				t.Fatalf("batch %d request %d: %v", b, i, err)
			}
		}
	}
	close(done)
	for r := 0; r < 3; r++ {
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
	}
}

// raft hands committed requests to the store through a type assertion on
// this method (raft.BatchStateMachine): if its signature drifted, raft would
// silently fall back to one Apply per request.
var _ interface {
	ApplyBatch(indexes []uint64, requests [][]*api.StoreAction) []error
} = (*MemoryStore)(nil)

func mustFind(t *testing.T, tx ReadTx, k Kind) []api.StoreObject {
	t.Helper()
	all, err := tx.Find(k, All)
	if err != nil {
		t.Fatal(err)
	}
	return all
}
