package scheduler

import (
	"cmp"
	"slices"

	"github.com/openswarm/swarmd/api"
	"google.golang.org/protobuf/proto"
)

// view is what the scheduler knows of the cluster: the nodes with what
// occupies them, and the pending tasks grouped by spec. It is fed stored
// objects, which it never modifies, and its own decisions (assign), which
// it takes at once.
type view struct {
	nodes  map[string]*nodeInfo
	tasks  map[string]*taskRef // tasks that are pending or occupy a node
	groups map[groupKey]*group

	// nodesChanged: a node changed, or a task left a node, since the last
	// pass; every group is looked at again.
	nodesChanged bool
	// dirty: some group has a task it did not have at the last pass.
	dirty bool
}

// taskRef is the view's record of a task.
type taskRef struct {
	t     *api.Task // the task as last read from the store; read-only
	node  string    // the node whose nodeInfo counts the task, if any
	group *group    // the group of pending tasks holding it, if any
	err   string    // Status.Err as stored or as last written by the scheduler
}

// groupKey identifies the pending tasks that share a spec: the tasks of
// one service at one spec version. A task without a spec version is a
// group of its own. Tasks whose node is set in advance (global services)
// group apart from the others.
type groupKey struct {
	service string
	preset  bool
	version uint64
	task    string
}

func (k groupKey) compare(o groupKey) int {
	if k.preset != o.preset {
		if k.preset {
			return -1
		}
		return 1
	}
	return cmp.Or(cmp.Compare(k.service, o.service), cmp.Compare(k.version, o.version), cmp.Compare(k.task, o.task))
}

// group is the pending tasks of one groupKey.
type group struct {
	key   groupKey
	tasks map[string]*taskRef
	// dirty: a task joined the group since the group was last scheduled.
	dirty bool
}

func newView() *view {
	return &view{
		nodes:  make(map[string]*nodeInfo),
		tasks:  make(map[string]*taskRef),
		groups: make(map[groupKey]*group),
	}
}

// needsPass reports whether schedule has anything to look at.
func (v *view) needsPass() bool {
	return v.dirty || v.nodesChanged && len(v.groups) > 0
}

// schedulable reports whether the scheduler is to place t: it is PENDING
// and still meant to run.
func schedulable(t *api.Task) bool {
	return t.GetStatus().GetState() == api.TaskState_TASK_STATE_PENDING &&
		t.GetDesiredState() <= api.TaskState_TASK_STATE_COMPLETE
}

// occupies reports whether t counts on its node: it is meant to run
// there and has been assigned but has not stopped.
func occupies(t *api.Task) bool {
	s := t.GetStatus().GetState()
	return t.GetNodeId() != "" &&
		s >= api.TaskState_TASK_STATE_ASSIGNED && s <= api.TaskState_TASK_STATE_RUNNING &&
		t.GetDesiredState() <= api.TaskState_TASK_STATE_COMPLETE
}

func version(o interface{ GetMeta() *api.Meta }) uint64 {
	return o.GetMeta().GetVersion().GetIndex()
}

// upsertNode records n, unless the view has a later version of it.
func (v *view) upsertNode(n *api.Node) {
	ni := v.nodes[n.GetId()]
	switch {
	case ni == nil:
		ni = newNodeInfo(n.GetId())
		v.nodes[n.GetId()] = ni
	case ni.node != nil && version(n) <= version(ni.node) && version(n) != 0:
		return
	}
	if ni.node == nil || placementChanged(ni.node, n) {
		v.nodesChanged = true
	}
	ni.setNode(n)
}

// placementChanged reports whether a node's change can change where tasks
// go.
func placementChanged(old, n *api.Node) bool {
	return old.GetStatus().GetState() != n.GetStatus().GetState() ||
		old.GetRole() != n.GetRole() ||
		!proto.Equal(old.GetSpec(), n.GetSpec()) ||
		!proto.Equal(old.GetDescription(), n.GetDescription())
}

// removeNode forgets the node with that ID; its tasks keep a placeholder
// until they leave.
func (v *view) removeNode(id string) {
	ni := v.nodes[id]
	if ni == nil {
		return
	}
	ni.setNode(nil)
	if ni.tasks == 0 {
		delete(v.nodes, id)
	}
	v.nodesChanged = true
}

// upsertTask records t, unless the view has a later version of it.
func (v *view) upsertTask(t *api.Task) {
	if ref := v.tasks[t.GetId()]; ref != nil && version(t) <= version(ref.t) && version(t) != 0 {
		return
	}
	v.setTask(t)
}

// refreshTask records t as re-read from the store after a write that did
// not land (changed meanwhile, or a failed batch), replacing what the view
// decided for it unless the view already has a later version. A task
// still pending is looked at again by the next pass, even if only its
// error was to be written.
func (v *view) refreshTask(t *api.Task) {
	if ref := v.tasks[t.GetId()]; ref != nil && version(t) < version(ref.t) {
		return
	}
	v.setTask(t)
	if ref := v.tasks[t.GetId()]; ref != nil && ref.group != nil {
		ref.group.dirty, v.dirty = true, true
	}
}

