package restart

import (
	"context"
	"fmt"
	"time"

	"github.com/openswarm/swarmd/api"
	"github.com/openswarm/swarmd/manager/orchestrator"
	"github.com/openswarm/swarmd/manager/state/store"
)

// Run starts the waiting replacements (desired READY) once their delay is
// over and their predecessor stopped, until ctx ends (then it returns
// nil) or the store closes its watch. It starts from what the store
// holds: the replacements an earlier leader left waiting are found and
// started on time.
func (r *Supervisor) Run(ctx context.Context) error {
	rl := &runLoop{r: r, dirty: true}
	l := orchestrator.Loop{Name: "restart", Store: r.store, Clock: r.clock, Log: r.log,
		Filter: store.MatchKind(store.KindTask, store.KindNode),
		Note:   rl.note, Pending: func() bool { return rl.dirty }, Pass: rl.pass}
	return l.Run(ctx)
}

// runLoop is what one Run has noted.
type runLoop struct {
	r *Supervisor
	// dirty: something changed that may let a replacement start.
	dirty bool
}

// note takes one event in.
func (l *runLoop) note(ev store.Event) {
	if ev.Action == store.EventRestore {
		l.dirty = true
		return
	}
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

// pass starts what is due and returns when the next due start is (0 if
// none waits on time alone). A failed pass leaves the loop dirty.
func (l *runLoop) pass(ctx context.Context) (time.Duration, error) {
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
		l.dirty = true
		return 0, err
	}
	if next.IsZero() {
		return 0, nil
	}
	return next.Sub(now), nil
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
