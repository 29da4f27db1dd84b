package orchestrator

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/openswarm/swarmd/api"
	"github.com/openswarm/swarmd/manager/state/store"
)

func TestRetryDelay(t *testing.T) {
	for _, tc := range []struct {
		failures int
		want     time.Duration
	}{
		{0, MinRetryDelay},
		{1, 50 * time.Millisecond},
		{2, 100 * time.Millisecond},
		{3, 200 * time.Millisecond},
		{7, 3200 * time.Millisecond},
		{8, MaxRetryDelay},
		{1000, MaxRetryDelay},
	} {
		if got := RetryDelay(tc.failures); got != tc.want {
			t.Errorf("RetryDelay(%d) = %v, want %v", tc.failures, got, tc.want)
		}
	}
}

func TestLoopStateDue(t *testing.T) {
	for _, tc := range []struct {
		name    string
		st      loopState
		pending bool
		want    bool
	}{
		{"idle", loopState{}, false, false},
		{"pending", loopState{}, true, true},
		{"woken", loopState{wake: true}, false, true},
		{"mid-request", loopState{mid: true}, true, false},
		{"woken mid-request", loopState{mid: true, wake: true}, false, false},
		{"paused", loopState{paused: true}, true, false},
		{"paused and woken", loopState{paused: true, wake: true}, true, false},
	} {
		if got := tc.st.due(tc.pending); got != tc.want {
			t.Errorf("%s: due(%v) = %v, want %v", tc.name, tc.pending, got, tc.want)
		}
	}
}

func TestLoopStateNote(t *testing.T) {
	for _, tc := range []struct {
		action  store.EventAction
		forward bool
		mid     bool
	}{
		{store.EventCreate, true, true},
		{store.EventUpdate, true, true},
		{store.EventRemove, true, true},
		{store.EventRestore, true, false},
		{store.EventCommit, false, false},
	} {
		var st loopState
		if got := st.note(store.Event{Action: tc.action}); got != tc.forward || st.mid != tc.mid {
			t.Errorf("note(%v) = %v, mid %v; want %v, mid %v", tc.action, got, st.mid, tc.forward, tc.mid)
		}
	}
}

// fakeReconciler records what the loop hands it. Note and Pass run on the
// loop's goroutine; the test reads what they saw from channels.
type fakeReconciler struct {
	noted  []string // node IDs noted since the last pass ("restore" for a restore)
	notes  chan string
	passes chan []string
	// results are what the passes return, in order; later passes
	// succeed with no wake-up.
	results []passResult
}

type passResult struct {
	wake time.Duration
	err  error
}

func newFakeReconciler(results ...passResult) *fakeReconciler {
	return &fakeReconciler{notes: make(chan string, 100), passes: make(chan []string, 100), results: results}
}

func (f *fakeReconciler) note(ev store.Event) {
	id := "restore"
	if ev.Action != store.EventRestore {
		id = ev.Object.(*api.Node).GetId()
	}
	f.noted = append(f.noted, id)
	f.notes <- id
}

func (f *fakeReconciler) pass(context.Context) (time.Duration, error) {
	work := f.noted
	f.noted = nil
	var r passResult
	if len(f.results) > 0 {
		r, f.results = f.results[0], f.results[1:]
	}
	if r.err != nil {
		f.noted = append(work, f.noted...) // noted again, for the retry
	}
	f.passes <- work
	return r.wake, r.err
}

// retryLog hands the retry.in of each logged record to a channel.
type retryLog chan time.Duration

func (h retryLog) Enabled(context.Context, slog.Level) bool { return true }
func (h retryLog) Handle(_ context.Context, r slog.Record) error {
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "retry.in" {
			h <- a.Value.Duration()
		}
		return true
	})
	return nil
}
func (h retryLog) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h retryLog) WithGroup(string) slog.Handler      { return h }

type loopEnv struct {
	t       *testing.T
	ctx     context.Context
	store   *store.MemoryStore
	clock   *clockwork.FakeClock
	rec     *fakeReconciler
	retries retryLog
	done    chan error
}

// startLoop runs a Loop watching nodes, with the reconciler pending from
// the start (as reconcilers are: everything to read).
func startLoop(t *testing.T, rec *fakeReconciler) *loopEnv {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	e := &loopEnv{t: t, ctx: ctx, store: store.NewMemoryStore(nil), clock: clockwork.NewFakeClock(), rec: rec,
		retries: make(retryLog, 100), done: make(chan error, 1)}
	rec.noted = []string{"start"}
	l := &Loop{Name: "test loop", Store: e.store, Filter: store.MatchKind(store.KindNode), Clock: e.clock,
		Log: slog.New(e.retries), Note: rec.note, Pending: func() bool { return len(rec.noted) > 0 }, Pass: rec.pass}
	go func() { e.done <- l.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-e.done; err != nil && !errors.Is(err, ErrWatchClosed) {
			t.Errorf("Run: %v", err)
		}
	})
	return e
}

