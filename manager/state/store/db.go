package store

import (
	"fmt"
	"maps"
	"strings"
	"sync"

	"github.com/openswarm/swarmd/api"
)

// dbState is the content of the store: one table per kind, at the kind's
// position (kindPos). A state that has been published (committed, or handed
// out as a snapshot) is never modified, nor are its tables; copying the
// struct is an O(1) snapshot, since its trees are persistent.
type dbState struct {
	tables [numKinds]*table
	// cloneMu serialises the cloning of trees shared by this state's
	// lineage (see btree.clone).
	cloneMu *sync.Mutex
}

// table holds the objects of one kind: by ID, and in the kind's secondary
// indexes (schema), which map values to IDs. Like a tree node, a table is
// modified in place only by the write transaction that owns it.
type table struct {
	owner *owner
	byID  btree[idItem]
	idx   [maxIndexes]btree[keyItem]
	// states counts the objects by state, for the kinds that have one
	// (stateOf): kept as objects are written, so that a census is O(1).
	states map[int32]int
}

// stateOf returns the state objects of kind kp are counted by: a task's
// observed state, a node's status.
func stateOf(kp int, obj api.StoreObject) (int32, bool) {
	switch o := obj.(type) {
	case *api.Task:
		return int32(o.GetStatus().GetState()), true
	case *api.Node:
		return int32(o.GetStatus().GetState()), true
	}
	return 0, false
}

// count moves obj's state count by delta.
func (tb *table) count(kp int, obj api.StoreObject, delta int) {
	st, ok := stateOf(kp, obj)
	if !ok {
		return
	}
	if tb.states == nil {
		tb.states = make(map[int32]int)
	}
	tb.states[st] += delta
}

// emptyState returns a state with every table empty.
func emptyState() *dbState {
	st := &dbState{cloneMu: new(sync.Mutex)}
	for i := range st.tables {
		st.tables[i] = new(table)
	}
	return st
}

// nameIndex is the position of the name index in the schema of every
// kind that has one.
const nameIndex = 0

func init() {
	for kp, k := range kinds {
		if uniqueNames(k) && !hasNameIndex(kp) {
			panic("store: a kind of unique names needs a name index, first")
		}
	}
}

// get returns the stored object of kind kp with that ID, or nil.
func (st *dbState) get(kp int, id string) api.StoreObject {
	it, ok := st.tables[kp].byID.get(idItem{id: id})
	if !ok {
		return nil
	}
	return it.obj
}

// nameOwner returns the ID of an object of kind kp other than self whose
// lowercased name is lname, or "".
func (st *dbState) nameOwner(kp int, lname, self string) string {
	other := ""
	st.tables[kp].idx[nameIndex].ascend(keyItem{s: lname}, false, func(it keyItem) bool {
		if it.s != lname {
			return false
		}
		if it.id != self {
			other = it.id
			return false
		}
		return true
	})
	return other
}

// visit calls fn with the ID of each object of kind kp that by selects, in
// index order, and the object itself if resolve is set, until fn returns
// false. It returns false if fn did.
func (st *dbState) visit(kp int, k Kind, by By, resolve bool, fn func(id string, obj api.StoreObject) bool) (bool, error) {
	tb := st.tables[kp]
	more := true // fn has not asked to stop (scans also stop at the end of a range)
	switch b := by.(type) {
	case byAll:
		tb.byID.ascend(idItem{}, true, func(it idItem) bool {
			more = fn(it.id, it.obj)
			return more
		})
		return more, nil
	case byScan:
		if k != b.kind {
			return false, fmt.Errorf("find %s %s: %w", k, b, ErrInvalidFindBy)
		}
		tb.byID.ascend(idItem{}, true, func(it idItem) bool {
			if b.keep(it.obj) {
				more = fn(it.id, it.obj)
			}
			return more
		})
		return more, nil
	case byIndex:
		if b.index == indexID {
			// ID prefix.
			tb.byID.ascend(idItem{id: b.s}, false, func(it idItem) bool {
				if !strings.HasPrefix(it.id, b.s) {
					return false
				}
				more = fn(it.id, it.obj)
				return more
			})
			return more, nil
		}
		pos := indexPos(kp, b.index)
		if pos < 0 && b.index == indexName {
			// Names of a kind without a name index (tasks): a scan.
			tb.byID.ascend(idItem{}, true, func(it idItem) bool {
				if n := lowerName(it.obj); n != "" && (n == b.s || b.prefix && strings.HasPrefix(n, b.s)) {
					more = fn(it.id, it.obj)
				}
				return more
			})
			return more, nil
		}
		if pos < 0 {
			return false, fmt.Errorf("find %s %s: %w", k, b, ErrInvalidFindBy)
		}
		tb.idx[pos].ascend(keyItem{s: b.s, n: b.n}, false, func(it keyItem) bool {
			if b.prefix {
				if !strings.HasPrefix(it.s, b.s) {
					return false
				}
			} else if it.s != b.s || !b.anyN && it.n != b.n {
				return false
			}
			var obj api.StoreObject
			if resolve {
				if obj = st.get(kp, it.id); obj == nil {
					return true // cannot happen: indexes follow the table
				}
			}
			more = fn(it.id, obj)
			return more
		})
		return more, nil
	case byOr:
		seen := make(map[string]struct{})
		for _, sub := range b {
			more, err := st.visit(kp, k, sub, resolve, func(id string, obj api.StoreObject) bool {
				if _, dup := seen[id]; dup {
					return true
				}
				seen[id] = struct{}{}
				return fn(id, obj)
			})
			if err != nil || !more {
				return more, err
			}
		}
		return true, nil
	}
	return false, fmt.Errorf("find %s by %T: %w", k, by, ErrInvalidFindBy)
}

