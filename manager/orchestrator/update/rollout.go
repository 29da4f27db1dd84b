package update

import (
	"slices"
	"time"

	"github.com/openswarm/swarmd/api"
	"github.com/openswarm/swarmd/manager/orchestrator"
)

// view is what a rollout reads of the store.
type view interface {
	// slotTasks returns every task of the service in slot k, in any
	// state. The caller must not modify them.
	slotTasks(k slotKey) []*api.Task
	// nodeUp reports whether the node with that ID exists and is not
	// DOWN.
	nodeUp(id string) bool
}

// statusOp is a change of the service's UpdateStatus (or, for a rollback,
// of its spec).
type statusOp int

const (
	statusStart    statusOp = iota + 1 // UPDATING, unless a status is there
	statusComplete                     // COMPLETED or ROLLBACK_COMPLETED
	statusPause                        // PAUSED or ROLLBACK_PAUSED
	statusRollback                     // spec rolled back, ROLLBACK_STARTED
)

// apply performs op on s, read in the write transaction, at now; task is
// the task whose failure halted the update. It reports whether s changed.
func (op statusOp) apply(s *api.Service, task string, now time.Time) bool {
	switch op {
	case statusStart:
		return markStarted(s, now)
	case statusComplete:
		return markCompleted(s, now)
	case statusPause:
		return markPaused(s, task, now)
	case statusRollback:
		return markRolledBack(s, task, now)
	}
	return false
}

// plan is what a rollout asks to write next, and how it will stand once
// that is written.
type plan struct {
	now time.Time
	// status lists the changes of the service, in order, written in one
	// transaction before the slots.
	status []statusOp
	// haltTask is the failed task named by a pause or rollback.
	haltTask string
	// slots are the slots of the update that have something to write or
	// that change state.
	slots []slotPlan
	// batch says a new batch starts: the slots left pending after it are
	// rest (its own slots are in slots).
	batch bool
	rest  []slotKey
	// finish says the update is over once this plan is written.
	finish bool
	// wake is when the rollout wants to plan again without any event
	// (zero: only on events).
	wake time.Time
}

// empty reports whether p neither writes nor changes the rollout.
func (p plan) empty() bool {
	return len(p.status) == 0 && len(p.slots) == 0 && !p.batch && !p.finish
}

// rollout is the state of one update of a service: which slots wait,
// which are being replaced, which new tasks are watched, the failures so
// far. It reads the store only through a view and changes only through
// observe and commit: every decision is deterministic given the view and
// the time.
type rollout struct {
	service  *api.Service
	cfg      config
	runState api.TaskState
	// total is how many slots the update replaces: failures are counted
	// against it.
	total int
	// pending are the slots that wait for a batch, in order.
	pending []slotKey
	// handedOver are the slots taken over from a replaced update.
	handedOver map[slotKey]bool
	// inflight maps the slots of the current batch to their new task ID
	// ("" until one is chosen).
	inflight map[slotKey]string
	batches  int
	// batchEnd is when the last batch finished.
	batchEnd time.Time
	// tracked maps the new tasks to when they were seen RUNNING (zero
	// before).
	tracked  map[string]time.Time
	failed   map[string]bool
	failures int
	started  bool
	// halt is what the failures decided; haltTask the task that tipped
	// the ratio; haltWritten that the status says so.
	halt        haltKind
	haltTask    string
	haltWritten bool
	done        bool
}

// newRollout returns the update of s over the slots keys, after the slots
// handed over from the update it replaces. Slots with nothing to do are
// left out.
func newRollout(s *api.Service, keys, handedOver []slotKey, v view) *rollout {
	r := &rollout{
		service:    s,
		cfg:        configFor(s),
		runState:   orchestrator.RunState(s),
		handedOver: make(map[slotKey]bool, len(handedOver)),
		inflight:   make(map[slotKey]string),
		tracked:    make(map[string]time.Time),
		failed:     make(map[string]bool),
	}
	for _, k := range handedOver {
		r.handedOver[k] = true
	}
	seen := make(map[slotKey]bool, len(keys)+len(handedOver))
	for _, k := range slices.Concat(handedOver, keys) {
		if !seen[k] && r.needs(v, k) {
			r.pending = append(r.pending, k)
		}
		seen[k] = true
	}
	r.total = len(r.pending)
	return r
}

func (r *rollout) needs(v view, k slotKey) bool {
	return needsUpdate(r.service, v.slotTasks(k), r.handedOver[k])
}

// leftover returns the slots an update stopped before finishing could
// have left half replaced: those in flight, sorted.
func (r *rollout) leftover() []slotKey {
	keys := make([]slotKey, 0, len(r.inflight))
	for k := range r.inflight {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, compareKeys)
	return keys
}