// createNodes creates nodes with these IDs in one request.
func (e *loopEnv) createNodes(ids ...string) {
	e.t.Helper()
	err := e.store.Update(e.ctx, func(tx store.Tx) error {
		for _, id := range ids {
			if err := tx.Create(&api.Node{Id: id}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		e.t.Fatalf("create nodes: %v", err)
	}
}

func (e *loopEnv) wantPass(want ...string) {
	e.t.Helper()
	select {
	case got := <-e.rec.passes:
		if !slices.Equal(got, want) {
			e.t.Fatalf("pass saw %v, want %v", got, want)
		}
	case <-e.ctx.Done():
		e.t.Fatalf("no pass; want one seeing %v", want)
	}
}

// wantNote waits until the reconciler noted id: every event before it
// was handled, and so was any pass due before it.
func (e *loopEnv) wantNote(id string) {
	e.t.Helper()
	for {
		select {
		case got := <-e.rec.notes:
			if got == id {
				return
			}
		case <-e.ctx.Done():
			e.t.Fatalf("%s not noted", id)
		}
	}
}

func (e *loopEnv) wantNoPass() {
	e.t.Helper()
	select {
	case got := <-e.rec.passes:
		e.t.Fatalf("unexpected pass seeing %v", got)
	default:
	}
}

func (e *loopEnv) wantRetry(want time.Duration) {
	e.t.Helper()
	select {
	case got := <-e.retries:
		if got != want {
			e.t.Fatalf("retry in %v, want %v", got, want)
		}
	case <-e.ctx.Done():
		e.t.Fatalf("no retry logged; want one in %v", want)
	}
}

// advance moves the clock once the loop waits on its timer.
func (e *loopEnv) advance(d time.Duration) {
	e.t.Helper()
	if err := e.clock.BlockUntilContext(e.ctx, 1); err != nil {
		e.t.Fatalf("loop timer not set: %v", err)
	}
	e.clock.Advance(d)
}

func TestLoopPassesAtCommits(t *testing.T) {
	e := startLoop(t, newFakeReconciler())
	e.wantPass("start")
	e.createNodes("a", "b", "c")
	e.wantPass("a", "b", "c") // one request, one pass
	e.createNodes("d")
	e.wantPass("d")
	if err := e.store.Restore(&api.StoreSnapshot{}); err != nil {
		t.Fatal(err)
	}
	e.wantPass("restore")
}

func TestLoopIgnoresFilteredEvents(t *testing.T) {
	e := startLoop(t, newFakeReconciler())
	e.wantPass("start")
	err := e.store.Update(e.ctx, func(tx store.Tx) error { return tx.Create(&api.Service{Id: "s"}) })
	if err != nil {
		t.Fatal(err)
	}
	e.createNodes("a")
	e.wantPass("a") // nothing was noted, and no pass ran, for the service
}

func TestLoopRetriesWithGrowingDelay(t *testing.T) {
	boom := passResult{err: errors.New("boom")}
	e := startLoop(t, newFakeReconciler(boom, boom, boom))
	e.wantPass("start")
	e.wantRetry(50 * time.Millisecond)
	// Changes while paused wait for the retry, and join it.
	e.createNodes("a")
	e.createNodes("b")
	e.wantNote("b")
	e.wantNoPass()
	e.advance(50 * time.Millisecond)
	e.wantPass("start", "a", "b")
	e.wantRetry(100 * time.Millisecond)
	e.advance(100 * time.Millisecond)
	e.wantPass("start", "a", "b")
	e.wantRetry(200 * time.Millisecond)
	e.advance(200 * time.Millisecond)
	e.wantPass("start", "a", "b") // succeeds: the delay starts over
	e.createNodes("c")
	e.wantPass("c")
}

func TestLoopBackoffResetsAfterSuccess(t *testing.T) {
	boom := passResult{err: errors.New("boom")}
	e := startLoop(t, newFakeReconciler(boom, passResult{}, boom))
	e.wantPass("start")
	e.wantRetry(50 * time.Millisecond)
	e.advance(50 * time.Millisecond)
	e.wantPass("start")
	e.createNodes("a")
	e.wantPass("a")
	e.wantRetry(50 * time.Millisecond)
}

func TestLoopWakesUp(t *testing.T) {
	e := startLoop(t, newFakeReconciler(passResult{wake: time.Second}, passResult{wake: 2 * time.Second}))
	e.wantPass("start")
	e.advance(time.Second)
	e.wantPass() // nothing pending: the wake-up alone
	// A change before the wake-up passes at once; that pass asked for
	// nothing more, so the earlier wake-up is dropped.
	e.createNodes("a")
	e.wantPass("a")
	if err := e.clock.BlockUntilContext(e.ctx, 0); err != nil {
		t.Fatal(err)
	}
}

func TestLoopEnds(t *testing.T) {
	for _, tc := range []struct {
		name string
		end  func(cancel context.CancelFunc, s *store.MemoryStore)
		want error
	}{
		{"context cancelled", func(cancel context.CancelFunc, _ *store.MemoryStore) { cancel() }, nil},
		{"watch closed", func(_ context.CancelFunc, s *store.MemoryStore) { s.Close() }, ErrWatchClosed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			rec := newFakeReconciler()
			s := store.NewMemoryStore(nil)
			l := &Loop{Name: "test loop", Store: s, Filter: store.MatchKind(store.KindNode), Clock: clockwork.NewFakeClock(),
				Log: slog.Default(), Note: rec.note, Pending: func() bool { return len(rec.noted) > 0 }, Pass: rec.pass}
			done := make(chan error, 1)
			go func() { done <- l.Run(ctx) }()
			tc.end(cancel, s)
			select {
			case err := <-done:
				if !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
					t.Fatalf("Run = %v, want %v", err, tc.want)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("Run did not end")
			}
		})
	}
}
