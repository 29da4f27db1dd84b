package dispatcher

import (
	"context"
	"slices"
	"sync"

	"github.com/openswarm/swarmd/manager/state/store"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// A feed holds the latest value of a table the leader streams to every
// node beside its session (the routing mesh's, the overlay networks');
// changed is closed (and replaced) when a different value is set.
type feed[T any] struct {
	mu      sync.Mutex
	val     T
	changed chan struct{}
	// same reports whether two values are the same table.
	same func(a, b T) bool
}

func newFeed[T any](initial T, same func(a, b T) bool) *feed[T] {
	return &feed[T]{val: initial, changed: make(chan struct{}), same: same}
}

func (f *feed[T]) get() (T, <-chan struct{}) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.val, f.changed
}

// set publishes v if it differs from the current value, and reports
// whether it did.
func (f *feed[T]) set(v T) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.same(f.val, v) {
		return false
	}
	f.val = v
	close(f.changed)
	f.changed = make(chan struct{})
	return true
}

// streamTable sends session s the message next makes of the table: at
// once, then again each time the table changes into a different message,
// until the session, the dispatcher's run or the stream (ctx) ends.
func streamTable[M proto.Message](ctx context.Context, r *run, s *session, send func(M) error, next func() (M, <-chan struct{})) error {
	var sent M
	first := true
	for {
		msg, changed := next()
		if first || !proto.Equal(msg, sent) {
			if err := send(msg); err != nil {
				return err
			}
			sent, first = msg, false
		}
		select {
		case <-s.done:
			return s.err
		case <-r.ctx.Done():
			return errStopped
		case <-ctx.Done():
			return status.FromContextError(ctx.Err()).Err()
		case <-changed:
		}
	}
}

// followStore calls recompute at once, then after the store events
// relevant says may change what it computes; events within
// AssignmentBatchDelay of the first make one recompute. It returns when
// the run ends or events closes, and then cancels the watch.
func (r *run) followStore(events <-chan []store.Event, cancel func(), relevant func(store.Event) bool, recompute func()) {
	defer cancel()
	recompute()
	for {
		select {
		case <-r.ctx.Done():
			return
		case evs, ok := <-events:
			if !ok {
				return
			}
			if !slices.ContainsFunc(evs, relevant) {
				continue
			}
		}
		if delay := r.d.cfg.AssignmentBatchDelay; delay > 0 {
			t := r.d.cfg.Clock.NewTimer(delay)
		wait:
			for {
				select {
				case <-r.ctx.Done():
					t.Stop()
					return
				case _, ok := <-events:
					if !ok {
						t.Stop()
						return
					}
				case <-t.Chan():
					break wait
				}
			}
		}
		recompute()
	}
}
