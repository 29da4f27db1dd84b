package scheduler

import (
	"slices"

	"github.com/openswarm/swarmd/api"
)

// decision is what a pass decided for one task: the node it goes to, or
// why it stays pending. Only decisions that change the task are made: an
// unschedulable task whose error already says the same is left alone.
type decision struct {
	ref  *taskRef
	base *api.Task // the task as the decision was made on it
	node string    // the node the task goes to; "" if none fits
	err  string    // why no node fits, if none does
}

// schedule places the pending tasks of every group that needs it: all
// groups if a node changed since the last pass, else those with new
// tasks. Groups of tasks with a preset node go first, as they have no
// other choice. The view takes its decisions at once.
func (v *view) schedule() []decision {
	all := v.nodesChanged
	v.nodesChanged, v.dirty = false, false
	var todo []*group
	n := 0
	for _, g := range v.groups {
		if all || g.dirty {
			g.dirty = false
			todo = append(todo, g)
			n += len(g.tasks)
		}
	}
	slices.SortFunc(todo, func(a, b *group) int { return a.key.compare(b.key) })
	out := make([]decision, 0, n)
	for _, g := range todo {
		out = v.scheduleGroup(g.key.preset, g.sorted(), out)
	}
	return out
}

// scheduleGroup places refs, the tasks of one group in slot order: each
// on the node it names if preset, else spread.
func (v *view) scheduleGroup(preset bool, refs []*taskRef, out []decision) []decision {
	p := newPipeline(refs[0].t)
	if preset {
		return v.schedulePreset(p, refs, out)
	}
	return v.scheduleSpread(p, refs, out)
}

// scheduleSpread places refs, tasks of one spec, on the nodes p accepts,
// spread as their placement preferences say.
func (v *view) scheduleSpread(p *pipeline, refs []*taskRef, out []decision) []decision {
	tree := newSpreadTree(p.service, refs[0].t.GetSpec().GetPlacement().GetPreferences(), len(v.nodes))
	var others []*nodeInfo
	for _, ni := range v.nodes {
		switch {
		case ni.node == nil:
		case p.fits(ni):
			tree.add(ni)
		case ni.services[p.service] > 0:
			others = append(others, ni)
		}
	}
	for _, ni := range others {
		tree.count(ni)
	}
	tree.init()
	for i, ref := range refs {
		c := tree.pick()
		if c == nil {
			return v.unschedulable(refs[i:], p.explain(), out)
		}
		out = v.place(ref, c.ni, out)
		tree.placed(c, p.fitsAnother(c.ni))
	}
	return out
}

// schedulePreset checks each of refs, tasks of one spec, against the node
// it names.
func (v *view) schedulePreset(p *pipeline, refs []*taskRef, out []decision) []decision {
	for _, ref := range refs {
		p.reset()
		ni := v.nodes[ref.t.GetNodeId()]
		if ni == nil || ni.node == nil {
			out = v.unschedulable([]*taskRef{ref}, noSuitableNode, out)
			continue
		}
		if !p.fits(ni) {
			out = v.unschedulable([]*taskRef{ref}, p.explain(), out)
			continue
		}
		out = v.place(ref, ni, out)
	}
	return out
}

func (v *view) place(ref *taskRef, ni *nodeInfo, out []decision) []decision {
	base := ref.t
	v.assign(ref, ni)
	return append(out, decision{ref: ref, base: base, node: ni.id})
}

// unschedulable records reason as the error of refs, and decides to
// write it on those whose error says something else.
func (v *view) unschedulable(refs []*taskRef, reason string, out []decision) []decision {
	for _, ref := range refs {
		if ref.err != reason {
			ref.err = reason
			out = append(out, decision{ref: ref, base: ref.t, err: reason})
		}
	}
	return out
}
