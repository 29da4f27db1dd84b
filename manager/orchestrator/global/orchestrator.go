// Package global is the orchestrator of global services: one task on
// every node that may run it.
//
// For each service it reconciles (see reconcile):
//
//   - a node that accepts tasks and meets the service's constraints, and
//     has no runnable task of it, gets one (unless the restart policy
//     left that node empty on purpose: restart.GaveUp);
//   - a paused node keeps its task but gets no new one;
//   - the task of a DOWN or drained node is shut down (desired
//     SHUTDOWN), with no replacement elsewhere; it comes back when the
//     node does;
//   - the task of a node that is gone, or no longer meets the
//     constraints (labels or role changed), is removed (desired REMOVE);
//   - tasks that stopped go to the Restarter (which replaces them on the
//     same node if it still accepts tasks); tasks of an older spec go to
//     the Updater, one slot per node;
//   - the tasks of a removed service are removed and its update
//     cancelled.
//
// Run watches services, tasks and nodes, and reconciles the services a
// committed change concerns (every one when a node changes), all of them
// at start.
package global

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/openswarm/swarmd/api"
	"github.com/openswarm/swarmd/manager/orchestrator"
	"github.com/openswarm/swarmd/manager/state/store"
)

// Orchestrator reconciles global services. Run it on the leader.
type Orchestrator struct {
	store     *store.MemoryStore
	updater   orchestrator.Updater
	restarter orchestrator.Restarter
	placer    orchestrator.Placer
	clock     clockwork.Clock
	log       *slog.Logger
}

// Option configures an Orchestrator.
type Option = orchestrator.Option

// WithClock sets the clock of task timestamps and retries (default: the
// real clock).
func WithClock(c clockwork.Clock) Option { return orchestrator.WithClock(c) }

// WithLogger sets the logger (default slog.Default()).
func WithLogger(l *slog.Logger) Option { return orchestrator.WithLogger(l) }

// WithPlacer sets the Placer of the tasks created (default: none; they
// are created PENDING for the scheduler).
func WithPlacer(p orchestrator.Placer) Option { return orchestrator.WithPlacer(p) }

// New returns the orchestrator of the global services in s, which hands
// dirty slots to u and stopped tasks to r.
func New(s *store.MemoryStore, u orchestrator.Updater, r orchestrator.Restarter, opts ...Option) *Orchestrator {
	opt := orchestrator.NewOptions(opts)
	return &Orchestrator{store: s, updater: u, restarter: r, placer: opt.Placer, clock: opt.Clock, log: opt.Log}
}

// Run reconciles until ctx ends (then it returns nil) or the store closes
// its watch.
func (o *Orchestrator) Run(ctx context.Context) error {
	rs := newRunState()
	l := orchestrator.Loop{Name: "global orchestrator", Store: o.store, Clock: o.clock, Log: o.log,
		Filter: store.MatchKind(store.KindService, store.KindTask, store.KindNode),
		Note:   rs.note, Pending: rs.Pending, Pass: func(ctx context.Context) (time.Duration, error) { return 0, o.pass(ctx, rs) }}
	return l.Run(ctx)
}

// pass reconciles the services noted since the last pass.
func (o *Orchestrator) pass(ctx context.Context, rs *runState) error {
	job := rs.Take()
	var in orchestrator.PlacedPass
	var err error
	o.store.View(func(tx store.ReadTx) { in, err = job.ReadPlaced(tx, orchestrator.IsGlobal, isOurs) })
	var outs []outcome
	if err == nil {
		outs, err = o.write(ctx, in.Cluster, in.Nodes, in.IDs)
	}
	if err != nil {
		rs.Requeue(job)
		return err
	}
	for _, out := range outs {
		switch {
		case out.removed:
			o.updater.Cancel(out.id)
		case len(out.dirty) > 0:
			o.updater.Update(ctx, in.Cluster, out.service, out.dirty)
		}
	}
	return nil
}

// outcome is what reconciling one service did, for the Updater.
type outcome struct {
	id      string
	service *api.Service
	removed bool
	dirty   []orchestrator.Slot
	// settle ends the placement of the tasks created (see
	// orchestrator.Placer); nil if none was asked for.
	settle func(error)
}

