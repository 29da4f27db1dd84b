package worker

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/openswarm/swarmd/agent/exec"
	"github.com/openswarm/swarmd/api"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// taskManager drives one task. Its goroutine runs while there is something
// to do: it loops exec.Do until the task reaches a terminal state, and
// ends there (parks); it is started again to remove the task. A change of
// the desired state interrupts the step under way (e.g. a Wait), so that
// the next step follows the new desired state.
type taskManager struct {
	w    *Worker
	id   string
	log  *slog.Logger
	wake chan struct{}

	// Used by the goroutine only (one at a time), and by Run after every
	// goroutine ended.
	ctlr    exec.Controller
	ctlrGen uint64 // the assignment the controller was last told of
	adopt   bool   // ask the runtime what became of the task first

	mu       sync.Mutex
	assigned *api.Task       // as the manager last assigned it
	status   *api.TaskStatus // last recorded status; nil: none yet
	gen      uint64          // bumped on every assignment
	held     bool            // restored, not yet confirmed by the manager
	removed  bool
	running  bool               // the goroutine runs
	cancel   context.CancelFunc // ends the step under way
	stepFor  api.TaskState      // the desired state the step under way follows
}

func newTaskManager(w *Worker, t *api.Task, recorded *api.TaskStatus, restored bool) *taskManager {
	return &taskManager{
		w: w, id: t.GetId(), log: w.log.With("task.id", t.GetId()), wake: make(chan struct{}, 1),
		assigned: t, status: recorded, gen: 1, held: restored, adopt: restored,
	}
}

// kick makes the goroutine look at the task again, starting it if it is
// parked. The caller holds w.mu and has checked that the worker runs.
func (tm *taskManager) kick() {
	tm.mu.Lock()
	defer tm.mu.Unlock()
	if !tm.running {
		tm.running = true
		tm.w.wg.Add(1)
		go tm.run(tm.w.ctx)
		return
	}
	select {
	case tm.wake <- struct{}{}:
	default:
	}
}

// assign takes a new version of the task from the manager; false if the
// task is being removed.
func (tm *taskManager) assign(t *api.Task) bool {
	tm.mu.Lock()
	defer tm.mu.Unlock()
	if tm.removed {
		return false
	}
	tm.assigned, tm.held = t, false
	tm.gen++
	if tm.cancel != nil && t.GetDesiredState() != tm.stepFor {
		tm.cancel()
	}
	return true
}

// confirm marks a restored task as still assigned; true if it was held.
func (tm *taskManager) confirm() bool {
	tm.mu.Lock()
	defer tm.mu.Unlock()
	was := tm.held
	tm.held = false
	return was && !tm.removed
}

func (tm *taskManager) remove() {
	tm.mu.Lock()
	defer tm.mu.Unlock()
	tm.removed = true
	if tm.cancel != nil {
		tm.cancel()
	}
}

// assignment returns the task as last assigned, and whether it is being
// removed.
func (tm *taskManager) assignment() (*api.Task, bool) {
	tm.mu.Lock()
	defer tm.mu.Unlock()
	return tm.assigned, tm.removed
}

// current returns the task as the worker sees it: as assigned, in the
// latest of its recorded status and the status the manager has.
func (tm *taskManager) current() *api.Task {
	tm.mu.Lock()
	defer tm.mu.Unlock()
	return tm.currentLocked()
}

func (tm *taskManager) currentLocked() *api.Task {
	t := proto.CloneOf(tm.assigned)
	t.Status = latestStatus(tm.assigned.GetStatus(), tm.status)
	return t
}

// latestStatus is the status a task is in: the one the worker recorded,
// unless the manager's is further on (e.g. the DB was lost).
func latestStatus(manager, recorded *api.TaskStatus) *api.TaskStatus {
	if recorded == nil || manager.GetState() > recorded.GetState() {
		return manager
	}
	return recorded
}

func terminal(t *api.Task) bool { return t.GetStatus().GetState() >= api.TaskState_TASK_STATE_COMPLETE }

// step is one turn of the loop: the task as it stands, and the context of
// the step about to run.
type step struct {
	task    *api.Task
	gen     uint64
	held    bool
	removed bool
	ctx     context.Context
	cancel  context.CancelFunc
}

// next returns the next step, or false if the goroutine ends: the task
// ended and is not removed (it parks; kick starts it again).
func (tm *taskManager) next(ctx context.Context) (step, bool) {
	tm.mu.Lock()
	defer tm.mu.Unlock()
	s := step{task: tm.currentLocked(), gen: tm.gen, held: tm.held, removed: tm.removed}
	if !s.removed && terminal(s.task) {
		tm.running = false
		return s, false
	}
	s.ctx, s.cancel = context.WithCancel(ctx)
	tm.cancel, tm.stepFor = s.cancel, s.task.GetDesiredState()
	return s, true
}

func (tm *taskManager) endStep(s step) {
	tm.mu.Lock()
	tm.cancel = nil
	tm.mu.Unlock()
	s.cancel()
}

func (tm *taskManager) run(ctx context.Context) {
	defer tm.w.wg.Done()
	var backoff time.Duration
	for {
		s, ok := tm.next(ctx)
		if !ok {
			return
		}
		if s.removed {
			s.cancel()
			tm.finish(ctx, s.task)
			return
		}
		err := tm.step(s)
		interrupted := s.ctx.Err() != nil
		tm.endStep(s)
		switch {
		case ctx.Err() != nil:
			return
		case err == nil:
			backoff = 0
		case errors.Is(err, exec.ErrTaskNoop):
			tm.sleep(ctx, nil)
		case interrupted:
			// Interrupted by a change of the task: look again.
		default:
			backoff = nextBackoff(backoff, tm.w.cfg.MinRetry, tm.w.cfg.MaxRetry)
			tm.log.Warn("worker: task step failed; retrying", "state", s.task.GetStatus().GetState(),
				"desired", s.task.GetDesiredState(), "error", err, "retry_in", backoff)
			tm.sleep(ctx, tm.w.cfg.Clock.After(backoff))
		}
	}
}

