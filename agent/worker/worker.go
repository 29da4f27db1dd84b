// Package worker runs the tasks the managers assign to a node. It applies
// the change sets of the dispatcher's Assignments stream, keeps one task
// manager per task that drives it through exec.Do towards its desired
// state, records every status it reaches in a persistent task DB before
// reporting it, and after a restart re-adopts the tasks it held without
// starting them again.
//
// # Task DB
//
// tasks.db (bbolt) holds the tasks as assigned and the last status the
// worker recorded for each; a status is committed (fsync'd) before it is
// reported, so the manager never knows of a state the node could forget.
// Secrets and configs are held in memory only.
//
// # Restarts
//
// On Run, every task of the DB gets a task manager again. The first thing
// one does is ask the controller (if it is an exec.Inspector) what became
// of the task: one that kept running is waited for, one that exited
// meanwhile is recorded and reported with its final state. Until the
// manager confirms a restored task (names it in a change set), it is not
// moved further than that — no container is created or started for a task
// the manager may have taken away — except that it is shut down if its
// recorded desired state says so.
//
// # Removal
//
// A task a change set removes (or a complete set leaves out) is shut down
// if it may still run, its controller's Remove is called, and it is
// deleted from the DB. Nothing is reported about it: the manager has let
// it go.
package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/openswarm/swarmd/agent/exec"
	"github.com/openswarm/swarmd/api"
	"google.golang.org/protobuf/proto"
)

// Config configures a worker.
type Config struct {
	// Executor runs the tasks (required).
	Executor exec.Executor
	// DBPath is the task DB's file (a node uses <state-dir>/worker/tasks.db).
	// Empty keeps the DB in memory: nothing survives a restart (simulated
	// nodes).
	DBPath string
	// Reporter takes the statuses the worker records (nil: dropped).
	Reporter StatusReporter
	Clock    clockwork.Clock
	Logger   *slog.Logger
	// MinRetry and MaxRetry bound the wait before a step that failed for
	// now is tried again (defaults 100ms and 10s; doubling).
	MinRetry, MaxRetry time.Duration
}

// Worker runs a node's tasks. It is used once: Run, then Assign and
// Update while Run runs.
type Worker struct {
	cfg   Config
	log   *slog.Logger
	ready chan struct{} // closed once Run restored the DB's tasks
	done  chan struct{} // closed when Run returns

	// applyMu orders change sets, and Run's shutdown after them.
	applyMu sync.Mutex

	mu      sync.Mutex
	started bool
	stopped bool
	ctx     context.Context
	db      taskDB
	tasks   map[string]*taskManager
	wg      sync.WaitGroup // task manager goroutines

	depMu   sync.RWMutex
	secrets map[string]*api.Secret
	configs map[string]*api.Config
}

// ErrStopped is returned by Assign and Update when Run is not running
// (anymore).
var ErrStopped = errors.New("worker: stopped")

