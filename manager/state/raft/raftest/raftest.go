// Package raftest runs several raft members, each with its own store, state
// directory and gRPC server on 127.0.0.1, inside one test process. Members
// can be stopped, restarted from their state, added, removed and partitioned.
// It is the base of the consensus and fault tests.
package raftest

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/openswarm/swarmd/manager/state/raft"
	"github.com/openswarm/swarmd/manager/state/store"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
)

// Options shape every member of a cluster.
type Options struct {
	TickInterval               time.Duration // default 10ms: tests run ten times faster than production
	ElectionTick               int
	SnapshotInterval           uint64
	LogEntriesForSlowFollowers uint64
	// Logger receives every member's logs (default: warnings to the test log).
	Logger *slog.Logger
	// StoreOptions configure every member's store (e.g.
	// store.WithMutationCheck).
	StoreOptions []store.Option
}

// Member is one raft member with its store.
type Member struct {
	Name string
	Dir  string
	Addr string
	// ID is the member's raft ID; it stays known while the member is stopped.
	ID    uint64
	Node  *raft.Node
	Store *store.MemoryStore
	// Registry holds the member's raft metrics (Metrics), which outlive
	// restarts as a node's do.
	Registry *prometheus.Registry
	Metrics  *raft.Metrics

	srv *grpc.Server
}

// Cluster is a set of members in one process.
type Cluster struct {
	t    testing.TB
	opts Options

	mu      sync.Mutex
	members []*Member
	cut     map[[2]uint64]bool
	next    int
}

// New starts n members: the first creates the cluster, the others join it.
func New(t testing.TB, n int, opts Options) *Cluster {
	t.Helper()
	if opts.TickInterval == 0 {
		opts.TickInterval = 10 * time.Millisecond
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	c := &Cluster{t: t, opts: opts, cut: map[[2]uint64]bool{}}
	t.Cleanup(c.stopAll)
	first := c.Add("")
	for i := 1; i < n; i++ {
		c.Add(first.Addr)
	}
	c.WaitLeader()
	return c
}

// Add starts a new member that joins through joinAddr ("" creates a new
// cluster), and waits until it has joined.
func (c *Cluster) Add(joinAddr string) *Member {
	c.t.Helper()
	c.mu.Lock()
	c.next++
	m := &Member{Name: fmt.Sprintf("m%d", c.next), Dir: c.t.TempDir(), Registry: prometheus.NewRegistry()}
	c.members = append(c.members, m)
	c.mu.Unlock()
	metrics, err := raft.NewMetrics(m.Registry)
	if err != nil {
		c.t.Fatalf("%s metrics: %v", m.Name, err)
	}
	m.Metrics = metrics
	if joinAddr == "" && c.next > 1 {
		joinAddr = c.WaitLeader().Addr
	}
	if err := c.start(m, "127.0.0.1:0", joinAddr, false); err != nil {
		c.t.Fatalf("start %s: %v", m.Name, err)
	}
	if joinAddr != "" {
		Eventually(c.t, 20*time.Second, m.Name+" to become a voter", func() bool {
			l := c.Leader()
			if l == nil {
				return false
			}
			for _, id := range l.Node.Voters() {
				if id == m.Node.ID() {
					return true
				}
			}
			return false
		})
	}
	return m
}

func (c *Cluster) start(m *Member, listen, joinAddr string, force bool) error {
	lis, err := net.Listen("tcp", listen)
	if err != nil {
		return err
	}
	m.Addr = lis.Addr().String()
	n, err := raft.NewNode(raft.Config{
		NodeID:                     m.Name,
		Addr:                       m.Addr,
		Dir:                        m.Dir,
		JoinAddr:                   joinAddr,
		ForceNewCluster:            force,
		TickInterval:               c.opts.TickInterval,
		ElectionTick:               c.opts.ElectionTick,
		SnapshotInterval:           c.opts.SnapshotInterval,
		LogEntriesForSlowFollowers: c.opts.LogEntriesForSlowFollowers,
		Logger:                     c.opts.Logger.With("member", m.Name),
		Metrics:                    m.Metrics,
	})
	if err != nil {
		_ = lis.Close()
		return err
	}
	st := store.NewMemoryStore(n, c.opts.StoreOptions...)
	srv := grpc.NewServer(raft.ServerOptions()...)
	n.Register(srv)
	go func() { _ = srv.Serve(lis) }()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := n.Start(ctx, st); err != nil {
		srv.Stop()
		st.Close()
		return err
	}
	m.Node, m.Store, m.srv, m.ID = n, st, srv, n.ID()
	c.applyCuts()
	return nil
}

// Stop stops a member as a crash would after its last fsync: nothing is
// handed over, its state directory stays.
func (c *Cluster) Stop(m *Member) {
	if m.Node == nil {
		return
	}
	m.Node.Stop()
	m.srv.Stop()
	m.Store.Close()
	m.Node, m.srv = nil, nil
}

// Restart starts a stopped member again from its state directory, on the
// same address.
func (c *Cluster) Restart(m *Member) error { return c.start(m, m.Addr, "", false) }

// ForceNewCluster restarts a stopped member as the only member of a new
// cluster that keeps its data.
func (c *Cluster) ForceNewCluster(m *Member) error { return c.start(m, m.Addr, "", true) }

// Forget drops a member from the harness (after it was removed).
func (c *Cluster) Forget(m *Member) {
	c.Stop(m)
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, x := range c.members {
		if x == m {
			c.members = append(c.members[:i], c.members[i+1:]...)
			return
		}
	}
}

func (c *Cluster) stopAll() {
	for _, m := range c.Members() {
		c.Stop(m)
	}
}

// Members lists all members, running or not.
func (c *Cluster) Members() []*Member {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]*Member(nil), c.members...)
}

