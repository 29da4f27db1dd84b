package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/openswarm/swarmd/api"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// StatusReporter takes the statuses the worker records.
type StatusReporter interface {
	// Report queues st as task id's status. st is not modified afterwards
	// by either side.
	Report(id string, st *api.TaskStatus)
	// Forget drops what is queued for a task the worker let go of.
	Forget(id string)
}

// Update is one task status report.
type Update = api.UpdateTaskStatusRequest_TaskStatusUpdate

// Sender delivers a batch of reports to the manager (UpdateTaskStatus on
// the current session). It must not modify the updates. An error means
// nothing is known to have been recorded.
type Sender func(ctx context.Context, updates []*Update) error

// ReporterConfig configures a Reporter. Zero fields take the defaults.
type ReporterConfig struct {
	Clock  clockwork.Clock
	Logger *slog.Logger
	// MaxBatch bounds the reports one call carries (default 1000).
	MaxBatch int
	// MinBackoff and MaxBackoff bound the wait before a failed batch is
	// sent again (defaults 100ms and 5s); it doubles on every failure.
	MinBackoff, MaxBackoff time.Duration
	// OnReport, if set, sees every report as it is queued, before it is
	// sent: for what on the node must follow a task's state at once.
	OnReport func(id string, st *api.TaskStatus)
}

// Reporter queues task status reports and sends them in batches: whatever
// is pending when a send starts goes in one call, and the reports of one
// task coalesce into its latest (never a state behind one already queued).
// A report stays queued until a call carrying it succeeds: a failed call
// is retried with backoff, and what a session did not get acknowledged is
// sent on the next one (Run runs once per session).
type Reporter struct {
	cfg     ReporterConfig
	log     *slog.Logger
	running atomic.Bool

	mu      sync.Mutex
	pending map[string]*api.TaskStatus
	kick    chan struct{}
}

// NewReporter returns a reporter with nothing queued.
func NewReporter(cfg ReporterConfig) *Reporter {
	if cfg.Clock == nil {
		cfg.Clock = clockwork.NewRealClock()
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.MaxBatch <= 0 {
		cfg.MaxBatch = 1000
	}
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = 100 * time.Millisecond
	}
	if cfg.MaxBackoff < cfg.MinBackoff {
		cfg.MaxBackoff = max(cfg.MinBackoff, 5*time.Second)
	}
	return &Reporter{
		cfg: cfg, log: cfg.Logger.With("module", "worker/reporter"),
		pending: map[string]*api.TaskStatus{}, kick: make(chan struct{}, 1),
	}
}

// Report queues st as task id's status, replacing what is queued for it
// unless st is behind it.
func (r *Reporter) Report(id string, st *api.TaskStatus) {
	r.mu.Lock()
	r.pending[id] = coalesce(r.pending[id], st)
	r.mu.Unlock()
	if r.cfg.OnReport != nil {
		r.cfg.OnReport(id, st)
	}
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

// coalesce picks which of two reports of one task to keep, queued first:
// the later one, unless it moves the task's state backwards.
func coalesce(queued, next *api.TaskStatus) *api.TaskStatus {
	if queued != nil && next.GetState() < queued.GetState() {
		return queued
	}
	return next
}

// Forget drops what is queued for task id.
func (r *Reporter) Forget(id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.pending, id)
}

// Pending returns the queued reports, by task ID.
func (r *Reporter) Pending() map[string]*api.TaskStatus {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[string]*api.TaskStatus, len(r.pending))
	for id, st := range r.pending {
		out[id] = st
	}
	return out
}

// errReporterRunning: Run was called while another Run ran.
var errReporterRunning = errors.New("worker: reporter already running")

// Run sends queued reports through send until ctx ends (the session
// does), and returns ctx's error. Only one Run may run at a time.
func (r *Reporter) Run(ctx context.Context, send Sender) error {
	if !r.running.CompareAndSwap(false, true) {
		return errReporterRunning
	}
	defer r.running.Store(false)
	var backoff time.Duration
	for {
		batch := r.next()
		if len(batch) == 0 {
			select {
			case <-r.kick:
				continue
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		err := r.deliver(ctx, send, batch)
		if err == nil {
			backoff = 0
			continue
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		backoff = nextBackoff(backoff, r.cfg.MinBackoff, r.cfg.MaxBackoff)
		r.log.Warn("worker: task status report failed; retrying", "error", err, "reports", len(batch), "retry_in", backoff)
		select {
		case <-r.cfg.Clock.After(backoff):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// next returns up to MaxBatch queued reports, by task ID.
func (r *Reporter) next() []*Update {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]*Update, 0, min(len(r.pending), r.cfg.MaxBatch))
	for id, st := range r.pending {
		out = append(out, &Update{TaskId: id, Status: st})
	}
	slices.SortFunc(out, func(a, b *Update) int { return strings.Compare(a.GetTaskId(), b.GetTaskId()) })
	if len(out) > r.cfg.MaxBatch {
		out = out[:r.cfg.MaxBatch]
	}
	return out
}

// deliver sends batch and unqueues what the manager took. A batch the
// manager refuses for good (a report it can never accept, such as one for
// a task no longer on this node) is sent again report by report, so that
// only the reports refused are dropped.
func (r *Reporter) deliver(ctx context.Context, send Sender, batch []*Update) error {
	err := send(ctx, batch)
	if err == nil {
		r.ack(batch)
		return nil
	}
	if !refused(err) {
		return err
	}
	if len(batch) == 1 {
		r.log.Warn("worker: manager refused a task status report; dropped", "task.id", batch[0].GetTaskId(),
			"state", batch[0].GetStatus().GetState(), "error", err)
		r.ack(batch)
		return nil
	}
	for _, u := range batch {
		if err := r.deliver(ctx, send, []*Update{u}); err != nil {
			return fmt.Errorf("report task %s: %w", u.GetTaskId(), err)
		}
	}
	return nil
}

// refused reports whether the manager refused reports for good: sending
// them again cannot succeed.
func refused(err error) bool {
	switch status.Code(err) {
	case codes.PermissionDenied, codes.InvalidArgument:
		return true
	}
	return false
}

// ack unqueues the reports of batch that were not replaced since.
func (r *Reporter) ack(batch []*Update) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, u := range batch {
		if r.pending[u.GetTaskId()] == u.GetStatus() {
			delete(r.pending, u.GetTaskId())
		}
	}
}

func nextBackoff(cur, lo, hi time.Duration) time.Duration {
	if cur == 0 {
		return lo
	}
	return min(2*cur, hi)
}
