package worker

import (
	"slices"
	"strings"

	"github.com/openswarm/swarmd/api"
	"google.golang.org/protobuf/proto"
)

// plan is what applying one change set does, decided without I/O. Every
// list is sorted by ID.
type plan struct {
	// tasks are the assigned tasks that are new or changed (copies of
	// those of the change set).
	tasks []*api.Task
	// store are those of tasks the task DB must be told: new tasks, and
	// tasks that changed in more than their status and version (which the
	// manager changes on every status the worker reports).
	store []*api.Task
	// confirm are held tasks the change set names unchanged (a complete
	// set re-sending what the worker holds).
	confirm []string
	// removeTasks are held tasks to let go of.
	removeTasks []string

	// replaceDeps: the secrets and configs below replace every one held.
	replaceDeps                  bool
	secrets                      []*api.Secret
	configs                      []*api.Config
	removeSecrets, removeConfigs []string
}

// planChanges decides what a change set does, given the tasks held (each
// as last assigned). A complete set names everything the node must hold:
// held tasks it lacks are removed and its secrets and configs replace the
// held ones. An incremental set updates and removes what it names. When a
// set names an object twice, the last change counts. Assignments without
// an item or an ID are ignored.
func planChanges(complete bool, held map[string]*api.Task, changes []*api.AssignmentChange) plan {
	var (
		tasks   = map[string]*api.Task{} // nil: removed
		secrets = map[string]*api.Secret{}
		configs = map[string]*api.Config{}
	)
	for _, c := range changes {
		remove := c.GetAction() == api.AssignmentChange_REMOVE
		switch it := c.GetAssignment().GetItem().(type) {
		case *api.Assignment_Task:
			if id := it.Task.GetId(); id != "" {
				tasks[id] = keep(it.Task, remove)
			}
		case *api.Assignment_Secret:
			if id := it.Secret.GetId(); id != "" {
				secrets[id] = keep(it.Secret, remove)
			}
		case *api.Assignment_Config:
			if id := it.Config.GetId(); id != "" {
				configs[id] = keep(it.Config, remove)
			}
		}
	}
	p := plan{replaceDeps: complete}
	for id, t := range tasks {
		h, isHeld := held[id]
		switch {
		case t == nil:
			if isHeld {
				p.removeTasks = append(p.removeTasks, id)
			}
		case isHeld && proto.Equal(h, t):
			p.confirm = append(p.confirm, id)
		default:
			t = proto.CloneOf(t) // held by the worker from now on
			p.tasks = append(p.tasks, t)
			if !isHeld || !sameBeyondStatus(h, t) {
				p.store = append(p.store, t)
			}
		}
	}
	if complete {
		for id := range held {
			if _, named := tasks[id]; !named {
				p.removeTasks = append(p.removeTasks, id)
			}
		}
	}
	p.secrets, p.removeSecrets = split(secrets)
	p.configs, p.removeConfigs = split(configs)
	slices.SortFunc(p.tasks, byID)
	slices.SortFunc(p.store, byID)
	slices.Sort(p.confirm)
	slices.Sort(p.removeTasks)
	return p
}

// keep returns o, or nil for a removal.
func keep[T any](o *T, remove bool) *T {
	if remove {
		return nil
	}
	return o
}

// split separates updated objects from removed ones (nil), sorted by ID.
func split[T interface {
	*api.Secret | *api.Config
	GetId() string
}](m map[string]T) (updated []T, removed []string) {
	for id, o := range m {
		if o == nil {
			removed = append(removed, id)
		} else {
			updated = append(updated, o)
		}
	}
	slices.SortFunc(updated, func(a, b T) int { return strings.Compare(a.GetId(), b.GetId()) })
	slices.Sort(removed)
	return updated, removed
}

func byID(a, b *api.Task) int { return strings.Compare(a.GetId(), b.GetId()) }

// sameBeyondStatus reports whether a and b differ at most in their status
// and bookkeeping (meta).
func sameBeyondStatus(a, b *api.Task) bool {
	a, b = proto.CloneOf(a), proto.CloneOf(b)
	a.Status, a.Meta, b.Status, b.Meta = nil, nil, nil, nil
	return proto.Equal(a, b)
}
