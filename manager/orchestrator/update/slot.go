package update

import (
	"cmp"
	"fmt"
	"slices"
	"time"

	"github.com/openswarm/swarmd/api"
	"github.com/openswarm/swarmd/manager/orchestrator"
)

// slotKey names a slot: its number for replicated services and jobs, its
// node for global ones. A task's key never changes.
type slotKey struct {
	slot uint64
	node string
}

func (k slotKey) String() string {
	if k.node != "" {
		return "node " + k.node
	}
	return fmt.Sprintf("slot %d", k.slot)
}

func compareKeys(a, b slotKey) int {
	if c := cmp.Compare(a.slot, b.slot); c != 0 {
		return c
	}
	return cmp.Compare(a.node, b.node)
}

// isGlobal reports whether the slots of s are nodes.
func isGlobal(s *api.Service) bool {
	return orchestrator.IsGlobal(s) || orchestrator.IsGlobalJob(s)
}

// keyOf returns the slot of t in a service whose slots are nodes (global)
// or numbers.
func keyOf(global bool, t *api.Task) slotKey {
	if global {
		return slotKey{node: t.GetNodeId()}
	}
	return slotKey{slot: t.GetSlot()}
}

// slotKeys returns the distinct, sorted keys of slots.
func slotKeys(global bool, slots []orchestrator.Slot) []slotKey {
	var keys []slotKey
	for _, sl := range slots {
		if len(sl) > 0 {
			keys = append(keys, keyOf(global, sl[0]))
		}
	}
	slices.SortFunc(keys, compareKeys)
	return slices.Compact(keys)
}

// needsUpdate reports whether a slot whose tasks are tasks (any state) has
// work left for an update of s: it holds more than one runnable task, or a
// runnable task that does not match s. A slot whose one runnable task
// matches s is done, unless it was handed over from a replaced update
// (handedOver) and that task still waits to be started (desired state
// below the run state): a new task left behind waiting for its old one to
// stop. A slot with no runnable task is gone (scaled down).
func needsUpdate(s *api.Service, tasks []*api.Task, handedOver bool) bool {
	var runnable []*api.Task
	for _, t := range tasks {
		if orchestrator.IsRunnable(t) {
			runnable = append(runnable, t)
		}
	}
	switch len(runnable) {
	case 0:
		return false
	case 1:
		t := runnable[0]
		return orchestrator.IsTaskDirty(s, t) ||
			(handedOver && t.GetDesiredState() < orchestrator.RunState(s))
	}
	return true
}

// nextBatch takes the next batch from pending: up to n slots (all if n is
// 0) that needs says still need updating, in order. Slots that no longer
// need it are dropped. It returns the batch and what remains.
func nextBatch(pending []slotKey, n int, needs func(slotKey) bool) (batch, rest []slotKey) {
	i := 0
	for ; i < len(pending) && (n <= 0 || len(batch) < n); i++ {
		if needs(pending[i]) {
			batch = append(batch, pending[i])
		}
	}
	return batch, pending[i:]
}

// slotPlan is what to write for one slot of an update, and where the slot
// stands.
type slotPlan struct {
	key slotKey
	// target is the ID of the task replacing the slot: created by this
	// plan (create), chosen earlier, or an existing task of the spec.
	target string
	// create is the new task to create, nil if the target exists.
	create *api.Task
	// start raises the target's desired state to the run state.
	start bool
	// shutdown lists the tasks whose desired state goes to SHUTDOWN.
	shutdown []string
	// finished says the slot is done: its target runs (or ran and
	// stopped, or is gone); the update may move on.
	finished bool
	// running says the target was already running (or done, for a job)
	// when the plan was made.
	running bool
}

// hasWrites reports whether p writes anything.
func (p slotPlan) hasWrites() bool {
	return p.create != nil || p.start || len(p.shutdown) > 0
}

// slotInput is what planSlot decides from.
type slotInput struct {
	service *api.Service
	order   api.UpdateConfig_UpdateOrder
	key     slotKey
	// tasks are every task of the slot the store holds, in any state.
	tasks []*api.Task
	// target is the task the update chose for the slot earlier, "" if
	// none yet.
	target string
	// nodeUp reports whether the node with that ID exists and is not
	// DOWN.
	nodeUp func(string) bool
	now    time.Time
}

