package raft_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/openswarm/swarmd/api"
	"github.com/openswarm/swarmd/manager/state/raft"
	"github.com/openswarm/swarmd/manager/state/raft/raftest"
	"github.com/openswarm/swarmd/manager/state/store"
)

// fsyncLatency measures small write+fdatasync round trips in dir: the floor
// under any durable commit on this disk.
func fsyncLatency(b *testing.B, dir string, n int) []time.Duration {
	b.Helper()
	f, err := os.Create(filepath.Join(dir, "fsync-probe"))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 512)
	out := make([]time.Duration, 0, n)
	for i := 0; i < n; i++ {
		start := time.Now()
		if _, err := f.Write(buf); err != nil {
			b.Fatal(err)
		}
		if err := f.Sync(); err != nil {
			b.Fatal(err)
		}
		out = append(out, time.Since(start))
	}
	return out
}

func percentile(ds []time.Duration, p float64) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[int(float64(len(s)-1)*p)]
}

func newService(id string) func(tx store.Tx) error {
	return func(tx store.Tx) error {
		return tx.Create(&api.Service{Id: id, Spec: &api.ServiceSpec{Annotations: &api.Annotations{Name: id}}})
	}
}

// BenchmarkCommitLatency: one small write at a time on 3 members, beside the
// fsync latency of the same disk measured in the same run.
func BenchmarkCommitLatency(b *testing.B) {
	c := raftest.New(b, 3, raftest.Options{TickInterval: raft.DefaultTickInterval})
	l := c.WaitLeader()
	fs := fsyncLatency(b, l.Dir, 200)
	lat := make([]time.Duration, 0, b.N)
	ctx := context.Background()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		start := time.Now()
		if err := l.Store.Update(ctx, newService(fmt.Sprintf("lat-%d", i))); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(start))
	}
	b.StopTimer()
	b.ReportMetric(float64(percentile(lat, 0.5).Microseconds()), "p50-µs")
	b.ReportMetric(float64(percentile(lat, 0.99).Microseconds()), "p99-µs")
	b.ReportMetric(float64(percentile(fs, 0.5).Microseconds()), "fsync-p50-µs")
	b.ReportMetric(float64(percentile(lat, 0.5))/float64(percentile(fs, 0.5)), "p50/fsync")
}

// BenchmarkThroughput: many clients writing small objects at once on 3
// members; raft batches them into few entries and fsyncs.
func BenchmarkThroughput(b *testing.B) {
	c := raftest.New(b, 3, raftest.Options{TickInterval: raft.DefaultTickInterval})
	l := c.WaitLeader()
	var seq atomic.Uint64
	ctx := context.Background()
	b.SetParallelism(256)
	start := time.Now()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := l.Store.Update(ctx, newService(fmt.Sprintf("tp-%d", seq.Add(1)))); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "writes/s")
}

// BenchmarkFailover: with production timings (100 ms tick, election after 10
// ticks), the time from the leader stopping to a write succeeding on the new
// leader.
// failoverDeadline bounds one failover of BenchmarkFailover.
const failoverDeadline = 30 * time.Second

func BenchmarkFailover(b *testing.B) {
	c := raftest.New(b, 3, raftest.Options{TickInterval: raft.DefaultTickInterval})
	var total time.Duration
	for i := 0; i < b.N; i++ {
		c.WaitConverged()
		old := c.WaitLeader()
		start := time.Now()
		c.Stop(old)
		for {
			// A failover that never ends reports itself, with where every
			// goroutine waits, instead of hanging the run.
			if time.Since(start) > failoverDeadline {
				var dump strings.Builder
				_ = pprof.Lookup("goroutine").WriteTo(&dump, 1)
				b.Fatalf("failover %d: no write succeeded within %s of stopping the leader\n%s", i, failoverDeadline, dump.String())
			}
			l := c.Leader()
			if l == nil {
				time.Sleep(time.Millisecond)
				continue
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			err := l.Store.Update(ctx, newService(fmt.Sprintf("fo-%d", i)))
			cancel()
			if err == nil {
				break
			}
		}
		total += time.Since(start)
		if err := c.Restart(old); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(total.Milliseconds())/float64(b.N), "ms-to-writable")
}
