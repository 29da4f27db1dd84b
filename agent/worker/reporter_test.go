package worker

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/openswarm/swarmd/api"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// fakeManager is a Sender that records the batches it gets and answers
// with the errors it is told to.
type fakeManager struct {
	mu      sync.Mutex
	batches [][]*Update
	// fail answers a batch; nil accepts it.
	fail func(batch []*Update) error
	// block, if set, holds every call until it is closed.
	block  chan struct{}
	calls  chan struct{} // one token per call, when it starts
	stored map[string]api.TaskState
}

func newFakeManager() *fakeManager {
	return &fakeManager{calls: make(chan struct{}, 100), stored: map[string]api.TaskState{}}
}

func (m *fakeManager) send(ctx context.Context, batch []*Update) error {
	m.calls <- struct{}{}
	if m.block != nil {
		select {
		case <-m.block:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.batches = append(m.batches, batch)
	if m.fail != nil {
		if err := m.fail(batch); err != nil {
			return err
		}
	}
	for _, u := range batch {
		m.stored[u.GetTaskId()] = u.GetStatus().GetState()
	}
	return nil
}

func (m *fakeManager) batchIDs() [][]string {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out [][]string
	for _, b := range m.batches {
		var ids []string
		for _, u := range b {
			ids = append(ids, u.GetTaskId()+":"+u.GetStatus().GetState().String()[len("TASK_STATE_"):])
		}
		out = append(out, ids)
	}
	return out
}

func (m *fakeManager) state(id string) api.TaskState {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.stored[id]
}

func newTestReporter(clock clockwork.Clock, maxBatch int) *Reporter {
	return NewReporter(ReporterConfig{Clock: clock, Logger: slog.New(slog.DiscardHandler), MaxBatch: maxBatch})
}

// runReporter runs r with send until the test ends or stop is called.
func runReporter(t *testing.T, r *Reporter, send Sender) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx, send) }()
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Errorf("Run = %v", err)
		}
	}
	t.Cleanup(stop)
	return stop
}

func st(s api.TaskState) *api.TaskStatus { return &api.TaskStatus{State: s} }

