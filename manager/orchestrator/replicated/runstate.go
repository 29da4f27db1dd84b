package replicated

import (
	"maps"
	"slices"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/openswarm/swarmd/api"
	"github.com/openswarm/swarmd/manager/orchestrator"
	"github.com/openswarm/swarmd/manager/state/store"
	"google.golang.org/protobuf/proto"
)

// runState is what one Run has noted and not yet reconciled, and the
// services being rebalanced.
type runState struct {
	dirty map[string]bool // services to reconcile
	// all: every replicated service (a node or the cluster changed).
	all bool
	// orphans: also the tasks of removed services (start, restore).
	orphans bool
	// rebalanceAll: every service reconciled becomes a rebalancing
	// candidate (a node joined or became available).
	rebalanceAll bool
	// rebalance maps the services being rebalanced to the imbalance
	// when their last wave started (0: none yet).
	rebalance map[string]int
	// mid: events of a request were seen, not yet its commit.
	mid bool
	// paused: a pass failed; the next one waits for the retry timer.
	paused   bool
	retry    clockwork.Timer
	failures int
}

// newRunState starts with everything to reconcile.
func newRunState() *runState {
	return &runState{
		dirty:        make(map[string]bool),
		all:          true,
		orphans:      true,
		rebalanceAll: true,
		rebalance:    make(map[string]int),
	}
}

// due reports whether a pass should run now.
func (rs *runState) due() bool {
	return !rs.mid && !rs.paused && (rs.all || rs.orphans || len(rs.dirty) > 0)
}

// note takes one event in.
func (rs *runState) note(ev store.Event) {
	switch ev.Action {
	case store.EventCommit:
		rs.mid = false
		return
	case store.EventRestore:
		rs.all, rs.orphans, rs.rebalanceAll = true, true, true
		return
	}
	rs.mid = true
	switch o := ev.Object.(type) {
	case *api.Service:
		if orchestrator.IsReplicated(o) {
			rs.dirty[o.GetId()] = true
		}
	case *api.Task:
		old, _ := ev.Old.(*api.Task)
		if isOurs(o) && taskMatters(ev.Action, old, o) {
			rs.dirty[o.GetServiceId()] = true
		}
	case *api.Node:
		old, _ := ev.Old.(*api.Node)
		changed, gained := nodeMatters(ev.Action, old, o)
		rs.all = rs.all || changed
		rs.rebalanceAll = rs.rebalanceAll || gained
	case *api.Cluster:
		old, _ := ev.Old.(*api.Cluster)
		rs.all = true
		on := func(c *api.Cluster) bool { return c.GetSpec().GetOrchestration().GetRebalance() }
		rs.rebalanceAll = rs.rebalanceAll || on(o) && !on(old)
	}
}

// taskMatters reports whether a task event may change a reconciliation:
// a task appeared or went, or its desired state, node, having stopped or
// running changed.
func taskMatters(action store.EventAction, old, t *api.Task) bool {
	if action != store.EventUpdate {
		return action == store.EventCreate || orchestrator.IsRunnable(t)
	}
	isRunning := func(t *api.Task) bool { return t.GetStatus().GetState() == api.TaskState_TASK_STATE_RUNNING }
	return old.GetDesiredState() != t.GetDesiredState() || old.GetNodeId() != t.GetNodeId() ||
		orchestrator.HasStopped(old) != orchestrator.HasStopped(t) || isRunning(old) != isRunning(t)
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
	services     map[string]bool
	all, orphans bool
	rebalanceAll bool
}

// take hands the noted work to a pass.
func (rs *runState) take() *passJob {
	j := &passJob{services: rs.dirty, all: rs.all, orphans: rs.orphans, rebalanceAll: rs.rebalanceAll}
	rs.dirty = make(map[string]bool)
	rs.all, rs.orphans, rs.rebalanceAll = false, false, false
	return j
}

// expand lists the services "all" and "orphans" stand for.
func (j *passJob) expand(tx store.ReadTx) error {
	if j.all {
		services, err := store.FindServices(tx, store.All)
		if err != nil {
			return err
		}
		for _, s := range services {
			if orchestrator.IsReplicated(s) {
				j.services[s.GetId()] = true
			}
		}
	}
	if j.orphans {
		tasks, err := store.FindTasks(tx, store.All)
		if err != nil {
			return err
		}
		for _, t := range tasks {
			if isOurs(t) && orchestrator.IsRunnable(t) && store.GetService(tx, t.GetServiceId()) == nil {
				j.services[t.GetServiceId()] = true
			}
		}
	}
	return nil
}

// ids returns the job's services in order.
func (j *passJob) ids() []string { return slices.Sorted(maps.Keys(j.services)) }

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
	for id := range j.services {
		if _, ok := rs.rebalance[id]; !ok {
			rs.rebalance[id] = 0
		}
	}
}

// failed notes the job's work again.
func (rs *runState) failed(j *passJob) {
	for id := range j.services {
		rs.dirty[id] = true
	}
	rs.all = rs.all || j.all
	rs.orphans = rs.orphans || j.orphans
	rs.rebalanceAll = rs.rebalanceAll || j.rebalanceAll
}

// pause holds passes back until a retry timer fires, waiting longer
// after each failure in a row; it returns the wait.
func (rs *runState) pause(clock clockwork.Clock) time.Duration {
	rs.failures++
	wait := min(minRetryDelay<<min(rs.failures-1, 16), maxRetryDelay)
	rs.stopRetry()
	rs.paused, rs.retry = true, clock.NewTimer(wait)
	return wait
}

func (rs *runState) succeeded() { rs.failures = 0 }

func (rs *runState) retryC() <-chan time.Time {
	if rs.retry == nil {
		return nil
	}
	return rs.retry.Chan()
}

func (rs *runState) stopRetry() {
	if rs.retry != nil {
		rs.retry.Stop()
		rs.retry = nil
	}
}
