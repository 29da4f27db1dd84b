package store

import (
	"testing"

	"github.com/openswarm/swarmd/api"
	"google.golang.org/protobuf/proto"
)

// fuzzSeedStore is a store holding one object of every kind.
func fuzzSeedStore() *MemoryStore {
	s, _ := newLogStore(nil)
	var actions []*api.StoreAction
	for i, k := range Kinds() {
		a, err := api.NewStoreAction(api.StoreAction_CREATE, sample(k, "id"+string(rune('a'+i)), "name"))
		if err != nil {
			panic(err)
		}
		actions = append(actions, a)
	}
	if err := s.Apply(1, actions); err != nil {
		panic(err)
	}
	return s
}

// roundTrip checks that s's snapshot restores into a new store that saves
// the same snapshot.
func roundTrip(t *testing.T, s *MemoryStore) {
	t.Helper()
	snap, err := s.Save()
	if err != nil {
		t.Fatalf("save: %v", err)
	}
	b, err := proto.Marshal(snap)
	if err != nil {
		t.Fatalf("marshal: %v", err)
	}
	var again api.StoreSnapshot
	if err := proto.Unmarshal(b, &again); err != nil {
		t.Fatalf("unmarshal a saved snapshot: %v", err)
	}
	s2, _ := newLogStore(nil)
	defer s2.Close()
	if err := s2.Restore(&again); err != nil {
		t.Fatalf("restore a saved snapshot: %v", err)
	}
	snap2, err := s2.Save()
	if err != nil {
		t.Fatalf("save the restored store: %v", err)
	}
	if !proto.Equal(snap, snap2) {
		t.Fatalf("a saved snapshot restores to a different store")
	}
}

// FuzzRestore: whatever bytes a snapshot file or a snapshot sent by the
// leader decode to, restoring them never panics; what restores saves and
// restores again to the same store.
func FuzzRestore(f *testing.F) {
	seed := fuzzSeedStore()
	snap, err := seed.Save()
	seed.Close()
	if err != nil {
		f.Fatal(err)
	}
	b, err := proto.Marshal(snap)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	f.Add([]byte{})
	f.Add([]byte{0x0a, 0x03, 0x0a, 0x01, 0x78})
	f.Fuzz(func(t *testing.T, data []byte) {
		var snap api.StoreSnapshot
		if proto.Unmarshal(data, &snap) != nil {
			return
		}
		s, _ := newLogStore(nil)
		defer s.Close()
		if s.Restore(&snap) != nil {
			return
		}
		roundTrip(t, s)
	})
}

// FuzzApply: whatever a committed log entry decodes to, applying it to a
// store never panics, leaves the store whole on refusal, and leaves a store
// whose snapshot restores to the same store.
func FuzzApply(f *testing.F) {
	var actions []*api.StoreAction
	for i, k := range Kinds() {
		a, err := api.NewStoreAction(api.StoreAction_UPDATE, sample(k, "id"+string(rune('a'+i)), "other"))
		if err != nil {
			f.Fatal(err)
		}
		actions = append(actions, a)
	}
	b, err := proto.Marshal(&api.InternalRaftRequest{Actions: actions})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		var r api.InternalRaftRequest
		if proto.Unmarshal(data, &r) != nil {
			return
		}
		s := fuzzSeedStore()
		defer s.Close()
		before, err := s.Save()
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Apply(2, r.GetActions()); err != nil {
			after, err := s.Save()
			if err != nil {
				t.Fatal(err)
			}
			if !proto.Equal(before, after) {
				t.Fatalf("a refused request changed the store")
			}
			return
		}
		roundTrip(t, s)
	})
}
