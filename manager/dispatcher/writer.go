package dispatcher

import (
	"context"
	"errors"
	"log/slog"
	"sync"

	"github.com/openswarm/swarmd/api"
	"github.com/openswarm/swarmd/manager/state/store"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// writer stores what agents report — task states, node registrations —
// and node liveness, in batches: everything queued while one flush runs
// goes into the next, written with one store.Batch (as few raft proposals
// as the proposal size allows). Writes to one object coalesce: a task
// keeps its latest report (unless it moves backwards), a node its latest
// liveness change.
//
// Each queued write belongs to a generation, the flush that will take it;
// callers wait for it with wait, so an agent is acknowledged only once what
// it reported has been applied (committed through raft), and retries
// otherwise.
type writer struct {
	st  *store.MemoryStore
	cfg Config
	log *slog.Logger

	mu     sync.Mutex
	tasks  map[string]taskWrite
	nodes  map[string]nodeWrite
	gen    *flushGen
	closed bool

	kick chan struct{} // something is queued
	full chan struct{} // MaxStatusBatch writes are queued
}

type taskWrite struct {
	node   string // the reporting node, which the task must still be on
	status *api.TaskStatus
}

// flushGen is the outcome of one flush: done is closed once err and
// nodeErrs (the failed node writes) are set.
type flushGen struct {
	done     chan struct{}
	err      error
	nodeErrs map[string]error
}

func newFlushGen() *flushGen { return &flushGen{done: make(chan struct{})} }

// maxFlushAttempts bounds how often a flush is retried after a proposal
// lost a race with another writer (ErrSequenceConflict).
const maxFlushAttempts = 5

func newWriter(st *store.MemoryStore, cfg Config, log *slog.Logger) *writer {
	return &writer{
		st: st, cfg: cfg, log: log,
		tasks: map[string]taskWrite{}, nodes: map[string]nodeWrite{},
		gen:  newFlushGen(),
		kick: make(chan struct{}, 1), full: make(chan struct{}, 1),
	}
}

// queueNode queues a node liveness write. The caller may hold the
// registry lock (writes are queued in the order of the lock).
func (w *writer) queueNode(id string, nw nodeWrite) *flushGen {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return stoppedGen()
	}
	w.nodes[id] = nw
	w.queuedLocked()
	return w.gen
}

// queueTasks queues the task states node reported.
func (w *writer) queueTasks(node string, updates []*api.UpdateTaskStatusRequest_TaskStatusUpdate) *flushGen {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return stoppedGen()
	}
	for _, u := range updates {
		id := u.GetTaskId()
		st := u.GetStatus()
		if old, ok := w.tasks[id]; ok {
			st = laterStatus(old.status, st)
		}
		w.tasks[id] = taskWrite{node: node, status: st}
	}
	w.queuedLocked()
	return w.gen
}

func (w *writer) queuedLocked() {
	select {
	case w.kick <- struct{}{}:
	default:
	}
	if len(w.tasks)+len(w.nodes) >= w.cfg.MaxStatusBatch {
		select {
		case w.full <- struct{}{}:
		default:
		}
	}
}

func stoppedGen() *flushGen {
	g := newFlushGen()
	g.err = errStopped
	close(g.done)
	return g
}

// wait waits for gen's flush and returns its error, or node's own write
// error if node is not empty.
func (w *writer) wait(ctx context.Context, gen *flushGen, node string) error {
	select {
	case <-gen.done:
	case <-ctx.Done():
		return status.FromContextError(ctx.Err()).Err()
	}
	if gen.err != nil {
		return waitErr(gen.err)
	}
	if err := gen.nodeErrs[node]; node != "" && err != nil {
		return status.Errorf(codes.Unavailable, "dispatcher: register node: %v", err)
	}
	return nil
}

// run flushes until ctx ends, then fails what is still queued.
func (w *writer) run(ctx context.Context) {
	defer w.close()
	for {
		select {
		case <-ctx.Done():
			return
		case <-w.kick:
		}
		if w.cfg.StatusBatchDelay > 0 {
			t := w.cfg.Clock.NewTimer(w.cfg.StatusBatchDelay)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.Chan():
			case <-w.full:
			}
			t.Stop()
		}
		w.mu.Lock()
		tasks, nodes, gen := w.tasks, w.nodes, w.gen
		if len(tasks)+len(nodes) == 0 {
			w.mu.Unlock()
			continue
		}
		w.tasks, w.nodes, w.gen = map[string]taskWrite{}, map[string]nodeWrite{}, newFlushGen()
		select {
		case <-w.full:
		default:
		}
		w.mu.Unlock()
		gen.err = w.flush(ctx, tasks, nodes, gen)
		close(gen.done)
	}
}

func (w *writer) close() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.closed = true
	w.gen.err = errStopped
	close(w.gen.done)
}

// flush writes one generation in one store.Batch, retrying it whole if a
// proposal lost a race with another writer: every write is idempotent
// (re-read, and skipped if it changes nothing).
func (w *writer) flush(ctx context.Context, tasks map[string]taskWrite, nodes map[string]nodeWrite, gen *flushGen) error {
	var err error
	for range maxFlushAttempts {
		gen.nodeErrs = map[string]error{}
		err = w.st.Batch(ctx, func(b *store.Batch) error {
			for id, nw := range nodes {
				if err := b.Update(func(tx store.Tx) error { return writeNode(tx, id, nw) }); err != nil {
					gen.nodeErrs[id] = err
					w.log.Warn("dispatcher: store node state", "node.id", id, "error", err)
				}
			}
			for id, tw := range tasks {
				if err := b.Update(func(tx store.Tx) error { return writeTask(tx, id, tw) }); err != nil {
					w.log.Warn("dispatcher: store task state", "task.id", id, "error", err)
				}
			}
			return nil
		})
		if !errors.Is(err, store.ErrSequenceConflict) {
			break
		}
	}
	if err != nil && ctx.Err() == nil {
		w.log.Error("dispatcher: flush of agent reports failed", "error", err, "tasks", len(tasks), "nodes", len(nodes))
	}
	return err
}

// writeNode applies a liveness write; a registering node the store lacks
// is created.
func writeNode(tx store.Tx, id string, nw nodeWrite) error {
	n := store.GetNode(tx, id)
	if n == nil {
		if !nw.ready {
			return nil
		}
		n = newNode(id)
		applyNodeWrite(n, nw)
		return tx.Create(n)
	}
	if !applyNodeWrite(n, nw) {
		return nil
	}
	return tx.Update(n)
}

// writeTask stores a reported task state if the task is still on the
// reporting node and the state does not move backwards.
func writeTask(tx store.Tx, id string, tw taskWrite) error {
	t := store.GetTask(tx, id)
	if t == nil || t.GetNodeId() != tw.node || !statusAdvances(t.GetStatus(), tw.status) {
		return nil
	}
	t.Status = tw.status
	return tx.Update(t)
}

// stamp gives a report without a timestamp the time it was received.
func stamp(st *api.TaskStatus, now *timestamppb.Timestamp) {
	if st.GetTimestamp() == nil {
		st.Timestamp = now
	}
}