// setTask records t as the current state of its task.
func (v *view) setTask(t *api.Task) {
	ref := v.tasks[t.GetId()]
	if ref != nil && ref.group != nil && schedulable(t) && ref.group.key == groupKeyOf(t) {
		// Still pending in the same group: nothing the scheduler counts
		// changed.
		ref.t, ref.err = t, t.GetStatus().GetErr()
		return
	}
	if ref != nil && ref.group == nil && ref.node != "" && ref.node == t.GetNodeId() && occupies(t) && sameLoad(ref.t, t) {
		// Still on the same node, counting the same there (the stored
		// version of a task the view placed, or a status report).
		ref.t, ref.err = t, t.GetStatus().GetErr()
		return
	}
	var wasOn string
	if ref == nil {
		ref = &taskRef{}
	} else {
		wasOn = ref.node
		v.detach(ref)
	}
	ref.t, ref.err = t, t.GetStatus().GetErr()
	switch {
	case schedulable(t):
		v.tasks[t.GetId()] = ref
		g := v.group(groupKeyOf(t))
		g.tasks[t.GetId()] = ref
		ref.group = g
		g.dirty, v.dirty = true, true
	case occupies(t):
		v.tasks[t.GetId()] = ref
		v.nodeInfo(t.GetNodeId()).addTask(t)
		ref.node = t.GetNodeId()
	default:
		delete(v.tasks, t.GetId())
	}
	if wasOn != "" && wasOn != ref.node {
		v.nodesChanged = true
	}
}

// sameLoad reports whether a and b, versions of one task, count the same
// on a node (see nodeInfo.addTask).
func sameLoad(a, b *api.Task) bool {
	ac, am := reservations(a)
	bc, bm := reservations(b)
	if a.GetServiceId() != b.GetServiceId() || ac != bc || am != bm {
		return false
	}
	return a.GetEndpoint() == b.GetEndpoint() || slices.Equal(taskHostPorts(a), taskHostPorts(b))
}

// removeTask forgets the task with that ID.
func (v *view) removeTask(id string) {
	ref := v.tasks[id]
	if ref == nil {
		return
	}
	if ref.node != "" {
		v.nodesChanged = true
	}
	v.detach(ref)
	delete(v.tasks, id)
}

// detach takes ref out of its group and off its node.
func (v *view) detach(ref *taskRef) {
	if g := ref.group; g != nil {
		delete(g.tasks, ref.t.GetId())
		if len(g.tasks) == 0 && v.groups[g.key] == g {
			delete(v.groups, g.key)
		}
		ref.group = nil
	}
	if ref.node != "" {
		if ni := v.nodes[ref.node]; ni != nil {
			ni.removeTask(ref.t)
			if ni.node == nil && ni.tasks == 0 {
				delete(v.nodes, ref.node)
			}
		}
		ref.node = ""
	}
}

// assign records the decision to place ref on ni.
func (v *view) assign(ref *taskRef, ni *nodeInfo) {
	v.detach(ref)
	ni.addTask(ref.t)
	ref.node = ni.id
}

// nodeInfo returns the nodeInfo of the node with that ID, making a
// placeholder if the node is unknown.
func (v *view) nodeInfo(id string) *nodeInfo {
	ni := v.nodes[id]
	if ni == nil {
		ni = newNodeInfo(id)
		v.nodes[id] = ni
	}
	return ni
}

// groupKeyOf returns the key of the group of pending task t.
func groupKeyOf(t *api.Task) groupKey {
	k := groupKey{service: t.GetServiceId(), preset: t.GetNodeId() != ""}
	if sv := t.GetSpecVersion(); sv != nil && t.GetServiceId() != "" {
		k.version = sv.GetIndex()
	} else {
		k.task = t.GetId()
	}
	return k
}

// group returns the group with key k, creating it if needed.
func (v *view) group(k groupKey) *group {
	g := v.groups[k]
	if g == nil {
		g = &group{key: k, tasks: make(map[string]*taskRef)}
		v.groups[k] = g
	}
	return g
}

// sorted returns the group's tasks by slot, then ID.
func (g *group) sorted() []*taskRef {
	refs := make([]*taskRef, 0, len(g.tasks))
	for _, r := range g.tasks {
		refs = append(refs, r)
	}
	sortRefs(refs)
	return refs
}

// sortRefs sorts tasks by slot, then ID.
func sortRefs(refs []*taskRef) {
	slices.SortFunc(refs, func(a, b *taskRef) int {
		return cmp.Or(cmp.Compare(a.t.GetSlot(), b.t.GetSlot()), cmp.Compare(a.t.GetId(), b.t.GetId()))
	})
}