// New checks cfg and returns a worker; Run starts it.
func New(cfg Config) (*Worker, error) {
	if cfg.Executor == nil {
		return nil, errors.New("worker: no executor")
	}
	if cfg.Reporter == nil {
		cfg.Reporter = discard{}
	}
	if cfg.Clock == nil {
		cfg.Clock = clockwork.NewRealClock()
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.MinRetry <= 0 {
		cfg.MinRetry = 100 * time.Millisecond
	}
	if cfg.MaxRetry < cfg.MinRetry {
		cfg.MaxRetry = max(cfg.MinRetry, 10*time.Second)
	}
	w := &Worker{
		cfg: cfg, log: cfg.Logger.With("module", "worker"),
		ready: make(chan struct{}), done: make(chan struct{}),
		tasks:   map[string]*taskManager{},
		secrets: map[string]*api.Secret{}, configs: map[string]*api.Config{},
	}
	if du, ok := cfg.Executor.(exec.DependencyUser); ok {
		du.SetDependencies(w)
	}
	return w, nil
}

type discard struct{}

func (discard) Report(string, *api.TaskStatus) {}
func (discard) Forget(string)                  {}

// Ready is closed once Run has restored the tasks of the DB.
func (w *Worker) Ready() <-chan struct{} { return w.ready }

// Run opens the task DB, re-adopts the tasks it holds, and runs tasks
// until ctx ends. Then it stops every task manager — leaving the tasks
// themselves running — and closes the DB.
func (w *Worker) Run(ctx context.Context) error {
	w.mu.Lock()
	if w.started {
		w.mu.Unlock()
		return errors.New("worker: Run called twice")
	}
	w.started = true
	w.mu.Unlock()
	defer close(w.done)

	db, err := w.openDB()
	if err != nil {
		return err
	}
	stored, err := db.load()
	if err != nil {
		_ = db.close()
		return err
	}
	w.mu.Lock()
	w.ctx, w.db = ctx, db
	for _, s := range stored {
		tm := newTaskManager(w, s.task, s.status, true)
		w.tasks[tm.id] = tm
		tm.kick()
	}
	w.mu.Unlock()
	for _, s := range stored {
		if s.status != nil {
			// Reported again: the manager may not have it.
			w.cfg.Reporter.Report(s.task.GetId(), s.status)
		}
	}
	w.log.Info("worker: started", "tasks_restored", len(stored), "db", w.cfg.DBPath)
	close(w.ready)

	<-ctx.Done()
	w.shutdown()
	if err := db.close(); err != nil {
		return fmt.Errorf("worker: close task db: %w", err)
	}
	return nil
}

func (w *Worker) openDB() (taskDB, error) {
	if w.cfg.DBPath == "" {
		return newMemDB(), nil
	}
	return openBoltDB(w.cfg.DBPath)
}

// shutdown stops the task managers once no change set is being applied.
func (w *Worker) shutdown() {
	w.applyMu.Lock()
	defer w.applyMu.Unlock()
	w.mu.Lock()
	w.stopped = true
	tms := make([]*taskManager, 0, len(w.tasks))
	for _, tm := range w.tasks {
		tms = append(tms, tm)
	}
	w.mu.Unlock()
	w.wg.Wait()
	for _, tm := range tms {
		tm.closeController()
	}
}

// Assign applies a complete change set: the node must hold exactly the
// tasks, secrets and configs it names.
func (w *Worker) Assign(ctx context.Context, changes []*api.AssignmentChange) error {
	return w.apply(ctx, true, changes)
}

// Update applies an incremental change set.
func (w *Worker) Update(ctx context.Context, changes []*api.AssignmentChange) error {
	return w.apply(ctx, false, changes)
}

// apply applies a change set: secrets and configs first (a task may need
// them as soon as it starts), then the tasks — written to the DB before
// their task managers see them — and last the secrets and configs
// removed.
func (w *Worker) apply(ctx context.Context, complete bool, changes []*api.AssignmentChange) error {
	select {
	case <-w.ready:
	case <-w.done:
		return ErrStopped
	case <-ctx.Done():
		return ctx.Err()
	}
	w.applyMu.Lock()
	defer w.applyMu.Unlock()
	w.mu.Lock()
	stopped := w.stopped
	held := make(map[string]*api.Task, len(w.tasks))
	for id, tm := range w.tasks {
		if t, removed := tm.assignment(); !removed {
			held[id] = t
		}
	}
	w.mu.Unlock()
	if stopped {
		return ErrStopped
	}

	p := planChanges(complete, held, changes)
	w.addDeps(p)
	store := slices.DeleteFunc(slices.Clone(p.store), func(t *api.Task) bool { return w.removing(t.GetId()) })
	if err := w.db.putTasks(store); err != nil {
		return err
	}

	w.mu.Lock()
	for _, t := range p.tasks {
		tm := w.tasks[t.GetId()]
		switch {
		case tm == nil:
			tm = newTaskManager(w, t, nil, false)
			w.tasks[tm.id] = tm
		case !tm.assign(t):
			w.log.Warn("worker: task assigned while being removed; ignored", "task.id", t.GetId())
			continue
		}
		tm.kick()
	}
	for _, id := range p.confirm {
		if tm := w.tasks[id]; tm != nil && tm.confirm() {
			tm.kick()
		}
	}
	for _, id := range p.removeTasks {
		if tm := w.tasks[id]; tm != nil {
			tm.remove()
			tm.kick()
		}
	}
	w.mu.Unlock()
	w.dropDeps(p)
	if n := len(p.tasks) + len(p.removeTasks); n > 0 || complete {
		w.log.Debug("worker: applied change set", "complete", complete, "tasks_changed", len(p.tasks),
			"tasks_removed", len(p.removeTasks), "tasks_held", len(held)+len(p.tasks)-len(p.removeTasks))
	}
	return nil
}

// removing reports whether the task is being removed.
func (w *Worker) removing(id string) bool {
	w.mu.Lock()
	tm := w.tasks[id]
	w.mu.Unlock()
	if tm == nil {
		return false
	}
	_, removed := tm.assignment()
	return removed
}

// forget drops a task manager that finished removing its task.
func (w *Worker) forget(tm *taskManager) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.tasks[tm.id] == tm {
		delete(w.tasks, tm.id)
	}
}

func (w *Worker) addDeps(p plan) {
	w.depMu.Lock()
	defer w.depMu.Unlock()
	if p.replaceDeps {
		w.secrets, w.configs = map[string]*api.Secret{}, map[string]*api.Config{}
	}
	for _, s := range p.secrets {
		w.secrets[s.GetId()] = s
	}
	for _, c := range p.configs {
		w.configs[c.GetId()] = c
	}
}

func (w *Worker) dropDeps(p plan) {
	w.depMu.Lock()
	defer w.depMu.Unlock()
	for _, id := range p.removeSecrets {
		delete(w.secrets, id)
	}
	for _, id := range p.removeConfigs {
		delete(w.configs, id)
	}
}

// Secret returns an assigned secret (exec.Dependencies).
func (w *Worker) Secret(id string) (*api.Secret, bool) {
	w.depMu.RLock()
	defer w.depMu.RUnlock()
	s, ok := w.secrets[id]
	return s, ok
}

// Config returns an assigned config (exec.Dependencies).
func (w *Worker) Config(id string) (*api.Config, bool) {
	w.depMu.RLock()
	defer w.depMu.RUnlock()
	c, ok := w.configs[id]
	return c, ok
}

// Tasks lists the tasks the worker holds, sorted.
func (w *Worker) Tasks() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make([]string, 0, len(w.tasks))
	for id := range w.tasks {
		out = append(out, id)
	}
	slices.Sort(out)
	return out
}

// Task returns a task the worker holds, as the worker sees it now (a
// copy).
func (w *Worker) Task(id string) (*api.Task, bool) {
	w.mu.Lock()
	tm := w.tasks[id]
	w.mu.Unlock()
	if tm == nil {
		return nil, false
	}
	return tm.current(), true
}

// TaskStatus returns the status of a task the worker holds.
func (w *Worker) TaskStatus(id string) (*api.TaskStatus, bool) {
	w.mu.Lock()
	tm := w.tasks[id]
	w.mu.Unlock()
	if tm == nil {
		return nil, false
	}
	return proto.CloneOf(tm.current().GetStatus()), true
}
