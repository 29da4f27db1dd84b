package restart

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/openswarm/swarmd/api"
	"github.com/openswarm/swarmd/manager/orchestrator"
	"github.com/openswarm/swarmd/manager/state/store"
)

// Waits before a failed pass is tried again.
const (
	minRetryDelay = 50 * time.Millisecond
	maxRetryDelay = 5 * time.Second
)

var errWatchClosed = errors.New("restart: store watch closed")

// Run starts the waiting replacements (desired READY) once their delay is
// over and their predecessor stopped, until ctx ends (then it returns
// nil) or the store closes its watch. It starts from what the store
// holds: the replacements an earlier leader left waiting are found and
// started on time.
func (r *Supervisor) Run(ctx context.Context) error {
	events, cancel, err := r.store.ViewAndWatch(nil, watchFilter)
	if err != nil {
		return fmt.Errorf("restart: watch the store: %w", err)
	}
	defer cancel()
	l := &runLoop{r: r, dirty: true}
	defer l.stopTimer()
	for {
		if l.dirty && !l.mid && !l.paused {
			l.pass(ctx)
		}
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-events:
			if !ok {
				return errWatchClosed
			}
			l.note(ev)
		case <-l.timerC():
			l.timer, l.paused, l.dirty = nil, false, true
		}
	}
}

// watchFilter passes task and node changes, commits and restores.
func watchFilter(e store.Event) bool {
	switch e.Action {
	case store.EventCommit, store.EventRestore:
		return true
	}
	k := e.Kind()
	return k == store.KindTask || k == store.KindNode
}

// runLoop is the state of one Run.
type runLoop struct {
	r *Supervisor
	// dirty: something changed that may let a replacement start.
	dirty bool
	// mid: events of a request were seen, not yet its commit.
	mid bool
	// paused: a pass failed; the next waits for the timer.
	paused bool
	// timer fires at the next due start, or the retry after a failure.
	timer    clockwork.Timer
	failures int
}

// note takes one event in.
func (l *runLoop) note(ev store.Event) {
	switch ev.Action {
	case store.EventCommit:
		l.mid = false
		return
	case store.EventRestore:
		l.dirty = true
		return
	}
	l.mid = true
	switch o := ev.Object.(type) {
	case *api.Task:
		old, _ := ev.Old.(*api.Task)
		if ev.Action == store.EventRemove || mayStart(old, o) {
			l.dirty = true
		}
	case *api.Node:
		old, _ := ev.Old.(*api.Node)
		if ev.Action == store.EventRemove || old.GetStatus().GetState() != o.GetStatus().GetState() {
			l.dirty = true
		}
	}
}

// mayStart reports whether a task change (old is nil for a creation) may
// let a replacement start: the task waits, or stopped.
func mayStart(old, t *api.Task) bool {
	ready := api.TaskState_TASK_STATE_READY
	return t.GetDesiredState() == ready || old.GetDesiredState() == ready ||
		orchestrator.HasStopped(t) != orchestrator.HasStopped(old)
}

func (l *runLoop) timerC() <-chan time.Time {
	if l.timer == nil {
		return nil
	}
	return l.timer.Chan()
}

func (l *runLoop) stopTimer() {
	if l.timer != nil {
		l.timer.Stop()
		l.timer = nil
	}
}

// setTimer makes the timer fire after d.
func (l *runLoop) setTimer(d time.Duration) {
	l.stopTimer()
	l.timer = l.r.clock.NewTimer(d)
}

// pass starts what is due and sets the timer for the next due start.
func (l *runLoop) pass(ctx context.Context) {
	l.dirty = false
	var cands []candidate
	var err error
	l.r.store.View(func(tx store.ReadTx) { cands, err = waiting(tx) })
	now := l.r.clock.Now()
	start, next := due(now, cands)
	if err == nil {
		err = l.r.start(ctx, start)
	}
	if err != nil {
		if ctx.Err() != nil {
			return
		}
		l.failures++
		wait := min(minRetryDelay<<min(l.failures-1, 16), maxRetryDelay)
		l.r.log.WarnContext(ctx, "restart: starting replacements failed; retrying", "error", err, "retry.in", wait)
		l.paused, l.dirty = true, true
		l.setTimer(wait)
		return
	}
	l.failures = 0
	l.stopTimer()
	if !next.IsZero() {
		l.setTimer(next.Sub(now))
	}
}

