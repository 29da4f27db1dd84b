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

var errWatchClosed = errors.New("constraint enforcer: store watch closed")

// Enforcer moves tasks off nodes that no longer suit them. Run it on the
// leader.
type Enforcer struct {
	store     *store.MemoryStore
	restarter orchestrator.Restarter
	clock     clockwork.Clock
	log       *slog.Logger
}

// Option configures an Enforcer.
type Option func(*Enforcer)

// WithClock sets the clock of retries (default: the real clock).
func WithClock(c clockwork.Clock) Option { return func(e *Enforcer) { e.clock = c } }

// WithLogger sets the logger (default slog.Default()).
func WithLogger(l *slog.Logger) Option { return func(e *Enforcer) { e.log = l } }

// New returns the constraint enforcer of the nodes in s, which hands the
// tasks to move to r.
func New(s *store.MemoryStore, r orchestrator.Restarter, opts ...Option) *Enforcer {
	e := &Enforcer{store: s, restarter: r, clock: clockwork.NewRealClock(), log: slog.Default()}
	for _, o := range opts {
		o(e)
	}
	return e
}

// Run enforces until ctx ends (then it returns nil) or the store closes
// its watch.
func (e *Enforcer) Run(ctx context.Context) error {
	events, cancel, err := e.store.ViewAndWatch(nil, watchFilter)
	if err != nil {
		return fmt.Errorf("constraint enforcer: watch the store: %w", err)
	}
	defer cancel()
	rs := &runState{nodes: make(map[string]bool), all: true}
	defer rs.stopRetry()
	for {
		if rs.due() {
			e.pass(ctx, rs)
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

// watchFilter passes node changes, commits and restores.
func watchFilter(e store.Event) bool {
	switch e.Action {
	case store.EventCommit, store.EventRestore:
		return true
	}
	return e.Kind() == store.KindNode && e.Action != store.EventRemove
}

// pass moves the tasks the noted nodes no longer suit.
func (e *Enforcer) pass(ctx context.Context, rs *runState) {
	nodes, all := rs.take()
	var evs []eviction
	var err error
	e.store.View(func(tx store.ReadTx) { evs, err = decide(tx, nodes, all) })
	if err == nil {
		err = e.move(ctx, evs)
	}
	if err != nil {
		if ctx.Err() != nil {
			return
		}
		rs.failed(nodes, all)
		e.log.WarnContext(ctx, "constraint enforcer: pass failed; retrying", "error", err, "retry.in", rs.pause(e.clock))
		return
	}
	rs.failures = 0
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
					cluster = firstCluster(tx)
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

func firstCluster(tx store.ReadTx) *api.Cluster {
	clusters, err := store.FindClusters(tx, store.All)
	if err != nil || len(clusters) == 0 {
		return nil
	}
	return clusters[0]
}

// runState is what one Run has noted and not yet looked at.
type runState struct {
	nodes map[string]bool
	all   bool // every node (start, restore)
	// mid: events of a request were seen, not yet its commit.
	mid bool
	// paused: a pass failed; the next one waits for the retry timer.
	paused   bool
	retry    clockwork.Timer
	failures int
}

func (rs *runState) due() bool {
	return !rs.mid && !rs.paused && (rs.all || len(rs.nodes) > 0)
}

// note takes one event in.
func (rs *runState) note(ev store.Event) {
	switch ev.Action {
	case store.EventCommit:
		rs.mid = false
		return
	case store.EventRestore:
		rs.all = true
		return
	}
	rs.mid = true
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
