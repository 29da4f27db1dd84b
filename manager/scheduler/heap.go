package scheduler

// heapItem is an element of an indexedHeap: it orders itself against
// another element and is told its position, so that it can be fixed or
// removed in place when its key changes.
type heapItem[T any] interface {
	less(other T) bool
	setPos(i int)
}

// indexedHeap is a binary min-heap whose elements know their position.
type indexedHeap[T heapItem[T]] struct {
	items []T
}

func (h *indexedHeap[T]) len() int { return len(h.items) }

// min returns the least element; the heap must not be empty.
func (h *indexedHeap[T]) min() T { return h.items[0] }

// init establishes the heap order over items appended directly.
func (h *indexedHeap[T]) init() {
	for i, x := range h.items {
		x.setPos(i)
	}
	for i := len(h.items)/2 - 1; i >= 0; i-- {
		h.down(i)
	}
}

// fix restores the order after the key of the element at i changed.
func (h *indexedHeap[T]) fix(i int) {
	if !h.down(i) {
		h.up(i)
	}
}

// remove removes the element at i.
func (h *indexedHeap[T]) remove(i int) {
	last := len(h.items) - 1
	if i != last {
		h.swap(i, last)
	}
	var zero T
	h.items[last] = zero
	h.items = h.items[:last]
	if i != last {
		h.fix(i)
	}
}

func (h *indexedHeap[T]) swap(i, j int) {
	h.items[i], h.items[j] = h.items[j], h.items[i]
	h.items[i].setPos(i)
	h.items[j].setPos(j)
}

func (h *indexedHeap[T]) up(i int) {
	for i > 0 {
		parent := (i - 1) / 2
		if !h.items[i].less(h.items[parent]) {
			return
		}
		h.swap(i, parent)
		i = parent
	}
}

// down moves the element at i down; it reports whether it moved.
func (h *indexedHeap[T]) down(i int) bool {
	start, n := i, len(h.items)
	for {
		least := 2*i + 1
		if least >= n {
			break
		}
		if r := least + 1; r < n && h.items[r].less(h.items[least]) {
			least = r
		}
		if !h.items[least].less(h.items[i]) {
			break
		}
		h.swap(i, least)
		i = least
	}
	return i > start
}
