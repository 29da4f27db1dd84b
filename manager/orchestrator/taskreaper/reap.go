package taskreaper

import (
	"cmp"
	"slices"

	"github.com/openswarm/swarmd/api"
	"github.com/openswarm/swarmd/manager/orchestrator"
	"github.com/openswarm/swarmd/manager/orchestrator/restart"
)

// groupKey names the tasks that share a history: a slot of a replicated
// service or job, or a node of a global one.
type groupKey struct {
	service string
	slot    uint64 // 0 for global services and jobs
	node    string // set when slot is 0
}

func keyOf(t *api.Task) groupKey {
	if t.GetSlot() > 0 {
		return groupKey{service: t.GetServiceId(), slot: t.GetSlot()}
	}
	return groupKey{service: t.GetServiceId(), node: t.GetNodeId()}
}

// world is what the reaper knows besides a group's tasks.
type world struct {
	// service returns the service with that ID, nil if it is gone.
	service func(id string) *api.Service
	// nodeGone reports whether no node has that ID.
	nodeGone func(id string) bool
	// limit is the cluster's task history retention limit (negative:
	// keep everything).
	limit int64
}

// reap returns the tasks of one group (all of its tasks) to delete:
//
//   - tasks with desired state REMOVE once they stopped (observed past
//     RUNNING: SHUTDOWN, or COMPLETE, FAILED... which no agent will
//     report again), never reached a node (observed before ASSIGNED), or
//     whose node is gone;
//   - when the service is gone, every task that is dead (neither meant to
//     run nor running) or whose node is gone;
//   - beyond the history limit, the oldest dead tasks. A task that left
//     its slot empty on purpose (restart.GaveUp) is kept whatever the
//     limit, since it is what keeps the orchestrators from refilling the
//     slot; it does not count towards the limit.
func reap(w world, tasks []*api.Task) []*api.Task {
	if len(tasks) == 0 {
		return nil
	}
	s := w.service(tasks[0].GetServiceId())
	var out, history []*api.Task
	for _, t := range tasks {
		lost := t.GetNodeId() != "" && w.nodeGone(t.GetNodeId())
		switch {
		case t.GetDesiredState() >= api.TaskState_TASK_STATE_REMOVE &&
			(orchestrator.HasStopped(t) || t.GetStatus().GetState() < api.TaskState_TASK_STATE_ASSIGNED || lost):
			out = append(out, t)
		case s == nil && (orchestrator.IsDead(t) || !orchestrator.IsRunnable(t) && lost):
			out = append(out, t)
		case s != nil && orchestrator.IsDead(t) && !restart.GaveUp(s, t):
			history = append(history, t)
		}
	}
	if w.limit < 0 || int64(len(history)) <= w.limit {
		return out
	}
	slices.SortFunc(history, older)
	return append(out, history[:int64(len(history))-w.limit]...)
}

// older orders tasks by creation, oldest first.
func older(a, b *api.Task) int {
	return cmp.Or(
		a.GetMeta().GetCreatedAt().AsTime().Compare(b.GetMeta().GetCreatedAt().AsTime()),
		cmp.Compare(a.GetMeta().GetVersion().GetIndex(), b.GetMeta().GetVersion().GetIndex()),
		cmp.Compare(a.GetId(), b.GetId()),
	)
}
