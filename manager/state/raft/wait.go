package raft

import (
	"sync"

	"github.com/openswarm/swarmd/api"
)

// waits hands the result of applying a proposal to the caller waiting for
// it, and keeps the actions of the member's own proposals until the apply
// loop takes them back (see takeActions).
type waits struct {
	mu sync.Mutex
	m  map[uint64]*waiter
}

type waiter struct {
	ch chan error
	// actions are the proposal's, as given to ProposeValue, until the
	// apply loop takes them; nil for conf changes.
	actions []*api.StoreAction
}

func newWaits() *waits { return &waits{m: map[uint64]*waiter{}} }

// register makes id's result go to the returned channel. actions, if not
// nil, are what the proposal id carries, handed back by takeActions.
func (w *waits) register(id uint64, actions []*api.StoreAction) <-chan error {
	wt := &waiter{ch: make(chan error, 1), actions: actions}
	w.mu.Lock()
	w.m[id] = wt
	w.mu.Unlock()
	return wt.ch
}

func (w *waits) cancel(id uint64) {
	w.mu.Lock()
	delete(w.m, id)
	w.mu.Unlock()
}

// takeActions returns the actions registered with id and forgets them,
// so that they are handed back once at most; false if there are none (the
// proposal is not this member's, or its waiter gave up).
func (w *waits) takeActions(id uint64) ([]*api.StoreAction, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	wt, ok := w.m[id]
	if !ok || wt.actions == nil {
		return nil, false
	}
	a := wt.actions
	wt.actions = nil
	return a, true
}

func (w *waits) trigger(id uint64, err error) {
	w.mu.Lock()
	wt, ok := w.m[id]
	delete(w.m, id)
	w.mu.Unlock()
	if ok {
		wt.ch <- err
	}
}
