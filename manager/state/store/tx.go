package store

import (
	"errors"
	"fmt"

	"github.com/hashicorp/go-memdb"
	"github.com/openswarm/swarmd/api"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// ReadTx reads a consistent view of the store. Objects it returns are copies
// the caller owns. Use the typed helpers (GetTask, FindTasks, Get, Find, ...)
// rather than these methods where the kind is known.
type ReadTx interface {
	// Get returns a copy of the object of kind k with that ID, or nil.
	Get(k Kind, id string) api.StoreObject
	// Find returns copies of the objects of kind k that by selects, in the
	// order of the index used (by ID for All), or ErrInvalidFindBy.
	Find(k Kind, by By) ([]api.StoreObject, error)

	// each calls fn with the stored (shared, read-only) objects by selects
	// until fn returns false.
	each(k Kind, by By, fn func(api.StoreObject) bool) error
	lookup(k Kind, id string) api.StoreObject
}

// Tx is a transaction being prepared: its reads see its own writes, and each
// write is checked at once against the transaction's view. Writes become
// visible to others only once the transaction has been applied.
type Tx interface {
	ReadTx
	// Create adds a copy of obj, stamping CreatedAt and UpdatedAt and
	// setting obj's Meta to what is stored (version zero until applied).
	// ErrExist if the ID is taken, ErrNameConflict if the name is.
	Create(obj api.StoreObject) error
	// Update replaces the object with obj's ID by a copy of obj.
	// obj.Meta.Version must be the stored version (ErrSequenceConflict);
	// ErrNotExist if there is no such object; ErrNameConflict if renamed
	// onto a taken name. CreatedAt is kept, UpdatedAt stamped (on obj too).
	Update(obj api.StoreObject) error
	// Delete removes the object of kind k with that ID (ErrNotExist).
	Delete(k Kind, id string) error
}

// readTx reads a memdb transaction (read-only snapshot or a write txn).
type readTx struct {
	txn    *memdb.Txn
	schema *memdb.DBSchema
}

func (r *readTx) lookup(k Kind, id string) api.StoreObject {
	if id == "" {
		return nil
	}
	raw, err := r.txn.First(string(k), indexID, id)
	if err != nil || raw == nil {
		return nil
	}
	return raw.(api.StoreObject)
}

func (r *readTx) Get(k Kind, id string) api.StoreObject {
	if o := r.lookup(k, id); o != nil {
		return clone(o)
	}
	return nil
}

func (r *readTx) Find(k Kind, by By) ([]api.StoreObject, error) {
	var out []api.StoreObject
	err := r.each(k, by, func(o api.StoreObject) bool {
		out = append(out, clone(o))
		return true
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

func (r *readTx) each(k Kind, by By, fn func(api.StoreObject) bool) error {
	table, ok := r.schema.Tables[string(k)]
	if !ok {
		return fmt.Errorf("find %q: unknown kind: %w", k, ErrInvalidFindBy)
	}
	switch b := by.(type) {
	case byAll:
		return r.scan(string(k), indexID, nil, fn)
	case byIndex:
		if _, ok := table.Indexes[b.index]; !ok {
			return fmt.Errorf("find %s %s: %w", k, b, ErrInvalidFindBy)
		}
		index := b.index
		if b.prefix {
			index += "_prefix"
		}
		return r.scan(string(k), index, b.args, fn)
	case byOr:
		seen := make(map[string]struct{})
		stop := false
		for _, sub := range b {
			err := r.each(k, sub, func(o api.StoreObject) bool {
				if _, dup := seen[o.GetId()]; dup {
					return true
				}
				seen[o.GetId()] = struct{}{}
				if !fn(o) {
					stop = true
				}
				return !stop
			})
			if err != nil {
				return err
			}
			if stop {
				return nil
			}
		}
		return nil
	}
	return fmt.Errorf("find %s by %T: %w", k, by, ErrInvalidFindBy)
}

func (r *readTx) scan(table, index string, args []any, fn func(api.StoreObject) bool) error {
	it, err := r.txn.Get(table, index, args...)
	if err != nil {
		return fmt.Errorf("find %s by %s: %v: %w", table, index, err, ErrInvalidFindBy)
	}
	for raw := it.Next(); raw != nil; raw = it.Next() {
		if !fn(raw.(api.StoreObject)) {
			return nil
		}
	}
	return nil
}

// tx is a transaction being prepared by Update or Batch. It reads a private
// snapshot of the store, so preparing takes no lock and never waits for (or
// delays) Apply or other transactions. Its writes are kept in an overlay
// keyed by ID and are copied into a write transaction on the snapshot (never
// committed) only when an index scan of that kind needs them, so the common
// read-modify-write touches memdb's indexes once, at apply time.
type tx struct {
	schema  *memdb.DBSchema
	snap    *memdb.MemDB
	txn     *memdb.Txn // read txn on snap until the first scan after a write, then a write txn on snap
	writing bool
	pending map[Kind]map[string]api.StoreObject // writes not yet in txn; nil = removed
	w       writer
	now     *timestamppb.Timestamp
	actions []*api.StoreAction
	done    bool
}

var errTxDone = errors.New("store: transaction used after its callback returned")

// newTx opens a transaction reading snap, which nothing may commit to.
func newTx(snap *memdb.MemDB, schema *memdb.DBSchema, now *timestamppb.Timestamp) *tx {
	t := &tx{
		schema:  schema,
		snap:    snap,
		txn:     snap.Txn(false),
		pending: make(map[Kind]map[string]api.StoreObject),
		now:     now,
	}
	t.w = newWriter(t)
	return t
}

func (t *tx) lookup(k Kind, id string) api.StoreObject {
	if t.done || id == "" {
		return nil
	}
	if o, ok := t.pending[k][id]; ok {
		return o
	}
	return (&readTx{txn: t.txn, schema: t.schema}).lookup(k, id)
}

func (t *tx) Get(k Kind, id string) api.StoreObject {
	if o := t.lookup(k, id); o != nil {
		return clone(o)
	}
	return nil
}

func (t *tx) Find(k Kind, by By) ([]api.StoreObject, error) {
	var out []api.StoreObject
	err := t.each(k, by, func(o api.StoreObject) bool {
		out = append(out, clone(o))
		return true
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

func (t *tx) each(k Kind, by By, fn func(api.StoreObject) bool) error {
	if t.done {
		return errTxDone
	}
	if err := t.materialize(k); err != nil {
		return err
	}
	return (&readTx{txn: t.txn, schema: t.schema}).each(k, by, fn)
}

// materialize copies the pending writes of kind k into the transaction's
// memdb write txn, so that index scans see them.
func (t *tx) materialize(k Kind) error {
	p := t.pending[k]
	if len(p) == 0 {
		return nil
	}
	if !t.writing {
		t.txn = t.snap.Txn(true)
		t.writing = true
	}
	for id, o := range p {
		if o != nil {
			if err := t.txn.Insert(string(k), o); err != nil {
				return fmt.Errorf("%s %s: %w", k, id, err)
			}
			continue
		}
		old, err := t.txn.First(string(k), indexID, id)
		if err != nil {
			return fmt.Errorf("%s %s: %w", k, id, err)
		}
		if old != nil {
			if err := t.txn.Delete(string(k), old); err != nil {
				return fmt.Errorf("%s %s: %w", k, id, err)
			}
		}
	}
	delete(t.pending, k)
	return nil
}

// view methods, for the writer.

func (t *tx) get(k Kind, id string) (api.StoreObject, error) { return t.lookup(k, id), nil }

func (t *tx) byName(k Kind, name string, fn func(api.StoreObject) bool) error {
	return t.each(k, ByName(name), fn)
}

func (t *tx) put(k Kind, obj api.StoreObject) error {
	t.setPending(k, obj.GetId(), obj)
	return nil
}

func (t *tx) remove(k Kind, obj api.StoreObject) error {
	t.setPending(k, obj.GetId(), nil)
	return nil
}

func (t *tx) setPending(k Kind, id string, obj api.StoreObject) {
	p := t.pending[k]
	if p == nil {
		p = make(map[string]api.StoreObject)
		t.pending[k] = p
	}
	p[id] = obj
}

func (t *tx) Create(obj api.StoreObject) error {
	if t.done {
		return errTxDone
	}
	k, err := checkObject(obj)
	if err != nil {
		return err
	}
	c := clone(obj)
	c.SetMeta(&api.Meta{Version: &api.Version{}, CreatedAt: t.now, UpdatedAt: t.now})
	a, err := api.NewStoreAction(api.StoreAction_CREATE, c)
	if err != nil {
		return fmt.Errorf("create %s %s: %w", k, obj.GetId(), err)
	}
	if _, err := t.w.do(a, 0); err != nil {
		return err
	}
	t.actions = append(t.actions, a)
	obj.SetMeta(&api.Meta{
		Version:   &api.Version{},
		CreatedAt: timestamppb.New(t.now.AsTime()),
		UpdatedAt: timestamppb.New(t.now.AsTime()),
	})
	return nil
}

func (t *tx) Update(obj api.StoreObject) error {
	if t.done {
		return errTxDone
	}
	k, err := checkObject(obj)
	if err != nil {
		return err
	}
	cur := t.lookup(k, obj.GetId())
	if cur == nil {
		return fmt.Errorf("update %s %s: %w", k, obj.GetId(), ErrNotExist)
	}
	createdAt := cur.GetMeta().GetCreatedAt()
	c := clone(obj)
	c.SetMeta(&api.Meta{
		Version:   &api.Version{Index: obj.GetMeta().GetVersion().GetIndex()},
		CreatedAt: createdAt,
		UpdatedAt: t.now,
	})
	a, err := api.NewStoreAction(api.StoreAction_UPDATE, c)
	if err != nil {
		return fmt.Errorf("update %s %s: %w", k, obj.GetId(), err)
	}
	if _, err := t.w.do(a, 0); err != nil {
		return err
	}
	t.actions = append(t.actions, a)
	m := obj.GetMeta()
	if m == nil {
		m = &api.Meta{Version: &api.Version{}}
		obj.SetMeta(m)
	}
	m.UpdatedAt = timestamppb.New(t.now.AsTime())
	if createdAt != nil {
		m.CreatedAt = timestamppb.New(createdAt.AsTime())
	}
	return nil
}

func (t *tx) Delete(k Kind, id string) error {
	if t.done {
		return errTxDone
	}
	obj := newObject(k, id)
	if obj == nil {
		return fmt.Errorf("delete %q %s: unknown kind: %w", k, id, ErrInvalidObject)
	}
	a, err := api.NewStoreAction(api.StoreAction_REMOVE, obj)
	if err != nil {
		return fmt.Errorf("delete %s %s: %w", k, id, err)
	}
	if _, err := t.w.do(a, 0); err != nil {
		return err
	}
	t.actions = append(t.actions, a)
	return nil
}

// abort ends the transaction: later writes fail, reads find nothing.
func (t *tx) abort() {
	if t.done {
		return
	}
	t.done = true
	if t.writing {
		t.txn.Abort()
	}
}

func checkObject(obj api.StoreObject) (Kind, error) {
	if obj == nil || isNilObject(obj) {
		return "", fmt.Errorf("nil object: %w", ErrInvalidObject)
	}
	k := KindOf(obj)
	if k == "" {
		return "", fmt.Errorf("object of type %T: %w", obj, ErrInvalidObject)
	}
	if obj.GetId() == "" {
		return "", fmt.Errorf("%s without ID: %w", k, ErrInvalidObject)
	}
	return k, nil
}

// change is one applied action, for watch events.
type change struct {
	action api.StoreAction_Kind
	obj    api.StoreObject // stored after the action (nil for remove)
	old    api.StoreObject // stored before (nil for create)
}

// view is what the write rules run against: the store's memdb write txn
// when applying, a transaction's overlay when preparing.
type view interface {
	get(k Kind, id string) (api.StoreObject, error)
	byName(k Kind, name string, fn func(api.StoreObject) bool) error
	put(k Kind, obj api.StoreObject) error
	remove(k Kind, obj api.StoreObject) error
}

// memdbView is a view on a memdb write txn.
type memdbView struct{ txn *memdb.Txn }

func (v memdbView) get(k Kind, id string) (api.StoreObject, error) {
	raw, err := v.txn.First(string(k), indexID, id)
	if err != nil {
		return nil, fmt.Errorf("%s %s: lookup: %w", k, id, err)
	}
	if raw == nil {
		return nil, nil
	}
	return raw.(api.StoreObject), nil
}

func (v memdbView) byName(k Kind, name string, fn func(api.StoreObject) bool) error {
	it, err := v.txn.Get(string(k), indexName, name)
	if err != nil {
		return fmt.Errorf("%s name lookup: %w", k, err)
	}
	for raw := it.Next(); raw != nil; raw = it.Next() {
		if !fn(raw.(api.StoreObject)) {
			return nil
		}
	}
	return nil
}

func (v memdbView) put(k Kind, obj api.StoreObject) error { return v.txn.Insert(string(k), obj) }

func (v memdbView) remove(k Kind, obj api.StoreObject) error { return v.txn.Delete(string(k), obj) }

// writer performs store actions on a view with every precondition checked.
// It is the one implementation of the write rules, used both while a
// transaction is prepared and when it is applied.
type writer struct {
	v view
	// base holds, for each object already written through this writer,
	// its version before the first write: later updates of it in the same
	// request must carry that version.
	base map[objKey]uint64
}

type objKey struct {
	kind Kind
	id   string
}

func newWriter(v view) writer {
	return writer{v: v, base: make(map[objKey]uint64)}
}

// checkName fails if another object of obj's kind has obj's name and names
// of that kind are unique.
func (w *writer) checkName(k Kind, obj api.StoreObject) error {
	if !uniqueNames(k) {
		return nil
	}
	name := nameOf(obj)
	if name == "" {
		return nil
	}
	var other api.StoreObject
	err := w.v.byName(k, name, func(o api.StoreObject) bool {
		if o.GetId() != obj.GetId() {
			other = o
			return false
		}
		return true
	})
	if err != nil {
		return fmt.Errorf("%s %s: %w", k, obj.GetId(), err)
	}
	if other != nil {
		return fmt.Errorf("%s %s: %s %q (%s) already exists: %w", k, obj.GetId(), k, name, other.GetId(), ErrNameConflict)
	}
	return nil
}

// do checks and performs a. With index != 0 (apply) the stored object's
// version becomes index; with index == 0 (preparing) it stays as carried.
// The stored object is the action's own object. On error nothing was
// written.
func (w *writer) do(a *api.StoreAction, index uint64) (change, error) {
	obj, k, err := objectOf(a)
	if err != nil {
		return change{}, err
	}
	id := obj.GetId()
	key := objKey{k, id}
	cur, err := w.v.get(k, id)
	if err != nil {
		return change{}, err
	}
	switch a.GetKind() {
	case api.StoreAction_CREATE:
		if cur != nil {
			return change{}, fmt.Errorf("create %s %s: %w", k, id, ErrExist)
		}
		if err := w.checkName(k, obj); err != nil {
			return change{}, fmt.Errorf("create %w", err)
		}
		if index != 0 {
			setVersion(obj, index)
		}
		if err := w.v.put(k, obj); err != nil {
			return change{}, fmt.Errorf("create %s %s: %w", k, id, err)
		}
		w.base[key] = 0
		return change{action: api.StoreAction_CREATE, obj: obj}, nil

	case api.StoreAction_UPDATE:
		if cur == nil {
			return change{}, fmt.Errorf("update %s %s: %w", k, id, ErrNotExist)
		}
		want, seen := w.base[key]
		if !seen {
			want = cur.GetMeta().GetVersion().GetIndex()
		}
		if got := obj.GetMeta().GetVersion().GetIndex(); got != want {
			return change{}, fmt.Errorf("update %s %s from version %d, current %d: %w", k, id, got, want, ErrSequenceConflict)
		}
		if uniqueNames(k) && lowerName(obj) != lowerName(cur) {
			if err := w.checkName(k, obj); err != nil {
				return change{}, fmt.Errorf("update %w", err)
			}
		}
		if index != 0 {
			setVersion(obj, index)
		}
		if err := w.v.put(k, obj); err != nil {
			return change{}, fmt.Errorf("update %s %s: %w", k, id, err)
		}
		if !seen {
			w.base[key] = want
		}
		return change{action: api.StoreAction_UPDATE, obj: obj, old: cur}, nil

	case api.StoreAction_REMOVE:
		if cur == nil {
			return change{}, fmt.Errorf("delete %s %s: %w", k, id, ErrNotExist)
		}
		if err := w.v.remove(k, cur); err != nil {
			return change{}, fmt.Errorf("delete %s %s: %w", k, id, err)
		}
		return change{action: api.StoreAction_REMOVE, old: cur}, nil
	}
	return change{}, fmt.Errorf("%s %s: action %v: %w", k, id, a.GetKind(), ErrInvalidObject)
}

// setVersion gives obj a fresh Meta with version index, keeping its
// timestamps (which are immutable once stored and may be shared).
func setVersion(obj api.StoreObject, index uint64) {
	m := obj.GetMeta()
	obj.SetMeta(&api.Meta{
		Version:   &api.Version{Index: index},
		CreatedAt: m.GetCreatedAt(),
		UpdatedAt: m.GetUpdatedAt(),
	})
}
