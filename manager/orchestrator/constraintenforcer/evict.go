package constraintenforcer

import (
	"cmp"
	"slices"

	"github.com/openswarm/swarmd/api"
	"github.com/openswarm/swarmd/manager/constraint"
	"github.com/openswarm/swarmd/manager/orchestrator"
)

// Reasons a task is moved off its node.
const (
	ReasonConstraints = "placement constraints no longer met"
	ReasonResources   = "node resources exceeded"
)

// eviction is a task to move off its node, and why.
type eviction struct {
	task   *api.Task
	reason string
}

// evictions decides which of the tasks on node n must leave it: runnable
// tasks that have not stopped whose constraints n no longer meets, and,
// when the reservations of the tasks on n exceed its resources, the
// newest ones until the rest fit (the older keep their place). Tasks of
// global services and jobs stay: their orchestrators follow node changes
// themselves (but their reservations count). A node that no longer keeps
// its tasks (DOWN, drained) is the orchestrators' business too.
func evictions(n *api.Node, tasks []*api.Task) []eviction {
	if !orchestrator.NodeKeepsTasks(n) {
		return nil
	}
	var out []eviction
	var fixed, movable []*api.Task
	for _, t := range tasks {
		if t.GetNodeId() != n.GetId() || !orchestrator.IsRunnable(t) || orchestrator.HasStopped(t) {
			continue
		}
		if isGlobal(t) {
			fixed = append(fixed, t)
			continue
		}
		if cs, err := constraint.Parse(t.GetSpec().GetPlacement().GetConstraints()); err == nil && !constraint.Match(cs, n) {
			out = append(out, eviction{task: t, reason: ReasonConstraints})
			continue
		}
		movable = append(movable, t)
	}
	capacity := n.GetDescription().GetResources()
	if capacity.GetNanoCpus() == 0 && capacity.GetMemoryBytes() == 0 {
		return out // resources unknown
	}
	slices.SortFunc(movable, older)
	var cpu, mem int64
	for _, t := range slices.Concat(fixed, movable) {
		r := t.GetSpec().GetResources().GetReservations()
		fits := (capacity.GetNanoCpus() == 0 || cpu+r.GetNanoCpus() <= capacity.GetNanoCpus()) &&
			(capacity.GetMemoryBytes() == 0 || mem+r.GetMemoryBytes() <= capacity.GetMemoryBytes())
		if fits || isGlobal(t) {
			cpu, mem = cpu+r.GetNanoCpus(), mem+r.GetMemoryBytes()
			continue
		}
		out = append(out, eviction{task: t, reason: ReasonResources})
	}
	return out
}

// isGlobal reports whether t belongs to a global service or job: it was
// made for its node and has no slot.
func isGlobal(t *api.Task) bool { return t.GetSlot() == 0 }

// older orders tasks by creation, oldest first.
func older(a, b *api.Task) int {
	return cmp.Or(
		a.GetMeta().GetCreatedAt().AsTime().Compare(b.GetMeta().GetCreatedAt().AsTime()),
		cmp.Compare(a.GetId(), b.GetId()),
	)
}
