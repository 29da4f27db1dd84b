package orchestrator

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/openswarm/swarmd/manager/state/store"
)

// Waits before a failed pass is tried again: MinRetryDelay after the
// first failure, doubling with each failure in a row, at most
// MaxRetryDelay.
const (
	MinRetryDelay = 50 * time.Millisecond
	MaxRetryDelay = 5 * time.Second
)

// ErrWatchClosed is what Loop.Run returns (wrapped, with the loop's
// name) when the store closes its watch.
var ErrWatchClosed = errors.New("store watch closed")

// Options are the clock, logger and placer of a leader component.
type Options struct {
	Clock clockwork.Clock
	Log   *slog.Logger
	// Placer places the tasks an orchestrator creates (default: none,
	// they are created PENDING).
	Placer Placer
}

// Option configures Options.
type Option func(*Options)

// WithClock sets the clock (default: the real clock).
func WithClock(c clockwork.Clock) Option { return func(o *Options) { o.Clock = c } }

// WithLogger sets the logger (default slog.Default()).
func WithLogger(l *slog.Logger) Option { return func(o *Options) { o.Log = l } }

// WithPlacer sets the Placer of the tasks an orchestrator creates.
func WithPlacer(p Placer) Option { return func(o *Options) { o.Placer = p } }

// NewOptions applies opts to the defaults.
func NewOptions(opts []Option) Options {
	o := Options{Clock: clockwork.NewRealClock(), Log: slog.Default(), Placer: noPlacer{}}
	for _, opt := range opts {
		opt(&o)
	}
	return o
}

// Loop is the store loop every reconciler of the leader runs: it watches
// the store, lets the reconciler note what each change concerns, and
// runs a reconciliation pass once noted work waits and the changes of
// the last request are all in (at a commit), so a pass never sees half
// of one request.
//
// The reconciler keeps its own record of the work noted (dirty objects,
// "everything"); the loop only decides when a pass runs:
//
//   - at start, if Pending reports work (reconcilers start with
//     everything to do: they read the store's state in their first pass);
//   - after an EventCommit, if Pending reports work;
//   - when the wake-up a pass asked for comes (even if nothing is
//     pending);
//   - never while a failed pass waits for its retry: after a failure,
//     passes wait MinRetryDelay, doubling with each failure in a row up
//     to MaxRetryDelay; changes noted meanwhile join the retried pass.
type Loop struct {
	// Name prefixes errors and logs, e.g. "task reaper".
	Name  string
	Store *store.MemoryStore
	// Filter selects the change events to watch. Commits and restores
	// are always watched.
	Filter func(store.Event) bool
	// Note takes in one event Filter passed, or an EventRestore (the
	// store's state was replaced: the reconciler must look at everything
	// again). It is never given an EventCommit.
	Note func(store.Event)
	// Pending reports whether noted work waits for a pass.
	Pending func() bool
	// Pass reconciles the work noted so far. On error the reconciler
	// must have noted that work again (the retried pass does it); the
	// loop then waits before the next pass. On success, a wake above
	// zero asks for another pass after that long, pending work or not.
	Pass func(ctx context.Context) (wake time.Duration, err error)
	// Clock times retries and wake-ups; Log gets a warning per failed
	// pass.
	Clock clockwork.Clock
	Log   *slog.Logger
}

// Run runs the loop until ctx ends (then it returns nil) or the store
// closes its watch (ErrWatchClosed).
func (l *Loop) Run(ctx context.Context) error {
	batches, cancel, err := l.Store.ViewAndWatchBatches(nil, l.watched)
	if err != nil {
		return fmt.Errorf("%s: watch the store: %w", l.Name, err)
	}
	defer cancel()
	var st loopState
	defer st.stopTimer()
	for {
		if st.due(l.Pending()) {
			l.pass(ctx, &st)
		}
		select {
		case <-ctx.Done():
			return nil
		case evs, ok := <-batches:
			if !ok {
				return fmt.Errorf("%s: %w", l.Name, ErrWatchClosed)
			}
			// The events of a batch are noted before any pass: a pass
			// runs at the batch's last commit, seeing all of them.
			for _, ev := range evs {
				if st.note(ev) {
					l.Note(ev)
				}
			}
		case <-st.timerC():
			st.fired()
		}
	}
}

func (l *Loop) watched(e store.Event) bool {
	return e.Action == store.EventCommit || e.Action == store.EventRestore || l.Filter(e)
}

// pass runs one pass and schedules what follows it.
func (l *Loop) pass(ctx context.Context, st *loopState) {
	st.wake = false
	wake, err := l.Pass(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return
		}
		wait := st.failed(l.Clock)
		l.Log.WarnContext(ctx, l.Name+": pass failed; retrying", "error", err, "retry.in", wait)
		return
	}
	st.succeeded(l.Clock, wake)
}

// loopState is when the next pass may run. Its timer is either the
// retry after a failed pass (paused) or a wake-up a pass asked for.
type loopState struct {
	// mid: events of a request were seen, not yet its commit.
	mid bool
	// paused: a pass failed; the next one waits for the timer.
	paused bool
	// wake: the wake-up came; a pass is due even with nothing pending.
	wake     bool
	failures int
	timer    clockwork.Timer
}

// due reports whether a pass should run now, given whether the
// reconciler has work pending.
func (st *loopState) due(pending bool) bool {
	return !st.mid && !st.paused && (pending || st.wake)
}

// note tracks request boundaries; it reports whether the reconciler
// should see the event.
func (st *loopState) note(ev store.Event) bool {
	switch ev.Action {
	case store.EventCommit:
		st.mid = false
		return false
	case store.EventRestore:
		return true
	}
	st.mid = true
	return true
}

// fired takes the timer's tick: the retry may run, or the wake-up came.
func (st *loopState) fired() {
	st.timer = nil
	if st.paused {
		st.paused = false
		return
	}
	st.wake = true
}

// failed holds passes back until a retry timer fires; it returns the
// wait.
func (st *loopState) failed(clock clockwork.Clock) time.Duration {
	st.failures++
	wait := RetryDelay(st.failures)
	st.setTimer(clock, wait)
	st.paused = true
	return wait
}

// succeeded resets the backoff and sets the wake-up the pass asked for.
func (st *loopState) succeeded(clock clockwork.Clock, wake time.Duration) {
	st.failures = 0
	st.stopTimer()
	if wake > 0 {
		st.setTimer(clock, wake)
	}
}

// RetryDelay is the wait after the given number of failed passes in a
// row (at least 1).
func RetryDelay(failures int) time.Duration {
	return min(MinRetryDelay<<min(max(failures, 1)-1, 16), MaxRetryDelay)
}

func (st *loopState) setTimer(clock clockwork.Clock, d time.Duration) {
	st.stopTimer()
	st.timer = clock.NewTimer(d)
}

func (st *loopState) timerC() <-chan time.Time {
	if st.timer == nil {
		return nil
	}
	return st.timer.Chan()
}

func (st *loopState) stopTimer() {
	if st.timer != nil {
		st.timer.Stop()
		st.timer = nil
	}
}
