// Package taskreaper deletes the tasks nobody needs any more: tasks the
// orchestrators removed (desired REMOVE) once they stopped, the dead tasks
// of removed services, and the oldest dead tasks of each slot (or node,
// for global services) beyond the cluster's task history retention limit
// (Spec.Orchestration.TaskHistoryRetentionLimit, default 5; negative:
// keep all). See reap for the exact rules.
//
// Run watches tasks, services, nodes and the cluster, and looks at the
// slots a committed change concerns (all of them at start); the deletes
// of one pass go out in one batch.
package taskreaper

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/openswarm/swarmd/api"
	"github.com/openswarm/swarmd/manager/orchestrator"
	"github.com/openswarm/swarmd/manager/state/store"
	"google.golang.org/protobuf/proto"
)

// Reaper deletes unneeded tasks. Run it on the leader.
type Reaper struct {
	store *store.MemoryStore
	clock clockwork.Clock
	log   *slog.Logger
}

// Option configures a Reaper.
type Option = orchestrator.Option

// WithClock sets the clock of retries (default: the real clock).
func WithClock(c clockwork.Clock) Option { return orchestrator.WithClock(c) }

// WithLogger sets the logger (default slog.Default()).
func WithLogger(l *slog.Logger) Option { return orchestrator.WithLogger(l) }

// New returns the reaper of the tasks in s.
func New(s *store.MemoryStore, opts ...Option) *Reaper {
	opt := orchestrator.NewOptions(opts)
	return &Reaper{store: s, clock: opt.Clock, log: opt.Log}
}

// Run deletes tasks until ctx ends (then it returns nil) or the store
// closes its watch.
func (r *Reaper) Run(ctx context.Context) error {
	rs := &runState{groups: make(map[groupKey]bool), services: make(map[string]bool), all: true}
	l := orchestrator.Loop{Name: "task reaper", Store: r.store, Clock: r.clock, Log: r.log,
		Filter: watchFilter,
		Note:   rs.note, Pending: rs.due, Pass: func(ctx context.Context) (time.Duration, error) { return 0, r.pass(ctx, rs) }}
	return l.Run(ctx)
}

// watchFilter passes what the reaper reacts to.
func watchFilter(e store.Event) bool {
	switch e.Kind() {
	case store.KindTask, store.KindService, store.KindCluster:
		return true
	case store.KindNode:
		return e.Action == store.EventRemove
	}
	return false
}

// pass deletes what the noted groups no longer need.
func (r *Reaper) pass(ctx context.Context, rs *runState) error {
	work := rs.take()
	var doomed []*api.Task
	var err error
	r.store.View(func(tx store.ReadTx) { doomed, err = work.decide(tx) })
	if err == nil {
		err = r.delete(ctx, doomed)
	}
	if err != nil {
		rs.failed(work)
	}
	return err
}

// decide reads the work's groups and returns the tasks to delete.
func (w *pending) decide(tx store.ReadTx) ([]*api.Task, error) {
	tasks, err := w.tasks(tx)
	if err != nil {
		return nil, err
	}
	groups := make(map[groupKey][]*api.Task)
	for _, t := range tasks {
		groups[keyOf(t)] = append(groups[keyOf(t)], t)
	}
	services := make(map[string]*api.Service)
	wld := world{
		service: func(id string) *api.Service {
			s, ok := services[id]
			if !ok {
				s = store.GetService(tx, id)
				services[id] = s
			}
			return s
		},
		nodeGone: func(id string) bool { return store.Lookup[*api.Node](tx, id) == nil },
		limit:    historyLimit(tx),
	}
	var doomed []*api.Task
	for _, g := range groups {
		doomed = append(doomed, reap(wld, g)...)
	}
	return doomed, nil
}