// write reconciles the job's services, each in its own transaction of
// one batch.
func (o *Orchestrator) write(ctx context.Context, cluster *api.Cluster, nodes []*api.Node, ids []string) ([]outcome, error) {
	var outs []outcome
	var failed []error
	var placed orchestrator.Settles
	err := o.store.Batch(ctx, func(b *store.Batch) error {
		for _, id := range ids {
			var out outcome
			err := b.Update(func(tx store.Tx) error {
				var err error
				out, err = o.reconcileOne(ctx, tx, cluster, nodes, id)
				return err
			})
			placed.Add(out.settle, err)
			if err != nil {
				failed = append(failed, fmt.Errorf("service %s: %w", id, err))
				continue
			}
			outs = append(outs, out)
		}
		return nil
	})
	placed.Done(err)
	if err == nil && len(failed) > 0 {
		err = errors.Join(failed...)
	}
	return outs, err
}

// reconcileOne reconciles the service with that ID within tx.
func (o *Orchestrator) reconcileOne(ctx context.Context, tx store.Tx, cluster *api.Cluster, nodes []*api.Node, id string) (outcome, error) {
	s := store.GetService(tx, id)
	if s != nil && !orchestrator.IsGlobal(s) {
		return outcome{id: id}, nil
	}
	tasks, err := store.FindTasks(tx, store.ByServiceID(id))
	if err != nil {
		return outcome{}, fmt.Errorf("find tasks: %w", err)
	}
	if s == nil {
		tasks = orchestrator.TasksOf(tasks, isOurs)
	}
	p, err := reconcile(s, tasks, nodes)
	if err != nil {
		o.log.ErrorContext(ctx, "global orchestrator: service left alone", "service.id", id, "error", err)
		return outcome{id: id}, nil
	}
	settle, err := o.apply(ctx, tx, cluster, id, s, p)
	if err != nil {
		return outcome{}, err
	}
	return outcome{id: id, service: s, removed: s == nil, dirty: p.dirty, settle: settle}, nil
}

// apply writes p for the service with that ID (s, nil if removed) within
// tx. It returns the settle of the placement of the tasks it created, if
// any (see orchestrator.CreatePlaced).
func (o *Orchestrator) apply(ctx context.Context, tx store.Tx, cluster *api.Cluster, id string, s *api.Service, p plan) (func(error), error) {
	for _, t := range p.remove {
		if err := orchestrator.SetDesired(tx, t, api.TaskState_TASK_STATE_REMOVE); err != nil {
			return nil, err
		}
	}
	for _, t := range p.shutdown {
		if err := orchestrator.SetDesired(tx, t, api.TaskState_TASK_STATE_SHUTDOWN); err != nil {
			return nil, err
		}
	}
	for _, t := range p.restart {
		if err := o.restarter.Restart(ctx, tx, cluster, s, t); err != nil {
			return nil, err
		}
	}
	var settle func(error)
	if len(p.create) > 0 {
		now := o.clock.Now()
		tasks := make([]*api.Task, len(p.create))
		for i, n := range p.create {
			tasks[i] = orchestrator.NewSharedTask(s, 0, n, now)
		}
		var err error
		if settle, err = orchestrator.CreatePlaced(tx, o.placer, tasks); err != nil {
			return nil, err
		}
	}
	if len(p.remove)+len(p.shutdown)+len(p.restart)+len(p.create) > 0 {
		o.log.DebugContext(ctx, "global orchestrator: reconciled service", "service.id", id,
			"created", len(p.create), "removed", len(p.remove), "shut_down", len(p.shutdown), "restarted", len(p.restart))
	}
	return settle, nil
}

// isOurs reports whether a task belongs to a global service: preset on
// a node, no slot, no job iteration.
func isOurs(t *api.Task) bool {
	return t.GetSlot() == 0 && t.GetNodeId() != "" && t.GetJobIteration() == nil
}

// runState is what one Run has noted and not yet reconciled.
type runState struct{ orchestrator.ServiceWork }

func newRunState() *runState { return &runState{orchestrator.NewServiceWork()} }

// note takes one event in.
func (rs *runState) note(ev store.Event) { rs.NotePlaced(ev, orchestrator.IsGlobal, isOurs) }
