package store

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/openswarm/swarmd/api"
	"google.golang.org/protobuf/proto"
)

// randomRequests makes a stream of requests over few IDs and names, so
// creates collide, names clash, versions go stale and removes miss.
func randomRequests(rnd *rand.Rand, n int) [][]*api.StoreAction {
	svc := func(id, name string, version uint64) *api.Service {
		return &api.Service{Id: id, Meta: &api.Meta{Version: &api.Version{Index: version}},
			Spec: &api.ServiceSpec{Annotations: &api.Annotations{Name: name}}}
	}
	reqs := make([][]*api.StoreAction, n)
	for i := range reqs {
		for range 1 + rnd.IntN(3) {
			id := fmt.Sprintf("s%d", rnd.IntN(6))
			name := fmt.Sprintf("Name%d", rnd.IntN(5))
			version := uint64(rnd.IntN(i + 2))
			if rnd.IntN(4) == 0 {
				version = 0
			}
			var a *api.StoreAction
			switch rnd.IntN(5) {
			case 0, 1:
				a, _ = api.NewStoreAction(api.StoreAction_CREATE, svc(id, name, 0))
			case 2, 3:
				a, _ = api.NewStoreAction(api.StoreAction_UPDATE, svc(id, name, version))
			default:
				a, _ = api.NewStoreAction(api.StoreAction_REMOVE, svc(id, name, 0))
			}
			reqs[i] = append(reqs[i], a)
		}
	}
	return reqs
}

func cloneActions(in []*api.StoreAction) []*api.StoreAction {
	out := make([]*api.StoreAction, len(in))
	for i, a := range in {
		out[i] = proto.Clone(a).(*api.StoreAction)
	}
	return out
}

func TestApplyBatchEqualsApply(t *testing.T) {
	for seed := uint64(1); seed <= 40; seed++ {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			rnd := rand.New(rand.NewPCG(seed, seed))
			reqs := randomRequests(rnd, 60)
			one, batched := NewMemoryStore(nil), NewMemoryStore(nil)
			defer one.Close()
			defer batched.Close()
			var wantErrs, gotErrs []error
			for i, r := range reqs {
				wantErrs = append(wantErrs, one.Apply(uint64(i+1), cloneActions(r)))
			}
			for i := 0; i < len(reqs); {
				n := 1 + rnd.IntN(8)
				var idx []uint64
				var batch [][]*api.StoreAction
				for j := i; j < min(i+n, len(reqs)); j++ {
					idx = append(idx, uint64(j+1))
					batch = append(batch, cloneActions(reqs[j]))
				}
				gotErrs = append(gotErrs, batched.ApplyBatch(idx, batch)...)
				i += len(batch)
			}
			ok := 0
			for i := range reqs {
				if (wantErrs[i] == nil) != (gotErrs[i] == nil) || (wantErrs[i] != nil && wantErrs[i].Error() != gotErrs[i].Error()) {
					t.Fatalf("request %d: Apply said %v, ApplyBatch said %v", i+1, wantErrs[i], gotErrs[i])
				}
				if wantErrs[i] == nil {
					ok++
				}
			}
			if ok == 0 || ok == len(reqs) {
				t.Fatalf("%d of %d requests succeeded: the stream does not exercise both paths", ok, len(reqs))
			}
			want, err := one.Save()
			if err != nil {
				t.Fatal(err)
			}
			got, err := batched.Save()
			if err != nil {
				t.Fatal(err)
			}
			if !proto.Equal(want, got) {
				t.Fatalf("stores differ:\nApply:      %v\nApplyBatch: %v", want, got)
			}
		})
	}
}

func TestApplyBatchEventsAfterCommit(t *testing.T) {
	s := NewMemoryStore(nil)
	defer s.Close()
	events, cancel := s.Watch()
	defer cancel()
	create := func(id string) []*api.StoreAction {
		a, _ := api.NewStoreAction(api.StoreAction_CREATE, &api.Service{Id: id, Spec: &api.ServiceSpec{Annotations: &api.Annotations{Name: id}}})
		return []*api.StoreAction{a}
	}
	errs := s.ApplyBatch([]uint64{1, 2, 3}, [][]*api.StoreAction{create("a"), create("a"), create("b")})
	if errs[0] != nil || !errors.Is(errs[1], ErrExist) || errs[2] != nil {
		t.Fatalf("errors %v", errs)
	}
	var got []string
	for len(got) < 4 {
		e := <-events
		got = append(got, fmt.Sprintf("%v@%d", e.Action, e.Index))
	}
	want := fmt.Sprint([]string{EventCreate.String() + "@1", EventCommit.String() + "@1", EventCreate.String() + "@3", EventCommit.String() + "@3"})
	if fmt.Sprint(got) != want {
		t.Fatalf("events %v, want %v", got, want)
	}
}

// BenchmarkApplyBatchSizes creates services in batches of 1, 64 and 256
// requests in a growing store.
func BenchmarkApplyBatchSizes(b *testing.B) {
	for _, size := range []int{1, 64, 256} {
		b.Run(fmt.Sprintf("requests=%d", size), func(b *testing.B) {
			s := NewMemoryStore(nil)
			defer s.Close()
			idx := uint64(0)
			b.ReportAllocs()
			for i := 0; i < b.N; i += size {
				var indexes []uint64
				var reqs [][]*api.StoreAction
				for j := 0; j < size; j++ {
					idx++
					id := fmt.Sprintf("svc-%d", idx)
					a, _ := api.NewStoreAction(api.StoreAction_CREATE, &api.Service{Id: id, Spec: &api.ServiceSpec{Annotations: &api.Annotations{Name: id}}})
					indexes = append(indexes, idx)
					reqs = append(reqs, []*api.StoreAction{a})
				}
				for _, err := range s.ApplyBatch(indexes, reqs) {
					if err != nil {
						b.Fatal(err)
					}
				}
			}
		})
	}
}
