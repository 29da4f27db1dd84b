// Package restart is the restart supervisor: it replaces the tasks that
// stop on their own as their restart policy says, moves tasks off nodes
// that lost them, and starts the replacements once their delay is over.
//
// # Restarts and moves
//
// The orchestrators call Restart for a runnable task that stopped (its
// observed state is past RUNNING) or that has to leave its node (node
// down, drained or gone, constraints no longer met, rebalancing). Restart
// shuts the task down (desired SHUTDOWN) and decides on a replacement in
// the same slot (replicated services and jobs) or on the same node
// (global ones):
//
//   - A task that stopped is replaced if its policy allows it: condition
//     none never, on-failure unless it completed, any always (a job task
//     that completed never restarts), and while fewer than MaxAttempts
//     restarts happened in the Window before its stop. The replacement's
//     RestartHistory is the old task's (if both belong to the service's
//     current spec and job iteration) plus the time of this restart,
//     trimmed to what the window, max attempts and backoff still need.
//   - A task that has not stopped is being moved: it is always replaced,
//     whatever its condition and attempts, and the move is not a restart
//     (the history is carried over unchanged).
//   - Global tasks are replaced only while their node accepts tasks and
//     meets the service's constraints; no task of a removed service, or of
//     an older job iteration, is replaced.
//
// # Delayed starts
//
// A replacement is created with desired state READY: it is scheduled and
// prepared, but not started. Run raises it to RUNNING (COMPLETE for jobs)
// once its delay is over, counted from its last restart: Delay for the
// first restart of a crash loop, doubling for each further one in a row
// up to MaxBackoffFactor×Delay and at most MaxBackoff. A replacement of a
// task that was moved also waits until the old task stopped, unless the
// old task's node is DOWN or gone. Everything Run needs is in the store
// (the history, the old task), so a new leader's supervisor finds the
// waiting replacements and starts each at the same time the old leader
// would have. A replacement with nothing to wait for is created started.
package restart

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/openswarm/swarmd/api"
	"github.com/openswarm/swarmd/manager/constraint"
	"github.com/openswarm/swarmd/manager/orchestrator"
	"github.com/openswarm/swarmd/manager/state/store"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// Supervisor is the restart supervisor. Restart may be called from any
// goroutine; Run runs on the leader.
type Supervisor struct {
	store *store.MemoryStore
	clock clockwork.Clock
	log   *slog.Logger
}

var _ orchestrator.Restarter = (*Supervisor)(nil)

// Option configures a Supervisor.
type Option = orchestrator.Option

// WithClock sets the clock of restart times and delays (default: the
// real clock).
func WithClock(c clockwork.Clock) Option { return orchestrator.WithClock(c) }

// WithLogger sets the logger (default slog.Default()).
func WithLogger(l *slog.Logger) Option { return orchestrator.WithLogger(l) }

// New returns the restart supervisor of the tasks in s.
func New(s *store.MemoryStore, opts ...Option) *Supervisor {
	opt := orchestrator.NewOptions(opts)
	return &Supervisor{store: s, clock: opt.Clock, log: opt.Log}
}

// Restart shuts t down within tx and creates its replacement if its
// restart policy (or a move) calls for one; see the package
// documentation. t must have been read in tx (its version is checked). A
// task that is no longer runnable has been dealt with already: nothing
// is written for it.
func (r *Supervisor) Restart(ctx context.Context, tx orchestrator.TaskWriter, cluster *api.Cluster, s *api.Service, t *api.Task) error {
	if !orchestrator.IsRunnable(t) {
		return nil
	}
	now := r.clock.Now()
	repl, why := replacement(s, t, r.node(tx, t.GetNodeId()), now)
	t.DesiredState = api.TaskState_TASK_STATE_SHUTDOWN
	if err := tx.Update(t); err != nil {
		return fmt.Errorf("restart: shut down task %s: %w", t.GetId(), err)
	}
	log := r.log.With("service.id", t.GetServiceId(), "task.id", t.GetId(), "node.id", t.GetNodeId())
	if repl == nil {
		log.InfoContext(ctx, "restart: task not replaced", "reason", why)
		return nil
	}
	if err := tx.Create(repl); err != nil {
		return fmt.Errorf("restart: create replacement of task %s: %w", t.GetId(), err)
	}
	log.DebugContext(ctx, "restart: task replaced", "replacement.id", repl.GetId(),
		"reason", why, "desired", repl.GetDesiredState().String(), "restarts", len(repl.GetRestartHistory()))
	return nil
}

// node reads the node with that ID, from tx when it can read.
func (r *Supervisor) node(tx orchestrator.TaskWriter, id string) *api.Node {
	if id == "" {
		return nil
	}
	if rt, ok := tx.(store.ReadTx); ok {
		return store.GetNode(rt, id)
	}
	var n *api.Node
	r.store.View(func(rt store.ReadTx) { n = store.GetNode(rt, id) })
	return n
}

// replacement returns the task that replaces t, of service s, at now
// (node is t's node, nil if gone), or nil and why there is none.
func replacement(s *api.Service, t *api.Task, node *api.Node, now time.Time) (*api.Task, string) {
	if s == nil {
		return nil, "service removed"
	}
	job := orchestrator.IsJob(s)
	if job && !sameIteration(s, t) {
		return nil, "older job iteration"
	}
	moved := !orchestrator.HasStopped(t)
	why := "moved off its node"
	if !moved {
		ok, no := allows(PolicyOf(t), t)
		if !ok {
			return nil, no
		}
		why = "stopped: " + t.GetStatus().GetState().String()
	}
	var repl *api.Task
	if orchestrator.IsGlobal(s) || orchestrator.IsGlobalJob(s) {
		if !eligible(s, node) {
			return nil, "node no longer takes this service's tasks"
		}
		repl = orchestrator.NewTask(s, 0, t.GetNodeId(), now)
	} else {
		repl = orchestrator.NewTask(s, t.GetSlot(), "", now)
	}
	var history []*timestamppb.Timestamp
	if sameRun(s, t) {
		history = append(history, t.GetRestartHistory()...)
	}
	if !moved {
		history = append(history, timestamppb.New(now))
	}
	repl.RestartHistory = trim(PolicyOf(repl), history, now)
	repl.DesiredState = api.TaskState_TASK_STATE_READY
	if due, ok := StartAt(repl); (!ok || !due.After(now)) && !waitsFor(t, node) {
		repl.DesiredState = orchestrator.RunState(s)
	}
	return repl, why
}

// sameIteration reports whether t belongs to s's current job iteration.
func sameIteration(s *api.Service, t *api.Task) bool {
	return t.GetJobIteration().GetIndex() == s.GetJobStatus().GetJobIteration().GetIndex()
}

// waitsFor reports whether a replacement of old has to wait for old to
// stop: old may still run, on a node (node) that is up.
func waitsFor(old *api.Task, node *api.Node) bool {
	st := old.GetStatus().GetState()
	return st >= api.TaskState_TASK_STATE_ASSIGNED && st <= api.TaskState_TASK_STATE_RUNNING &&
		node != nil && node.GetStatus().GetState() != api.NodeStatus_DOWN
}

// eligible reports whether node may get a new task of the global service
// s: it accepts tasks and meets s's constraints.
func eligible(s *api.Service, node *api.Node) bool {
	if !orchestrator.NodeAcceptsTasks(node) {
		return false
	}
	cs, err := constraint.Parse(s.GetSpec().GetTask().GetPlacement().GetConstraints())
	return err == nil && constraint.Match(cs, node)
}
