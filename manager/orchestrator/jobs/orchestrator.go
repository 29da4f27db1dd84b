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
	"maps"
	"slices"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/openswarm/swarmd/api"
	"github.com/openswarm/swarmd/manager/orchestrator"
	"github.com/openswarm/swarmd/manager/state/store"
	"google.golang.org/protobuf/proto"
)

// Waits before a failed pass is tried again.
const (
	minRetryDelay = 50 * time.Millisecond
	maxRetryDelay = 5 * time.Second
)

var errWatchClosed = errors.New("jobs orchestrator: store watch closed")

// Orchestrator reconciles jobs. Run it on the leader.
type Orchestrator struct {
	store     *store.MemoryStore
	restarter orchestrator.Restarter
	clock     clockwork.Clock
	log       *slog.Logger
}

// Option configures an Orchestrator.
type Option func(*Orchestrator)

// WithClock sets the clock of task timestamps and retries (default: the
// real clock).
func WithClock(c clockwork.Clock) Option { return func(o *Orchestrator) { o.clock = c } }

// WithLogger sets the logger (default slog.Default()).
func WithLogger(l *slog.Logger) Option { return func(o *Orchestrator) { o.log = l } }

// New returns the orchestrator of the jobs in s, which hands failed tasks
// to r.
func New(s *store.MemoryStore, r orchestrator.Restarter, opts ...Option) *Orchestrator {
	o := &Orchestrator{store: s, restarter: r, clock: clockwork.NewRealClock(), log: slog.Default()}
	for _, opt := range opts {
		opt(o)
	}
	return o
}

// Run reconciles until ctx ends (then it returns nil) or the store closes
// its watch.
func (o *Orchestrator) Run(ctx context.Context) error {
	events, cancel, err := o.store.ViewAndWatch(nil, watchFilter)
	if err != nil {
		return fmt.Errorf("jobs orchestrator: watch the store: %w", err)
	}
	defer cancel()
	rs := newRunState()
	defer rs.stopRetry()
	for {
		if rs.due() {
			o.pass(ctx, rs)
		}
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-events:
			if !ok {
				return errWatchClosed
			}
			rs.note(ev)
		case <-rs.retryC():
			rs.retry, rs.paused = nil, false
		}
	}
}

// watchFilter passes what the orchestrator reacts to, and commits.
func watchFilter(e store.Event) bool {
	switch e.Action {
	case store.EventCommit, store.EventRestore:
		return true
	}
	switch e.Kind() {
	case store.KindService, store.KindTask, store.KindNode:
		return true
	}
	return false
}

// pass reconciles the jobs noted since the last pass.
func (o *Orchestrator) pass(ctx context.Context, rs *runState) {
	work := rs.take()
	var cluster *api.Cluster
	var nodes []*api.Node
	var err error
	o.store.View(func(tx store.ReadTx) {
		cluster = firstCluster(tx)
		if err = work.expand(tx); err == nil {
			nodes, err = store.FindNodes(tx, store.All)
		}
	})
	if err == nil {
		err = o.write(ctx, cluster, nodes, work)
	}
	if err != nil {
		if ctx.Err() != nil {
			return
		}
		rs.failed(work)
		o.log.WarnContext(ctx, "jobs orchestrator: reconcile failed; retrying", "error", err, "retry.in", rs.pause(o.clock))
		return
	}
	rs.failures = 0
}

// write reconciles the pass's jobs, each in its own transaction of one
// batch.
func (o *Orchestrator) write(ctx context.Context, cluster *api.Cluster, nodes []*api.Node, work *pending) error {
	var failed []error
	err := o.store.Batch(ctx, func(b *store.Batch) error {
		for _, id := range work.ids() {
			err := b.Update(func(tx store.Tx) error { return o.reconcileOne(ctx, tx, cluster, nodes, id) })
			if err != nil {
				failed = append(failed, fmt.Errorf("job %s: %w", id, err))
			}
		}
		return nil
	})
	if err == nil && len(failed) > 0 {
		err = errors.Join(failed...)
	}
	return err
}

