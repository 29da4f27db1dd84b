package update

import (
	"context"
	"log/slog"
	"sync"

	"github.com/jonboulle/clockwork"
	"github.com/openswarm/swarmd/api"
	"github.com/openswarm/swarmd/manager/orchestrator"
	"github.com/openswarm/swarmd/manager/state/store"
)

// Option configures a Supervisor.
type Option func(*Supervisor)

// WithClock sets the clock delays and monitor periods are measured with
// (default: the real clock).
func WithClock(c clockwork.Clock) Option { return func(s *Supervisor) { s.clock = c } }

// WithLogger sets the logger (default: slog.Default()).
func WithLogger(l *slog.Logger) Option { return func(s *Supervisor) { s.log = l } }

// Supervisor runs the rolling updates of the services: one updater per
// service at a time. It implements orchestrator.Updater. The leader's
// manager creates it with the orchestrators and calls Stop when it loses
// the leadership.
type Supervisor struct {
	store *store.MemoryStore
	clock clockwork.Clock
	log   *slog.Logger

	mu      sync.Mutex
	runs    map[string]*run // by service ID
	stopped bool
	wg      sync.WaitGroup
}

var _ orchestrator.Updater = (*Supervisor)(nil)

// run is one updater of a service.
type run struct {
	version uint64 // spec version
	cancel  context.CancelFunc
	done    chan struct{}
	// leftover are the slots the updater may have left half replaced;
	// set before done is closed.
	leftover []slotKey
}

// state describes r (nil: no updater) for decide. The caller holds the
// supervisor's lock.
func (r *run) state() prevRun {
	if r == nil {
		return prevRun{}
	}
	select {
	case <-r.done:
		return prevRun{exists: true, version: r.version, leftover: len(r.leftover) > 0}
	default:
		return prevRun{exists: true, active: true, version: r.version}
	}
}

// NewSupervisor returns a Supervisor writing to s.
func NewSupervisor(s *store.MemoryStore, opts ...Option) *Supervisor {
	sv := &Supervisor{
		store: s,
		clock: clockwork.NewRealClock(),
		log:   slog.Default(),
		runs:  make(map[string]*run),
	}
	for _, o := range opts {
		o(sv)
	}
	return sv
}

// Update starts the rolling update of s over slots, the slots holding
// tasks that do not match s's spec, and returns at once. An update of the
// same (or a newer) spec version already running goes on instead; one of
// an older spec version is cancelled and replaced, the new one taking over
// the slots it left half replaced. A paused update (UpdateStatus PAUSED or
// ROLLBACK_PAUSED) is not restarted. Without slots, an update left in
// progress (UPDATING or ROLLBACK_STARTED, by a previous leader for
// instance) is marked completed. The update runs until it ends, ctx is
// cancelled, Cancel or Stop is called, or the service changes spec or is
// deleted: ctx should live as long as the orchestrator calling.
func (s *Supervisor) Update(ctx context.Context, _ *api.Cluster, svc *api.Service, slots []orchestrator.Slot) {
	id, version := svc.GetId(), svc.GetSpecVersion().GetIndex()
	keys := slotKeys(isGlobal(svc), slots)

	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return
	}
	prev := s.runs[id]
	if decide(prev.state(), version, svc.GetUpdateStatus(), len(keys) > 0) != actStart {
		return
	}
	if prev != nil {
		prev.cancel()
	}
	uctx, cancel := context.WithCancel(ctx)
	r := &run{version: version, cancel: cancel, done: make(chan struct{})}
	s.runs[id] = r
	u := &updater{store: s.store, clock: s.clock, log: s.log, service: id, version: version, keys: keys}
	s.wg.Add(1)
	go s.run(uctx, r, prev, u)
}

// run runs u as r once prev, the updater it replaces, has stopped.
func (s *Supervisor) run(ctx context.Context, r, prev *run, u *updater) {
	defer s.wg.Done()
	defer r.cancel()
	if prev != nil {
		<-prev.done // cancelled: it ends promptly
		u.handed = prev.leftover
	}
	if ctx.Err() == nil {
		r.leftover = u.run(ctx)
	} else {
		r.leftover = u.handed
	}
	close(r.done)

	s.mu.Lock()
	defer s.mu.Unlock()
	if s.runs[u.service] == r && len(r.leftover) == 0 {
		delete(s.runs, u.service)
	}
}

// Cancel stops the update of the service with that ID, if any, and
// forgets it: the service was deleted. It does not wait for the updater to
// end; the updater writes nothing once it sees the cancellation, and
// nothing at all for a service that is gone.
func (s *Supervisor) Cancel(serviceID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r := s.runs[serviceID]; r != nil {
		r.cancel()
		delete(s.runs, serviceID)
	}
}

// Stop cancels every update in progress and waits until their updaters
// have ended; later calls to Update do nothing. An update stopped this way
// leaves the store consistent: each write it made (a new task with the
// shutdown of the old ones, a status) is whole, and a new leader's
// Supervisor goes on from there.
func (s *Supervisor) Stop() {
	s.mu.Lock()
	s.stopped = true
	for _, r := range s.runs {
		r.cancel()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

// prevRun is what decide knows of a service's previous updater.
type prevRun struct {
	exists   bool
	active   bool   // still running
	version  uint64 // its spec version
	leftover bool   // it ended leaving slots half replaced
}

// action is what Update does.
type action int

const (
	actIgnore action = iota // nothing: the update runs or there is none to run
	actStart                // start an updater, replacing any previous one
)

// decide says whether Update starts an updater for a service at spec
// version whose UpdateStatus is st, given its previous updater and whether
// slots need updating.
func decide(prev prevRun, version uint64, st *api.UpdateStatus, hasSlots bool) action {
	switch {
	case prev.active && prev.version >= version:
		// The same update goes on (or the caller read the service
		// before a newer spec was given to us).
		return actIgnore
	case isPaused(st):
		return actIgnore
	case hasSlots || inProgress(st) || prev.active || prev.leftover:
		return actStart
	}
	return actIgnore
}
