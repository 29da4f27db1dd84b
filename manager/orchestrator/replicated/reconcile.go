package replicated

import (
	"cmp"
	"container/heap"
	"slices"

	"github.com/openswarm/swarmd/api"
	"github.com/openswarm/swarmd/manager/orchestrator"
	"github.com/openswarm/swarmd/manager/orchestrator/restart"
	"google.golang.org/protobuf/proto"
)

// plan is what one reconciliation of a service decided.
type plan struct {
	// create lists the slot numbers that get a new task.
	create []uint64
	// remove lists the tasks whose desired state becomes REMOVE.
	remove []*api.Task
	// restart lists the tasks handed to the Restarter: they stopped, or
	// their node no longer keeps them.
	restart []*api.Task
	// dirty lists the slots the Updater gets: they hold tasks of an
	// older spec.
	dirty []orchestrator.Slot
}

// writable returns the plan with copies of the tasks it lists, which
// reconcile may have been given shared (read-only): the writes modify
// them.
func (p plan) writable() plan {
	cp := func(ts []*api.Task) []*api.Task {
		out := make([]*api.Task, len(ts))
		for i, t := range ts {
			out[i] = proto.CloneOf(t)
		}
		return out
	}
	p.remove, p.restart = cp(p.remove), cp(p.restart)
	dirty := make([]orchestrator.Slot, len(p.dirty))
	for i, sl := range p.dirty {
		dirty[i] = orchestrator.Slot(cp(sl))
	}
	p.dirty = dirty
	return p
}

// settled reports whether the plan changes nothing.
func (p plan) settled() bool {
	return len(p.create) == 0 && len(p.remove) == 0 && len(p.restart) == 0 && len(p.dirty) == 0
}

