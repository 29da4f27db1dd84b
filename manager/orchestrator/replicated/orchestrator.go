// Package replicated is the orchestrator of replicated services: it keeps
// each service's slots 1..Replicas filled with a runnable task.
//
// For each service it reconciles (see reconcile):
//
//   - missing slots get a new task, the lowest free slot numbers first;
//     a slot its restart policy left empty (restart.GaveUp) stays empty
//     until the spec changes;
//   - extra slots are removed (desired REMOVE): first those whose task
//     does not run (stopped, then least advanced), then running ones from
//     the nodes holding the most tasks of the service;
//   - tasks that stopped, or whose node is gone, DOWN or drained, go to
//     the Restarter, which shuts them down and replaces them in the same
//     slot as their restart policy says (tasks that lost their node are
//     always replaced);
//   - slots holding tasks of an older spec go to the Updater;
//   - the tasks of a removed service get desired REMOVE, and its update
//     is cancelled;
//   - with the cluster's Rebalance option, tasks move gradually onto
//     nodes that joined or became available (see rebalance.go).
//
// Run watches services, tasks, nodes and the cluster, and reconciles the
// services a committed change concerns, all of them at start: nothing
// depends on what an earlier leader did in memory.
package replicated

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/openswarm/swarmd/api"
	"github.com/openswarm/swarmd/manager/orchestrator"
	"github.com/openswarm/swarmd/manager/state/store"
)

// Orchestrator reconciles replicated services. Run it on the leader.
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

// WithPlacer sets the Placer of the tasks created for new slots (default:
// none; they are created PENDING for the scheduler).
func WithPlacer(p orchestrator.Placer) Option { return orchestrator.WithPlacer(p) }

// New returns the orchestrator of the replicated services in s, which
// hands dirty slots to u and stopped or displaced tasks to r.
func New(s *store.MemoryStore, u orchestrator.Updater, r orchestrator.Restarter, opts ...Option) *Orchestrator {
	opt := orchestrator.NewOptions(opts)
	return &Orchestrator{store: s, updater: u, restarter: r, placer: opt.Placer, clock: opt.Clock, log: opt.Log}
}

// Run reconciles until ctx ends (then it returns nil) or the store closes
// its watch.
func (o *Orchestrator) Run(ctx context.Context) error {
	rs := newRunState(func(id string) bool {
		keeps := false
		o.store.View(func(tx store.ReadTx) { keeps = orchestrator.NodeKeepsTasks(store.Lookup[*api.Node](tx, id)) })
		return keeps
	})
	l := orchestrator.Loop{Name: "replicated orchestrator", Store: o.store, Clock: o.clock, Log: o.log,
		Filter: store.MatchKind(store.KindService, store.KindTask, store.KindNode, store.KindCluster),
		Note:   rs.note, Pending: rs.Pending, Pass: func(ctx context.Context) (time.Duration, error) { return 0, o.pass(ctx, rs) }}
	return l.Run(ctx)
}

// pass reconciles the services noted since the last pass.
func (o *Orchestrator) pass(ctx context.Context, rs *runState) error {
	job := rs.take()
	var cluster *api.Cluster
	var err error
	o.store.View(func(tx store.ReadTx) {
		cluster = orchestrator.FirstCluster(tx)
		err = job.Expand(tx, orchestrator.IsReplicated, isOurs)
	})
	rebalancing := cluster.GetSpec().GetOrchestration().GetRebalance()
	rs.startRebalancing(job, rebalancing)
	var outs []outcome
	if err == nil {
		outs, err = o.write(ctx, cluster, job.IDs(), rs.rebalance, rebalancing)
	}
	if err != nil {
		rs.failed(job)
		return err
	}
	for _, out := range outs {
		o.report(ctx, cluster, out, rs)
	}
	return nil
}

