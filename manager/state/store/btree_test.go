package store

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
)

func treeIDs(b *btree[idItem]) []string {
	var out []string
	b.ascend(idItem{}, true, func(it idItem) bool { out = append(out, it.id); return true })
	return out
}

// TestBtreeMatchesModel drives the tree and a sorted-set model with the same
// random operations, cloning now and then: every clone taken keeps the
// content it had, whatever is written after.
func TestBtreeMatchesModel(t *testing.T) {
	for seed := uint64(1); seed <= 20; seed++ {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			rnd := rand.New(rand.NewPCG(seed, 0))
			var mu sync.Mutex
			var tree btree[idItem]
			model := map[string]bool{}
			type snap struct {
				tree btree[idItem]
				want []string
			}
			var snaps []snap
			sorted := func() []string {
				var ks []string
				for k := range model {
					ks = append(ks, k)
				}
				slices.Sort(ks)
				return ks
			}
			for op := 0; op < 2000; op++ {
				id := fmt.Sprintf("%03d", rnd.IntN(300))
				switch rnd.IntN(10) {
				case 0:
					// Publish: keep the current tree as a snapshot and go on
					// writing a clone of it, as a write transaction does.
					snaps = append(snaps, snap{tree: tree, want: sorted()})
					tree = tree.clone(&mu)
				case 1, 2, 3:
					_, had := tree.delete(nil, idItem{id: id})
					if had != model[id] {
						t.Fatalf("delete %s: found %v, model %v", id, had, model[id])
					}
					delete(model, id)
				default:
					_, had := tree.set(nil, idItem{id: id})
					if had != model[id] {
						t.Fatalf("set %s: replaced %v, model %v", id, had, model[id])
					}
					model[id] = true
				}
			}
			if got, want := treeIDs(&tree), sorted(); !slices.Equal(got, want) || tree.len() != len(want) {
				t.Fatalf("tree %v (len %d), model %v", got, tree.len(), want)
			}
			for i, s := range snaps {
				if got := treeIDs(&s.tree); !slices.Equal(got, s.want) {
					t.Fatalf("snapshot %d changed after later writes", i)
				}
			}
		})
	}
}

func TestBtreeAscendFrom(t *testing.T) {
	var tree btree[idItem]
	for _, id := range []string{"b", "d", "f"} {
		tree.set(nil, idItem{id: id})
	}
	tests := []struct {
		from string
		stop int
		want []string
		done bool
	}{
		{from: "a", want: []string{"b", "d", "f"}, done: true},
		{from: "d", want: []string{"d", "f"}, done: true},
		{from: "e", want: []string{"f"}, done: true},
		{from: "g", done: true},
		{from: "a", stop: 2, want: []string{"b", "d"}},
	}
	for _, tc := range tests {
		var got []string
		done := tree.ascend(idItem{id: tc.from}, false, func(it idItem) bool {
			got = append(got, it.id)
			return tc.stop == 0 || len(got) < tc.stop
		})
		if !slices.Equal(got, tc.want) || done != tc.done {
			t.Fatalf("from %s: %v done=%v, want %v done=%v", tc.from, got, done, tc.want, tc.done)
		}
	}
	var empty btree[idItem]
	if !empty.ascend(idItem{}, true, func(idItem) bool { return false }) || empty.len() != 0 {
		t.Fatal("empty tree misbehaves")
	}
	if _, ok := empty.get(idItem{id: "x"}); ok {
		t.Fatal("found in an empty tree")
	}
}