// plan returns what to write next at now.
//
// The status goes to UPDATING first. The slots of the current batch are
// driven by planSlot until each is finished; then, after the delay, the
// next batch starts with the next parallelism slots that still need it.
// After the last batch the rollout waits until every new task has been
// running for the monitor period and completes. Once failures halt it, no
// batch starts any more: the slots in flight are finished, then the
// rollout ends.
func (r *rollout) plan(v view, now time.Time) plan {
	p := plan{now: now}
	if r.done {
		return p
	}
	switch {
	case r.halt == haltPause && !r.haltWritten:
		p.status, p.haltTask = []statusOp{statusPause}, r.haltTask
	case r.halt == haltRollback && !r.haltWritten:
		p.status, p.haltTask = []statusOp{statusRollback}, r.haltTask
	case !r.started && (len(r.pending) > 0 || len(r.inflight) > 0):
		p.status = []statusOp{statusStart}
	}

	for _, k := range r.leftover() {
		sp := r.planSlot(v, k, r.inflight[k], now)
		if sp.hasWrites() || sp.finished || sp.target != r.inflight[k] {
			p.slots = append(p.slots, sp)
		}
	}
	if len(r.inflight) > 0 {
		return p
	}
	if r.halt != haltNone {
		p.finish = true
		return p
	}

	if len(r.pending) > 0 {
		if next := r.batchEnd.Add(r.cfg.delay); r.batches > 0 && now.Before(next) {
			p.wake = next
			return p
		}
		batch, rest := nextBatch(r.pending, r.cfg.parallelism, func(k slotKey) bool { return r.needs(v, k) })
		p.batch, p.rest = true, rest
		for _, k := range batch {
			p.slots = append(p.slots, r.planSlot(v, k, "", now))
		}
		if len(batch) > 0 {
			return p
		}
	}

	if end := r.monitorEnd(); now.Before(end) {
		p.wake = end
		return p
	}
	p.status = append(p.status, statusComplete)
	p.finish = true
	return p
}

func (r *rollout) planSlot(v view, k slotKey, target string, now time.Time) slotPlan {
	return planSlot(slotInput{
		service: r.service,
		order:   r.cfg.order,
		key:     k,
		tasks:   v.slotTasks(k),
		target:  target,
		nodeUp:  v.nodeUp,
		now:     now,
	})
}

// monitorEnd is when the last new task seen running leaves its monitor
// period (zero if none ran).
func (r *rollout) monitorEnd() time.Time {
	var end time.Time
	for id, since := range r.tracked {
		if !since.IsZero() && !r.failed[id] {
			if e := since.Add(r.cfg.monitor); e.After(end) {
				end = e
			}
		}
	}
	return end
}

// commit records that p was written.
func (r *rollout) commit(p plan) {
	for _, op := range p.status {
		switch op {
		case statusStart:
			r.started = true
		case statusPause, statusRollback:
			r.haltWritten = true
		}
	}
	if p.batch {
		r.pending = p.rest
		r.batches++
	}
	for _, sp := range p.slots {
		if sp.target != "" {
			r.track(sp.target, sp.running, p.now)
		}
		if sp.finished {
			delete(r.inflight, sp.key)
		} else {
			r.inflight[sp.key] = sp.target
		}
	}
	if len(p.slots) > 0 && len(r.inflight) == 0 {
		r.batchEnd = p.now
	}
	if p.finish {
		r.done = true
	}
}

// track watches the new task id for failures; running says it was seen
// running at now.
func (r *rollout) track(id string, running bool, now time.Time) {
	since, ok := r.tracked[id]
	switch {
	case running && since.IsZero():
		r.tracked[id] = now
	case !ok:
		r.tracked[id] = time.Time{}
	}
}

// observe takes in t, a task of the service as a store event shows it at
// now. A new task of the update is watched from when it is seen RUNNING;
// if it fails before, or within the monitor period after, the failure
// counts, and once the failures exceed the max failure ratio the failure
// action decides whether the update halts.
func (r *rollout) observe(t *api.Task, now time.Time) {
	id := t.GetId()
	since, ok := r.tracked[id]
	if !ok || r.failed[id] {
		return
	}
	if isFailure(t, r.runState) {
		if !inMonitor(since, now, r.cfg.monitor) {
			return
		}
		r.failed[id] = true
		r.failures++
		if r.halt == haltNone && !r.done && ratioExceeded(r.failures, r.total, r.cfg.maxFailures) {
			r.halt, r.haltTask = onFailure(r.cfg), id
		}
		return
	}
	if since.IsZero() && t.GetStatus().GetState() >= api.TaskState_TASK_STATE_RUNNING {
		r.tracked[id] = now
	}
}