// reconcile decides what brings service s (nil: removed) to its replica
// count, given all of its tasks and the nodes they are on (a node missing
// from nodes is gone).
func reconcile(s *api.Service, tasks []*api.Task, nodes map[string]*api.Node) plan {
	if s == nil {
		return plan{remove: runnable(tasks)}
	}
	var p plan
	isDirty := orchestrator.DirtyCheck(s)
	replicas := int(s.GetSpec().GetReplicated().GetReplicas())
	slots := orchestrator.SlotsByNumber(tasks)
	givenUp := givenUpSlots(s, tasks, slots)

	// Keep at most replicas slots: running ones first, then those the
	// restart policy left empty.
	keepRunning := min(len(slots), replicas)
	keepGivenUp := min(len(givenUp), replicas-keepRunning)
	removed := make(map[uint64]bool)
	for _, n := range pickRemovals(slots, len(slots)-keepRunning) {
		removed[n] = true
		p.remove = append(p.remove, slots[n]...)
	}
	for _, n := range givenUp[keepGivenUp:] { // the highest numbers
		removed[n] = true
		p.remove = append(p.remove, lastGaveUp(s, tasks, n))
	}
	p.create = freeSlots(slots, givenUp, replicas-keepRunning-keepGivenUp)

	for _, n := range sortedSlots(slots) {
		if removed[n] {
			continue
		}
		var stays orchestrator.Slot
		dirty := false
		for _, t := range slots[n] {
			if mustRestart(t, nodes) {
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
	return p
}

// runnable returns the tasks still meant to run.
func runnable(tasks []*api.Task) []*api.Task {
	var out []*api.Task
	for _, t := range tasks {
		if orchestrator.IsRunnable(t) {
			out = append(out, t)
		}
	}
	return out
}

// mustRestart reports whether a runnable task goes to the Restarter: it
// stopped, or its node is gone, DOWN or drained.
func mustRestart(t *api.Task, nodes map[string]*api.Node) bool {
	if orchestrator.HasStopped(t) {
		return true
	}
	return t.GetNodeId() != "" && !orchestrator.NodeKeepsTasks(nodes[t.GetNodeId()])
}

// givenUpSlots returns, in increasing order, the numbers of the slots
// without runnable task that the restart policy left empty.
func givenUpSlots(s *api.Service, tasks []*api.Task, slots map[uint64]orchestrator.Slot) []uint64 {
	bySlot := make(map[uint64][]*api.Task)
	for _, t := range tasks {
		if _, ok := slots[t.GetSlot()]; !ok {
			bySlot[t.GetSlot()] = append(bySlot[t.GetSlot()], t)
		}
	}
	var out []uint64
	for n, ts := range bySlot {
		if restart.SlotGaveUp(s, ts) {
			out = append(out, n)
		}
	}
	slices.Sort(out)
	return out
}

// lastGaveUp returns the task that left slot n empty.
func lastGaveUp(s *api.Service, tasks []*api.Task, n uint64) *api.Task {
	for _, t := range tasks {
		if t.GetSlot() == n && restart.GaveUp(s, t) {
			return t
		}
	}
	return nil
}

// freeSlots returns the n lowest slot numbers neither in use nor given
// up.
func freeSlots(slots map[uint64]orchestrator.Slot, givenUp []uint64, n int) []uint64 {
	var out []uint64
	for num := uint64(1); len(out) < n; num++ {
		if _, used := slots[num]; !used && !slices.Contains(givenUp, num) {
			out = append(out, num)
		}
	}
	return out
}

func sortedSlots(slots map[uint64]orchestrator.Slot) []uint64 {
	nums := make([]uint64, 0, len(slots))
	for n := range slots {
		nums = append(nums, n)
	}
	slices.Sort(nums)
	return nums
}

// pickRemovals chooses n of the slots to remove: first those with no
// running task (stopped ones, then those furthest from running), then
// running ones from the nodes holding the most tasks of the service, so
// that what stays runs and stays spread. Among equals the highest slot
// number goes first.
func pickRemovals(slots map[uint64]orchestrator.Slot, n int) []uint64 {
	if n <= 0 {
		return nil
	}
	load := make(map[string]int)
	var idle []uint64
	byNode := make(map[string][]uint64)
	for num, slot := range slots {
		for _, t := range slot {
			if t.GetNodeId() != "" {
				load[t.GetNodeId()]++
			}
		}
		if node, ok := runningOn(slot); ok {
			byNode[node] = append(byNode[node], num)
		} else {
			idle = append(idle, num)
		}
	}
	slices.SortFunc(idle, func(a, b uint64) int {
		return cmp.Or(cmp.Compare(idleRank(slots[a]), idleRank(slots[b])), cmp.Compare(b, a))
	})
	out := idle[:min(n, len(idle))]
	for _, num := range out {
		for _, t := range slots[num] {
			if t.GetNodeId() != "" {
				load[t.GetNodeId()]--
			}
		}
	}
	if len(out) == n {
		return out
	}
	h := &nodeHeap{}
	for node, nums := range byNode {
		slices.SortFunc(nums, func(a, b uint64) int { return cmp.Compare(b, a) })
		*h = append(*h, &nodeSlots{node: node, load: load[node], slots: nums})
	}
	heap.Init(h)
	for len(out) < n && h.Len() > 0 {
		top := (*h)[0]
		out = append(out, top.slots[0])
		top.slots, top.load = top.slots[1:], top.load-1
		if len(top.slots) == 0 {
			heap.Pop(h)
		} else {
			heap.Fix(h, 0)
		}
	}
	return out
}

// runningOn returns the node of the slot's running task, if it has one.
func runningOn(slot orchestrator.Slot) (string, bool) {
	for _, t := range slot {
		if t.GetStatus().GetState() == api.TaskState_TASK_STATE_RUNNING {
			return t.GetNodeId(), true
		}
	}
	return "", false
}

// idleRank orders slots without running task for removal: stopped ones
// first, then by how far their furthest task got (never scheduled
// first).
func idleRank(slot orchestrator.Slot) int {
	most := api.TaskState_TASK_STATE_NEW
	for _, t := range slot {
		if !orchestrator.HasStopped(t) {
			most = max(most, t.GetStatus().GetState())
		}
	}
	if most == api.TaskState_TASK_STATE_NEW && allStopped(slot) {
		return -1
	}
	return int(most)
}

func allStopped(slot orchestrator.Slot) bool {
	for _, t := range slot {
		if !orchestrator.HasStopped(t) {
			return false
		}
	}
	return len(slot) > 0
}

// nodeSlots is a node's running slots, highest number first, and the
// service's task count on it.
type nodeSlots struct {
	node  string
	load  int
	slots []uint64
}

// nodeHeap orders nodes by load, highest first (then by ID).
type nodeHeap []*nodeSlots

func (h nodeHeap) Len() int { return len(h) }
func (h nodeHeap) Less(i, j int) bool {
	if h[i].load != h[j].load {
		return h[i].load > h[j].load
	}
	return h[i].node < h[j].node
}
func (h nodeHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *nodeHeap) Push(x any)   { *h = append(*h, x.(*nodeSlots)) }
func (h *nodeHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}
