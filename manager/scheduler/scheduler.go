package scheduler

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/openswarm/swarmd/api"
	"github.com/openswarm/swarmd/manager/state/store"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

const (
	// DefaultBatchDelay is how long the scheduler gathers changes after the
	// first one before a pass.
	DefaultBatchDelay = 5 * time.Millisecond
	// maxRetryDelay bounds the wait before a pass retries failed writes.
	maxRetryDelay = time.Second
	// minRetryDelay is the first wait before a pass retries failed writes.
	minRetryDelay = 10 * time.Millisecond
)

// AssignedMessage is the status message of a task the scheduler assigned.
const AssignedMessage = "scheduler assigned task to node"

var (
	errWatchClosed = errors.New("scheduler: store watch closed")
	errRestore     = errors.New("scheduler: store restored")
)

// Scheduler assigns pending tasks to nodes. Run it on the leader; it is
// also the orchestrators' Placer (Place), for the tasks they create.
type Scheduler struct {
	store      *store.MemoryStore
	clock      clockwork.Clock
	log        *slog.Logger
	batchDelay time.Duration

	// mu guards view, and the view itself, which Run's loop and Place
	// both use.
	mu sync.Mutex
	// view is the current watch's view once it has loaded the store;
	// nil before and after.
	view *view
}

// Option configures a Scheduler.
type Option func(*Scheduler)

// WithClock sets the clock of the batching and retry delays and of status
// timestamps (default: the real clock).
func WithClock(c clockwork.Clock) Option { return func(s *Scheduler) { s.clock = c } }

// WithLogger sets the logger (default slog.Default()).
func WithLogger(l *slog.Logger) Option { return func(s *Scheduler) { s.log = l } }

// WithBatchDelay sets how long the scheduler gathers changes after the
// first one before it schedules (default DefaultBatchDelay; 0 or less:
// schedule at every commit that leaves something to do).
func WithBatchDelay(d time.Duration) Option {
	return func(s *Scheduler) { s.batchDelay = max(d, 0) }
}

// New returns a scheduler of the tasks in s.
func New(s *store.MemoryStore, opts ...Option) *Scheduler {
	sch := &Scheduler{
		store:      s,
		clock:      clockwork.NewRealClock(),
		log:        slog.Default(),
		batchDelay: DefaultBatchDelay,
	}
	for _, o := range opts {
		o(sch)
	}
	return sch
}

// Run schedules pending tasks until ctx ends (then it returns nil) or the
// store closes its watch. Each Run starts from what the store holds.
func (s *Scheduler) Run(ctx context.Context) error {
	for {
		err := s.runWatch(ctx)
		if !errors.Is(err, errRestore) {
			return err
		}
		s.log.Info("scheduler: store restored; reloading")
	}
}

// runWatch runs one watch of the store, from a snapshot, until ctx ends,
// the watch closes or the store is restored.
func (s *Scheduler) runWatch(ctx context.Context) error {
	v := newView()
	events, cancel, err := s.store.ViewAndWatchBatches(v.load, watchFilter)
	if err != nil {
		return fmt.Errorf("scheduler: load nodes and tasks: %w", err)
	}
	defer cancel()
	s.setView(v)
	defer s.setView(nil)
	r := &run{s: s, v: v, events: events}
	defer r.stopTimer()
	return r.loop(ctx)
}

func (s *Scheduler) setView(v *view) {
	s.mu.Lock()
	s.view = v
	s.mu.Unlock()
}

// watchFilter passes node and task changes, restores and commits.
func watchFilter(e store.Event) bool {
	switch e.Action {
	case store.EventCommit, store.EventRestore:
		return true
	}
	k := e.Kind()
	return k == store.KindNode || k == store.KindTask
}