// planSlot decides the next step of one slot of an update.
//
// The slot's new task (the target) is, in order: the one chosen before;
// an existing runnable task matching the spec (one a previous leader or a
// replaced update created), preferring one already meant to run; or a new
// task. Every other runnable task of the slot is old and is shut down:
//
//   - STOP_FIRST: at once, and the target is created at desired READY and
//     raised to the run state only once no other task of the slot occupies
//     it (runs or may run on a live node: observed ASSIGNED to RUNNING and
//     the node not DOWN nor gone).
//   - START_FIRST: the target is meant to run at once; the old tasks that
//     occupy the slot are shut down once the target is RUNNING, the others
//     (never started, or on a dead node) at once.
//
// The slot is finished when the target reached RUNNING or went past it
// (failed: the failure is counted elsewhere), is no longer meant to run,
// or is gone.
func planSlot(in slotInput) slotPlan {
	runState := orchestrator.RunState(in.service)
	p := slotPlan{key: in.key, target: in.target}
	var target *api.Task
	if in.target != "" {
		if target = findTask(in.tasks, in.target); target == nil {
			p.finished = true
			return p
		}
	} else {
		target = pickTarget(in.service, in.tasks)
	}
	var olds []*api.Task
	for _, t := range in.tasks {
		if t != target && orchestrator.IsRunnable(t) {
			olds = append(olds, t)
		}
	}

	if target != nil {
		p.target = target.GetId()
		if !orchestrator.IsRunnable(target) || target.GetStatus().GetState() >= api.TaskState_TASK_STATE_RUNNING {
			p.shutdown = taskIDs(olds)
			p.finished = true
			p.running = target.GetStatus().GetState() >= api.TaskState_TASK_STATE_RUNNING && !isFailure(target, runState)
			return p
		}
	} else {
		target = newTask(in.service, in.key, in.now)
		p.create, p.target = target, target.GetId()
	}

	occupied := false
	for _, t := range in.tasks {
		if t != target && occupies(t, in.nodeUp) {
			occupied = true
			break
		}
	}
	switch in.order {
	case api.UpdateConfig_START_FIRST:
		for _, t := range olds {
			if !occupies(t, in.nodeUp) {
				p.shutdown = append(p.shutdown, t.GetId())
			}
		}
		if p.create != nil {
			p.create.DesiredState = runState
		} else {
			p.start = target.GetDesiredState() < runState
		}
	default:
		p.shutdown = taskIDs(olds)
		if p.create != nil {
			p.create.DesiredState = api.TaskState_TASK_STATE_READY
			if !occupied {
				p.create.DesiredState = runState
			}
		} else {
			p.start = !occupied && target.GetDesiredState() < runState
		}
	}
	return p
}

// pickTarget returns the runnable task of tasks matching s that an update
// should keep for the slot: one already meant to run if any, else the one
// waiting to start; the newest of equals. Nil if there is none.
func pickTarget(s *api.Service, tasks []*api.Task) *api.Task {
	runState := orchestrator.RunState(s)
	var best *api.Task
	for _, t := range tasks {
		if !orchestrator.IsRunnable(t) || orchestrator.IsTaskDirty(s, t) {
			continue
		}
		if best == nil || better(t, best, runState) {
			best = t
		}
	}
	return best
}

// better orders candidate targets: meant to run first, then the newest.
func better(a, b *api.Task, runState api.TaskState) bool {
	ar, br := a.GetDesiredState() >= runState, b.GetDesiredState() >= runState
	if ar != br {
		return ar
	}
	ac, bc := a.GetMeta().GetCreatedAt().AsTime(), b.GetMeta().GetCreatedAt().AsTime()
	if !ac.Equal(bc) {
		return ac.After(bc)
	}
	return a.GetId() > b.GetId()
}

// occupies reports whether t may be running in its slot: it reached a
// node (ASSIGNED) and has not stopped, and that node is alive.
func occupies(t *api.Task, nodeUp func(string) bool) bool {
	st := t.GetStatus().GetState()
	return st >= api.TaskState_TASK_STATE_ASSIGNED && st <= api.TaskState_TASK_STATE_RUNNING &&
		nodeUp(t.GetNodeId())
}

// newTask returns the new task of s for slot key.
func newTask(s *api.Service, key slotKey, now time.Time) *api.Task {
	if key.node != "" {
		return orchestrator.NewTask(s, 0, key.node, now)
	}
	return orchestrator.NewTask(s, key.slot, "", now)
}

func findTask(tasks []*api.Task, id string) *api.Task {
	for _, t := range tasks {
		if t.GetId() == id {
			return t
		}
	}
	return nil
}

func taskIDs(tasks []*api.Task) []string {
	if len(tasks) == 0 {
		return nil
	}
	ids := make([]string, len(tasks))
	for i, t := range tasks {
		ids[i] = t.GetId()
	}
	return ids
}