// reconcileOne reconciles the job with that ID within tx.
func (o *Orchestrator) reconcileOne(ctx context.Context, tx store.Tx, cluster *api.Cluster, nodes []*api.Node, id string) error {
	s := store.GetService(tx, id)
	if s != nil && !orchestrator.IsJob(s) {
		return nil
	}
	tasks, err := store.FindTasks(tx, store.ByServiceID(id))
	if err != nil {
		return fmt.Errorf("find tasks: %w", err)
	}
	var p plan
	switch {
	case s == nil:
		p = reconcileRemoved(ours(tasks))
	case orchestrator.IsReplicatedJob(s):
		p = reconcileReplicated(s, tasks, nodeMap(nodes))
	default:
		if p, err = reconcileGlobal(s, tasks, nodes); err != nil {
			o.log.ErrorContext(ctx, "jobs orchestrator: job left alone", "service.id", id, "error", err)
			return nil
		}
	}
	return o.apply(ctx, tx, cluster, id, s, p)
}

// apply writes p for the job with that ID (s, nil if removed) within tx.
func (o *Orchestrator) apply(ctx context.Context, tx store.Tx, cluster *api.Cluster, id string, s *api.Service, p plan) error {
	for _, t := range p.remove {
		if err := setDesired(tx, t, api.TaskState_TASK_STATE_REMOVE); err != nil {
			return err
		}
	}
	for _, t := range p.shutdown {
		if err := setDesired(tx, t, api.TaskState_TASK_STATE_SHUTDOWN); err != nil {
			return err
		}
	}
	for _, t := range p.restart {
		if err := o.restarter.Restart(ctx, tx, cluster, s, t); err != nil {
			return err
		}
	}
	now := o.clock.Now()
	for _, n := range p.createSlots {
		if err := tx.Create(orchestrator.NewTask(s, n, "", now)); err != nil {
			return fmt.Errorf("create task for slot %d: %w", n, err)
		}
	}
	for _, n := range p.createNodes {
		if err := tx.Create(orchestrator.NewTask(s, 0, n, now)); err != nil {
			return fmt.Errorf("create task for node %s: %w", n, err)
		}
	}
	created := len(p.createSlots) + len(p.createNodes)
	if len(p.remove)+len(p.shutdown)+len(p.restart)+created > 0 {
		o.log.DebugContext(ctx, "jobs orchestrator: reconciled job", "service.id", id, "iteration", iteration(s),
			"created", created, "removed", len(p.remove), "shut_down", len(p.shutdown), "restarted", len(p.restart))
	}
	return nil
}

func setDesired(tx store.Tx, t *api.Task, state api.TaskState) error {
	t.DesiredState = state
	if err := tx.Update(t); err != nil {
		return fmt.Errorf("set task %s desired %v: %w", t.GetId(), state, err)
	}
	return nil
}

// ours returns the tasks that belong to a job: they carry an iteration.
func ours(tasks []*api.Task) []*api.Task {
	var out []*api.Task
	for _, t := range tasks {
		if isOurs(t) {
			out = append(out, t)
		}
	}
	return out
}

func isOurs(t *api.Task) bool { return t.GetJobIteration() != nil }

func nodeMap(nodes []*api.Node) map[string]*api.Node {
	m := make(map[string]*api.Node, len(nodes))
	for _, n := range nodes {
		m[n.GetId()] = n
	}
	return m
}

func firstCluster(tx store.ReadTx) *api.Cluster {
	clusters, err := store.FindClusters(tx, store.All)
	if err != nil || len(clusters) == 0 {
		return nil
	}
	return clusters[0]
}

// runState is what one Run has noted and not yet reconciled.
type runState struct {
	dirty map[string]bool // jobs to reconcile
	// all: every job (a node changed).
	all bool
	// orphans: also the tasks of removed services (start, restore).
	orphans bool
	// mid: events of a request were seen, not yet its commit.
	mid bool
	// paused: a pass failed; the next one waits for the retry timer.
	paused   bool
	retry    clockwork.Timer
	failures int
}

func newRunState() *runState {
	return &runState{dirty: make(map[string]bool), all: true, orphans: true}
}

