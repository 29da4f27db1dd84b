package update

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/openswarm/swarmd/api"
	"github.com/openswarm/swarmd/manager/orchestrator"
	"github.com/openswarm/swarmd/manager/state/store"
	"google.golang.org/protobuf/proto"
)

// retryDelay is how long an update waits before writing again after a
// failed write.
const retryDelay = time.Second

// errStale says the service was deleted or its spec changed: the update
// has no business writing any more.
var errStale = errors.New("service changed during its update")

// updater runs one update of one service: it mirrors the service's tasks
// from the store's events, asks its rollout what to write, writes it and
// waits for the next event or the rollout's wake-up time.
type updater struct {
	store   *store.MemoryStore
	clock   clockwork.Clock
	log     *slog.Logger
	service string // ID
	version uint64 // the spec version being rolled out
	keys    []slotKey
	handed  []slotKey

	svc     *api.Service
	mirror  *mirror
	view    *storeView
	rollout *rollout
}

// run performs the update until it ends or ctx is cancelled. It returns
// the slots it may have left half replaced, for the update replacing it.
func (u *updater) run(ctx context.Context) []slotKey {
	events, cancel, err := u.store.ViewAndWatch(u.load, u.watching)
	if err != nil {
		if !errors.Is(err, errStale) {
			u.log.ErrorContext(ctx, "update: cannot watch the service's tasks", "service.id", u.service, "error", err)
		}
		return u.handed
	}
	defer cancel()
	u.view = newStoreView(u.mirror, u.store)
	u.rollout = newRollout(u.svc, u.keys, u.handed, u.view)
	u.log.DebugContext(ctx, "update: started", "service.id", u.service, "spec.version", u.version,
		"slots", u.rollout.total, "rollback", u.rollout.cfg.rollingBack)

	timer := newWakeTimer(u.clock)
	defer timer.stop()
	for {
		again, wake, end := u.step(ctx)
		if end {
			return u.rollout.leftover()
		}
		if !again && !u.wait(ctx, events, timer, wake) {
			return u.rollout.leftover()
		}
	}
}

// step plans once and writes the plan. It returns whether to plan again
// at once, else when to wake up without an event (zero: never), and
// whether the update is over: done, cancelled, or stale.
func (u *updater) step(ctx context.Context) (again bool, wake time.Time, end bool) {
	p := u.rollout.plan(u.view, u.clock.Now())
	if p.empty() {
		return false, p.wake, false
	}
	err := u.write(ctx, p)
	if err == nil {
		u.rollout.commit(p)
	}
	u.refresh(p.slots)
	switch {
	case err == nil:
		u.logPlan(ctx, p)
		return !u.rollout.done, time.Time{}, u.rollout.done
	case errors.Is(err, errStale) || ctx.Err() != nil:
		return false, time.Time{}, true
	}
	u.log.WarnContext(ctx, "update: write failed, retrying", "service.id", u.service, "error", err)
	return false, u.clock.Now().Add(retryDelay), false
}

// wait blocks until the store has news for the update (handled), the
// wake-up time, or the end of ctx. It returns false if the update must
// end.
func (u *updater) wait(ctx context.Context, events <-chan store.Event, timer *wakeTimer, wake time.Time) bool {
	timer.set(wake)
	select {
	case <-ctx.Done():
		return false
	case <-timer.c():
		timer.stop()
		return true
	case ev, ok := <-events:
		return ok && u.handle(ev) && u.drain(events)
	}
}

// load reads the service and its tasks, when the watch starts or after a
// restore. It fails with errStale if the service is gone or has another
// spec version, or if its update is paused.
func (u *updater) load(tx store.ReadTx) error {
	svc := store.GetService(tx, u.service)
	if svc == nil || svc.GetSpecVersion().GetIndex() != u.version || isPaused(svc.GetUpdateStatus()) {
		return errStale
	}
	tasks, err := store.FindTasks(tx, store.ByServiceID(u.service))
	if err != nil {
		return fmt.Errorf("tasks of service %s: %w", u.service, err)
	}
	u.svc = svc
	if u.mirror == nil {
		u.mirror = newMirror(isGlobal(svc), tasks)
	} else {
		u.mirror.reset(tasks)
	}
	return nil
}

// watching selects the events an update needs: its service, its tasks,
// nodes going down or away, and restores.
func (u *updater) watching(e store.Event) bool {
	switch o := e.Object.(type) {
	case *api.Task:
		return o.GetServiceId() == u.service
	case *api.Service:
		return o.GetId() == u.service
	case *api.Node:
		old, _ := e.Old.(*api.Node)
		return e.Action != store.EventUpdate || old.GetStatus().GetState() != o.GetStatus().GetState()
	}
	return e.Action == store.EventRestore
}

// drain handles the events already queued, so that one plan covers them.
func (u *updater) drain(events <-chan store.Event) bool {
	for {
		select {
		case ev, ok := <-events:
			if !ok || !u.handle(ev) {
				return false
			}
		default:
			return true
		}
	}
}

// handle applies one event to the mirror and the rollout. It returns
// false if the update must end: its service is gone or changed spec.
func (u *updater) handle(ev store.Event) bool {
	if ev.Action == store.EventRestore {
		var err error
		u.store.View(func(tx store.ReadTx) { err = u.load(tx) })
		if err != nil {
			return false
		}
		u.view.forgetNodes()
		now := u.clock.Now()
		for _, t := range u.mirror.tasks {
			u.rollout.observe(t, now)
		}
		return true
	}
	switch o := ev.Object.(type) {
	case *api.Task:
		if ev.Action == store.EventRemove {
			u.mirror.remove(o.GetId())
			return true
		}
		u.mirror.put(o)
		u.rollout.observe(o, u.clock.Now())
	case *api.Service:
		return ev.Action != store.EventRemove && o.GetSpecVersion().GetIndex() == u.version
	case *api.Node:
		u.view.forgetNode(o.GetId())
	}
	return true
}

