package store

import (
	"context"
	"fmt"
	"math/rand/v2"
	"runtime"
	"sync"
	"testing"

	"github.com/openswarm/swarmd/api"
	"google.golang.org/protobuf/proto"
)

const (
	benchTasks      = 100_000
	tasksPerService = 1000
)

// benchSizes are the store sizes read benchmarks run at: the small one
// shows the per-call cost, the large one adds the garbage collector's cost
// of a large, pointer-rich heap.
var benchSizes = []int{1000, benchTasks}

// benchTask returns task i of a store of n tasks: services of 1000 tasks
// each, tasks spread over them round-robin.
func benchTask(i, n int) *api.Task {
	services := max(1, n/tasksPerService)
	t := bigTask(fmt.Sprintf("task%07d", i), fmt.Sprintf("service%03d", i%services), uint64(i/services+1), 0)
	t.Spec.Container.Env = t.Spec.Container.Env[:2]
	return t
}

// fillTasks creates n tasks through Batch.
func fillTasks(tb testing.TB, s *MemoryStore, n int) {
	err := s.Batch(context.Background(), func(b *Batch) error {
		for i := 0; i < n; i++ {
			t := benchTask(i, n)
			if err := b.Update(func(tx Tx) error { return tx.Create(t) }); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		tb.Fatal(err)
	}
}

// benchStores caches filled stores by size across benchmarks.
type benchStores struct {
	mu     sync.Mutex
	stores map[int]*MemoryStore
}

var cachedStores = &benchStores{stores: make(map[int]*MemoryStore)}

// benchStore returns a local store holding n tasks (see benchTask).
func benchStore(b *testing.B, n int) *MemoryStore {
	cachedStores.mu.Lock()
	defer cachedStores.mu.Unlock()
	if s, ok := cachedStores.stores[n]; ok {
		return s
	}
	// Drop other sizes so that their heap does not weigh on this one.
	clear(cachedStores.stores)
	runtime.GC()
	s := NewMemoryStore(nil)
	fillTasks(b, s, n)
	cachedStores.stores[n] = s
	return s
}

// BenchmarkCreateTasks creates 100k tasks in a fresh local store per
// iteration, through Batch (proposals of up to MaxProposalBytes).
func BenchmarkCreateTasks(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		s := NewMemoryStore(nil)
		fillTasks(b, s, benchTasks)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*benchTasks), "ns/task")
}

// BenchmarkCreateTasksProposed is BenchmarkCreateTasks with every proposal
// encoded and decoded, as raft would.
func BenchmarkCreateTasksProposed(b *testing.B) {
	b.ReportAllocs()
	proposals := 0
	for b.Loop() {
		s, p := newLogStore(nil)
		fillTasks(b, s, benchTasks)
		proposals = len(p.entries())
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*benchTasks), "ns/task")
	b.ReportMetric(float64(proposals), "proposals")
}

// BenchmarkCreateTasksWatched is BenchmarkCreateTasks with one watcher
// draining events, which makes Apply copy every object into its event.
func BenchmarkCreateTasksWatched(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		s := NewMemoryStore(nil)
		ch, cancel := s.Watch()
		done := make(chan int)
		go func() {
			n := 0
			for range ch {
				n++
			}
			done <- n
		}()
		fillTasks(b, s, benchTasks)
		cancel()
		<-done
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*benchTasks), "ns/task")
}

// BenchmarkHeapPerTask reports the heap a store of 100k tasks holds.
func BenchmarkHeapPerTask(b *testing.B) {
	var before, after runtime.MemStats
	var s *MemoryStore
	for b.Loop() {
		s = nil
		runtime.GC()
		runtime.ReadMemStats(&before)
		s = NewMemoryStore(nil)
		fillTasks(b, s, benchTasks)
		runtime.GC()
		runtime.ReadMemStats(&after)
	}
	inuse := float64(after.HeapInuse) - float64(before.HeapInuse)
	b.ReportMetric(inuse/(1<<20), "heap-MiB")
	b.ReportMetric(inuse/benchTasks, "heap-B/task")
	b.ReportMetric(float64(proto.Size(benchTask(1, benchTasks))), "encoded-B/task")
	runtime.KeepAlive(s)
}

func BenchmarkGetTaskByID(b *testing.B) {
	for _, n := range benchSizes {
		b.Run(fmt.Sprintf("tasks=%d", n), func(b *testing.B) {
			s := benchStore(b, n)
			ids := make([]string, n)
			for i := range ids {
				ids[i] = fmt.Sprintf("task%07d", i)
			}
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				s.View(func(tx ReadTx) {
					if GetTask(tx, ids[i%n]) == nil {
						b.Fatal("missing task")
					}
				})
				i += 7919
			}
		})
	}
}

