package scheduler

import (
	"context"
	"fmt"
	"log/slog"
	"testing"

	"github.com/openswarm/swarmd/api"
	"github.com/openswarm/swarmd/manager/state/store"
)

// benchCluster returns nodes spread over 10 zones, and services × perService
// pending tasks: a quarter of the services plain, a quarter reserving
// resources, a quarter constrained, a quarter spreading over zones.
func benchCluster(nodes, services, perService int) ([]*api.Node, []*api.Task) {
	ns := make([]*api.Node, nodes)
	for i := range ns {
		ns[i] = mkNode(fmt.Sprintf("node-%05d", i), nodeResources(64*cpu, 256*gib), nodeLabels("zone", fmt.Sprintf("z%d", i%10)))
		if i%10 == 0 {
			manager(ns[i])
		}
	}
	ts := make([]*api.Task, 0, services*perService)
	for s := range services {
		svc := fmt.Sprintf("svc-%03d", s)
		var opts []taskOpt
		switch s % 4 {
		case 1:
			opts = append(opts, reserve(cpu/100, 10<<20))
		case 2:
			opts = append(opts, constraints("node.role==worker", "node.labels.zone!=z9"))
		case 3:
			opts = append(opts, spread("node.labels.zone"))
		}
		for i := range perService {
			ts = append(ts, mkTask(fmt.Sprintf("%s-%05d", svc, i), svc, append([]taskOpt{slot(uint64(i + 1))}, opts...)...))
		}
	}
	return ns, ts
}

// benchmarkSchedule measures one pass placing every task on an empty
// cluster: the pure core, without the store.
func benchmarkSchedule(b *testing.B, nodes, services, perService int) {
	ns, ts := benchCluster(nodes, services, perService)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		v := newView()
		for _, n := range ns {
			v.upsertNode(n)
		}
		for _, t := range ts {
			v.upsertTask(t)
		}
		b.StartTimer()
		ds := v.schedule()
		if len(ds) != len(ts) {
			b.Fatalf("%d decisions for %d tasks", len(ds), len(ts))
		}
		for _, d := range ds {
			if d.node == "" {
				b.Fatalf("task %s not placed: %s", d.base.GetId(), d.err)
			}
		}
	}
	b.ReportMetric(float64(len(ts))*float64(b.N)/b.Elapsed().Seconds(), "tasks/s")
}

func BenchmarkSchedule1kNodes10kTasks(b *testing.B)  { benchmarkSchedule(b, 1000, 10, 1000) }
func BenchmarkSchedule10kNodes10kTasks(b *testing.B) { benchmarkSchedule(b, 10000, 10, 1000) }
func BenchmarkSchedule1kNodes100kTasks(b *testing.B) { benchmarkSchedule(b, 1000, 100, 1000) }

// BenchmarkRun1kNodes10kTasks measures the runner end to end on a local
// store: from 10,000 pending tasks to all of them written ASSIGNED.
func BenchmarkRun1kNodes10kTasks(b *testing.B) {
	ns, ts := benchCluster(1000, 10, 1000)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		s := store.NewMemoryStore(nil)
		err := s.Batch(context.Background(), func(batch *store.Batch) error {
			for _, o := range append(objects(ns...), objects(ts...)...) {
				if err := batch.Update(func(tx store.Tx) error { return tx.Create(o) }); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
		events, cancel := s.Watch(store.MatchKind(store.KindTask))
		ctx, stop := context.WithCancel(context.Background())
		done := make(chan error, 1)
		b.StartTimer()
		go func() {
			done <- New(s, WithLogger(slog.New(slog.DiscardHandler)), WithBatchDelay(0)).Run(ctx)
		}()
		for assigned := 0; assigned < len(ts); {
			ev := <-events
			if t, ok := ev.Object.(*api.Task); ok && t.GetStatus().GetState() == api.TaskState_TASK_STATE_ASSIGNED {
				assigned++
			}
		}
		b.StopTimer()
		stop()
		if err := <-done; err != nil {
			b.Fatal(err)
		}
		cancel()
		s.Close()
	}
	b.ReportMetric(float64(len(ts))*float64(b.N)/b.Elapsed().Seconds(), "tasks/s")
}
