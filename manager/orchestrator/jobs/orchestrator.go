// Package jobs is the orchestrator of replicated and global jobs: tasks
// that run to completion (desired state COMPLETE).
//
// A replicated job runs until TotalCompletions tasks completed (default:
// MaxConcurrent, itself 1 by default), at most MaxConcurrent at a time,
// each in its own slot. A global job runs once on every node that
// accepts tasks and meets its constraints, including nodes that join
// while it runs. A completed task is never run again; a failed one goes
// to the Restarter, which replaces it as its restart policy says (on
// failure by default; a slot the policy gave up on stays empty).
//
// Every update of a job starts a new iteration (the control API bumps
// JobStatus.JobIteration): the tasks of older iterations are shut down
// if they may still run and removed once they do not, and the new
// iteration starts from zero completions.
//
// Run watches services, tasks and nodes, and reconciles the jobs a
// committed change concerns (every one when a node changes), all of them
// at start.
package jobs

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

// Orchestrator reconciles jobs. Run it on the leader.
type Orchestrator struct {
	store     *store.MemoryStore
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

// New returns the orchestrator of the jobs in s, which hands failed tasks
// to r.
func New(s *store.MemoryStore, r orchestrator.Restarter, opts ...Option) *Orchestrator {
	opt := orchestrator.NewOptions(opts)
	return &Orchestrator{store: s, restarter: r, placer: opt.Placer, clock: opt.Clock, log: opt.Log}
}

// Run reconciles until ctx ends (then it returns nil) or the store closes
// its watch.
func (o *Orchestrator) Run(ctx context.Context) error {
	rs := newRunState()
	l := orchestrator.Loop{Name: "jobs orchestrator", Store: o.store, Clock: o.clock, Log: o.log,
		Filter: store.MatchKind(store.KindService, store.KindTask, store.KindNode),
		Note:   rs.note, Pending: rs.Pending, Pass: func(ctx context.Context) (time.Duration, error) { return 0, o.pass(ctx, rs) }}
	return l.Run(ctx)
}

// pass reconciles the jobs noted since the last pass.
func (o *Orchestrator) pass(ctx context.Context, rs *runState) error {
	work := rs.Take()
	var in orchestrator.PlacedPass
	var err error
	o.store.View(func(tx store.ReadTx) { in, err = work.ReadPlaced(tx, orchestrator.IsJob, isOurs) })
	if err == nil {
		err = o.write(ctx, in.Cluster, in.Nodes, in.IDs)
	}
	if err != nil {
		rs.Requeue(work)
	}
	return err
}

// write reconciles the pass's jobs, each in its own transaction of one
// batch.
func (o *Orchestrator) write(ctx context.Context, cluster *api.Cluster, nodes []*api.Node, ids []string) error {
	var failed []error
	var placed orchestrator.Settles
	err := o.store.Batch(ctx, func(b *store.Batch) error {
		for _, id := range ids {
			var settle func(error)
			err := b.Update(func(tx store.Tx) error {
				var err error
				settle, err = o.reconcileOne(ctx, tx, cluster, nodes, id)
				return err
			})
			placed.Add(settle, err)
			if err != nil {
				failed = append(failed, fmt.Errorf("job %s: %w", id, err))
			}
		}
		return nil
	})
	placed.Done(err)
	if err == nil && len(failed) > 0 {
		err = errors.Join(failed...)
	}
	return err
}

// reconcileOne reconciles the job with that ID within tx, returning the
// settle of the placement of the tasks it created, if any.
func (o *Orchestrator) reconcileOne(ctx context.Context, tx store.Tx, cluster *api.Cluster, nodes []*api.Node, id string) (func(error), error) {
	s := store.GetService(tx, id)
	if s != nil && !orchestrator.IsJob(s) {
		return nil, nil
	}
	tasks, err := store.FindTasks(tx, store.ByServiceID(id))
	if err != nil {
		return nil, fmt.Errorf("find tasks: %w", err)
	}
	var p plan
	switch {
	case s == nil:
		p = reconcileRemoved(orchestrator.TasksOf(tasks, isOurs))
	case orchestrator.IsReplicatedJob(s):
		p = reconcileReplicated(s, tasks, nodeMap(nodes))
	default:
		if p, err = reconcileGlobal(s, tasks, nodes); err != nil {
			o.log.ErrorContext(ctx, "jobs orchestrator: job left alone", "service.id", id, "error", err)
			return nil, nil
		}
	}
	return o.apply(ctx, tx, cluster, id, s, p)
}

// apply writes p for the job with that ID (s, nil if removed) within tx.
// It returns the settle of the placement of the tasks it created, if any
// (see orchestrator.CreatePlaced).
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
	created := len(p.createSlots) + len(p.createNodes)
	var settle func(error)
	if created > 0 {
		now := o.clock.Now()
		tasks := make([]*api.Task, 0, created)
		for _, n := range p.createSlots {
			tasks = append(tasks, orchestrator.NewSharedTask(s, n, "", now))
		}
		for _, n := range p.createNodes {
			tasks = append(tasks, orchestrator.NewSharedTask(s, 0, n, now))
		}
		var err error
		if settle, err = orchestrator.CreatePlaced(tx, o.placer, tasks); err != nil {
			return nil, err
		}
	}
	if len(p.remove)+len(p.shutdown)+len(p.restart)+created > 0 {
		o.log.DebugContext(ctx, "jobs orchestrator: reconciled job", "service.id", id, "iteration", iteration(s),
			"created", created, "removed", len(p.remove), "shut_down", len(p.shutdown), "restarted", len(p.restart))
	}
	return settle, nil
}

// isOurs reports whether a task belongs to a job: it carries an
// iteration.
func isOurs(t *api.Task) bool { return t.GetJobIteration() != nil }

func nodeMap(nodes []*api.Node) map[string]*api.Node {
	m := make(map[string]*api.Node, len(nodes))
	for _, n := range nodes {
		m[n.GetId()] = n
	}
	return m
}

// runState is what one Run has noted and not yet reconciled.
type runState struct{ orchestrator.ServiceWork }

func newRunState() *runState { return &runState{orchestrator.NewServiceWork()} }

// note takes one event in.
func (rs *runState) note(ev store.Event) { rs.NotePlaced(ev, orchestrator.IsJob, isOurs) }