// tasks reads every task of the work's groups: the stored tasks, shared
// and read-only (the reaper only reads them, and deletes by ID).
func (w *pending) tasks(tx store.ReadTx) ([]*api.Task, error) {
	var out []*api.Task
	if w.all {
		err := store.Each(tx, store.All, func(t *api.Task) bool { out = append(out, t); return true })
		return out, err
	}
	var bys []store.By
	for id := range w.services {
		bys = append(bys, store.ByServiceID(id))
	}
	for k := range w.groups {
		if w.services[k.service] {
			continue
		}
		if k.slot > 0 {
			bys = append(bys, store.BySlot(k.service, k.slot))
		} else {
			bys = append(bys, store.ByNodeID(k.node))
		}
	}
	if len(bys) == 0 {
		return nil, nil
	}
	err := store.Each(tx, store.Or(bys...), func(t *api.Task) bool {
		if w.services[t.GetServiceId()] || w.groups[keyOf(t)] {
			out = append(out, t)
		}
		return true
	})
	if err != nil {
		return nil, fmt.Errorf("find tasks: %w", err)
	}
	return out, nil
}

func historyLimit(tx store.ReadTx) int64 {
	clusters, err := store.FindClusters(tx, store.All)
	if err != nil || len(clusters) == 0 {
		return orchestrator.HistoryLimit(nil)
	}
	return orchestrator.HistoryLimit(clusters[0])
}

// delete deletes the tasks in one batch, each only if it is still the
// version read (a task that changed since is looked at again: its change
// is an event).
func (r *Reaper) delete(ctx context.Context, tasks []*api.Task) error {
	if len(tasks) == 0 {
		return nil
	}
	deleted := 0
	err := r.store.Batch(ctx, func(b *store.Batch) error {
		for _, t := range tasks {
			err := b.Update(func(tx store.Tx) error {
				cur := store.Lookup[*api.Task](tx, t.GetId())
				if cur == nil || !proto.Equal(cur.GetMeta().GetVersion(), t.GetMeta().GetVersion()) {
					return nil
				}
				deleted++
				return store.DeleteTask(tx, t.GetId())
			})
			if err != nil {
				return fmt.Errorf("delete task %s: %w", t.GetId(), err)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	r.log.DebugContext(ctx, "task reaper: tasks deleted", "count", deleted)
	return nil
}

// runState is what one Run has noted and not yet looked at.
type runState struct {
	groups   map[groupKey]bool
	services map[string]bool // every group of these services
	all      bool            // every task (start, restore, node removed, cluster changed)
}

// due reports whether a pass should run now.
func (rs *runState) due() bool {
	return rs.all || len(rs.groups) > 0 || len(rs.services) > 0
}

// note takes one event in.
func (rs *runState) note(ev store.Event) {
	if ev.Action == store.EventRestore {
		rs.all = true
		return
	}
	switch o := ev.Object.(type) {
	case *api.Task:
		// Only a task no longer meant to run is ever deleted (see
		// reap), and only such tasks count as history: a new task
		// still meant to run changes nothing in its group.
		old, _ := ev.Old.(*api.Task)
		if ev.Action == store.EventCreate && !orchestrator.IsRunnable(o) || ev.Action == store.EventUpdate &&
			(old.GetDesiredState() != o.GetDesiredState() || orchestrator.HasStopped(old) != orchestrator.HasStopped(o)) {
			rs.groups[keyOf(o)] = true
		}
	case *api.Service:
		old, _ := ev.Old.(*api.Service)
		if ev.Action == store.EventRemove || !proto.Equal(old.GetSpecVersion(), o.GetSpecVersion()) {
			rs.services[o.GetId()] = true
		}
	case *api.Node:
		rs.all = true // removed: its REMOVE tasks can go
	case *api.Cluster:
		old, _ := ev.Old.(*api.Cluster)
		rs.all = rs.all || orchestrator.HistoryLimit(old) != orchestrator.HistoryLimit(o)
	}
}

// pending is the work of one pass.
type pending struct {
	groups   map[groupKey]bool
	services map[string]bool
	all      bool
}

// take hands the noted work to a pass.
func (rs *runState) take() *pending {
	w := &pending{groups: rs.groups, services: rs.services, all: rs.all}
	rs.groups, rs.services, rs.all = make(map[groupKey]bool), make(map[string]bool), false
	return w
}

// failed notes the work again.
func (rs *runState) failed(w *pending) {
	for k := range w.groups {
		rs.groups[k] = true
	}
	for id := range w.services {
		rs.services[id] = true
	}
	rs.all = rs.all || w.all
}
