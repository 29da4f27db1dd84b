package store

import (
	"sync"

	gbtree "github.com/google/btree"
)

// The store's index structure is github.com/google/btree: ordered, with
// O(1) copy-on-write clones. A published tree is never written: a write
// transaction clones each tree of a table the first time it writes that
// table, and its writes then copy shared nodes before changing them.

// btreeDegree gives nodes of up to 31 items. A store of 100,000 tasks
// holds 930 bytes of heap per task with it against 1,370 with nodes of up
// to 15 (BenchmarkHeapPerTask), and a manager scheduling 100,000 tasks
// peaks 30-60 MB lower, at the same CPU time: fewer nodes, each with less
// of the slack its item slice keeps after growing.
const btreeDegree = 16

// btreeItem is what a tree orders: compare returns <0, 0 or >0 as the item
// sorts before, with or after o.
type btreeItem[T any] interface {
	compare(o T) int
}

// owner identifies the write transaction that may modify a table. It must
// not be zero-sized: distinct tokens need distinct addresses.
type owner struct{ _ byte }

// btree is an ordered set of items; the zero value is empty.
type btree[T btreeItem[T]] struct {
	t *gbtree.BTreeG[T]
}

func lessOf[T btreeItem[T]](a, b T) bool { return a.compare(b) < 0 }

func (b *btree[T]) len() int {
	if b.t == nil {
		return 0
	}
	return b.t.Len()
}

// get returns the item equal to key.
func (b *btree[T]) get(key T) (T, bool) {
	if b.t == nil {
		var zero T
		return zero, false
	}
	return b.t.Get(key)
}

// set inserts it, or replaces the item equal to it, returning the replaced
// item. The tree must belong to the caller's transaction (see clone).
func (b *btree[T]) set(_ *owner, it T) (T, bool) {
	if b.t == nil {
		b.t = gbtree.NewG[T](btreeDegree, lessOf[T])
	}
	return b.t.ReplaceOrInsert(it)
}

// delete removes the item equal to key, returning it.
func (b *btree[T]) delete(_ *owner, key T) (T, bool) {
	if b.t == nil {
		var zero T
		return zero, false
	}
	return b.t.Delete(key)
}

// remove is delete of a key known to be in the tree.
func (b *btree[T]) remove(own *owner, key T) (T, bool) { return b.delete(own, key) }

// ascend calls fn on every item >= from (all items if all), in order, until
// fn returns false; it returns false if fn did.
func (b *btree[T]) ascend(from T, all bool, fn func(T) bool) bool {
	if b.t == nil {
		return true
	}
	done := true
	visit := func(it T) bool {
		if !fn(it) {
			done = false
			return false
		}
		return true
	}
	if all {
		b.t.Ascend(visit)
	} else {
		b.t.AscendGreaterOrEqual(from, visit)
	}
	return done
}

// clone returns a copy-on-write copy of the tree for a write transaction.
// google/btree's Clone updates the source tree's bookkeeping, so clones of
// a shared tree are serialised by mu; readers of the source are unaffected.
func (b *btree[T]) clone(mu *sync.Mutex) btree[T] {
	if b.t == nil {
		return btree[T]{}
	}
	mu.Lock()
	defer mu.Unlock()
	return btree[T]{t: b.t.Clone()}
}