// BenchmarkListAllTasks copies every task of a 100k-task store.
func BenchmarkListAllTasks(b *testing.B) {
	s := benchStore(b, benchTasks)
	b.ReportAllocs()
	for b.Loop() {
		s.View(func(tx ReadTx) {
			tasks, err := FindTasks(tx, All)
			if err != nil || len(tasks) != benchTasks {
				b.Fatalf("%d tasks, %v", len(tasks), err)
			}
		})
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*benchTasks), "ns/task")
}

// BenchmarkCountAllTasks walks every task of a 100k-task store without
// copying.
func BenchmarkCountAllTasks(b *testing.B) {
	s := benchStore(b, benchTasks)
	b.ReportAllocs()
	for b.Loop() {
		s.View(func(tx ReadTx) {
			if n, err := Count(tx, KindTask, All); err != nil || n != benchTasks {
				b.Fatalf("%d tasks, %v", n, err)
			}
		})
	}
}

// BenchmarkFindTasksByService finds (and copies) the 1000 tasks of one
// service.
func BenchmarkFindTasksByService(b *testing.B) {
	for _, n := range benchSizes {
		b.Run(fmt.Sprintf("tasks=%d", n), func(b *testing.B) {
			s := benchStore(b, n)
			services := max(1, n/tasksPerService)
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				id := fmt.Sprintf("service%03d", i%services)
				s.View(func(tx ReadTx) {
					tasks, err := FindTasks(tx, ByServiceID(id))
					if err != nil || len(tasks) != min(n, tasksPerService) {
						b.Fatalf("%d tasks, %v", len(tasks), err)
					}
				})
				i++
			}
		})
	}
}

// BenchmarkUpdateTask is one read-modify-write transaction (local store: no
// consensus cost).
func BenchmarkUpdateTask(b *testing.B) {
	for _, n := range benchSizes {
		b.Run(fmt.Sprintf("tasks=%d", n), func(b *testing.B) {
			s := benchStore(b, n)
			ids := make([]string, n)
			for i := range ids {
				ids[i] = fmt.Sprintf("task%07d", i)
			}
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				err := s.Update(context.Background(), func(tx Tx) error {
					t := GetTask(tx, ids[i%n])
					t.Status.State = api.TaskState_TASK_STATE_RUNNING
					return tx.Update(t)
				})
				if err != nil {
					b.Fatal(err)
				}
				i += 7919
			}
		})
	}
}

// BenchmarkSave copies a 100k-task store.
func BenchmarkSave(b *testing.B) {
	s := benchStore(b, benchTasks)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Save(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkBurst is the orchestration burst of a cluster at scale, at the
// store: 100 services of 1000 tasks created (one transaction per
// service, random IDs as the orchestrators give), then every task
// assigned to one of 1000 nodes (transactions of one task, batched), all
// through a proposer that encodes and decodes every proposal as raft
// does.
func BenchmarkBurst(b *testing.B) {
	const services, perService, nodes = 100, 1000, 1000
	rng := rand.New(rand.NewPCG(1, 2))
	const digits = "0123456789abcdefghijklmnopqrstuvwxyz"
	newID := func() string {
		var id [25]byte
		for i := range id {
			id[i] = digits[rng.IntN(len(digits))]
		}
		return string(id[:])
	}
	nodeIDs := make([]string, nodes)
	for i := range nodeIDs {
		nodeIDs[i] = newID()
	}
	b.ReportAllocs()
	for b.Loop() {
		b.StopTimer()
		s, _ := newLogStore(b)
		b.StartTimer()
		var ids []string
		for i := range services {
			sid := newID()
			spec := &api.TaskSpec{Container: &api.ContainerSpec{Image: "bench:latest"}}
			err := s.Update(context.Background(), func(tx Tx) error {
				for slot := range perService {
					t := &api.Task{Id: newID(), ServiceId: sid, Slot: uint64(slot + 1), Spec: spec,
						Annotations:  &api.Annotations{Name: fmt.Sprintf("bench-%03d.%d", i, slot+1)},
						DesiredState: api.TaskState_TASK_STATE_RUNNING,
						Status:       &api.TaskStatus{State: api.TaskState_TASK_STATE_PENDING, Message: "pending task scheduling"}}
					ids = append(ids, t.GetId())
					if err := tx.CreateOwned(t); err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil {
				b.Fatal(err)
			}
		}
		err := s.Batch(context.Background(), func(bt *Batch) error {
			for i, id := range ids {
				err := bt.Update(func(tx Tx) error {
					t := Shallow(Lookup[*api.Task](tx, id))
					t.NodeId = nodeIDs[i%nodes]
					t.Status = &api.TaskStatus{State: api.TaskState_TASK_STATE_ASSIGNED, Message: "scheduler assigned task to node"}
					return tx.UpdateOwned(t)
				})
				if err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
}
