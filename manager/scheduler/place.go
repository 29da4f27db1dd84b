package scheduler

import (
	"slices"

	"github.com/openswarm/swarmd/api"
	"github.com/openswarm/swarmd/manager/state/store"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// Place places tasks an orchestrator is about to create (see
// orchestrator.Placer): those that fit a node now are assigned to it at
// once and counted on it in the view, so that they are stored ASSIGNED by
// the write that creates them. A task that fits no node is left PENDING:
// the scheduler takes it, and says why it waits, once it is stored. Until
// the scheduler has loaded the store (or after its term), Place places
// nothing.
func (s *Scheduler) Place(tasks []*api.Task) func(error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v := s.view
	if v == nil {
		return func(error) {}
	}
	assigned := &api.TaskStatus{
		State:     api.TaskState_TASK_STATE_ASSIGNED,
		Message:   AssignedMessage,
		Timestamp: timestamppb.New(s.clock.Now()),
	}
	placed := v.placeNew(tasks, assigned)
	if len(placed) == 0 {
		return func(error) {}
	}
	return func(err error) {
		if err != nil {
			s.forget(v, placed)
		}
	}
}

// forget takes back the placements of the tasks with those IDs that the
// store does not hold: the write that was to create them failed. A task
// the store holds (or whose events the view has seen) stays as it is.
func (s *Scheduler) forget(v *view, ids []string) {
	stored := make(map[string]*api.Task)
	s.store.View(func(tx store.ReadTx) {
		for _, id := range ids {
			if t := store.Lookup[*api.Task](tx, id); t != nil {
				stored[id] = t
			}
		}
	})
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.view != v {
		return // a new watch loaded the store afresh
	}
	for _, id := range ids {
		ref := v.tasks[id]
		if ref == nil || version(ref.t) != 0 {
			continue // the view has the stored task
		}
		if t := stored[id]; t != nil {
			v.upsertTask(t)
		} else {
			v.removeTask(id)
		}
	}
}

// placeNew places new tasks, not yet stored, as a pass would place them
// had they been stored PENDING: grouped by spec, spread over the nodes
// with what the view counts on them. Each task placed gets its node and
// the status assigned (shared, not to be modified), and the view records
// a copy of it without Meta, whose version (0) any stored version of the
// task replaces. Tasks that are not schedulable, already known, or fit no
// node are left as they are and not recorded. It returns the IDs of the
// tasks placed.
func (v *view) placeNew(tasks []*api.Task, assigned *api.TaskStatus) []string {
	groups := make(map[groupKey][]*taskRef)
	for _, t := range tasks {
		if !schedulable(t) || v.tasks[t.GetId()] != nil {
			continue
		}
		k := groupKeyOf(t)
		groups[k] = append(groups[k], &taskRef{t: t})
	}
	keys := make([]groupKey, 0, len(groups))
	for k := range groups {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, groupKey.compare)
	var placed []string
	for _, k := range keys {
		refs := groups[k]
		sortRefs(refs)
		for _, d := range v.scheduleGroup(k.preset, refs, nil) {
			if d.node == "" {
				continue
			}
			t := d.ref.t
			t.NodeId, t.Status = d.node, assigned
			rec := store.Shallow(t)
			rec.Meta = nil
			d.ref.t, d.ref.err = rec, ""
			v.tasks[t.GetId()] = d.ref
			placed = append(placed, t.GetId())
		}
	}
	return placed
}