// due reports whether a pass should run now.
func (rs *runState) due() bool {
	return !rs.mid && !rs.paused && (rs.all || rs.orphans || len(rs.dirty) > 0)
}

// note takes one event in.
func (rs *runState) note(ev store.Event) {
	switch ev.Action {
	case store.EventCommit:
		rs.mid = false
		return
	case store.EventRestore:
		rs.all, rs.orphans = true, true
		return
	}
	rs.mid = true
	switch o := ev.Object.(type) {
	case *api.Service:
		if orchestrator.IsJob(o) {
			rs.dirty[o.GetId()] = true
		}
	case *api.Task:
		old, _ := ev.Old.(*api.Task)
		if isOurs(o) && taskMatters(ev.Action, old, o) {
			rs.dirty[o.GetServiceId()] = true
		}
	case *api.Node:
		old, _ := ev.Old.(*api.Node)
		rs.all = rs.all || nodeMatters(ev.Action, old, o)
	}
}

// taskMatters reports whether a task event may change a reconciliation.
func taskMatters(action store.EventAction, old, t *api.Task) bool {
	if action != store.EventUpdate {
		return action == store.EventCreate || orchestrator.IsRunnable(t)
	}
	return old.GetDesiredState() != t.GetDesiredState() || orchestrator.HasStopped(old) != orchestrator.HasStopped(t)
}

// nodeMatters reports whether a node event may change which nodes run a
// job.
func nodeMatters(action store.EventAction, old, n *api.Node) bool {
	if action != store.EventUpdate {
		return true
	}
	return old.GetStatus().GetState() != n.GetStatus().GetState() ||
		old.GetSpec().GetAvailability() != n.GetSpec().GetAvailability() ||
		old.GetRole() != n.GetRole() ||
		!proto.Equal(old.GetSpec().GetAnnotations(), n.GetSpec().GetAnnotations()) ||
		!proto.Equal(old.GetDescription(), n.GetDescription())
}

// pending is the work of one pass.
type pending struct {
	services     map[string]bool
	all, orphans bool
}

// take hands the noted work to a pass.
func (rs *runState) take() *pending {
	j := &pending{services: rs.dirty, all: rs.all, orphans: rs.orphans}
	rs.dirty = make(map[string]bool)
	rs.all, rs.orphans = false, false
	return j
}

// expand lists the jobs "all" and "orphans" stand for.
func (j *pending) expand(tx store.ReadTx) error {
	if j.all {
		services, err := store.FindServices(tx, store.All)
		if err != nil {
			return err
		}
		for _, s := range services {
			if orchestrator.IsJob(s) {
				j.services[s.GetId()] = true
			}
		}
	}
	if j.orphans {
		tasks, err := store.FindTasks(tx, store.All)
		if err != nil {
			return err
		}
		for _, t := range tasks {
			if isOurs(t) && orchestrator.IsRunnable(t) && store.GetService(tx, t.GetServiceId()) == nil {
				j.services[t.GetServiceId()] = true
			}
		}
	}
	return nil
}

func (j *pending) ids() []string { return slices.Sorted(maps.Keys(j.services)) }

// failed notes the job's work again.
func (rs *runState) failed(j *pending) {
	for id := range j.services {
		rs.dirty[id] = true
	}
	rs.all = rs.all || j.all
	rs.orphans = rs.orphans || j.orphans
}

// pause holds passes back until a retry timer fires, waiting longer
// after each failure in a row; it returns the wait.
func (rs *runState) pause(clock clockwork.Clock) time.Duration {
	rs.failures++
	wait := min(minRetryDelay<<min(rs.failures-1, 16), maxRetryDelay)
	rs.stopRetry()
	rs.paused, rs.retry = true, clock.NewTimer(wait)
	return wait
}

func (rs *runState) retryC() <-chan time.Time {
	if rs.retry == nil {
		return nil
	}
	return rs.retry.Chan()
}

func (rs *runState) stopRetry() {
	if rs.retry != nil {
		rs.retry.Stop()
		rs.retry = nil
	}
}
