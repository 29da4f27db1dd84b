package update

import (
	"cmp"
	"slices"

	"github.com/openswarm/swarmd/api"
	"github.com/openswarm/swarmd/manager/state/store"
)

// mirror holds the tasks of one service as the store's events show them,
// indexed by slot. Its tasks are shared, read-only copies.
type mirror struct {
	global bool
	tasks  map[string]*api.Task
	slots  map[slotKey]map[string]*api.Task
}

func newMirror(global bool, tasks []*api.Task) *mirror {
	m := &mirror{global: global}
	m.reset(tasks)
	return m
}

// reset replaces the whole content by tasks.
func (m *mirror) reset(tasks []*api.Task) {
	m.tasks = make(map[string]*api.Task, len(tasks))
	m.slots = make(map[slotKey]map[string]*api.Task)
	for _, t := range tasks {
		m.put(t)
	}
}

// put stores t unless the mirror holds a newer version of it: the store
// may be read ahead of the events still queued.
func (m *mirror) put(t *api.Task) {
	id := t.GetId()
	if cur, ok := m.tasks[id]; ok && version(cur) > version(t) {
		return
	}
	m.tasks[id] = t
	k := keyOf(m.global, t)
	sl := m.slots[k]
	if sl == nil {
		sl = make(map[string]*api.Task)
		m.slots[k] = sl
	}
	sl[id] = t
}

// remove drops the task with that ID.
func (m *mirror) remove(id string) {
	t, ok := m.tasks[id]
	if !ok {
		return
	}
	delete(m.tasks, id)
	k := keyOf(m.global, t)
	delete(m.slots[k], id)
	if len(m.slots[k]) == 0 {
		delete(m.slots, k)
	}
}

// slotTasks returns the tasks of slot k, by ID.
func (m *mirror) slotTasks(k slotKey) []*api.Task {
	sl := m.slots[k]
	out := make([]*api.Task, 0, len(sl))
	for _, t := range sl {
		out = append(out, t)
	}
	slices.SortFunc(out, func(a, b *api.Task) int { return cmp.Compare(a.GetId(), b.GetId()) })
	return out
}

func version(t *api.Task) uint64 { return t.GetMeta().GetVersion().GetIndex() }

// storeView is the view of a running update: its mirror, and whether
// nodes are up, read from the store when first needed and forgotten when
// an event says the node changed.
type storeView struct {
	*mirror
	store *store.MemoryStore
	up    map[string]bool
}

func newStoreView(m *mirror, s *store.MemoryStore) *storeView {
	return &storeView{mirror: m, store: s, up: make(map[string]bool)}
}

func (v *storeView) nodeUp(id string) bool {
	if id == "" {
		return false
	}
	up, ok := v.up[id]
	if !ok {
		var n *api.Node
		v.store.View(func(tx store.ReadTx) { n = store.GetNode(tx, id) })
		up = n != nil && n.GetStatus().GetState() != api.NodeStatus_DOWN
		v.up[id] = up
	}
	return up
}

// forgetNode drops what v knows of node id.
func (v *storeView) forgetNode(id string) { delete(v.up, id) }

// forgetNodes drops what v knows of every node.
func (v *storeView) forgetNodes() { clear(v.up) }
