package raft

import "sync"

// waits hands the result of applying a proposal to the caller waiting for it.
type waits struct {
	mu sync.Mutex
	m  map[uint64]chan error
}

func newWaits() *waits { return &waits{m: map[uint64]chan error{}} }

func (w *waits) register(id uint64) <-chan error {
	ch := make(chan error, 1)
	w.mu.Lock()
	w.m[id] = ch
	w.mu.Unlock()
	return ch
}

func (w *waits) cancel(id uint64) {
	w.mu.Lock()
	delete(w.m, id)
	w.mu.Unlock()
}

func (w *waits) trigger(id uint64, err error) {
	w.mu.Lock()
	ch, ok := w.m[id]
	delete(w.m, id)
	w.mu.Unlock()
	if ok {
		ch <- err
	}
}