// outcome is what reconciling one service did, for the side effects that
// follow a successful write.
type outcome struct {
	id      string
	service *api.Service // nil: removed, or not a replicated service
	removed bool         // the service is gone
	dirty   []orchestrator.Slot
	wave    *wave    // the rebalancing step taken, if any
	created []string // the IDs of the tasks created for new slots
	// settle ends the placement of the created tasks (see
	// orchestrator.Placer); nil if none was asked for.
	settle func(error)
}

// writers is how many batches a pass writes at once when it has many
// services to reconcile. A batch waits for each of its proposals to be
// applied before it prepares the next: with one, preparing and applying
// took turns, and a burst of new services (100 x 1,000 tasks) used 1.3 of
// the 2 cores it had; with several, one batch prepares while another's
// proposal is written and applied (1.15-1.42 s instead of 1.52-1.69 s).
const writers = 3

// write reconciles the job's services, each in its own transaction, in
// up to writers batches written at once (each service in one of them). A
// service whose reconciliation fails is noted again.
func (o *Orchestrator) write(ctx context.Context, cluster *api.Cluster, ids []string, rebalance map[string]int, rebalancing bool) ([]outcome, error) {
	n := min(writers, len(ids)/minPerWriter)
	if n < 2 {
		return o.writeBatch(ctx, cluster, ids, rebalance, rebalancing)
	}
	parts := make([][]string, n)
	for i, id := range ids {
		parts[i%n] = append(parts[i%n], id)
	}
	outs := make([][]outcome, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i, part := range parts {
		wg.Go(func() { outs[i], errs[i] = o.writeBatch(ctx, cluster, part, rebalance, rebalancing) })
	}
	wg.Wait()
	return slices.Concat(outs...), errors.Join(errs...)
}

// minPerWriter is the fewest services a pass gives each of its batches.
const minPerWriter = 4

// writeBatch reconciles the services, each in its own transaction of one
// batch.
func (o *Orchestrator) writeBatch(ctx context.Context, cluster *api.Cluster, ids []string, rebalance map[string]int, rebalancing bool) ([]outcome, error) {
	nodes := newNodeCache()
	var outs []outcome
	var failed []error
	var placed orchestrator.Settles
	err := o.store.Batch(ctx, func(b *store.Batch) error {
		for _, id := range ids {
			var out outcome
			err := b.Update(func(tx store.Tx) error {
				var err error
				_, candidate := rebalance[id]
				out, err = o.reconcileOne(ctx, tx, cluster, id, nodes, rebalancing && candidate, rebalance[id])
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
func (o *Orchestrator) reconcileOne(ctx context.Context, tx store.Tx, cluster *api.Cluster, id string, nodes *nodeCache, rebalance bool, lastImbalance int) (outcome, error) {
	s := store.GetService(tx, id)
	if s != nil && !orchestrator.IsReplicated(s) {
		return outcome{id: id}, nil
	}
	// The stored tasks, shared and read-only: most passes write none of
	// them, and those written are cloned first (writable).
	var tasks []*api.Task
	err := store.Each(tx, store.ByServiceID(id), func(t *api.Task) bool {
		tasks = append(tasks, t)
		return true
	})
	if err != nil {
		return outcome{}, fmt.Errorf("find tasks: %w", err)
	}
	if s == nil {
		tasks = orchestrator.TasksOf(tasks, isOurs)
	}
	p := reconcile(s, tasks, nodes.of(tx, tasks))
	if rebalance && p.settled() {
		all, err := nodes.all(tx)
		if err != nil {
			return outcome{}, err
		}
		w := nextWave(s, tasks, eligibleNodes(s, all), lastImbalance)
		p.restart = w.moves
		p = p.writable()
		created, settle, err := o.apply(ctx, tx, cluster, id, s, p)
		return outcome{id: id, service: s, removed: s == nil, dirty: p.dirty, wave: &w, created: created, settle: settle}, err
	}
	p = p.writable()
	created, settle, err := o.apply(ctx, tx, cluster, id, s, p)
	return outcome{id: id, service: s, removed: s == nil, dirty: p.dirty, created: created, settle: settle}, err
}

// apply writes p for the service with that ID (s, nil if removed) within
// tx, returning the IDs of the tasks it created for new slots and, if the
// placer placed some, the settle of that placement (for the caller to
// call once the write has ended; apply calls it itself if it fails).
func (o *Orchestrator) apply(ctx context.Context, tx store.Tx, cluster *api.Cluster, id string, s *api.Service, p plan) ([]string, func(error), error) {
	for _, t := range p.remove {
		t.DesiredState = api.TaskState_TASK_STATE_REMOVE
		if err := tx.Update(t); err != nil {
			return nil, nil, fmt.Errorf("remove task %s: %w", t.GetId(), err)
		}
	}
	for _, t := range p.restart {
		if err := o.restarter.Restart(ctx, tx, cluster, s, t); err != nil {
			return nil, nil, err
		}
	}
	var created []string
	var settle func(error)
	if len(p.create) > 0 {
		now := o.clock.Now()
		tasks := make([]*api.Task, len(p.create))
		created = make([]string, len(p.create))
		for i, slot := range p.create {
			tasks[i] = orchestrator.NewSharedTask(s, slot, "", now)
			created[i] = tasks[i].GetId()
		}
		var err error
		if settle, err = orchestrator.CreatePlaced(tx, o.placer, tasks); err != nil {
			return nil, nil, err
		}
	}
	if len(p.remove)+len(p.create)+len(p.restart) > 0 {
		o.log.DebugContext(ctx, "replicated orchestrator: reconciled service", "service.id", id,
			"created", len(p.create), "removed", len(p.remove), "restarted", len(p.restart))
	}
	return created, settle, nil
}

// report hands a written outcome to the Updater and the rebalancing
// state.
func (o *Orchestrator) report(ctx context.Context, cluster *api.Cluster, out outcome, rs *runState) {
	switch {
	case out.removed:
		o.updater.Cancel(out.id)
		delete(rs.rebalance, out.id)
		return
	case out.service == nil:
		return
	}
	rs.ownCreates(out.created)
	if len(out.dirty) > 0 {
		o.updater.Update(ctx, cluster, out.service, out.dirty)
	}
	if w := out.wave; w != nil {
		switch {
		case w.done:
			delete(rs.rebalance, out.id)
			o.log.DebugContext(ctx, "replicated orchestrator: rebalancing over", "service.id", out.id, "reason", w.why, "imbalance", w.imbalance)
		case len(w.moves) > 0:
			rs.rebalance[out.id] = w.imbalance
			o.log.InfoContext(ctx, "replicated orchestrator: rebalancing", "service.id", out.id, "moves", len(w.moves), "imbalance", w.imbalance)
		}
	}
}

// isOurs reports whether a task belongs to a replicated service: it has
// a slot and no job iteration.
func isOurs(t *api.Task) bool { return t.GetSlot() > 0 && t.GetJobIteration() == nil }

// nodeCache reads each node once per pass.
type nodeCache struct {
	byID   map[string]*api.Node
	listed []*api.Node
}

func newNodeCache() *nodeCache { return &nodeCache{byID: make(map[string]*api.Node)} }

// of returns the nodes the tasks are on (gone ones are missing).
func (c *nodeCache) of(tx store.ReadTx, tasks []*api.Task) map[string]*api.Node {
	out := make(map[string]*api.Node)
	for _, t := range tasks {
		id := t.GetNodeId()
		if id == "" {
			continue
		}
		n, ok := c.byID[id]
		if !ok {
			n = store.Lookup[*api.Node](tx, id) // read-only
			c.byID[id] = n
		}
		if n != nil {
			out[id] = n
		}
	}
	return out
}

// all returns every node.
func (c *nodeCache) all(tx store.ReadTx) ([]*api.Node, error) {
	if c.listed == nil {
		nodes, err := store.FindNodes(tx, store.All)
		if err != nil {
			return nil, fmt.Errorf("find nodes: %w", err)
		}
		c.listed = append(make([]*api.Node, 0, len(nodes)), nodes...)
	}
	return c.listed, nil
}
