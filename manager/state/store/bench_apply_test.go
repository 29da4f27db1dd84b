package store

import (
	"fmt"
	"testing"

	"github.com/openswarm/swarmd/api"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// applyBatchSize is how many committed requests one op of the apply
// benchmarks hands the store: what raft delivers in one Ready under load.
const applyBatchSize = 256

// applyBench describes one apply workload on a store of n tasks.
type applyBench struct {
	name string
	// requests returns the requests of iteration i, read from s.
	requests func(s *MemoryStore, i, n int, index uint64) []testReq
	// cleanup undoes iteration i's requests (untimed), if they grow the
	// store.
	cleanup func(s *MemoryStore, i int, index uint64)
}

var benchStamp = timestamppb.New(timestamppb.Now().AsTime())

func benchServiceID(i, j int) string { return fmt.Sprintf("bsvc-%d-%d", i, j) }

var applyBenches = []applyBench{
	{
		name: "create-service",
		requests: func(s *MemoryStore, i, n int, index uint64) []testReq {
			reqs := make([]testReq, applyBatchSize)
			for j := range reqs {
				id := benchServiceID(i, j)
				svc := &api.Service{
					Id:   id,
					Meta: &api.Meta{Version: &api.Version{}, CreatedAt: benchStamp, UpdatedAt: benchStamp},
					Spec: &api.ServiceSpec{
						Annotations: &api.Annotations{Name: id, Labels: map[string]string{"app": "bench"}},
						Task:        &api.TaskSpec{Container: &api.ContainerSpec{Image: "nginx:latest", Args: []string{"serve"}}},
					},
				}
				a, err := api.NewStoreAction(api.StoreAction_CREATE, svc)
				if err != nil {
					panic(err)
				}
				reqs[j] = testReq{Index: index + uint64(j/4), Actions: []*api.StoreAction{a}}
			}
			return reqs
		},
		cleanup: func(s *MemoryStore, i int, index uint64) {
			var actions []*api.StoreAction
			for j := 0; j < applyBatchSize; j++ {
				a, _ := api.NewStoreAction(api.StoreAction_REMOVE, &api.Service{Id: benchServiceID(i, j)})
				actions = append(actions, a)
			}
			if err := s.Apply(index, actions); err != nil {
				panic(err)
			}
		},
	},
	{
		name: "update-task",
		requests: func(s *MemoryStore, i, n int, index uint64) []testReq {
			reqs := make([]testReq, applyBatchSize)
			s.View(func(tx ReadTx) {
				for j := range reqs {
					id := fmt.Sprintf("task%07d", ((i*applyBatchSize+j)*7919)%n)
					t := GetTask(tx, id)
					if t.Status.State == api.TaskState_TASK_STATE_RUNNING {
						t.Status.State = api.TaskState_TASK_STATE_NEW
					} else {
						t.Status.State = api.TaskState_TASK_STATE_RUNNING
					}
					t.Meta.UpdatedAt = benchStamp
					a, err := api.NewStoreAction(api.StoreAction_UPDATE, t)
					if err != nil {
						panic(err)
					}
					reqs[j] = testReq{Index: index + uint64(j/4), Actions: []*api.StoreAction{a}}
				}
			})
			return reqs
		},
	},
}

// benchApply runs the apply workloads, applying each op's requests with
// apply.
func benchApply(b *testing.B, apply func(s *MemoryStore, indexes []uint64, requests [][]*api.StoreAction)) {
	for _, w := range applyBenches {
		for _, n := range benchSizes {
			b.Run(fmt.Sprintf("%s/objects=%d", w.name, n), func(b *testing.B) {
				s := benchStore(b, n)
				b.ReportAllocs()
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					b.StopTimer()
					index := s.lastIndex + 1
					reqs := w.requests(s, i, n, index)
					indexes := make([]uint64, len(reqs))
					requests := make([][]*api.StoreAction, len(reqs))
					for j, r := range reqs {
						indexes[j], requests[j] = r.Index, r.Actions
					}
					b.StartTimer()
					apply(s, indexes, requests)
					if w.cleanup != nil {
						b.StopTimer()
						w.cleanup(s, i, reqs[len(reqs)-1].Index+1)
						b.StartTimer()
					}
				}
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*applyBatchSize), "ns/req")
			})
		}
	}
}

// BenchmarkApplyBatch applies 256 committed requests of one action each
// (four per log index) in one ApplyBatch call.
func BenchmarkApplyBatch(b *testing.B) {
	benchApply(b, func(s *MemoryStore, indexes []uint64, requests [][]*api.StoreAction) {
		for i, err := range s.ApplyBatch(indexes, requests) {
			if err != nil {
				b.Fatalf("request %d: %v", i, err)
			}
		}
	})
}

// BenchmarkApply applies the same requests one Apply call each.
func BenchmarkApply(b *testing.B) {
	benchApply(b, func(s *MemoryStore, indexes []uint64, requests [][]*api.StoreAction) {
		for i, actions := range requests {
			if err := s.Apply(indexes[i], actions); err != nil {
				b.Fatalf("request %d: %v", i, err)
			}
		}
	})
}
