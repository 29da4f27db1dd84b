// Package constraintenforcer moves tasks off nodes that no longer suit
// them. When a node's labels, role, availability or resources change,
// the runnable tasks on it whose placement constraints it no longer
// meets, or whose reservations no longer fit its resources, are handed
// to the Restarter, which shuts them down and replaces them in their slot
// (the scheduler then places the replacement elsewhere). Tasks of global
// services and jobs are left to their orchestrators, which follow node
// changes themselves. See evictions for the exact rules.
//
// Run watches nodes and looks at the nodes a committed change concerns,
// every node at start.
package constraintenforcer

import (
	"context"
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

// Enforcer moves tasks off nodes that no longer suit them. Run it on the
// leader.
type Enforcer struct {
	store     *store.MemoryStore
	restarter orchestrator.Restarter
	clock     clockwork.Clock
	log       *slog.Logger
}

// Option configures an Enforcer.
type Option = orchestrator.Option

// WithClock sets the clock of retries (default: the real clock).
func WithClock(c clockwork.Clock) Option { return orchestrator.WithClock(c) }

// WithLogger sets the logger (default slog.Default()).
func WithLogger(l *slog.Logger) Option { return orchestrator.WithLogger(l) }

// New returns the constraint enforcer of the nodes in s, which hands the
// tasks to move to r.
func New(s *store.MemoryStore, r orchestrator.Restarter, opts ...Option) *Enforcer {
	opt := orchestrator.NewOptions(opts)
	return &Enforcer{store: s, restarter: r, clock: opt.Clock, log: opt.Log}
}

// Run enforces until ctx ends (then it returns nil) or the store closes
// its watch.
func (e *Enforcer) Run(ctx context.Context) error {
	rs := &runState{nodes: make(map[string]bool), all: true}
	l := orchestrator.Loop{Name: "constraint enforcer", Store: e.store, Clock: e.clock, Log: e.log,
		Filter: watchFilter,
		Note:   rs.note, Pending: rs.due, Pass: func(ctx context.Context) (time.Duration, error) { return 0, e.pass(ctx, rs) }}
	return l.Run(ctx)
}

// watchFilter passes node changes (not removals).
func watchFilter(e store.Event) bool {
	return e.Kind() == store.KindNode && e.Action != store.EventRemove
}

// pass moves the tasks the noted nodes no longer suit.
func (e *Enforcer) pass(ctx context.Context, rs *runState) error {
	nodes, all := rs.take()
	var evs []eviction
	var err error
	e.store.View(func(tx store.ReadTx) { evs, err = decide(tx, nodes, all) })
	if err == nil {
		err = e.move(ctx, evs)
	}
	if err != nil {
		rs.failed(nodes, all)
	}
	return err
}

// decide reads the nodes (every one with all) and their tasks, and
// returns the tasks to move.
func decide(tx store.ReadTx, ids []string, all bool) ([]eviction, error) {
	var nodes []*api.Node
	if all {
		var err error
		if nodes, err = store.FindNodes(tx, store.All); err != nil {
			return nil, fmt.Errorf("find nodes: %w", err)
		}
	} else {
		for _, id := range ids {
			if n := store.GetNode(tx, id); n != nil {
				nodes = append(nodes, n)
			}
		}
	}
	var out []eviction
	for _, n := range nodes {
		tasks, err := store.FindTasks(tx, store.ByNodeID(n.GetId()))
		if err != nil {
			return nil, fmt.Errorf("find tasks of node %s: %w", n.GetId(), err)
		}
		out = append(out, evictions(n, tasks)...)
	}
	return out, nil
}

// move hands each evicted task, if unchanged since it was read, to the
// Restarter, in one batch.
func (e *Enforcer) move(ctx context.Context, evs []eviction) error {
	if len(evs) == 0 {
		return nil
	}
	return e.store.Batch(ctx, func(b *store.Batch) error {
		var cluster *api.Cluster
		for _, ev := range evs {
			err := b.Update(func(tx store.Tx) error {
				t := store.GetTask(tx, ev.task.GetId())
				if t == nil || !proto.Equal(t.GetMeta().GetVersion(), ev.task.GetMeta().GetVersion()) {
					return nil // it changed: its node is looked at again if it still matters
				}
				s := store.GetService(tx, t.GetServiceId())
				if s == nil {
					return nil // the orchestrators remove it
				}
				if cluster == nil {
					cluster = orchestrator.FirstCluster(tx)
				}
				e.log.InfoContext(ctx, "constraint enforcer: moving task off its node", "task.id", t.GetId(),
					"service.id", t.GetServiceId(), "node.id", t.GetNodeId(), "reason", ev.reason)
				return e.restarter.Restart(ctx, tx, cluster, s, t)
			})
			if err != nil {
				return fmt.Errorf("move task %s: %w", ev.task.GetId(), err)
			}
		}
		return nil
	})
}

// runState is what one Run has noted and not yet looked at.
type runState struct {
	nodes map[string]bool
	all   bool // every node (start, restore)
}

func (rs *runState) due() bool {
	return rs.all || len(rs.nodes) > 0
}

// note takes one event in.
func (rs *runState) note(ev store.Event) {
	if ev.Action == store.EventRestore {
		rs.all = true
		return
	}
	n, ok := ev.Object.(*api.Node)
	if !ok {
		return
	}
	old, _ := ev.Old.(*api.Node)
	if ev.Action == store.EventCreate || suitabilityChanged(old, n) {
		rs.nodes[n.GetId()] = true
	}
}

// suitabilityChanged reports whether a node change may make tasks on it
// unsuitable: its labels, role, availability or description changed.
func suitabilityChanged(old, n *api.Node) bool {
	return !proto.Equal(old.GetSpec(), n.GetSpec()) || old.GetRole() != n.GetRole() ||
		!proto.Equal(old.GetDescription(), n.GetDescription())
}

// take hands the noted work to a pass.
func (rs *runState) take() ([]string, bool) {
	ids, all := slices.Sorted(maps.Keys(rs.nodes)), rs.all
	rs.nodes, rs.all = make(map[string]bool), false
	return ids, all
}

// failed notes the work again.
func (rs *runState) failed(ids []string, all bool) {
	for _, id := range ids {
		rs.nodes[id] = true
	}
	rs.all = rs.all || all
}
