package store

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/openswarm/swarmd/api"
	"github.com/openswarm/swarmd/manager/state/watch"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// MaxProposalBytes is the default bound on the encoded size of one
// proposal (one transaction's actions), well under gRPC's 4 MiB message
// limit.
const MaxProposalBytes = 1 << 20

// requestOverhead bounds what an api.InternalRaftRequest adds around its
// actions (proposer and seq varints with their tags).
const requestOverhead = 32

// Proposer sends a transaction's actions through consensus and returns the
// result of applying them: the error Apply returned for them, or a
// consensus error. It must not modify the actions. The objects handed to
// Apply and ApplyBatch must be its own copies (decoded from the log), down
// to every message they hold: Apply modifies them in place to share what
// they hold equal with stored objects. ApplyBatchProposed may instead be
// handed the very actions given to ProposeValue, once each: the store does
// not touch them once they are proposed, whether ProposeValue has returned
// or not.
type Proposer interface {
	ProposeValue(ctx context.Context, actions []*api.StoreAction) error
}

// Option configures a MemoryStore.
type Option func(*options)

type options struct {
	maxProposalBytes int
	watchBacklog     int
	now              func() time.Time
	mutationCheck    bool
}

// WithMaxProposalBytes bounds the encoded size of one proposal (default
// MaxProposalBytes).
func WithMaxProposalBytes(n int) Option { return func(o *options) { o.maxProposalBytes = n } }

// WithWatchBacklog drops a watcher (closing its channel) once more than n
// events wait for it; 0, the default, means unbounded.
func WithWatchBacklog(n int) Option { return func(o *options) { o.watchBacklog = n } }

// WithClock sets the clock transactions take their timestamps from
// (default time.Now). Apply never reads it.
func WithClock(now func() time.Time) Option { return func(o *options) { o.now = now } }

// MemoryStore is the indexed in-memory store. See the package
// documentation for the propose/apply design.
type MemoryStore struct {
	// state is the current content, published by Apply, ApplyBatch and
	// Restore; a loaded state is an immutable snapshot.
	state    atomic.Pointer[dbState]
	proposer Proposer
	opts     options
	queue    *watch.Queue[Event]
	guard    *guard // nil unless WithMutationCheck

	// localMu serialises Update and Batch of a local store (nil proposer)
	// from the callback to the apply.
	localMu sync.Mutex

	// applyMu orders commits with each other and with the publication of
	// their events, and subscriptions with both. It guards the fields
	// below.
	applyMu   sync.Mutex
	lastIndex uint64
	applier   applier
}

// NewMemoryStore returns an empty store whose transactions go through p. A
// nil p makes a local store: Update applies directly.
func NewMemoryStore(p Proposer, opts ...Option) *MemoryStore {
	o := options{maxProposalBytes: MaxProposalBytes, now: time.Now}
	for _, opt := range opts {
		opt(&o)
	}
	s := &MemoryStore{
		proposer: p,
		opts:     o,
		queue:    watch.NewQueue[Event](),
	}
	if o.mutationCheck {
		s.guard = newGuard()
	}
	s.state.Store(emptyState())
	return s
}

// View runs cb on a consistent, read-only snapshot of the store. Writes
// applied while cb runs are not visible to it.
func (s *MemoryStore) View(cb func(tx ReadTx)) {
	cb(readTx{s.state.Load()})
}

// newTx opens a transaction to prepare, on a snapshot of the store.
func (s *MemoryStore) newTx() *tx {
	return newTx(s.state.Load(), timestamppb.New(s.opts.now()))
}

