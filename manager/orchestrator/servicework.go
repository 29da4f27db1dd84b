package orchestrator

import (
	"fmt"
	"maps"
	"slices"

	"github.com/openswarm/swarmd/api"
	"github.com/openswarm/swarmd/manager/state/store"
	"google.golang.org/protobuf/proto"
)

// ServiceWork is the services a service orchestrator (replicated,
// global, jobs) noted from store events and has not reconciled yet. A
// Loop's pass takes it (Take), lists what All and Orphans stand for
// within its read transaction (Expand), and hands it back on failure
// (Requeue).
type ServiceWork struct {
	// Services are the IDs of the services to reconcile.
	Services map[string]bool
	// All: every service of the orchestrator's kind (at start, after a
	// restore, or when a change concerns them all, e.g. a node's).
	All bool
	// Orphans: also the removed services whose tasks still run (at
	// start, after a restore).
	Orphans bool
}

// NewServiceWork returns the work of a starting orchestrator: everything.
func NewServiceWork() ServiceWork {
	return ServiceWork{Services: make(map[string]bool), All: true, Orphans: true}
}

// Pending reports whether any work is noted.
func (w *ServiceWork) Pending() bool { return w.All || w.Orphans || len(w.Services) > 0 }

// Restore notes everything: the store's state was replaced.
func (w *ServiceWork) Restore() { w.All, w.Orphans = true, true }

// Take hands the noted work to a pass, leaving none noted.
func (w *ServiceWork) Take() ServiceWork {
	taken := *w
	*w = ServiceWork{Services: make(map[string]bool)}
	return taken
}

// Requeue notes again the work taken by a pass that failed.
func (w *ServiceWork) Requeue(taken ServiceWork) {
	for id := range taken.Services {
		w.Services[id] = true
	}
	w.All = w.All || taken.All
	w.Orphans = w.Orphans || taken.Orphans
}

// Expand adds to Services what All and Orphans stand for: the services
// kind accepts, and the removed services that still have runnable tasks
// ours accepts.
func (w *ServiceWork) Expand(tx store.ReadTx, kind func(*api.Service) bool, ours func(*api.Task) bool) error {
	if w.All {
		services, err := store.FindServices(tx, store.All)
		if err != nil {
			return err
		}
		for _, s := range services {
			if kind(s) {
				w.Services[s.GetId()] = true
			}
		}
	}
	if w.Orphans {
		tasks, err := store.FindTasks(tx, store.All)
		if err != nil {
			return err
		}
		for _, t := range tasks {
			if ours(t) && IsRunnable(t) && store.GetService(tx, t.GetServiceId()) == nil {
				w.Services[t.GetServiceId()] = true
			}
		}
	}
	return nil
}

// IDs returns the services to reconcile, in order.
func (w *ServiceWork) IDs() []string { return slices.Sorted(maps.Keys(w.Services)) }

// NotePlaced notes one event for an orchestrator whose tasks follow the
// nodes (global services, jobs): kind tells its services, ours its
// tasks. A service of its kind changed, or a task of its that appeared,
// went, or changed desired state or stopped, gets its service
// reconciled; a node that appeared, went, or changed state,
// availability, role, labels or description gets every service
// reconciled.
func (w *ServiceWork) NotePlaced(ev store.Event, kind func(*api.Service) bool, ours func(*api.Task) bool) {
	if ev.Action == store.EventRestore {
		w.Restore()
		return
	}
	switch o := ev.Object.(type) {
	case *api.Service:
		if kind(o) {
			w.Services[o.GetId()] = true
		}
	case *api.Task:
		old, _ := ev.Old.(*api.Task)
		if ours(o) && placedTaskMatters(ev.Action, old, o) {
			w.Services[o.GetServiceId()] = true
		}
	case *api.Node:
		old, _ := ev.Old.(*api.Node)
		w.All = w.All || placementChanged(ev.Action, old, o)
	}
}

// placedTaskMatters reports whether a task event may change a
// reconciliation of NotePlaced's orchestrators.
func placedTaskMatters(action store.EventAction, old, t *api.Task) bool {
	if action != store.EventUpdate {
		return action == store.EventCreate || IsRunnable(t)
	}
	return old.GetDesiredState() != t.GetDesiredState() || HasStopped(old) != HasStopped(t)
}

// placementChanged reports whether a node event may change which nodes
// run a global service or job.
func placementChanged(action store.EventAction, old, n *api.Node) bool {
	if action != store.EventUpdate {
		return true
	}
	return old.GetStatus().GetState() != n.GetStatus().GetState() ||
		old.GetSpec().GetAvailability() != n.GetSpec().GetAvailability() ||
		old.GetRole() != n.GetRole() ||
		!proto.Equal(old.GetSpec().GetAnnotations(), n.GetSpec().GetAnnotations()) ||
		!proto.Equal(old.GetDescription(), n.GetDescription())
}

// FirstCluster returns the cluster object (nil if none or unreadable):
// its spec holds the orchestration settings the reconcilers follow.
func FirstCluster(tx store.ReadTx) *api.Cluster {
	clusters, err := store.FindClusters(tx, store.All)
	if err != nil || len(clusters) == 0 {
		return nil
	}
	return clusters[0]
}

// TasksOf returns the tasks ours accepts: of a removed service, those
// its orchestrator made.
func TasksOf(tasks []*api.Task, ours func(*api.Task) bool) []*api.Task {
	var out []*api.Task
	for _, t := range tasks {
		if ours(t) {
			out = append(out, t)
		}
	}
	return out
}

// SetDesired raises t's desired state to state within tx.
func SetDesired(tx store.Tx, t *api.Task, state api.TaskState) error {
	t.DesiredState = state
	if err := tx.Update(t); err != nil {
		return fmt.Errorf("set task %s desired %v: %w", t.GetId(), state, err)
	}
	return nil
}

// PlacedPass is what a pass of an orchestrator whose tasks follow the
// nodes (global services, jobs) reads: the cluster, the services to
// reconcile and, only when there is any, every node — with thousands of
// nodes, a node event must not cost a copy of every node when no service
// of the orchestrator's kind exists.
type PlacedPass struct {
	Cluster *api.Cluster
	IDs     []string
	Nodes   []*api.Node
}

// ReadPlaced expands w (see Expand) and reads what the pass needs in tx.
func (w *ServiceWork) ReadPlaced(tx store.ReadTx, kind func(*api.Service) bool, ours func(*api.Task) bool) (PlacedPass, error) {
	p := PlacedPass{Cluster: FirstCluster(tx)}
	if err := w.Expand(tx, kind, ours); err != nil {
		return p, err
	}
	p.IDs = w.IDs()
	if len(p.IDs) == 0 {
		return p, nil
	}
	var err error
	p.Nodes, err = store.FindNodes(tx, store.All)
	return p, err
}
