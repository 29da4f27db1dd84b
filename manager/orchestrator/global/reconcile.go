package global

import (
	"fmt"
	"slices"

	"github.com/openswarm/swarmd/api"
	"github.com/openswarm/swarmd/manager/constraint"
	"github.com/openswarm/swarmd/manager/orchestrator"
	"github.com/openswarm/swarmd/manager/orchestrator/restart"
)

// plan is what one reconciliation of a service decided.
type plan struct {
	// create lists the nodes that get a new task.
	create []string
	// remove lists the tasks whose desired state becomes REMOVE: their
	// node is gone or no longer meets the constraints.
	remove []*api.Task
	// shutdown lists the tasks whose desired state becomes SHUTDOWN:
	// their node is DOWN or drained (no replacement elsewhere).
	shutdown []*api.Task
	// restart lists the tasks that stopped, for the Restarter.
	restart []*api.Task
	// dirty lists the nodes' slots holding tasks of an older spec, for
	// the Updater.
	dirty []orchestrator.Slot
}

// reconcile decides what gives service s (nil: removed) one task on each
// node that may run it, given all of its tasks and every node.
func reconcile(s *api.Service, tasks []*api.Task, nodes []*api.Node) (plan, error) {
	var p plan
	runnable := orchestrator.SlotsByNode(tasks)
	if s == nil {
		for _, id := range sortedKeys(runnable) {
			p.remove = append(p.remove, runnable[id]...)
		}
		return p, nil
	}
	cs, err := constraint.Parse(s.GetSpec().GetTask().GetPlacement().GetConstraints())
	if err != nil {
		return plan{}, fmt.Errorf("constraints of service %s: %w", s.GetId(), err)
	}
	isDirty := orchestrator.DirtyCheck(s)
	all := make(map[string][]*api.Task)
	for _, t := range tasks {
		all[t.GetNodeId()] = append(all[t.GetNodeId()], t)
	}
	known := make(map[string]bool, len(nodes))
	for _, n := range nodes {
		id := n.GetId()
		known[id] = true
		onNode := runnable[id]
		switch {
		case !constraint.Match(cs, n):
			p.remove = append(p.remove, onNode...)
		case !orchestrator.NodeKeepsTasks(n):
			p.shutdown = append(p.shutdown, onNode...)
		case len(onNode) == 0:
			if orchestrator.NodeAcceptsTasks(n) && !restart.SlotGaveUp(s, all[id]) {
				p.create = append(p.create, id)
			}
		default:
			var stays orchestrator.Slot
			dirty := false
			for _, t := range onNode {
				if orchestrator.HasStopped(t) {
					p.restart = append(p.restart, t)
					continue
				}
				stays = append(stays, t)
				dirty = dirty || isDirty(t)
			}
			if dirty {
				p.dirty = append(p.dirty, stays)
			}
		}
	}
	for _, id := range sortedKeys(runnable) {
		if !known[id] {
			p.remove = append(p.remove, runnable[id]...) // the node is gone
		}
	}
	slices.Sort(p.create)
	return p, nil
}

func sortedKeys(m map[string]orchestrator.Slot) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