// write performs p in one batch: the service's status first, then each
// slot in a transaction of its own (a new task and the shutdown of the
// old ones are atomic). Every transaction first checks that the service
// still has the spec being rolled out (errStale).
func (u *updater) write(ctx context.Context, p plan) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return u.store.Batch(ctx, func(b *store.Batch) error {
		if len(p.status) > 0 {
			if err := b.Update(func(tx store.Tx) error { return u.writeStatus(tx, p) }); err != nil {
				return err
			}
		}
		for _, sp := range p.slots {
			if !sp.hasWrites() {
				continue
			}
			if err := b.Update(func(tx store.Tx) error { return u.writeSlot(tx, sp) }); err != nil {
				return err
			}
		}
		return nil
	})
}

// current returns the service if it still has the spec being rolled out.
func (u *updater) current(tx store.ReadTx) (*api.Service, error) {
	svc := store.GetService(tx, u.service)
	if svc == nil || svc.GetSpecVersion().GetIndex() != u.version {
		return nil, errStale
	}
	return svc, nil
}

func (u *updater) writeStatus(tx store.Tx, p plan) error {
	svc, err := u.current(tx)
	if err != nil {
		return err
	}
	changed := false
	for _, op := range p.status {
		changed = op.apply(svc, p.haltTask, p.now) || changed
	}
	if !changed {
		return nil
	}
	if err := tx.Update(svc); err != nil {
		return fmt.Errorf("service %s: status: %w", u.service, err)
	}
	return nil
}

func (u *updater) writeSlot(tx store.Tx, sp slotPlan) error {
	if _, err := u.current(tx); err != nil {
		return err
	}
	if sp.create != nil {
		if err := tx.Create(proto.CloneOf(sp.create)); err != nil {
			return fmt.Errorf("service %s: %v: create task: %w", u.service, sp.key, err)
		}
	}
	for _, id := range sp.shutdown {
		t := store.GetTask(tx, id)
		if t == nil || t.GetDesiredState() >= api.TaskState_TASK_STATE_SHUTDOWN {
			continue
		}
		t.DesiredState = api.TaskState_TASK_STATE_SHUTDOWN
		if err := tx.Update(t); err != nil {
			return fmt.Errorf("service %s: shut down task %s: %w", u.service, id, err)
		}
	}
	if sp.start && sp.create == nil {
		t := store.GetTask(tx, sp.target)
		runState := u.rollout.runState
		if t != nil && t.GetDesiredState() < runState && !orchestrator.HasStopped(t) {
			t.DesiredState = runState
			if err := tx.Update(t); err != nil {
				return fmt.Errorf("service %s: start task %s: %w", u.service, t.GetId(), err)
			}
		}
	}
	return nil
}

// refresh reads the tasks of slots back from the store after a write,
// into the mirror and the rollout, so that the next plan sees what was
// written (and what happened since) whatever the events still queued say.
// The rollout observes them as it does events: it never knows less about
// a task than the mirror.
func (u *updater) refresh(slots []slotPlan) {
	if len(slots) == 0 {
		return
	}
	now := u.clock.Now()
	u.store.View(func(tx store.ReadTx) {
		for _, sp := range slots {
			var tasks []*api.Task
			if sp.key.node != "" {
				tasks, _ = store.FindTasks(tx, store.ByNodeID(sp.key.node))
			} else {
				tasks, _ = store.FindTasks(tx, store.BySlot(u.service, sp.key.slot))
			}
			for _, t := range tasks {
				if t.GetServiceId() == u.service {
					u.mirror.put(t)
					u.rollout.observe(t, now)
				}
			}
		}
	})
}

func (u *updater) logPlan(ctx context.Context, p plan) {
	for _, sp := range p.slots {
		if sp.create != nil {
			u.log.DebugContext(ctx, "update: task created", "service.id", u.service, "task.id", sp.target,
				"slot", sp.key.String(), "desired", sp.create.GetDesiredState().String())
		}
	}
	for _, op := range p.status {
		switch op {
		case statusPause:
			u.log.InfoContext(ctx, "update: paused", "service.id", u.service, "task.id", p.haltTask)
		case statusRollback:
			u.log.InfoContext(ctx, "update: rolling back", "service.id", u.service, "task.id", p.haltTask)
		case statusComplete:
			u.log.InfoContext(ctx, "update: completed", "service.id", u.service, "spec.version", u.version)
		}
	}
}

// wakeTimer is the one timer of an updater, set to an absolute time.
type wakeTimer struct {
	clock clockwork.Clock
	t     clockwork.Timer
	at    time.Time
}

func newWakeTimer(c clockwork.Clock) *wakeTimer { return &wakeTimer{clock: c} }

// set arms the timer for at, or disarms it for the zero time. A timer
// already set for at is left alone.
func (w *wakeTimer) set(at time.Time) {
	if at.Equal(w.at) && (w.t != nil || at.IsZero()) {
		return
	}
	w.stop()
	w.at = at
	if !at.IsZero() {
		w.t = w.clock.NewTimer(w.clock.Until(at))
	}
}

// c returns the channel the timer fires on (nil, blocking, if unset).
func (w *wakeTimer) c() <-chan time.Time {
	if w.t == nil {
		return nil
	}
	return w.t.Chan()
}

func (w *wakeTimer) stop() {
	if w.t != nil {
		w.t.Stop()
		w.t = nil
	}
	w.at = time.Time{}
}
