// Package storetest makes stores for the tests of the store's users.
package storetest

import (
	"testing"

	"github.com/openswarm/swarmd/manager/state/store"
)

// New returns a store through p (nil: local) that checks, when the test
// ends, that nobody modified an object it shared read-only (watch events,
// store.Lookup, store.Each): the test fails if one was. The store is
// closed when the test ends; both run after the cleanups registered later
// (which stop the store's users).
func New(t testing.TB, p store.Proposer, opts ...store.Option) *store.MemoryStore {
	t.Helper()
	s := store.NewMemoryStore(p, append([]store.Option{store.WithMutationCheck()}, opts...)...)
	t.Cleanup(func() {
		s.Close()
		if err := s.CheckUnmodified(); err != nil {
			t.Errorf("stored objects were modified: %v", err)
		}
	})
	return s
}