// Running lists the members that run.
func (c *Cluster) Running() []*Member {
	var out []*Member
	for _, m := range c.Members() {
		if m.Node != nil {
			select {
			case <-m.Node.Done():
			default:
				out = append(out, m)
			}
		}
	}
	return out
}

// Leader returns the running member that leads, or nil.
func (c *Cluster) Leader() *Member {
	var best *Member
	for _, m := range c.Running() {
		if m.Node.IsLeader() && (best == nil || m.Node.Term() > best.Node.Term()) {
			best = m
		}
	}
	return best
}

// Followers returns the running members that do not lead.
func (c *Cluster) Followers() []*Member {
	l := c.Leader()
	var out []*Member
	for _, m := range c.Running() {
		if m != l {
			out = append(out, m)
		}
	}
	return out
}

// WaitLeader waits until a running member leads and every running member
// that can hear it agrees.
func (c *Cluster) WaitLeader() *Member {
	c.t.Helper()
	var l *Member
	Eventually(c.t, 20*time.Second, "a leader", func() bool {
		l = c.Leader()
		return l != nil
	})
	return l
}

// Partition cuts the members into groups that cannot talk to each other.
func (c *Cluster) Partition(groups ...[]*Member) {
	c.mu.Lock()
	c.cut = map[[2]uint64]bool{}
	for i, g := range groups {
		for j, h := range groups {
			if i == j {
				continue
			}
			for _, a := range g {
				for _, b := range h {
					c.cut[[2]uint64{a.Node.ID(), b.Node.ID()}] = true
				}
			}
		}
	}
	c.mu.Unlock()
	c.applyCuts()
}

// Heal removes every partition.
func (c *Cluster) Heal() {
	c.mu.Lock()
	c.cut = map[[2]uint64]bool{}
	c.mu.Unlock()
	c.applyCuts()
}

func (c *Cluster) applyCuts() {
	c.mu.Lock()
	cut := make(map[[2]uint64]bool, len(c.cut))
	for k, v := range c.cut {
		cut[k] = v
	}
	c.mu.Unlock()
	for _, m := range c.Running() {
		if len(cut) == 0 {
			m.Node.SetDropFilter(nil)
			continue
		}
		m.Node.SetDropFilter(func(from, to uint64) bool { return cut[[2]uint64{from, to}] })
	}
}

// WaitConverged waits until every running member applied the same index and
// holds the same store.
func (c *Cluster) WaitConverged() {
	c.t.Helper()
	var why string
	ok := poll(30*time.Second, func() bool {
		ms := c.Running()
		if len(ms) == 0 {
			return true
		}
		idx := ms[0].Node.AppliedIndex()
		want, err := ms[0].Store.Save()
		if err != nil {
			why = err.Error()
			return false
		}
		for _, m := range ms[1:] {
			if m.Node.AppliedIndex() != idx {
				why = fmt.Sprintf("%s applied %d, %s applied %d", ms[0].Name, idx, m.Name, m.Node.AppliedIndex())
				return false
			}
			got, err := m.Store.Save()
			if err != nil || !proto.Equal(want, got) {
				why = fmt.Sprintf("%s and %s hold different stores at index %d", ms[0].Name, m.Name, idx)
				return false
			}
		}
		return true
	})
	if !ok {
		c.t.Fatalf("members did not converge: %s", why)
	}
}

// Eventually polls cond until it holds or the timeout passes.
func Eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	if !poll(timeout, cond) {
		t.Fatalf("timed out after %s waiting for %s", timeout, what)
	}
}

func poll(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		<-tick.C
	}
	return true
}

// testWriter sends log lines to the test log.
type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(bytes.TrimRight(p, "\n")))
	return len(p), nil
}
