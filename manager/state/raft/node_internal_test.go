package raft

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/openswarm/swarmd/api"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
)

// logSM is the smallest state machine: the ordered list of applied
// transactions, as object IDs.
type logSM struct {
	mu  sync.Mutex
	ids []string
}

func (s *logSM) Apply(_ uint64, actions []*api.StoreAction) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, a := range actions {
		s.ids = append(s.ids, a.Object().GetId())
	}
	return nil
}

func (s *logSM) Save() (*api.StoreSnapshot, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	snap := &api.StoreSnapshot{}
	for _, id := range s.ids {
		snap.Tasks = append(snap.Tasks, &api.Task{Id: id})
	}
	return snap, nil
}

func (s *logSM) Restore(snap *api.StoreSnapshot) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ids = nil
	for _, t := range snap.GetTasks() {
		s.ids = append(s.ids, t.GetId())
	}
	return nil
}

func (s *logSM) list() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.ids...)
}

type smMember struct {
	n   *Node
	sm  *logSM
	srv *grpc.Server
}

func startSM(t *testing.T, dir, addr, join string) *smMember {
	t.Helper()
	return startSMWith(t, dir, addr, join, nil)
}

// startSMWith is startSM with set, if not nil, adjusting the node before
// it starts.
func startSMWith(t *testing.T, dir, addr, join string, set func(*Node)) *smMember {
	t.Helper()
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	n, err := NewNode(Config{NodeID: lis.Addr().String(), Addr: lis.Addr().String(), Dir: dir, JoinAddr: join,
		TickInterval: 10 * time.Millisecond,
		Logger:       slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	if err != nil {
		t.Fatal(err)
	}
	if set != nil {
		set(n)
	}
	srv := grpc.NewServer()
	n.Register(srv)
	go func() { _ = srv.Serve(lis) }()
	sm := &logSM{}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := n.Start(ctx, sm); err != nil {
		t.Fatal(err)
	}
	return &smMember{n: n, sm: sm, srv: srv}
}

func (m *smMember) stop() {
	m.n.Stop()
	m.srv.Stop()
}

func task(id string) []*api.StoreAction {
	a, _ := api.NewStoreAction(api.StoreAction_CREATE, &api.Task{Id: id})
	return []*api.StoreAction{a}
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting: %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestReplicateToMinimalStateMachine(t *testing.T) {
	m1 := startSM(t, t.TempDir(), "127.0.0.1:0", "")
	defer m1.stop()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := m1.n.WaitForLeader(ctx); err != nil {
		t.Fatal(err)
	}
	m2 := startSM(t, t.TempDir(), "127.0.0.1:0", m1.n.cfg.Addr)
	defer m2.stop()
	m3 := startSM(t, t.TempDir(), "127.0.0.1:0", m1.n.cfg.Addr)
	defer m3.stop()
	for i := 0; i < 20; i++ {
		from := []*smMember{m1, m2, m3}[i%3]
		if err := from.n.ProposeValue(ctx, task(fmt.Sprint(i))); err != nil {
			t.Fatalf("propose %d: %v", i, err)
		}
	}
	want := m1.sm.list()
	if len(want) != 20 {
		t.Fatalf("leader applied %d, want 20", len(want))
	}
	for _, m := range []*smMember{m2, m3} {
		eventually(t, "followers apply", func() bool { return len(m.sm.list()) == 20 })
		if !proto.Equal(&api.RaftBatch{}, &api.RaftBatch{}) || fmt.Sprint(m.sm.list()) != fmt.Sprint(want) {
			t.Fatalf("member log %v != leader %v", m.sm.list(), want)
		}
	}
	eventually(t, "learners promoted", func() bool {
		st := m1.n.raft.Status()
		return len(m1.n.Voters()) == 3 && st.ID != 0
	})
}
