package raft_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/openswarm/swarmd/api"
	"github.com/openswarm/swarmd/manager/state/raft"
	"github.com/openswarm/swarmd/manager/state/raft/raftest"
	"github.com/openswarm/swarmd/manager/state/store"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// fsyncLatency measures small write+fdatasync round trips in dir: the floor
// under any durable commit on this disk.
func fsyncLatency(b *testing.B, dir string, n int) []time.Duration {
	b.Helper()
	out, err := probeFsync(dir, n)
	if err != nil {
		b.Fatal(err)
	}
	return out
}

// probeFsync makes n write+fsync round trips of 512 bytes on a new file in
// dir and returns their durations.
func probeFsync(dir string, n int) ([]time.Duration, error) {
	f, err := os.Create(filepath.Join(dir, "fsync-probe"))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	buf := make([]byte, 512)
	out := make([]time.Duration, 0, n)
	for i := 0; i < n; i++ {
		start := time.Now()
		if _, err := f.Write(buf); err != nil {
			return nil, err
		}
		if err := f.Sync(); err != nil {
			return nil, err
		}
		out = append(out, time.Since(start))
	}
	return out, nil
}

// fsyncLatencyShared measures the same write+fsync round trips made by
// ways writers at once, each on its own file in dir: what each member's log
// write meets when the members of an in-process cluster share one disk, as
// they do in BenchmarkCommitLatency (every commit is an fsync on each of the
// three members at about the same time).
func fsyncLatencyShared(b *testing.B, dir string, ways, n int) []time.Duration {
	b.Helper()
	var (
		mu   sync.Mutex
		out  []time.Duration
		errs []error
		wg   sync.WaitGroup
	)
	for w := 0; w < ways; w++ {
		sub := filepath.Join(dir, fmt.Sprintf("fsync-probe-%d", w))
		if err := os.MkdirAll(sub, 0o700); err != nil {
			b.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			ds, err := probeFsync(sub, n)
			mu.Lock()
			defer mu.Unlock()
			out = append(out, ds...)
			errs = append(errs, err)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		b.Fatal(err)
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
	fs3 := fsyncLatencyShared(b, l.Dir, 3, 200)
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
	// A commit needs a follower's durable acknowledgement: an append's
	// way to a follower, its fsync and the answer's way back. Its floor is
	// a round trip plus an fsync; the probes measure the round trip on
	// loopback TCP and on the members' gRPC streams, in the same run.
	tcp := percentile(tcpRoundTrips(b, 2000), 0.5)
	rpc := percentile(grpcRoundTrips(b, 2000), 0.5)
	b.ReportMetric(float64(tcp.Microseconds()), "tcp-rtt-p50-µs")
	b.ReportMetric(float64(rpc.Microseconds()), "grpc-rtt-p50-µs")
	b.ReportMetric(float64(percentile(lat, 0.5))/float64(rpc+percentile(fs, 0.5)), "p50/(grpc-rtt+fsync)")
	// The three members share this disk: their fsyncs of one commit run
	// at once, and each takes about as long as fsync-3way, the floor's
	// fsync in this harness (on separate hosts it is fsync).
	b.ReportMetric(float64(percentile(fs3, 0.5).Microseconds()), "fsync-3way-p50-µs")
	b.ReportMetric(float64(percentile(lat, 0.5))/float64(rpc+percentile(fs3, 0.5)), "p50/(grpc-rtt+fsync-3way)")
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

// rttProbeSize is the size of the message the round-trip probes send: about
// an append of one small write.
const rttProbeSize = 256

// tcpRoundTrips measures n round trips of a small message over one loopback
// TCP connection: the floor under any message a follower must answer.
func tcpRoundTrips(b *testing.B, n int) []time.Duration {
	b.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer lis.Close()
	go func() {
		c, err := lis.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		buf := make([]byte, rttProbeSize)
		for {
			if _, err := io.ReadFull(c, buf); err != nil {
				return
			}
			if _, err := c.Write(buf); err != nil {
				return
			}
		}
	}()
	c, err := net.Dial("tcp", lis.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	buf := make([]byte, rttProbeSize)
	out := make([]time.Duration, 0, n)
	for range n {
		start := time.Now()
		if _, err := c.Write(buf); err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(c, buf); err != nil {
			b.Fatal(err)
		}
		out = append(out, time.Since(start))
	}
	return out
}

// relayRaft serves the raft service's message stream by handing every
// message it receives to fn.
type relayRaft struct {
	api.UnimplementedRaftServer
	fn func(*api.RaftMessage) error
}

func (r relayRaft) Stream(s grpc.ClientStreamingServer[api.RaftMessage, api.StreamAck]) error {
	for {
		m, err := s.Recv()
		if err != nil {
			return err
		}
		if err := r.fn(m); err != nil {
			return err
		}
	}
}

// serveRelay starts a gRPC server with the raft server options, serving
// relayRaft{fn}, and returns its address.
func serveRelay(b *testing.B, fn func(*api.RaftMessage) error) string {
	b.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := grpc.NewServer(raft.ServerOptions()...)
	api.RegisterRaftServer(srv, relayRaft{fn: fn})
	go func() { _ = srv.Serve(lis) }()
	b.Cleanup(srv.Stop)
	return lis.Addr().String()
}

// openStream opens a raft message stream to addr with the options members
// use between them.
func openStream(b *testing.B, ctx context.Context, addr string) grpc.ClientStreamingClient[api.RaftMessage, api.StreamAck] {
	b.Helper()
	conn, err := grpc.NewClient(addr, raft.DialOptions(insecure.NewCredentials())...)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = conn.Close() })
	s, err := api.NewRaftClient(conn).Stream(ctx)
	if err != nil {
		b.Fatal(err)
	}
	return s
}

// grpcRoundTrips measures n round trips of a small message between two
// members' raft message streams, the way an append and its acknowledgement
// travel: A's stream to B carries the message, B's handler sends it back on
// B's stream to A, A's handler receives it.
func grpcRoundTrips(b *testing.B, n int) []time.Duration {
	b.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	got := make(chan struct{}, 1)
	addrA := serveRelay(b, func(*api.RaftMessage) error { got <- struct{}{}; return nil })
	back := make(chan grpc.ClientStreamingClient[api.RaftMessage, api.StreamAck], 1)
	addrB := serveRelay(b, func(m *api.RaftMessage) error {
		s := <-back
		back <- s
		return s.Send(m)
	})
	back <- openStream(b, ctx, addrA)
	toB := openStream(b, ctx, addrB)
	msg := &api.RaftMessage{Message: make([]byte, rttProbeSize)}
	out := make([]time.Duration, 0, n)
	for range n {
		start := time.Now()
		if err := toB.Send(msg); err != nil {
			b.Fatal(err)
		}
		<-got
		out = append(out, time.Since(start))
	}
	return out
}
