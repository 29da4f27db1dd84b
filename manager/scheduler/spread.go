package scheduler

import (
	"strings"

	"github.com/openswarm/swarmd/api"
)

// spreadLevel is one placement preference: the label whose values the
// tasks spread over.
type spreadLevel struct {
	engine bool   // an engine label rather than a node label
	key    string // the label's key; "" if the descriptor names no label
}

// parseSpread parses a spread descriptor, node.labels.<key> or
// engine.labels.<key> (the prefix in any case). A descriptor naming
// anything else puts every node in the group of nodes without the label,
// so it changes nothing.
func parseSpread(descriptor string) spreadLevel {
	d := strings.TrimSpace(descriptor)
	for _, prefix := range []struct {
		text   string
		engine bool
	}{{"node.labels.", false}, {"engine.labels.", true}} {
		if len(d) > len(prefix.text) && strings.EqualFold(d[:len(prefix.text)], prefix.text) {
			return spreadLevel{engine: prefix.engine, key: d[len(prefix.text):]}
		}
	}
	return spreadLevel{}
}

// branchOf returns the branch of n at this level: the label's value, or
// the group of nodes without it.
func (l spreadLevel) branchOf(n *api.Node) branchKey {
	if l.key == "" {
		return branchKey{missing: true}
	}
	labels := n.GetSpec().GetAnnotations().GetLabels()
	if l.engine {
		labels = n.GetDescription().GetEngine().GetLabels()
	}
	v, ok := labels[l.key]
	return branchKey{value: v, missing: !ok}
}

// branchKey names a branch: a label value, or the nodes without the label.
type branchKey struct {
	value   string
	missing bool
}

// branch is a node of the spread tree: the candidates whose labels agree
// down to its level. Internal branches hold a heap of children, leaves a
// heap of candidates. A branch leaves its parent's heap once it holds no
// candidate.
type branch struct {
	key    branchKey
	svc    int // tasks of the service on the branch's nodes, candidates or not
	parent *branch
	pos    int
	leaf   bool

	byKey    map[branchKey]*branch // children by key, while the tree is built
	children indexedHeap[*branch]
	nodes    indexedHeap[*candidate]
}

// less orders branches: fewer tasks of the service first, then by label
// value, the nodes without the label last.
func (b *branch) less(o *branch) bool {
	if b.svc != o.svc {
		return b.svc < o.svc
	}
	if b.key.missing != o.key.missing {
		return !b.key.missing
	}
	return b.key.value < o.key.value
}

func (b *branch) setPos(i int) { b.pos = i }

func (b *branch) empty() bool {
	if b.leaf {
		return b.nodes.len() == 0
	}
	return b.children.len() == 0
}

// child returns the child with key k, creating it if asked to.
func (b *branch) child(k branchKey, create, leaf bool) *branch {
	c := b.byKey[k]
	if c == nil && create {
		c = &branch{key: k, parent: b, leaf: leaf}
		if !leaf {
			c.byKey = make(map[branchKey]*branch)
		}
		b.byKey[k] = c
		b.children.items = append(b.children.items, c)
	}
	return c
}

// initHeaps orders the heaps of b and of the branches below it.
func (b *branch) initHeaps() {
	if b.leaf {
		b.nodes.init()
		return
	}
	for _, c := range b.children.items {
		c.initHeaps()
	}
	b.children.init()
	b.byKey = nil
}

// candidate is a node that passed the filters, with the counts it is
// ordered by.
type candidate struct {
	ni    *nodeInfo
	svc   int // tasks of the service on the node
	total int // tasks on the node
	leaf  *branch
	pos   int
}

// less orders candidates: fewer tasks of the service, fewer tasks in all,
// lower node ID.
func (c *candidate) less(o *candidate) bool {
	if c.svc != o.svc {
		return c.svc < o.svc
	}
	if c.total != o.total {
		return c.total < o.total
	}
	return c.ni.id < o.ni.id
}

func (c *candidate) setPos(i int) { c.pos = i }

// spreadTree orders the candidates of one group: it yields the candidate
// that keeps the service's tasks most evenly spread, level by level.
type spreadTree struct {
	service string
	levels  []spreadLevel
	root    *branch
	cands   []candidate // backing store of the candidates; never grows past its capacity
}

// newSpreadTree returns an empty tree for tasks of service spreading over
// prefs, for at most capacity candidates.
func newSpreadTree(service string, prefs []*api.PlacementPreference, capacity int) *spreadTree {
	t := &spreadTree{
		service: service,
		root:    &branch{leaf: len(prefs) == 0},
		cands:   make([]candidate, 0, capacity),
	}
	if !t.root.leaf {
		t.root.byKey = make(map[branchKey]*branch)
	}
	for _, p := range prefs {
		t.levels = append(t.levels, parseSpread(p.GetSpreadDescriptor()))
	}
	return t
}

// add makes ni a candidate. Call init once every candidate is added.
func (t *spreadTree) add(ni *nodeInfo) {
	svc := ni.services[t.service]
	b := t.root
	for i, l := range t.levels {
		b = b.child(l.branchOf(ni.node), true, i == len(t.levels)-1)
		b.svc += svc
	}
	t.cands = append(t.cands, candidate{ni: ni, svc: svc, total: ni.tasks, leaf: b})
	b.nodes.items = append(b.nodes.items, &t.cands[len(t.cands)-1])
}

// count adds the tasks of the service on ni, a node that is not a
// candidate, to the branches the candidates made for its label values.
func (t *spreadTree) count(ni *nodeInfo) {
	svc := ni.services[t.service]
	if svc == 0 || len(t.levels) == 0 {
		return
	}
	b := t.root
	for i, l := range t.levels {
		if b = b.child(l.branchOf(ni.node), false, i == len(t.levels)-1); b == nil {
			return
		}
		b.svc += svc
	}
}

// init orders the tree once every candidate was added and counted.
func (t *spreadTree) init() { t.root.initHeaps() }

// pick returns the candidate the next task should go to, or nil if there
// is none left.
func (t *spreadTree) pick() *candidate {
	b := t.root
	for !b.leaf {
		if b.children.len() == 0 {
			return nil
		}
		b = b.children.min()
	}
	if b.nodes.len() == 0 {
		return nil
	}
	return b.nodes.min()
}

// placed records that a task of the service was placed on c; stillFits
// says whether c takes another one.
func (t *spreadTree) placed(c *candidate, stillFits bool) {
	c.svc++
	c.total++
	b := c.leaf
	if stillFits {
		b.nodes.fix(c.pos)
	} else {
		b.nodes.remove(c.pos)
	}
	for ; b.parent != nil; b = b.parent {
		b.svc++
		if b.empty() {
			b.parent.children.remove(b.pos)
		} else {
			b.parent.children.fix(b.pos)
		}
	}
}