// count returns how many objects of kind kp by selects.
func (st *dbState) count(kp int, k Kind, by By) (int, error) {
	if _, ok := by.(byAll); ok {
		return st.tables[kp].byID.len(), nil
	}
	n := 0
	_, err := st.visit(kp, k, by, false, func(string, api.StoreObject) bool { n++; return true })
	return n, err
}

// dbTxn writes to a private copy of a state. A table it writes gets
// copy-on-write clones of its trees, which share every node with the state
// it started from until the transaction writes them.
// Once its state is published (see commit), it must not write again.
type dbTxn struct {
	st  dbState
	own *owner
}

func newDBTxn(from *dbState) *dbTxn {
	return &dbTxn{st: *from, own: new(owner)}
}

// table returns table kp, which the transaction may modify.
func (t *dbTxn) table(kp int) *table {
	tb := t.st.tables[kp]
	if tb.owner != t.own {
		c := table{owner: t.own, byID: tb.byID.clone(t.st.cloneMu), states: maps.Clone(tb.states)}
		for i := range tb.idx {
			c.idx[i] = tb.idx[i].clone(t.st.cloneMu)
		}
		tb = &c
		t.st.tables[kp] = tb
	}
	return tb
}

// commit returns the transaction's state, to publish. The transaction
// must not write afterwards: its writes would modify published nodes.
func (t *dbTxn) commit() *dbState {
	st := new(dbState)
	*st = t.st
	return st
}

// put stores obj (replacing the object with its ID, if any) and updates
// the indexes whose value changed.
func (t *dbTxn) put(kp int, obj api.StoreObject) {
	tb := t.table(kp)
	prev, _ := tb.byID.set(t.own, idItem{id: obj.GetId(), obj: obj})
	tb.reindex(t.own, kp, prev.obj, obj) // prev is zero if nothing was replaced
}

// putNew stores obj unless an object with its ID exists, in one descent
// of the ID tree; it reports whether it stored obj.
func (t *dbTxn) putNew(kp int, obj api.StoreObject) bool {
	tb := t.table(kp)
	if prev, replaced := tb.byID.set(t.own, idItem{id: obj.GetId(), obj: obj}); replaced {
		tb.byID.set(t.own, prev) // put the stored object back
		return false
	}
	tb.reindex(t.own, kp, nil, obj)
	return true
}

// reindex moves the state count and the index entries of an object of
// kind kp from old (nil: none) to obj, the object now stored under its ID,
// touching only the indexes whose value changed.
func (tb *table) reindex(own *owner, kp int, old, obj api.StoreObject) {
	if old != nil {
		tb.count(kp, old, -1)
	}
	tb.count(kp, obj, 1)
	id := obj.GetId()
	for i := range schema[kp] {
		d := &schema[kp][i]
		ns, nn, nok := d.key(obj)
		if old != nil {
			os, on, ook := d.key(old)
			if ook == nok && os == ns && on == nn {
				continue
			}
			if ook {
				tb.idx[i].remove(own, keyItem{s: os, n: on, id: id})
			}
		}
		if nok {
			tb.idx[i].set(own, keyItem{s: ns, n: nn, id: id})
		}
	}
}

// remove deletes the object of kind kp with that ID, if any, and returns
// it.
func (t *dbTxn) remove(kp int, id string) api.StoreObject {
	if _, ok := t.st.tables[kp].byID.get(idItem{id: id}); !ok {
		return nil
	}
	tb := t.table(kp)
	prev, _ := tb.byID.remove(t.own, idItem{id: id})
	tb.count(kp, prev.obj, -1)
	for i := range schema[kp] {
		if s, n, ok := schema[kp][i].key(prev.obj); ok {
			tb.idx[i].remove(t.own, keyItem{s: s, n: n, id: id})
		}
	}
	return prev.obj
}

// The view methods, for the writer when applying.

func (t *dbTxn) get(k Kind, id string) api.StoreObject { return t.st.get(kindPos(k), id) }

func (t *dbTxn) nameOwner(k Kind, lname, self string) string {
	return t.st.nameOwner(kindPos(k), lname, self)
}

func (t *dbTxn) store(k Kind, obj api.StoreObject) { t.put(kindPos(k), obj) }

func (t *dbTxn) insert(k Kind, obj api.StoreObject) bool { return t.putNew(kindPos(k), obj) }

func (t *dbTxn) delete(k Kind, id string) { t.remove(kindPos(k), id) }
