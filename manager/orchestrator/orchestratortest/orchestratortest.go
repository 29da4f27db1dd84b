// Package orchestratortest is the test harness the leader's reconcilers
// (manager/orchestrator/...) share: a local store, writes that fail the
// test, reconcilers run for the length of a test, and waits on the
// store's state that end as soon as their condition holds.
//
// It is imported by tests only.
package orchestratortest

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/openswarm/swarmd/api"
	"github.com/openswarm/swarmd/manager/state/store"
	"github.com/openswarm/swarmd/manager/state/store/storetest"
)

// WaitTimeout bounds every wait of the harness, and how long the
// reconcilers RunAll starts may run.
const WaitTimeout = 20 * time.Second

// Quiet returns a logger that drops everything.
func Quiet() *slog.Logger { return slog.New(slog.DiscardHandler) }

// NewStore returns a local store (updates apply at once), closed at the
// end of the test.
func NewStore(t testing.TB, opts ...store.Option) *store.MemoryStore {
	t.Helper()
	return storetest.New(t, nil, opts...)
}

// Write applies cb to s in one request, failing the test on error.
func Write(t testing.TB, s *store.MemoryStore, cb func(tx store.Tx) error) {
	t.Helper()
	if err := s.Update(context.Background(), cb); err != nil {
		t.Fatalf("write: %v", err)
	}
}

// Create creates objs in s in one request, failing the test on error.
func Create(t testing.TB, s *store.MemoryStore, objs ...api.StoreObject) {
	t.Helper()
	Write(t, s, func(tx store.Tx) error {
		for _, o := range objs {
			if err := tx.Create(o); err != nil {
				return err
			}
		}
		return nil
	})
}

// Update applies change to the stored object of type T with that ID, in
// one request, failing the test on error.
func Update[T api.StoreObject](t testing.TB, s *store.MemoryStore, id string, change func(T)) {
	t.Helper()
	Write(t, s, func(tx store.Tx) error {
		o := store.Get[T](tx, id)
		change(o)
		return tx.Update(o)
	})
}

// RunAll runs each function in its own goroutine until the end of the
// test (at most WaitTimeout); one returning an error fails the test.
func RunAll(t testing.TB, runs ...func(context.Context) error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), WaitTimeout)
	var wg sync.WaitGroup
	for _, run := range runs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := run(ctx); err != nil {
				t.Errorf("Run: %v", err)
			}
		}()
	}
	t.Cleanup(func() {
		cancel()
		wg.Wait()
	})
}

// WaitFor waits until cond holds on s, checking at start and after every
// commit or restore; it fails the test after WaitTimeout.
func WaitFor(t testing.TB, s *store.MemoryStore, what string, cond func(tx store.ReadTx) bool) {
	t.Helper()
	ch, cancel := s.Watch(func(e store.Event) bool {
		return e.Action == store.EventCommit || e.Action == store.EventRestore
	})
	defer cancel()
	deadline := time.NewTimer(WaitTimeout)
	defer deadline.Stop()
	for {
		ok := false
		s.View(func(tx store.ReadTx) { ok = cond(tx) })
		if ok {
			return
		}
		select {
		case <-ch:
		case <-deadline.C:
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// BlockUntilTimers waits until n timers or sleepers wait on clock,
// failing the test after WaitTimeout.
func BlockUntilTimers(t testing.TB, clock *clockwork.FakeClock, n int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), WaitTimeout)
	defer cancel()
	if err := clock.BlockUntilContext(ctx, n); err != nil {
		t.Fatalf("waiting for %d timers: %v", n, err)
	}
}