// candidate is a replacement waiting to start.
type candidate struct {
	task     *api.Task
	runState api.TaskState // what starting sets its desired state to
	blocked  bool          // a predecessor still runs on a live node
}

// waiting reads the replacements waiting to start.
func waiting(tx store.ReadTx) ([]candidate, error) {
	tasks, err := store.FindTasks(tx, store.ByDesiredState(api.TaskState_TASK_STATE_READY))
	if err != nil {
		return nil, fmt.Errorf("restart: find waiting tasks: %w", err)
	}
	var out []candidate
	for _, t := range tasks {
		s := store.GetService(tx, t.GetServiceId())
		if s == nil {
			continue // the orchestrators remove it
		}
		preds, err := predecessors(tx, t)
		if err != nil {
			return nil, err
		}
		c := candidate{task: t, runState: orchestrator.RunState(s)}
		for _, p := range preds {
			if p.GetId() != t.GetId() && !orchestrator.IsRunnable(p) && waitsFor(p, store.GetNode(tx, p.GetNodeId())) {
				c.blocked = true
				break
			}
		}
		out = append(out, c)
	}
	return out, nil
}

// predecessors reads the other tasks of t's slot (or, for a global task,
// of its service on its node).
func predecessors(tx store.ReadTx, t *api.Task) ([]*api.Task, error) {
	if t.GetSlot() > 0 {
		tasks, err := store.FindTasks(tx, store.BySlot(t.GetServiceId(), t.GetSlot()))
		if err != nil {
			return nil, fmt.Errorf("restart: find tasks of slot %d of service %s: %w", t.GetSlot(), t.GetServiceId(), err)
		}
		return tasks, nil
	}
	if t.GetNodeId() == "" {
		return nil, nil
	}
	onNode, err := store.FindTasks(tx, store.ByNodeID(t.GetNodeId()))
	if err != nil {
		return nil, fmt.Errorf("restart: find tasks of node %s: %w", t.GetNodeId(), err)
	}
	var out []*api.Task
	for _, o := range onNode {
		if o.GetServiceId() == t.GetServiceId() {
			out = append(out, o)
		}
	}
	return out, nil
}

// due splits the candidates at now: those to start, and the earliest
// time another one is due (zero if none is waiting on time alone).
// Blocked candidates wait for their predecessor's stop, which an event
// reports.
func due(now time.Time, cands []candidate) (start []candidate, next time.Time) {
	for _, c := range cands {
		if c.blocked {
			continue
		}
		at, ok := StartAt(c.task)
		if !ok || !at.After(now) {
			start = append(start, c)
			continue
		}
		if next.IsZero() || at.Before(next) {
			next = at
		}
	}
	return start, next
}

// start raises the candidates' desired state, each if it still waits.
func (r *Supervisor) start(ctx context.Context, cands []candidate) error {
	if len(cands) == 0 {
		return nil
	}
	err := r.store.Batch(ctx, func(b *store.Batch) error {
		for _, c := range cands {
			err := b.Update(func(tx store.Tx) error {
				t := store.GetTask(tx, c.task.GetId())
				if t == nil || t.GetDesiredState() != api.TaskState_TASK_STATE_READY {
					return nil
				}
				t.DesiredState = c.runState
				return tx.Update(t)
			})
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("restart: start %d replacements: %w", len(cands), err)
	}
	for _, c := range cands {
		r.log.DebugContext(ctx, "restart: replacement started", "service.id", c.task.GetServiceId(), "task.id", c.task.GetId())
	}
	return nil
}
