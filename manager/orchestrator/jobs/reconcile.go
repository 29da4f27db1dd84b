package jobs

import (
	"fmt"
	"slices"

	"github.com/openswarm/swarmd/api"
	"github.com/openswarm/swarmd/manager/constraint"
	"github.com/openswarm/swarmd/manager/orchestrator"
	"github.com/openswarm/swarmd/manager/orchestrator/restart"
)

// plan is what one reconciliation of a job decided.
type plan struct {
	// createSlots lists the slots (replicated jobs) and createNodes the
	// nodes (global jobs) that get a new task of the current iteration.
	createSlots []uint64
	createNodes []string
	// shutdown lists tasks whose desired state becomes SHUTDOWN: tasks of
	// an older iteration that may still run, and global job tasks whose
	// node is DOWN or drained.
	shutdown []*api.Task
	// remove lists tasks whose desired state becomes REMOVE: tasks of an
	// older iteration that no longer run, of a removed job, or of a node
	// that is gone or no longer meets the constraints.
	remove []*api.Task
	// restart lists the tasks for the Restarter: they failed, or (for
	// replicated jobs) their node no longer keeps them.
	restart []*api.Task
}

// Concurrency returns how many tasks of the replicated job j run at once
// and how many must complete: MaxConcurrent defaults to 1 and
// TotalCompletions to MaxConcurrent.
func Concurrency(j *api.ReplicatedJob) (maxConcurrent, total uint64) {
	maxConcurrent = max(j.GetMaxConcurrent(), 1)
	total = j.GetTotalCompletions()
	if total == 0 {
		total = maxConcurrent
	}
	return maxConcurrent, total
}

// iteration is the job iteration of s (0 without a job status).
func iteration(s *api.Service) uint64 { return s.GetJobStatus().GetJobIteration().GetIndex() }

func isCurrent(s *api.Service, t *api.Task) bool {
	return t.GetJobIteration().GetIndex() == iteration(s)
}

func completed(t *api.Task) bool {
	return t.GetStatus().GetState() == api.TaskState_TASK_STATE_COMPLETE
}

// retire sorts the tasks of an older iteration: those that may still run
// are shut down, the others removed (once, the task reaper deletes them).
func retire(p *plan, t *api.Task) {
	switch {
	case t.GetDesiredState() >= api.TaskState_TASK_STATE_REMOVE:
	case !orchestrator.HasStopped(t) && t.GetStatus().GetState() >= api.TaskState_TASK_STATE_ASSIGNED:
		if t.GetDesiredState() < api.TaskState_TASK_STATE_SHUTDOWN {
			p.shutdown = append(p.shutdown, t)
		}
	default:
		p.remove = append(p.remove, t)
	}
}

// reconcileRemoved removes the tasks of a removed job that are meant to
// run.
func reconcileRemoved(tasks []*api.Task) plan {
	var p plan
	for _, t := range tasks {
		if orchestrator.IsRunnable(t) {
			p.remove = append(p.remove, t)
		}
	}
	return p
}

// reconcileReplicated decides what runs the replicated job s to its
// total completions, at most MaxConcurrent tasks at a time, given all of
// its tasks and the nodes they are on (missing: gone). A slot is done
// once a task of the current iteration completed in it; a failed task is
// restarted in its slot as its policy says (and a slot the policy gave up
// on stays empty).
func reconcileReplicated(s *api.Service, tasks []*api.Task, nodes map[string]*api.Node) plan {
	var p plan
	bySlot := make(map[uint64][]*api.Task)
	for _, t := range tasks {
		if !isCurrent(s, t) {
			retire(&p, t)
			continue
		}
		bySlot[t.GetSlot()] = append(bySlot[t.GetSlot()], t)
	}
	maxConcurrent, total := Concurrency(s.GetSpec().GetReplicatedJob())
	active := uint64(0)
	taken := make(map[uint64]bool)
	for _, n := range sortedSlots(bySlot) {
		slot := bySlot[n]
		if slices.ContainsFunc(slot, completed) || restart.SlotGaveUp(s, slot) {
			taken[n] = true
			continue
		}
		running := false
		for _, t := range slot {
			if !orchestrator.IsRunnable(t) {
				continue
			}
			running = true
			if orchestrator.HasStopped(t) || t.GetNodeId() != "" && !orchestrator.NodeKeepsTasks(nodes[t.GetNodeId()]) {
				p.restart = append(p.restart, t)
			}
		}
		if running {
			taken[n] = true
			active++
		}
	}
	for n := uint64(1); n <= total && active < maxConcurrent; n++ {
		if !taken[n] {
			p.createSlots = append(p.createSlots, n)
			active++
		}
	}
	return p
}

// reconcileGlobal decides what runs the global job s once on every node
// that may run it, given all of its tasks and every node. A node where a
// task of the current iteration completed is done; a node that joins
// later gets its task too.
func reconcileGlobal(s *api.Service, tasks []*api.Task, nodes []*api.Node) (plan, error) {
	cs, err := constraint.Parse(s.GetSpec().GetTask().GetPlacement().GetConstraints())
	if err != nil {
		return plan{}, fmt.Errorf("constraints of job %s: %w", s.GetId(), err)
	}
	var p plan
	byNode := make(map[string][]*api.Task)
	for _, t := range tasks {
		if !isCurrent(s, t) {
			retire(&p, t)
			continue
		}
		byNode[t.GetNodeId()] = append(byNode[t.GetNodeId()], t)
	}
	known := make(map[string]bool, len(nodes))
	for _, n := range nodes {
		id := n.GetId()
		known[id] = true
		onNode := byNode[id]
		if slices.ContainsFunc(onNode, completed) {
			continue
		}
		runnable := runnableOf(onNode)
		switch {
		case !constraint.Match(cs, n):
			p.remove = append(p.remove, runnable...)
		case !orchestrator.NodeKeepsTasks(n):
			p.shutdown = append(p.shutdown, runnable...)
		case len(runnable) > 0:
			for _, t := range runnable {
				if orchestrator.HasStopped(t) {
					p.restart = append(p.restart, t)
				}
			}
		case orchestrator.NodeAcceptsTasks(n) && !restart.SlotGaveUp(s, onNode):
			p.createNodes = append(p.createNodes, id)
		}
	}
	for id, onNode := range byNode {
		if !known[id] && !slices.ContainsFunc(onNode, completed) {
			p.remove = append(p.remove, runnableOf(onNode)...) // the node is gone
		}
	}
	slices.Sort(p.createNodes)
	return p, nil
}

func runnableOf(tasks []*api.Task) []*api.Task {
	var out []*api.Task
	for _, t := range tasks {
		if orchestrator.IsRunnable(t) {
			out = append(out, t)
		}
	}
	return out
}

func sortedSlots(m map[uint64][]*api.Task) []uint64 {
	keys := make([]uint64, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
