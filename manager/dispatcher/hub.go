package dispatcher

import (
	"sync"

	"github.com/openswarm/swarmd/api"
	"github.com/openswarm/swarmd/manager/state/store"
	"google.golang.org/protobuf/proto"
)

// hub fans the store's changes out to the streams that care, from one
// store watch for the whole dispatcher (not one per stream, which would
// run a filter per stream for every change in the cluster). It only marks
// what changed — a task ID, a secret ID — in the stream's mailbox; the
// stream re-reads the marked objects from the store when it sends. Marks
// are level-triggered: a mark for a change the stream's snapshot already
// showed, or two marks for one object, cost a read and send nothing.
//
// That is also why no change is lost between a stream's snapshot and its
// first change set: the stream registers with the hub before it reads its
// snapshot, so every change applied after the snapshot is published after
// the registration, and the hub, reading the watch in order, marks it.
type hub struct {
	mu      sync.Mutex
	streams map[string]map[*assignStream]struct{} // by node ID
}

func newHub() *hub { return &hub{streams: map[string]map[*assignStream]struct{}{}} }

func (h *hub) add(st *assignStream) {
	h.mu.Lock()
	defer h.mu.Unlock()
	m := h.streams[st.node]
	if m == nil {
		m = map[*assignStream]struct{}{}
		h.streams[st.node] = m
	}
	m[st] = struct{}{}
}

func (h *hub) remove(st *assignStream) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.streams[st.node], st)
	if len(h.streams[st.node]) == 0 {
		delete(h.streams, st.node)
	}
}

func (h *hub) markTask(node, id string) {
	if node == "" {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for st := range h.streams[node] {
		st.mark(func(d *dirty) { addID(&d.tasks, id) })
	}
}

// markAll marks every stream: secrets and configs (rarely written) and
// resynchronisations.
func (h *hub) markAll(f func(d *dirty)) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, m := range h.streams {
		for st := range m {
			st.mark(f)
		}
	}
}

func addID(m *map[string]struct{}, id string) {
	if *m == nil {
		*m = map[string]struct{}{}
	}
	(*m)[id] = struct{}{}
}

// assignStream is the mailbox of one Assignments stream.
type assignStream struct {
	node   string
	mu     sync.Mutex
	d      dirty
	signal chan struct{}
}

func newAssignStream(node string) *assignStream {
	return &assignStream{node: node, signal: make(chan struct{}, 1)}
}

func (st *assignStream) mark(f func(d *dirty)) {
	st.mu.Lock()
	f(&st.d)
	st.mu.Unlock()
	select {
	case st.signal <- struct{}{}:
	default:
	}
}

// take returns and clears what was marked.
func (st *assignStream) take() dirty {
	st.mu.Lock()
	defer st.mu.Unlock()
	d := st.d
	st.d = dirty{}
	return d
}

// runHub reads the store watch until the run ends; a watch the store
// closes ends the run (errWatchClosed).
func (r *run) runHub(events <-chan []store.Event, cancel func()) {
	defer cancel()
	for {
		select {
		case <-r.ctx.Done():
			return
		case evs, ok := <-events:
			if !ok {
				r.d.log.Error("dispatcher: store watch closed; stopping")
				r.cancel(errWatchClosed)
				return
			}
			for _, ev := range evs {
				r.handle(ev)
			}
		}
	}
}

// handle routes one store event.
func (r *run) handle(ev store.Event) {
	if ev.Action == store.EventRestore {
		r.resyncAll()
		return
	}
	switch o := ev.Object.(type) {
	case *api.Task:
		r.hub.markTask(o.GetNodeId(), o.GetId())
		if old, ok := ev.Old.(*api.Task); ok && old.GetNodeId() != o.GetNodeId() {
			r.hub.markTask(old.GetNodeId(), o.GetId())
		}
	case *api.Secret:
		id := o.GetId()
		r.hub.markAll(func(d *dirty) { addID(&d.secrets, id) })
	case *api.Config:
		id := o.GetId()
		r.hub.markAll(func(d *dirty) { addID(&d.configs, id) })
	case *api.Node:
		r.nodeChanged(ev, o)
	case *api.Cluster:
		if ev.Action != store.EventRemove && r.setCluster(o) {
			for _, s := range r.reg.all() {
				s.notify(notifyCluster)
			}
		}
	}
}

func (r *run) nodeChanged(ev store.Event, n *api.Node) {
	if ev.Action == store.EventRemove {
		r.nodeRemoved(n.GetId())
		r.refreshManagers()
		return
	}
	if s := r.reg.session(n.GetId()); s != nil {
		s.notify(notifyNode)
	}
	old, _ := ev.Old.(*api.Node)
	if old == nil || old.GetRole() != n.GetRole() || !proto.Equal(old.GetManagerStatus(), n.GetManagerStatus()) {
		r.refreshManagers()
	}
}

// resyncAll makes every stream re-read everything (the store was replaced
// by a snapshot).
func (r *run) resyncAll() {
	var c *api.Cluster
	r.d.store.View(func(tx store.ReadTx) {
		if cs, _ := store.FindClusters(tx, store.All); len(cs) > 0 {
			c = cs[0]
		}
	})
	if c != nil {
		r.setCluster(c)
	}
	r.hub.markAll(func(d *dirty) { d.all = true })
	for _, s := range r.reg.all() {
		s.notify(notifyNode | notifyCluster | notifyManagers)
	}
}