// sleep waits for a change of the task, for ctx to end, or for timer.
func (tm *taskManager) sleep(ctx context.Context, timer <-chan time.Time) {
	select {
	case <-tm.wake:
	case <-ctx.Done():
	case <-timer:
	}
}

// step advances the task once: nil if it moved (and the new status was
// recorded), exec.ErrTaskNoop if there is nothing to do until it changes,
// or an error after which the step is retried.
func (tm *taskManager) step(s step) error {
	ctx, t := s.ctx, s.task
	if tm.ctlr == nil {
		ctlr, err := tm.w.cfg.Executor.Controller(t)
		if err != nil {
			// The task cannot run on this node.
			st := proto.CloneOf(t.GetStatus())
			if st == nil {
				st = &api.TaskStatus{}
			}
			st.State, st.Err, st.Timestamp = api.TaskState_TASK_STATE_REJECTED, err.Error(), nil
			return tm.record(st)
		}
		tm.ctlr, tm.ctlrGen = ctlr, s.gen
	} else if tm.ctlrGen != s.gen {
		if err := tm.ctlr.Update(ctx, t); err != nil {
			return err
		}
		tm.ctlrGen = s.gen
	}
	if tm.adopt {
		tm.adopt = false
		if moved, err := tm.readopt(ctx, t); moved || err != nil {
			return err
		}
	}
	// A restored task the manager did not confirm yet is only watched
	// (and stopped, if it was to be).
	if s.held && t.GetStatus().GetState() != api.TaskState_TASK_STATE_RUNNING &&
		t.GetDesiredState() <= api.TaskState_TASK_STATE_COMPLETE {
		return exec.ErrTaskNoop
	}
	st, err := exec.Do(ctx, t, tm.ctlr)
	if err != nil {
		return err
	}
	return tm.record(st)
}

// readopt brings a restored task's status up to what the runtime says
// became of it; moved reports whether the status changed.
func (tm *taskManager) readopt(ctx context.Context, t *api.Task) (moved bool, err error) {
	in, ok := tm.ctlr.(exec.Inspector)
	state := t.GetStatus().GetState()
	if !ok || state < api.TaskState_TASK_STATE_ACCEPTED || state >= api.TaskState_TASK_STATE_COMPLETE {
		return false, nil
	}
	rs, err := in.Inspect(ctx)
	if err != nil {
		tm.log.Warn("worker: cannot inspect a restored task", "error", err)
		return false, nil
	}
	st, changed := exec.Reconcile(t.GetStatus(), rs)
	if !changed {
		return false, nil
	}
	tm.log.Info("worker: restored task moved while the worker was down", "from", state, "to", st.GetState(), "runtime", rs.Phase)
	return true, tm.record(st)
}

// record stamps st if it has no timestamp, commits it to the task DB,
// then reports it.
func (tm *taskManager) record(st *api.TaskStatus) error {
	if st.GetTimestamp() == nil {
		st.Timestamp = timestamppb.New(tm.w.cfg.Clock.Now())
	}
	if err := tm.w.db.putStatus(tm.id, st); err != nil {
		return err
	}
	tm.mu.Lock()
	tm.status = st
	tm.mu.Unlock()
	tm.w.cfg.Reporter.Report(tm.id, st)
	tm.log.Debug("worker: task state", "state", st.GetState(), "message", st.GetMessage(), "err", st.GetErr())
	return nil
}

// finish removes the task: stops it if it may still run, removes its
// resources (retrying until it succeeds or the worker stops), and forgets
// it. Stopped mid-way, the task stays in the DB, and is removed after the
// restart when the manager no longer assigns it.
func (tm *taskManager) finish(ctx context.Context, t *api.Task) {
	if tm.ctlr == nil {
		ctlr, err := tm.w.cfg.Executor.Controller(t)
		if err != nil {
			tm.log.Warn("worker: no controller for a removed task; nothing to clean up", "error", err)
		}
		tm.ctlr = ctlr
	}
	if c := tm.ctlr; c != nil {
		if !terminal(t) {
			if err := c.Shutdown(ctx); err != nil && ctx.Err() == nil {
				tm.log.Warn("worker: shutdown of a removed task failed; killing it", "error", err)
				if err := c.Terminate(ctx); err != nil && ctx.Err() == nil {
					tm.log.Warn("worker: kill of a removed task failed", "error", err)
				}
			}
		}
		var backoff time.Duration
		for {
			err := c.Remove(ctx)
			if err == nil {
				break
			}
			if ctx.Err() != nil {
				return
			}
			backoff = nextBackoff(backoff, tm.w.cfg.MinRetry, tm.w.cfg.MaxRetry)
			tm.log.Warn("worker: removal of a task failed; retrying", "error", err, "retry_in", backoff)
			select {
			case <-tm.w.cfg.Clock.After(backoff):
			case <-ctx.Done():
				return
			}
		}
		tm.closeController()
	}
	if err := tm.w.db.delete(tm.id); err != nil {
		tm.log.Warn("worker: could not delete a removed task from the task db", "error", err)
	}
	tm.w.cfg.Reporter.Forget(tm.id)
	tm.w.forget(tm)
	tm.log.Debug("worker: task removed")
}

func (tm *taskManager) closeController() {
	if tm.ctlr == nil {
		return
	}
	if err := tm.ctlr.Close(); err != nil {
		tm.log.Warn("worker: close task controller", "error", err)
	}
	tm.ctlr = nil
}