func TestReporterBatchesAndCoalesces(t *testing.T) {
	tests := []struct {
		name     string
		maxBatch int
		reports  []*Update
		want     [][]string
	}{
		{name: "everything pending goes in one call", reports: []*Update{
			{TaskId: "b", Status: st(stAccepted)}, {TaskId: "a", Status: st(stAccepted)}, {TaskId: "c", Status: st(stRunning)}},
			want: [][]string{{"a:ACCEPTED", "b:ACCEPTED", "c:RUNNING"}}},
		{name: "one task's reports coalesce into the latest", reports: []*Update{
			{TaskId: "a", Status: st(stAccepted)}, {TaskId: "a", Status: st(stPreparing)}, {TaskId: "a", Status: st(stRunning)}},
			want: [][]string{{"a:RUNNING"}}},
		{name: "a report behind the queued one is dropped", reports: []*Update{
			{TaskId: "a", Status: st(stRunning)}, {TaskId: "a", Status: st(stStarting)}},
			want: [][]string{{"a:RUNNING"}}},
		{name: "batches are bounded", maxBatch: 2, reports: []*Update{
			{TaskId: "a", Status: st(stRunning)}, {TaskId: "b", Status: st(stRunning)}, {TaskId: "c", Status: st(stRunning)}},
			want: [][]string{{"a:RUNNING", "b:RUNNING"}, {"c:RUNNING"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := newTestReporter(clockwork.NewFakeClock(), tc.maxBatch)
			for _, u := range tc.reports {
				r.Report(u.GetTaskId(), u.GetStatus())
			}
			m := newFakeManager()
			runReporter(t, r, m.send)
			eventually(t, "reports sent", func() bool { return len(r.Pending()) == 0 })
			if got := m.batchIDs(); !slices.EqualFunc(got, tc.want, slices.Equal) {
				t.Fatalf("batches %v, want %v", got, tc.want)
			}
		})
	}
}

func TestReporterRetriesWithBackoff(t *testing.T) {
	clock := clockwork.NewFakeClock()
	r := newTestReporter(clock, 0)
	m := newFakeManager()
	failures := 2
	m.fail = func([]*Update) error {
		if failures > 0 {
			failures--
			return status.Error(codes.Unavailable, "dispatcher: store write failed")
		}
		return nil
	}
	r.Report("a", st(stRunning))
	runReporter(t, r, m.send)
	for range 2 {
		if err := clock.BlockUntilContext(context.Background(), 1); err != nil {
			t.Fatal(err)
		}
		clock.Advance(r.cfg.MaxBackoff)
	}
	eventually(t, "report acknowledged", func() bool { return len(r.Pending()) == 0 })
	if got := len(m.batchIDs()); got != 3 {
		t.Fatalf("%d calls, want 3", got)
	}
	if m.state("a") != stRunning {
		t.Fatal("report lost")
	}
}

func TestReporterSurvivesSessionChange(t *testing.T) {
	r := newTestReporter(clockwork.NewFakeClock(), 0)
	m1 := newFakeManager()
	m1.block = make(chan struct{}) // the session breaks while a call is under way
	r.Report("a", st(stRunning))
	stop := runReporter(t, r, m1.send)
	<-m1.calls
	stop()
	if len(r.Pending()) != 1 {
		t.Fatal("an unacknowledged report was dropped")
	}
	r.Report("b", st(stAccepted))

	m2 := newFakeManager()
	runReporter(t, r, m2.send)
	eventually(t, "reports sent on the new session", func() bool { return len(r.Pending()) == 0 })
	if got := m2.batchIDs(); !slices.EqualFunc(got, [][]string{{"a:RUNNING", "b:ACCEPTED"}}, slices.Equal) {
		t.Fatalf("batches %v", got)
	}
}

func TestReporterKeepsReportsQueuedDuringACall(t *testing.T) {
	r := newTestReporter(clockwork.NewFakeClock(), 0)
	m := newFakeManager()
	m.block = make(chan struct{})
	r.Report("a", st(stStarting))
	runReporter(t, r, m.send)
	<-m.calls
	r.Report("a", st(stRunning)) // while STARTING is in flight
	close(m.block)
	eventually(t, "both reports sent", func() bool { return m.state("a") == stRunning && len(r.Pending()) == 0 })
	if got := m.batchIDs(); !slices.EqualFunc(got, [][]string{{"a:STARTING"}, {"a:RUNNING"}}, slices.Equal) {
		t.Fatalf("batches %v", got)
	}
}

func TestReporterDropsOnlyRefusedReports(t *testing.T) {
	r := newTestReporter(clockwork.NewFakeClock(), 0)
	m := newFakeManager()
	m.fail = func(b []*Update) error {
		for _, u := range b {
			if u.GetTaskId() == "moved" {
				return status.Error(codes.PermissionDenied, "dispatcher: task moved is not assigned to node n1")
			}
		}
		return nil
	}
	r.Report("a", st(stRunning))
	r.Report("moved", st(stRunning))
	r.Report("z", st(stComplete))
	runReporter(t, r, m.send)
	eventually(t, "queue drained", func() bool { return len(r.Pending()) == 0 })
	if m.state("a") != stRunning || m.state("z") != stComplete || m.state("moved") != 0 {
		t.Fatalf("stored %v", m.stored)
	}
}

func TestReporterForget(t *testing.T) {
	r := newTestReporter(clockwork.NewFakeClock(), 0)
	r.Report("a", st(stRunning))
	r.Report("b", st(stRunning))
	r.Forget("a")
	m := newFakeManager()
	runReporter(t, r, m.send)
	eventually(t, "queue drained", func() bool { return len(r.Pending()) == 0 })
	if got := m.batchIDs(); !slices.EqualFunc(got, [][]string{{"b:RUNNING"}}, slices.Equal) {
		t.Fatalf("batches %v", got)
	}
}

func TestReporterRunsOnce(t *testing.T) {
	r := newTestReporter(clockwork.NewFakeClock(), 0)
	runReporter(t, r, newFakeManager().send)
	eventually(t, "first Run started", func() bool { return r.running.Load() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := r.Run(ctx, newFakeManager().send); !errors.Is(err, errReporterRunning) {
		t.Fatalf("second Run = %v", err)
	}
}

// OnReport sees every report as it is queued, before any call sends it,
// including one that coalescing will drop.
func TestReporterOnReport(t *testing.T) {
	var seen []string
	r := NewReporter(ReporterConfig{Clock: clockwork.NewFakeClock(), OnReport: func(id string, s *api.TaskStatus) {
		seen = append(seen, id+":"+s.GetState().String())
	}})
	r.Report("a", st(stRunning))
	r.Report("a", st(api.TaskState_TASK_STATE_STARTING)) // behind: not queued
	r.Report("b", st(api.TaskState_TASK_STATE_FAILED))
	want := []string{"a:TASK_STATE_RUNNING", "a:TASK_STATE_STARTING", "b:TASK_STATE_FAILED"}
	if !slices.Equal(seen, want) {
		t.Fatalf("OnReport saw %v, want %v", seen, want)
	}
}
