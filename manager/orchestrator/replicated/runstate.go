package replicated

import (
	"github.com/openswarm/swarmd/api"
	"github.com/openswarm/swarmd/manager/orchestrator"
	"github.com/openswarm/swarmd/manager/state/store"
	"google.golang.org/protobuf/proto"
)

// runState is what one Run has noted and not yet reconciled (All also
// stands for a change of the cluster), and the services being
// rebalanced.
type runState struct {
	orchestrator.ServiceWork
	// rebalanceAll: every service reconciled becomes a rebalancing
	// candidate (a node joined or became available).
	rebalanceAll bool
	// rebalance maps the services being rebalanced to the imbalance
	// when their last wave started (0: none yet).
	rebalance map[string]int
	// nodeKeeps reports whether the node with that ID, as the store has
	// it now, keeps its tasks (orchestrator.NodeKeepsTasks); nil: assume
	// it may not.
	nodeKeeps func(id string) bool
	// created holds the IDs of tasks a successful pass created, until
	// their creation events come: the pass that wrote them reconciled
	// their service with them, so their creation asks for nothing more.
	// (Reconciling a service again after its own new tasks was a second
	// scan of all its tasks, per service, in a burst of creations.)
	created map[string]struct{}
}

// newRunState starts with everything to reconcile. nodeKeeps may be nil.
func newRunState(nodeKeeps func(id string) bool) *runState {
	return &runState{ServiceWork: orchestrator.NewServiceWork(), rebalanceAll: true, rebalance: make(map[string]int), nodeKeeps: nodeKeeps}
}

// note takes one event in.
func (rs *runState) note(ev store.Event) {
	if ev.Action == store.EventRestore {
		rs.Restore()
		rs.rebalanceAll = true
		clear(rs.created)
		return
	}
	if t, ok := ev.Object.(*api.Task); ok && ev.Action == store.EventCreate {
		if _, own := rs.created[t.GetId()]; own {
			delete(rs.created, t.GetId())
			return
		}
	}
	switch o := ev.Object.(type) {
	case *api.Service:
		if orchestrator.IsReplicated(o) {
			rs.Services[o.GetId()] = true
		}
	case *api.Task:
		old, _ := ev.Old.(*api.Task)
		_, rebalancing := rs.rebalance[o.GetServiceId()]
		if isOurs(o) && taskMatters(ev.Action, old, o, rebalancing) && !rs.placedOnKeeper(ev.Action, old, o) {
			rs.Services[o.GetServiceId()] = true
		}
	case *api.Node:
		old, _ := ev.Old.(*api.Node)
		changed, gained := nodeMatters(ev.Action, old, o)
		rs.All = rs.All || changed
		rs.rebalanceAll = rs.rebalanceAll || gained
	case *api.Cluster:
		old, _ := ev.Old.(*api.Cluster)
		rs.All = true
		on := func(c *api.Cluster) bool { return c.GetSpec().GetOrchestration().GetRebalance() }
		rs.rebalanceAll = rs.rebalanceAll || on(o) && !on(old)
	}
}

// ownCreates records the IDs of tasks a successful pass created (see
// created).
func (rs *runState) ownCreates(ids []string) {
	if len(ids) == 0 {
		return
	}
	if rs.created == nil {
		rs.created = make(map[string]struct{}, len(ids))
	}
	for _, id := range ids {
		rs.created[id] = struct{}{}
	}
}

// placedOnKeeper reports whether a task event is only the assignment of a
// task to a node (the scheduler's write: no node before, nothing else a
// reconciliation looks at changed) that keeps its tasks. Reconciling
// then would change nothing: the task stays where it is. The node is read
// as the store has it now, which is at least as recent as the event; a
// later change of the node comes as an event of its own, after this one.
func (rs *runState) placedOnKeeper(action store.EventAction, old, t *api.Task) bool {
	if action != store.EventUpdate || rs.nodeKeeps == nil || old.GetNodeId() != "" || t.GetNodeId() == "" {
		return false
	}
	isRunning := func(t *api.Task) bool { return t.GetStatus().GetState() == api.TaskState_TASK_STATE_RUNNING }
	if old.GetDesiredState() != t.GetDesiredState() || orchestrator.HasStopped(old) != orchestrator.HasStopped(t) || isRunning(old) != isRunning(t) {
		return false
	}
	return rs.nodeKeeps(t.GetNodeId())
}

// taskMatters reports whether a task event may change a reconciliation:
// a task appeared or went, or its desired state, node or having stopped
// changed; for a service being rebalanced (whose next wave waits for
// every task to run), also its running. A task's progress towards running
// changes nothing else a reconciliation decides (which tasks a scale-down
// removes first comes with the spec change), and reconciling a service at
// every progress of its tasks was most of the manager's work while 1,000
// nodes started 100,000 tasks.
func taskMatters(action store.EventAction, old, t *api.Task, rebalancing bool) bool {
	if action != store.EventUpdate {
		return action == store.EventCreate || orchestrator.IsRunnable(t)
	}
	isRunning := func(t *api.Task) bool { return t.GetStatus().GetState() == api.TaskState_TASK_STATE_RUNNING }
	return old.GetDesiredState() != t.GetDesiredState() || old.GetNodeId() != t.GetNodeId() ||
		orchestrator.HasStopped(old) != orchestrator.HasStopped(t) || rebalancing && isRunning(old) != isRunning(t)
}

// nodeMatters reports whether a node event may change reconciliations
// (changed), and whether the node may take more tasks than before
// (gained), which starts rebalancing.
func nodeMatters(action store.EventAction, old, n *api.Node) (changed, gained bool) {
	switch action {
	case store.EventCreate:
		return true, orchestrator.NodeAcceptsTasks(n)
	case store.EventRemove:
		return true, false
	}
	labels := !proto.Equal(old.GetSpec().GetAnnotations(), n.GetSpec().GetAnnotations()) || old.GetRole() != n.GetRole() ||
		!proto.Equal(old.GetDescription().GetEngine(), n.GetDescription().GetEngine())
	accepts := orchestrator.NodeAcceptsTasks(n) && !orchestrator.NodeAcceptsTasks(old)
	changed = labels || old.GetStatus().GetState() != n.GetStatus().GetState() ||
		old.GetSpec().GetAvailability() != n.GetSpec().GetAvailability()
	return changed, accepts || labels && orchestrator.NodeAcceptsTasks(n)
}

// passJob is the work of one pass.
type passJob struct {
	orchestrator.ServiceWork
	rebalanceAll bool
}

// take hands the noted work to a pass.
func (rs *runState) take() *passJob {
	j := &passJob{ServiceWork: rs.Take(), rebalanceAll: rs.rebalanceAll}
	rs.rebalanceAll = false
	return j
}

// startRebalancing makes the job's services rebalancing candidates if
// it says so, or forgets every candidate if rebalancing is off.
func (rs *runState) startRebalancing(j *passJob, enabled bool) {
	if !enabled {
		clear(rs.rebalance)
		return
	}
	if !j.rebalanceAll {
		return
	}
	for id := range j.Services {
		if _, ok := rs.rebalance[id]; !ok {
			rs.rebalance[id] = 0
		}
	}
}

// failed notes the job's work again.
func (rs *runState) failed(j *passJob) {
	rs.Requeue(j.ServiceWork)
	rs.rebalanceAll = rs.rebalanceAll || j.rebalanceAll
}
