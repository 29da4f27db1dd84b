package dispatcher

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"runtime"
	"sync"
	"testing"

	"github.com/openswarm/swarmd/api"
	"github.com/openswarm/swarmd/manager/state/store"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
)

type benchNodeKey struct{}

// benchStream is an in-process Session stream: it signals the first
// message and drops the rest.
type benchStream struct {
	grpc.ServerStream
	ctx   context.Context
	once  sync.Once
	first chan string
}

func (s *benchStream) Context() context.Context { return s.ctx }

func (s *benchStream) Send(m *api.SessionMessage) error {
	s.once.Do(func() { s.first <- m.GetSessionId() })
	return nil
}

func (s *benchStream) SetTrailer(metadata.MD) {}

// BenchmarkHeartbeats measures Heartbeat (ns/op is ns per heartbeat) with
// N sessions open, all heartbeating concurrently, and the memory each
// session holds (sessions=N, B/session: heap and goroutine stack of the
// dispatcher's state and the Session handler, beyond the node object that
// is in the store anyway). The calls go straight to the handler: gRPC's
// own cost is BenchmarkHeartbeatsGRPC's.
func BenchmarkHeartbeats(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		b.Run(fmt.Sprintf("sessions=%d", n), func(b *testing.B) { benchHeartbeats(b, n) })
	}
}

func benchHeartbeats(b *testing.B, n int) {
	st := store.NewMemoryStore(nil)
	ids := make([]string, n)
	err := st.Update(context.Background(), func(tx store.Tx) error {
		for i := range ids {
			ids[i] = fmt.Sprintf("node-%06d", i)
			// READY at the address the in-process calls come from (none):
			// registering writes nothing.
			nd := newNode(ids[i])
			nd.Status = &api.NodeStatus{State: api.NodeStatus_READY}
			if err := tx.Create(nd); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	d := New(st, Config{
		Logger: slog.New(slog.DiscardHandler),
		NodeIdentity: func(ctx context.Context) (string, error) {
			return ctx.Value(benchNodeKey{}).(string), nil
		},
	})
	ctx, cancel := context.WithCancel(context.Background())
	runDone := make(chan struct{})
	go func() { defer close(runDone); _ = d.Run(ctx) }()
	defer func() { cancel(); <-runDone }()
	for {
		d.mu.Lock()
		running := d.run != nil
		d.mu.Unlock()
		if running {
			break
		}
		runtime.Gosched()
	}

	before := memInUse()
	ctxs := make([]context.Context, n)
	reqs := make([]*api.HeartbeatRequest, n)
	streams := make([]*benchStream, n)
	for i, id := range ids {
		ctxs[i] = context.WithValue(ctx, benchNodeKey{}, id)
		streams[i] = &benchStream{ctx: ctxs[i], first: make(chan string, 1)}
		go func() { _ = d.Session(&api.SessionRequest{}, streams[i]) }()
	}
	for i, s := range streams {
		reqs[i] = &api.HeartbeatRequest{SessionId: <-s.first}
	}
	perSession := float64(memInUse()-before) / float64(n)

	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := rand.IntN(n)
		for pb.Next() {
			if _, err := d.Heartbeat(ctxs[i], reqs[i]); err != nil {
				b.Error(err)
				return
			}
			if i++; i == n {
				i = 0
			}
		}
	})
	b.StopTimer()
	b.ReportMetric(perSession, "B/session")
}

// memInUse is the heap and goroutine stack memory in use after a GC.
func memInUse() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc + m.StackInuse
}

// BenchmarkHeartbeatsGRPC measures a heartbeat through a real gRPC server
// on 127.0.0.1 (no TLS), with 1,000 sessions open.
func BenchmarkHeartbeatsGRPC(b *testing.B) {
	const n = 1000
	var nodes []api.StoreObject
	for i := range n {
		nodes = append(nodes, seedNode(fmt.Sprintf("n%d", i), api.NodeStatus_UNKNOWN))
	}
	h := newHarness(b, createAll(nodes...), nil)
	agents := make([]*agent, n)
	for i := range n {
		agents[i] = h.connect(fmt.Sprintf("n%d", i), nil)
	}
	ctxs := make([]context.Context, n)
	for i, a := range agents {
		ctxs[i] = h.as(a.node)
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := rand.IntN(n)
		for pb.Next() {
			if _, err := h.client.Heartbeat(ctxs[i], &api.HeartbeatRequest{SessionId: agents[i].session}); err != nil {
				b.Error(err)
				return
			}
			if i++; i == n {
				i = 0
			}
		}
	})
}