// load fills an empty view from tx: every node, and the tasks that are
// pending or may occupy a node.
func (v *view) load(tx store.ReadTx) error {
	nodes, err := store.FindNodes(tx, store.All)
	if err != nil {
		return err
	}
	for _, n := range nodes {
		v.upsertNode(n)
	}
	// One pass over the stored tasks, shared and read-only as in events,
	// keeping those the view tracks.
	return store.Each(tx, store.All, func(t *api.Task) bool {
		if schedulable(t) || occupies(t) {
			v.upsertTask(t)
		}
		return true
	})
}

// run is one watch's event loop.
type run struct {
	s      *Scheduler
	v      *view
	events <-chan []store.Event

	timer clockwork.Timer // armed until a pass is due; nil if not
	// due: a pass is to run at the next commit boundary.
	due bool
	// midRequest: events of a request were seen but not yet its commit.
	midRequest bool
	// failures counts consecutive passes whose writes failed.
	failures int
}

func (r *run) loop(ctx context.Context) error {
	r.s.mu.Lock()
	if r.v.needsPass() {
		r.arm(r.s.batchDelay)
	}
	r.s.mu.Unlock()
	for {
		for r.due && !r.midRequest && ctx.Err() == nil {
			r.due = false
			r.pass(ctx)
		}
		select {
		case <-ctx.Done():
			return nil
		case evs, ok := <-r.events:
			if !ok {
				return errWatchClosed
			}
			if r.handleAll(evs) {
				return errRestore
			}
		case <-r.timerC():
			r.timer = nil
			r.due = true
		}
	}
}

// handleAll applies events to the view, until an EventRestore (then it
// returns true).
func (r *run) handleAll(evs []store.Event) (restored bool) {
	r.s.mu.Lock()
	defer r.s.mu.Unlock()
	for _, ev := range evs {
		if ev.Action == store.EventRestore {
			return true
		}
		r.handle(ev)
	}
	return false
}

// handle applies one event to the view and, at a commit that left
// something to do, arms the pass.
func (r *run) handle(ev store.Event) {
	switch ev.Action {
	case store.EventCommit:
		r.midRequest = false
		if r.v.needsPass() {
			r.arm(r.s.batchDelay)
		}
		return
	case store.EventCreate, store.EventUpdate:
		switch o := ev.Object.(type) {
		case *api.Node:
			r.v.upsertNode(o)
		case *api.Task:
			r.v.upsertTask(o)
		}
	case store.EventRemove:
		switch o := ev.Object.(type) {
		case *api.Node:
			r.v.removeNode(o.GetId())
		case *api.Task:
			r.v.removeTask(o.GetId())
		}
	}
	r.midRequest = true
}

// arm makes a pass due after d, unless one is already on its way.
func (r *run) arm(d time.Duration) {
	if r.timer != nil || r.due {
		return
	}
	if d <= 0 {
		r.due = true
		return
	}
	r.timer = r.s.clock.NewTimer(d)
}

func (r *run) timerC() <-chan time.Time {
	if r.timer == nil {
		return nil
	}
	return r.timer.Chan()
}

func (r *run) stopTimer() {
	if r.timer != nil {
		r.timer.Stop()
		r.timer = nil
	}
}

// pass schedules, writes the decisions and takes back into the view what
// could not be written.
func (r *run) pass(ctx context.Context) {
	r.s.mu.Lock()
	ds := r.v.schedule()
	r.s.mu.Unlock()
	if len(ds) == 0 {
		return
	}
	start := r.s.clock.Now()
	res, err := r.s.write(ctx, ds)
	r.s.mu.Lock()
	for _, t := range res.fresh {
		r.v.refreshTask(t)
	}
	for _, id := range res.gone {
		r.v.removeTask(id)
	}
	r.s.mu.Unlock()
	if err != nil {
		if ctx.Err() != nil {
			return
		}
		r.failures++
		r.s.log.Warn("scheduler: writing decisions failed; re-reading their tasks", "tasks", len(ds), "error", err)
		r.resync(ds)
		r.arm(retryDelay(r.failures))
		return
	}
	r.failures = 0
	r.s.log.Debug("scheduler: pass", "decisions", len(ds), "stale", len(res.fresh)+len(res.gone), "duration", r.s.clock.Since(start))
	r.s.mu.Lock()
	if r.v.needsPass() {
		r.arm(r.s.batchDelay)
	}
	r.s.mu.Unlock()
}

