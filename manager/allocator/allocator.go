package allocator

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/openswarm/swarmd/manager/orchestrator"
	"github.com/openswarm/swarmd/manager/state/store"
)

// The wait before a round retries writes the store did not take, doubling
// from min to max while they keep failing.
const (
	minRetryDelay = 10 * time.Millisecond
	maxRetryDelay = time.Second
)

// PendingMessage is the status message of a task the allocator moved to
// PENDING (the orchestrators write the same for the tasks they create
// PENDING because they need no allocation).
const PendingMessage = orchestrator.PendingMessage

var (
	errWatchClosed = errors.New("allocator: store watch closed")
	errRestore     = errors.New("allocator: store restored")
)

// Allocator allocates networks, service endpoints and task attachments in
// a store, and moves tasks from NEW to PENDING once they have what they
// need. Run it on the leader.
type Allocator struct {
	store          *store.MemoryStore
	log            *slog.Logger
	clock          clockwork.Clock
	portLo, portHi uint32
}

// Option configures an Allocator.
type Option func(*Allocator)

// WithLogger sets the logger (default slog.Default()).
func WithLogger(l *slog.Logger) Option { return func(a *Allocator) { a.log = l } }

// WithClock sets the clock of status timestamps and retry delays (default:
// the real clock).
func WithClock(c clockwork.Clock) Option { return func(a *Allocator) { a.clock = c } }

// WithDynamicPortRange sets the range dynamic ingress ports come from
// (default DynamicPortStart-DynamicPortEnd).
func WithDynamicPortRange(lo, hi uint32) Option {
	return func(a *Allocator) { a.portLo, a.portHi = lo, hi }
}

// New returns an allocator of the objects in s.
func New(s *store.MemoryStore, opts ...Option) *Allocator {
	a := &Allocator{
		store:  s,
		log:    slog.Default(),
		clock:  clockwork.NewRealClock(),
		portLo: DynamicPortStart,
		portHi: DynamicPortEnd,
	}
	for _, o := range opts {
		o(a)
	}
	return a
}

// Run allocates until ctx ends (then it returns nil) or the store closes
// its watch. It starts from what the store records, so that a new leader
// continues where the previous one stopped; a restore of the store starts
// it again. Only one Run may allocate in a store at a time.
func (a *Allocator) Run(ctx context.Context) error {
	if a.portLo == 0 || a.portLo > a.portHi || a.portHi > 65535 {
		return fmt.Errorf("allocator: invalid dynamic port range %d-%d", a.portLo, a.portHi)
	}
	for {
		err := a.runWatch(ctx)
		if !errors.Is(err, errRestore) {
			return err
		}
		a.log.Info("allocator: store restored; rebuilding")
	}
}

// runWatch runs one watch of the store, from a rebuild of the ledger,
// until ctx ends, the watch closes or the store is restored.
func (a *Allocator) runWatch(ctx context.Context) error {
	r := newRun(a)
	events, cancel, err := a.store.ViewAndWatchBatches(r.load, watchFilter)
	if err != nil {
		return fmt.Errorf("allocator: load the store: %w", err)
	}
	defer cancel()
	r.events = events
	return r.loop(ctx)
}

// watchFilter passes changes of networks, services, tasks and clusters,
// restores and commits.
func watchFilter(e store.Event) bool {
	switch e.Action {
	case store.EventCommit, store.EventRestore:
		return true
	}
	switch e.Kind() {
	case store.KindNetwork, store.KindService, store.KindTask, store.KindCluster:
		return true
	}
	return false
}
