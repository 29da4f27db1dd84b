package scheduler

import (
	"math/rand/v2"
	"slices"
	"testing"
)

type item struct{ key, id, pos int }

func (a *item) less(b *item) bool { return a.key < b.key || a.key == b.key && a.id < b.id }
func (a *item) setPos(i int)      { a.pos = i }

// TestIndexedHeap runs random fixes and removals against a sorted
// reference.
func TestIndexedHeap(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for round := range 200 {
		var h indexedHeap[*item]
		live := map[*item]bool{}
		for i := range rng.IntN(40) + 1 {
			it := &item{key: rng.IntN(10), id: i}
			h.items = append(h.items, it)
			live[it] = true
		}
		h.init()
		for step := 0; h.len() > 0; step++ {
			for it := range live {
				if h.items[it.pos] != it {
					t.Fatalf("round %d step %d: item %d at %d, heap has %d there", round, step, it.id, it.pos, h.items[it.pos].id)
				}
			}
			var want []*item
			for it := range live {
				want = append(want, it)
			}
			slices.SortFunc(want, func(a, b *item) int {
				if a.less(b) {
					return -1
				}
				return 1
			})
			if h.min() != want[0] {
				t.Fatalf("round %d step %d: min %+v, want %+v", round, step, *h.min(), *want[0])
			}
			victim := want[rng.IntN(len(want))]
			if rng.IntN(3) == 0 {
				delete(live, victim)
				h.remove(victim.pos)
			} else {
				victim.key += rng.IntN(5) - 2
				h.fix(victim.pos)
			}
		}
	}
}