// resync re-reads the tasks of decisions a failed batch may not have
// written, so that those it did not write are scheduled again.
func (r *run) resync(ds []decision) {
	r.s.store.View(func(tx store.ReadTx) {
		r.s.mu.Lock()
		defer r.s.mu.Unlock()
		for _, d := range ds {
			if cur := store.GetTask(tx, d.base.GetId()); cur != nil {
				r.v.refreshTask(cur)
			} else {
				r.v.removeTask(d.base.GetId())
			}
		}
	})
}

// retryDelay is the wait before the pass after n consecutive failed ones.
func retryDelay(n int) time.Duration {
	d := minRetryDelay
	for i := 1; i < n && d < maxRetryDelay; i++ {
		d *= 2
	}
	return min(d, maxRetryDelay)
}

// writeResult is what a write found changed since the decisions were
// made: those tasks were not written.
type writeResult struct {
	fresh []*api.Task // tasks updated meanwhile, as the store has them
	gone  []string    // tasks removed meanwhile
}

// write writes ds in one batch. A task is written only if the store still
// has the version the decision was made on; the others are returned. An
// error means the batch stopped: some decisions may not have been written.
func (s *Scheduler) write(ctx context.Context, ds []decision) (writeResult, error) {
	var res writeResult
	now := timestamppb.New(s.clock.Now())
	// The tasks assigned by one write share one status: stored messages
	// are never modified, and the store then compares it once.
	assigned := &api.TaskStatus{
		State:     api.TaskState_TASK_STATE_ASSIGNED,
		Message:   AssignedMessage,
		Timestamp: now,
	}
	err := s.store.Batch(ctx, func(b *store.Batch) error {
		for _, d := range ds {
			err := b.Update(func(tx store.Tx) error {
				stored := store.Lookup[*api.Task](tx, d.base.GetId()) // read-only
				switch {
				case stored == nil:
					res.gone = append(res.gone, d.base.GetId())
					return nil
				case version(stored) != version(d.base):
					res.fresh = append(res.fresh, stored)
					return nil
				}
				cur := store.Shallow(stored) // shares stored's messages
				d.apply(cur, now, assigned)
				if err := tx.UpdateOwned(cur); err != nil {
					return err
				}
				s.logDecision(ctx, d)
				return nil
			})
			if err != nil {
				return fmt.Errorf("scheduler: write task %s: %w", d.base.GetId(), err)
			}
		}
		return nil
	})
	return res, err
}

// apply writes the decision into t, a shallow copy of the stored task:
// it replaces t's fields, never modifies the messages they point to. An
// assigned task gets the status assigned (shared, not to be modified).
func (d decision) apply(t *api.Task, now *timestamppb.Timestamp, assigned *api.TaskStatus) {
	if d.node != "" {
		t.NodeId = d.node
		t.Status = assigned
		return
	}
	st := &api.TaskStatus{State: api.TaskState_TASK_STATE_PENDING}
	if t.Status != nil {
		st = proto.CloneOf(t.Status)
	}
	st.Err = d.err
	st.Timestamp = now
	t.Status = st
}

func (s *Scheduler) logDecision(ctx context.Context, d decision) {
	if !s.log.Enabled(ctx, slog.LevelDebug) {
		return
	}
	if d.node != "" {
		s.log.Debug("scheduler: task assigned", "task.id", d.base.GetId(), "service.id", d.base.GetServiceId(), "node.id", d.node)
	} else {
		s.log.Debug("scheduler: task not schedulable", "task.id", d.base.GetId(), "service.id", d.base.GetServiceId(), "reason", d.err)
	}
}
