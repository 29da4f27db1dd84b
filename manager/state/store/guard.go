package store

import (
	"errors"
	"fmt"
	"sync"

	"github.com/openswarm/swarmd/api"
	"google.golang.org/protobuf/proto"
)

// ErrModified: an object the store handed out as read-only (a stored
// object, seen through an event, Lookup or Each) was modified.
var ErrModified = errors.New("stored object modified")

// WithMutationCheck makes the store remember the encoding of every object
// it stores, so that CheckUnmodified can tell whether anyone modified an
// object it shares read-only (watch events, Lookup, Each). It costs a
// marshal per write and keeps every version ever stored: for tests.
func WithMutationCheck() Option { return func(o *options) { o.mutationCheck = true } }

// guard remembers the encoding of each object stored, by identity.
type guard struct {
	mu   sync.Mutex
	seen map[api.StoreObject][]byte
	err  error // first object that could not be encoded
}

func newGuard() *guard { return &guard{seen: make(map[api.StoreObject][]byte)} }

var deterministic = proto.MarshalOptions{Deterministic: true}

// record notes obj's encoding as it is stored (nil is ignored).
func (g *guard) record(obj api.StoreObject) {
	if obj == nil {
		return
	}
	b, err := deterministic.Marshal(obj)
	g.mu.Lock()
	defer g.mu.Unlock()
	if err != nil && g.err == nil {
		g.err = fmt.Errorf("record %s %s: %w", KindOf(obj), obj.GetId(), err)
	}
	if _, ok := g.seen[obj]; !ok {
		g.seen[obj] = b
	}
}

// check returns an ErrModified error naming every object whose encoding
// changed since it was stored.
func (g *guard) check() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	errs := []error{g.err}
	for obj, want := range g.seen {
		got, err := deterministic.Marshal(obj)
		if err != nil || string(got) != string(want) {
			errs = append(errs, fmt.Errorf("%s %s (version %d): %w", KindOf(obj), obj.GetId(), obj.GetMeta().GetVersion().GetIndex(), ErrModified))
		}
	}
	return errors.Join(errs...)
}

// CheckUnmodified reports (ErrModified) whether any object this store has
// stored was modified since, by anyone: the store's own readers and
// watchers share stored objects and must not modify them. It needs
// WithMutationCheck; without it, it returns nil.
func (s *MemoryStore) CheckUnmodified() error {
	if s.guard == nil {
		return nil
	}
	return s.guard.check()
}
