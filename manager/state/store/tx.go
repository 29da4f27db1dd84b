package store

import (
	"errors"
	"fmt"
	"strings"

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
	count(k Kind, by By) (int, error)
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
	// CreateOwned is Create without the copy: the transaction takes obj
	// itself, which the caller must not use afterwards, whatever the
	// result. obj may share messages, lists and maps with stored objects
	// (see Shallow): the store never modifies those, only obj's own
	// fields (its Meta is replaced, not modified).
	CreateOwned(obj api.StoreObject) error
	// UpdateOwned is Update without the copy, with CreateOwned's rules:
	// obj is the transaction's afterwards.
	UpdateOwned(obj api.StoreObject) error
	// Delete removes the object of kind k with that ID (ErrNotExist).
	Delete(k Kind, id string) error
}

// readTx reads a published state (a snapshot of the store).
type readTx struct {
	st *dbState
}

func (r readTx) lookup(k Kind, id string) api.StoreObject {
	kp := kindPos(k)
	if kp < 0 || id == "" {
		return nil
	}
	return r.st.get(kp, id)
}

func (r readTx) Get(k Kind, id string) api.StoreObject {
	if o := r.lookup(k, id); o != nil {
		return clone(o)
	}
	return nil
}

func (r readTx) Find(k Kind, by By) ([]api.StoreObject, error) {
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

func (r readTx) each(k Kind, by By, fn func(api.StoreObject) bool) error {
	kp := kindPos(k)
	if kp < 0 {
		return fmt.Errorf("find %q: unknown kind: %w", k, ErrInvalidFindBy)
	}
	_, err := r.st.visit(kp, k, by, true, func(_ string, o api.StoreObject) bool { return fn(o) })
	return err
}

func (r readTx) count(k Kind, by By) (int, error) {
	kp := kindPos(k)
	if kp < 0 {
		return 0, fmt.Errorf("count %q: unknown kind: %w", k, ErrInvalidFindBy)
	}
	return r.st.count(kp, k, by)
}

// tx is a transaction being prepared by Update or Batch. It reads a private
// snapshot of the store, so preparing takes no lock and never waits for (or
// delays) Apply or other transactions. Its writes are kept in an overlay
// keyed by ID and are copied into a private write transaction on the
// snapshot (never committed) only when an index scan of that kind needs
// them, so the common read-modify-write touches the indexes once, at apply
// time.
type tx struct {
	snap    *dbState
	wt      *dbTxn                     // nil until the first scan after a write: snap plus the writes materialized since
	pending keyedList[api.StoreObject] // writes not yet in wt; nil = removed
	kindN   [numKinds]int              // entries of each kind in pending
	// touched holds the secondary index values (with a string part) of
	// the pending writes, before and after each: a scan of a value none
	// of them has cannot see the overlay, which it then need not
	// materialize (see scanSees).
	touched map[touchKey]struct{}
	w       writer
	now     *timestamppb.Timestamp
	actions []*api.StoreAction
	done    bool
	// last is the object last looked up below the overlay (nil: none
	// there), so that a read-modify-write (read, Update, the writer's
	// check) descends the ID tree once.
	last struct {
		ok  bool
		key objKey
		obj api.StoreObject
	}
}

var errTxDone = errors.New("store: transaction used after its callback returned")

// newTx opens a transaction reading snap.
func newTx(snap *dbState, now *timestamppb.Timestamp) *tx {
	t := &tx{
		snap: snap,
		now:  now,
	}
	// No base tracking: while preparing, versions stay as carried, so
	// the overlay's version of an object is always its base version.
	t.w = writer{v: t}
	return t
}

// state is what the transaction reads below its overlay.
func (t *tx) state() *dbState {
	if t.wt != nil {
		return &t.wt.st
	}
	return t.snap
}

func (t *tx) lookup(k Kind, id string) api.StoreObject {
	if t.done || id == "" {
		return nil
	}
	key := objKey{k, id}
	if o, ok := t.pending.get(key); ok {
		return o
	}
	if t.last.ok && t.last.key == key {
		return t.last.obj
	}
	o := readTx{t.state()}.lookup(k, id)
	t.last.ok, t.last.key, t.last.obj = true, key, o
	return o
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
	if t.scanSees(k, by) {
		t.materialize(k)
	}
	return readTx{t.state()}.each(k, by, fn)
}

func (t *tx) count(k Kind, by By) (int, error) {
	if t.done {
		return 0, errTxDone
	}
	if t.scanSees(k, by) {
		t.materialize(k)
	}
	return readTx{t.state()}.count(k, by)
}

// touchKey is an index value a pending write had or has: kind and index
// positions, and the value's string part.
type touchKey struct {
	kp, pos int
	s       string
}

// scanSees reports whether a scan of kind k by by may select a pending
// write of that kind or an object one replaced or removed: then the
// pending writes must be materialized first. Only the exact selectors of
// a secondary index whose values have a string part (a service's tasks, a
// node's) are told apart; for the others it reports true if anything of
// kind k is pending.
func (t *tx) scanSees(k Kind, by By) bool {
	kp := kindPos(k)
	if kp < 0 || t.kindN[kp] == 0 {
		return false
	}
	b, ok := by.(byIndex)
	if !ok || b.prefix || b.s == "" || b.index == indexID || b.index == indexName {
		return true
	}
	pos := indexPos(kp, b.index)
	if pos < 0 {
		return true // the scan reports the error
	}
	_, seen := t.touched[touchKey{kp, pos, b.s}]
	return seen
}

// touch records the index values of obj, of kind k, in touched.
func (t *tx) touch(k Kind, obj api.StoreObject) {
	kp := kindPos(k)
	for pos := range schema[kp] {
		if schema[kp][pos].name == indexName {
			continue // scans by name always materialize
		}
		if s, _, ok := schema[kp][pos].key(obj); ok && s != "" {
			if t.touched == nil {
				t.touched = make(map[touchKey]struct{})
			}
			t.touched[touchKey{kp, pos, s}] = struct{}{}
		}
	}
}

// materialize copies the pending writes of kind k into the transaction's
// write transaction, so that index scans see them.
func (t *tx) materialize(k Kind) {
	kp := kindPos(k)
	if kp < 0 || t.kindN[kp] == 0 {
		return
	}
	if t.wt == nil {
		t.wt = newDBTxn(t.snap)
	}
	t.last.ok, t.last.obj = false, nil
	t.pending.each(func(key objKey, o api.StoreObject) {
		switch {
		case key.kind != k:
		case o != nil:
			t.wt.put(kp, o)
		default:
			t.wt.remove(kp, key.id)
		}
	})
	t.pending.removeKind(k)
	t.kindN[kp] = 0
	for key := range t.touched {
		if key.kp == kp {
			delete(t.touched, key)
		}
	}
}

// view methods, for the writer.

func (t *tx) get(k Kind, id string) api.StoreObject { return t.lookup(k, id) }

// overlayScanMax is the most pending writes of a kind a name check scans
// rather than materializing them.
const overlayScanMax = 8

func (t *tx) nameOwner(k Kind, lname, self string) string {
	kp := kindPos(k)
	if t.kindN[kp] > overlayScanMax {
		t.materialize(k)
	}
	// Names are unique in the overlay and below it, so at most one
	// object other than self can match.
	other := ""
	if t.kindN[kp] > 0 {
		t.pending.each(func(key objKey, o api.StoreObject) {
			if key.kind == k && o != nil && key.id != self && lowerName(o) == lname {
				other = key.id
			}
		})
		if other != "" {
			return other
		}
	}
	t.state().tables[kp].idx[nameIndex].ascend(keyItem{s: lname}, false, func(it keyItem) bool {
		if it.s != lname {
			return false
		}
		if it.id == self {
			return true
		}
		if t.kindN[kp] > 0 {
			if _, overlaid := t.pending.get(objKey{k, it.id}); overlaid {
				return true // the overlay has this object's current name
			}
		}
		other = it.id
		return false
	})
	return other
}

func (t *tx) store(k Kind, obj api.StoreObject) { t.setPending(k, obj.GetId(), obj) }

func (t *tx) insert(k Kind, obj api.StoreObject) bool {
	if t.lookup(k, obj.GetId()) != nil {
		return false
	}
	t.store(k, obj)
	return true
}

func (t *tx) delete(k Kind, id string) { t.setPending(k, id, nil) }

func (t *tx) setPending(k Kind, id string, obj api.StoreObject) {
	key := objKey{k, id}
	if _, ok := t.pending.get(key); !ok {
		// The object this write replaces or removes, below the
		// overlay: the writer has just looked it up.
		var below api.StoreObject
		if t.last.ok && t.last.key == key {
			below = t.last.obj
		} else {
			below = readTx{t.state()}.lookup(k, id)
		}
		if below != nil {
			t.touch(k, below)
		}
	}
	if obj != nil {
		t.touch(k, obj)
	}
	if t.last.key == key {
		t.last.ok, t.last.obj = false, nil
	}
	if t.pending.set(key, obj) {
		t.kindN[kindPos(k)]++
	}
}

func (t *tx) Create(obj api.StoreObject) error { return t.create(obj, false) }

func (t *tx) CreateOwned(obj api.StoreObject) error { return t.create(obj, true) }

func (t *tx) Update(obj api.StoreObject) error { return t.update(obj, false) }

func (t *tx) UpdateOwned(obj api.StoreObject) error { return t.update(obj, true) }

// create records the creation of obj, or of a copy of it unless own.
func (t *tx) create(obj api.StoreObject, own bool) error {
	if t.done {
		return errTxDone
	}
	k, err := checkObject(obj)
	if err != nil {
		return err
	}
	c := obj
	if !own {
		c = clone(obj)
	}
	c.SetMeta(&api.Meta{Version: &api.Version{}, CreatedAt: t.now, UpdatedAt: t.now})
	a, err := api.NewStoreAction(api.StoreAction_CREATE, c)
	if err != nil {
		return fmt.Errorf("create %s %s: %w", k, obj.GetId(), err)
	}
	if _, err := t.w.do(a, 0); err != nil {
		return err
	}
	t.actions = append(t.actions, a)
	if !own {
		obj.SetMeta(&api.Meta{
			Version:   &api.Version{},
			CreatedAt: timestamppb.New(t.now.AsTime()),
			UpdatedAt: timestamppb.New(t.now.AsTime()),
		})
	}
	return nil
}

// update records the update to obj, or to a copy of it unless own.
func (t *tx) update(obj api.StoreObject, own bool) error {
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
	c := obj
	if !own {
		c = clone(obj)
	}
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
	if own {
		return nil
	}
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
	t.wt = nil
	t.pending = keyedList[api.StoreObject]{}
	t.touched = nil
	t.last.ok, t.last.obj = false, nil
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

// change is one applied action, for watch events and undo.
type change struct {
	kind   Kind
	action api.StoreAction_Kind
	obj    api.StoreObject // stored after the action (nil for remove)
	old    api.StoreObject // stored before (nil for create)
}

// view is what the write rules run against: the batch's write transaction
// when applying, a transaction's overlay when preparing. Writes cannot
// fail: the writer checks everything first.
type view interface {
	// get returns the stored object of kind k with that ID, or nil.
	get(k Kind, id string) api.StoreObject
	// nameOwner returns the ID of an object of kind k other than self
	// whose lowercased name is lname, or "".
	nameOwner(k Kind, lname, self string) string
	// store stores obj, replacing the object with its ID if any.
	store(k Kind, obj api.StoreObject)
	// insert stores obj unless an object of kind k has its ID: then it
	// changes nothing and returns false.
	insert(k Kind, obj api.StoreObject) bool
	// delete removes the object of kind k with that ID.
	delete(k Kind, id string)
}

// writer performs store actions on a view with every precondition checked.
// It is the one implementation of the write rules, used both while a
// transaction is prepared and when it is applied.
type writer struct {
	v view
	// track makes the writer remember base versions (below): needed only
	// when several actions are performed as one request.
	track bool
	// base holds, for each object already written through this writer,
	// its version before the first write: later updates of it in the same
	// request must carry that version.
	base keyedList[uint64]
}

type objKey struct {
	kind Kind
	id   string
}

// reset starts a new request.
func (w *writer) reset(track bool) {
	w.track = track
	w.base.reset()
}

func (w *writer) setBase(key objKey, v uint64) { w.base.set(key, v) }

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
	if other := w.v.nameOwner(k, strings.ToLower(name), obj.GetId()); other != "" {
		return fmt.Errorf("%s %s: %s %q (%s) already exists: %w", k, obj.GetId(), k, name, other, ErrNameConflict)
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
	if a.GetKind() == api.StoreAction_CREATE {
		return w.create(k, obj, index)
	}
	cur := w.v.get(k, id)
	switch a.GetKind() {
	case api.StoreAction_UPDATE:
		if cur == nil {
			return change{}, fmt.Errorf("update %s %s: %w", k, id, ErrNotExist)
		}
		var want uint64
		seen := false
		if w.track {
			want, seen = w.base.get(objKey{k, id})
		}
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
		w.v.store(k, obj)
		if w.track && !seen {
			w.setBase(objKey{k, id}, want)
		}
		return change{kind: k, action: api.StoreAction_UPDATE, obj: obj, old: cur}, nil

	case api.StoreAction_REMOVE:
		if cur == nil {
			return change{}, fmt.Errorf("delete %s %s: %w", k, id, ErrNotExist)
		}
		w.v.delete(k, id)
		return change{kind: k, action: api.StoreAction_REMOVE, old: cur}, nil
	}
	return change{}, fmt.Errorf("%s %s: action %v: %w", k, id, a.GetKind(), ErrInvalidObject)
}

// create is do for a create. A kind of unique names is first looked up
// for the ID, then for the name, so that the ID's conflict is the one
// reported; for the others the insertion looks the ID up itself, in one
// descent of the ID tree.
func (w *writer) create(k Kind, obj api.StoreObject, index uint64) (change, error) {
	id := obj.GetId()
	if uniqueNames(k) {
		if w.v.get(k, id) != nil {
			return change{}, fmt.Errorf("create %s %s: %w", k, id, ErrExist)
		}
		if err := w.checkName(k, obj); err != nil {
			return change{}, fmt.Errorf("create %w", err)
		}
	}
	if index != 0 {
		setVersion(obj, index)
	}
	if !w.v.insert(k, obj) {
		return change{}, fmt.Errorf("create %s %s: %w", k, id, ErrExist)
	}
	if w.track {
		w.setBase(objKey{k, id}, 0)
	}
	return change{kind: k, action: api.StoreAction_CREATE, obj: obj}, nil
}

// setVersion sets obj's version to index. The writer owns the object (and
// its Meta and Version, which transactions and the log decoder create for
// each object); timestamps, which may be shared, are left alone.
func setVersion(obj api.StoreObject, index uint64) {
	m := obj.GetMeta()
	if m != nil && m.Version != nil {
		m.Version.Index = index
		return
	}
	obj.SetMeta(&api.Meta{
		Version:   &api.Version{Index: index},
		CreatedAt: m.GetCreatedAt(),
		UpdatedAt: m.GetUpdatedAt(),
	})
}