// Update runs cb in a new transaction and, if cb returns nil and wrote
// anything, proposes the writes and waits until they have been applied. It
// returns cb's error, ErrTxTooLarge, or the result of the proposal (for
// instance ErrSequenceConflict if another transaction changed an object
// this one had read first). If ctx ends while the proposal is in flight,
// Update returns the proposer's error but the transaction may still be
// applied.
//
// cb reads a snapshot taken when it starts, plus its own writes; it takes
// no lock, so transactions are prepared concurrently with each other and
// with Apply. On a local store (nil Proposer) Update and Batch are
// serialised instead, so cb must not call them.
func (s *MemoryStore) Update(ctx context.Context, cb func(tx Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if s.proposer == nil {
		s.localMu.Lock()
		defer s.localMu.Unlock()
	}
	t := s.newTx()
	err := cb(t)
	t.abort()
	if err != nil {
		return err
	}
	if len(t.actions) == 0 {
		return nil
	}
	if size := actionsSize(t.actions) + requestOverhead; size > s.opts.maxProposalBytes {
		return fmt.Errorf("%d actions encode to %d bytes, more than %d: %w", len(t.actions), size, s.opts.maxProposalBytes, ErrTxTooLarge)
	}
	return s.propose(ctx, t.actions)
}

func (s *MemoryStore) propose(ctx context.Context, actions []*api.StoreAction) error {
	if s.proposer == nil {
		s.applyMu.Lock()
		defer s.applyMu.Unlock()
		return s.applyOneLocked(s.lastIndex+1, actions)
	}
	return s.proposer.ProposeValue(ctx, actions)
}

// actionsSize is the encoded size of actions as a repeated field.
func actionsSize(actions []*api.StoreAction) int {
	n := 0
	for _, a := range actions {
		n += actionSize(a)
	}
	return n
}

func actionSize(a *api.StoreAction) int {
	return protowire.SizeBytes(proto.Size(a)) + 1 // tag, length, message
}

// Save returns a copy of everything in the store, each kind sorted by ID.
func (s *MemoryStore) Save() (*api.StoreSnapshot, error) {
	r := readTx{s.state.Load()}
	snap := &api.StoreSnapshot{}
	var err error
	if snap.Nodes, err = Find[*api.Node](r, All); err != nil {
		return nil, err
	}
	if snap.Services, err = Find[*api.Service](r, All); err != nil {
		return nil, err
	}
	if snap.Tasks, err = Find[*api.Task](r, All); err != nil {
		return nil, err
	}
	if snap.Networks, err = Find[*api.Network](r, All); err != nil {
		return nil, err
	}
	if snap.Clusters, err = Find[*api.Cluster](r, All); err != nil {
		return nil, err
	}
	if snap.Secrets, err = Find[*api.Secret](r, All); err != nil {
		return nil, err
	}
	if snap.Configs, err = Find[*api.Config](r, All); err != nil {
		return nil, err
	}
	return snap, nil
}

// Restore replaces the whole content of the store by snap's, atomically,
// and publishes one EventRestore. It takes ownership of snap's objects.
// Duplicate or malformed objects fail the restore, which then changes
// nothing.
func (s *MemoryStore) Restore(snap *api.StoreSnapshot) error {
	var objs []api.StoreObject
	for _, n := range snap.GetNodes() {
		objs = append(objs, n)
	}
	for _, o := range snap.GetServices() {
		objs = append(objs, o)
	}
	for _, o := range snap.GetTasks() {
		objs = append(objs, o)
	}
	for _, o := range snap.GetNetworks() {
		objs = append(objs, o)
	}
	for _, o := range snap.GetClusters() {
		objs = append(objs, o)
	}
	for _, o := range snap.GetSecrets() {
		objs = append(objs, o)
	}
	for _, o := range snap.GetConfigs() {
		objs = append(objs, o)
	}

	s.applyMu.Lock()
	defer s.applyMu.Unlock()
	t := newDBTxn(emptyState())
	for _, o := range objs {
		k, err := checkObject(o)
		if err != nil {
			return fmt.Errorf("restore: %w", err)
		}
		kp := kindPos(k)
		if t.st.get(kp, o.GetId()) != nil {
			return fmt.Errorf("restore: %s %s twice: %w", k, o.GetId(), ErrExist)
		}
		t.put(kp, o)
	}
	s.state.Store(t.commit())
	if s.guard != nil {
		for _, o := range objs {
			s.guard.record(o)
		}
	}
	s.queue.Publish(Event{Action: EventRestore, Index: s.lastIndex})
	return nil
}

// Watch returns a channel of the events published from now on that any of
// filters accepts (every event if there are none; a nil filter accepts
// everything), and a function that cancels the subscription and closes the
// channel. Filters run while the store publishes: keep them cheap. With
// WithWatchBacklog, a watcher that falls too far behind finds its channel
// closed without having cancelled.
func (s *MemoryStore) Watch(filters ...func(Event) bool) (<-chan Event, func()) {
	s.applyMu.Lock()
	defer s.applyMu.Unlock()
	return s.queue.SubscribeLimit(anyFilter(filters), s.opts.watchBacklog)
}

// ViewAndWatch runs cb on a snapshot of the store and returns a watch that
// receives exactly the events of the writes applied after that snapshot:
// nothing is missed or seen twice. If cb fails the watch is cancelled and
// cb's error returned.
func (s *MemoryStore) ViewAndWatch(cb func(ReadTx) error, filters ...func(Event) bool) (<-chan Event, func(), error) {
	return viewAndWatch(s, s.queue.SubscribeLimit, cb, filters)
}

// viewAndWatch subscribes to the store's events and takes the snapshot cb
// reads at the same point of the log (under applyMu).
func viewAndWatch[C any](s *MemoryStore, subscribe func(func(Event) bool, int) (C, func()), cb func(ReadTx) error, filters []func(Event) bool) (C, func(), error) {
	s.applyMu.Lock()
	ch, cancel := subscribe(anyFilter(filters), s.opts.watchBacklog)
	st := s.state.Load()
	s.applyMu.Unlock()
	if cb != nil {
		if err := cb(readTx{st}); err != nil {
			cancel()
			var none C
			return none, nil, err
		}
	}
	return ch, cancel, nil
}

// WatchBatches is Watch delivering the events in batches, as
// ViewAndWatchBatches does.
func (s *MemoryStore) WatchBatches(filters ...func(Event) bool) (<-chan []Event, func()) {
	ch, cancel, _ := s.ViewAndWatchBatches(nil, filters...)
	return ch, cancel
}

// ViewAndWatchBatches is ViewAndWatch delivering the events in batches:
// each receive hands over, in order, the events published since the
// previous one. A batch may be read until the next receive from the
// channel, which reuses its array: the receiver must not keep the slice.
// A burst of writes then costs the watcher one channel receive per batch
// rather than per event.
func (s *MemoryStore) ViewAndWatchBatches(cb func(ReadTx) error, filters ...func(Event) bool) (<-chan []Event, func(), error) {
	return viewAndWatch(s, s.queue.SubscribeBatches, cb, filters)
}

// Close closes every watch channel. The store stays readable and writable.
func (s *MemoryStore) Close() {
	s.queue.Close()
}

func anyFilter(filters []func(Event) bool) func(Event) bool {
	for _, f := range filters {
		if f == nil {
			return nil
		}
	}
	switch len(filters) {
	case 0:
		return nil
	case 1:
		return filters[0]
	}
	return func(e Event) bool {
		for _, f := range filters {
			if f(e) {
				return true
			}
		}
		return false
	}
}
