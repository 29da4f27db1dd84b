package store

// keyedList maps objKeys to values. Transactions write a handful of objects
// at most, as a rule: up to keyedListSmall entries are kept in a slice and
// searched linearly, which allocates far less than a map; past that, they
// move to a map per kind, by ID.
type keyedList[V any] struct {
	small []keyedEntry[V]
	large *[numKinds]map[string]V // nil while small
	n     int                     // entries in large
}

type keyedEntry[V any] struct {
	key objKey
	val V
}

const keyedListSmall = 16

func (l *keyedList[V]) len() int {
	if l.large != nil {
		return l.n
	}
	return len(l.small)
}

func (l *keyedList[V]) get(key objKey) (V, bool) {
	if l.large != nil {
		if kp := kindPos(key.kind); kp >= 0 {
			v, ok := l.large[kp][key.id]
			return v, ok
		}
		var zero V
		return zero, false
	}
	for i := range l.small {
		if l.small[i].key == key {
			return l.small[i].val, true
		}
	}
	var zero V
	return zero, false
}

// set sets key's value and reports whether key is new.
func (l *keyedList[V]) set(key objKey, v V) bool {
	if l.large != nil {
		return l.setLarge(key, v)
	}
	for i := range l.small {
		if l.small[i].key == key {
			l.small[i].val = v
			return false
		}
	}
	if len(l.small) < keyedListSmall {
		l.small = append(l.small, keyedEntry[V]{key, v})
		return true
	}
	l.large = new([numKinds]map[string]V)
	for _, e := range l.small {
		l.setLarge(e.key, e.val)
	}
	clear(l.small)
	l.small = l.small[:0]
	return l.setLarge(key, v)
}

func (l *keyedList[V]) setLarge(key objKey, v V) bool {
	kp := kindPos(key.kind) // keys are of known kinds
	m := l.large[kp]
	if m == nil {
		m = make(map[string]V)
		l.large[kp] = m
	}
	_, had := m[key.id]
	m[key.id] = v
	if !had {
		l.n++
	}
	return !had
}

// each calls fn on every entry, in no particular order.
func (l *keyedList[V]) each(fn func(key objKey, v V)) {
	if l.large != nil {
		for kp, m := range l.large {
			for id, v := range m {
				fn(objKey{kinds[kp], id}, v)
			}
		}
		return
	}
	for _, e := range l.small {
		fn(e.key, e.val)
	}
}

// reset empties the list, keeping a small slice for reuse.
func (l *keyedList[V]) reset() {
	clear(l.small)
	l.small = l.small[:0]
	l.large, l.n = nil, 0
}

// removeKind removes the entries of kind k.
func (l *keyedList[V]) removeKind(k Kind) {
	if l.large != nil {
		if kp := kindPos(k); kp >= 0 {
			l.n -= len(l.large[kp])
			l.large[kp] = nil
		}
		return
	}
	kept := l.small[:0]
	for _, e := range l.small {
		if e.key.kind != k {
			kept = append(kept, e)
		}
	}
	clear(l.small[len(kept):])
	l.small = kept
}
