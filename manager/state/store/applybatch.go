package store

import (
	"fmt"
	"strings"

	"github.com/openswarm/swarmd/api"
)

// ApplyBatch applies many requests, in order, in one memdb transaction: one
// commit for all of them instead of one per request, so the index trees'
// upper nodes are copied once per batch. Each request stays all-or-nothing
// and is checked against the state the earlier requests of the batch left,
// exactly as Apply would check it; errs[i] is what Apply would have returned
// for request i. Watch events are published after the commit, in order.
func (s *MemoryStore) ApplyBatch(indexes []uint64, requests [][]*api.StoreAction) []error {
	if len(indexes) != len(requests) {
		errs := make([]error, len(requests))
		for i := range errs {
			errs[i] = fmt.Errorf("apply batch: %d indexes for %d requests: %w", len(indexes), len(requests), ErrInvalidObject)
		}
		return errs
	}
	s.applyMu.Lock()
	defer s.applyMu.Unlock()
	return s.applyBatchLocked(indexes, requests)
}

func (s *MemoryStore) applyBatchLocked(indexes []uint64, requests [][]*api.StoreAction) []error {
	errs := make([]error, len(requests))
	watching := s.queue.Len() > 0
	type applied struct {
		index   uint64
		changes []change
	}
	var done []applied
	txn := s.db.Txn(true)
	defer txn.Abort() // no-op after Commit
	base := memdbView{txn}
	for i, actions := range requests {
		index := indexes[i]
		if index > s.lastIndex {
			s.lastIndex = index
		}
		if index == 0 {
			errs[i] = fmt.Errorf("apply at index 0: %w", ErrInvalidObject)
			continue
		}
		ov := newOverlayView(base)
		w := newWriter(ov)
		var changes []change
		for j, a := range actions {
			c, err := w.do(a, index)
			if err != nil {
				errs[i] = fmt.Errorf("apply index %d action %d: %w", index, j, err)
				break
			}
			if watching {
				changes = append(changes, c)
			}
		}
		if errs[i] != nil {
			continue
		}
		if err := ov.flush(); err != nil {
			// The staged writes passed every check; memdb refusing them
			// means the store itself is broken: nothing of the batch is
			// committed and every request reports it.
			for k := range errs {
				if errs[k] == nil {
					errs[k] = fmt.Errorf("apply index %d: %w", index, err)
				}
			}
			return errs
		}
		if watching {
			done = append(done, applied{index: index, changes: changes})
		}
	}
	txn.Commit()
	for _, a := range done {
		for _, c := range a.changes {
			ev := Event{Index: a.index}
			switch c.action {
			case api.StoreAction_CREATE:
				ev.Action, ev.Object = EventCreate, clone(c.obj)
			case api.StoreAction_UPDATE:
				ev.Action, ev.Object, ev.Old = EventUpdate, clone(c.obj), clone(c.old)
			case api.StoreAction_REMOVE:
				ev.Action, ev.Object = EventRemove, clone(c.old)
			}
			s.queue.Publish(ev)
		}
		s.queue.Publish(Event{Action: EventCommit, Index: a.index})
	}
	return errs
}

// overlayView stages one request's writes over the batch's memdb write
// txn: reads see the staged writes, the txn sees nothing until flush, so a
// request failing half way leaves no trace.
type overlayView struct {
	base   memdbView
	staged map[objKey]api.StoreObject // nil: removed
	order  []objKey
}

func newOverlayView(base memdbView) *overlayView {
	return &overlayView{base: base, staged: map[objKey]api.StoreObject{}}
}

func (v *overlayView) get(k Kind, id string) (api.StoreObject, error) {
	if obj, ok := v.staged[objKey{k, id}]; ok {
		return obj, nil
	}
	return v.base.get(k, id)
}

func (v *overlayView) byName(k Kind, name string, fn func(api.StoreObject) bool) error {
	stop := false
	err := v.base.byName(k, name, func(o api.StoreObject) bool {
		if _, ok := v.staged[objKey{k, o.GetId()}]; ok {
			return true // superseded by a staged write
		}
		if !fn(o) {
			stop = true
			return false
		}
		return true
	})
	if err != nil || stop {
		return err
	}
	for _, key := range v.order {
		o := v.staged[key]
		if key.kind == k && o != nil && strings.EqualFold(nameOf(o), name) {
			if !fn(o) {
				return nil
			}
		}
	}
	return nil
}

func (v *overlayView) stage(key objKey, obj api.StoreObject) {
	if _, ok := v.staged[key]; !ok {
		v.order = append(v.order, key)
	}
	v.staged[key] = obj
}

func (v *overlayView) put(k Kind, obj api.StoreObject) error {
	v.stage(objKey{k, obj.GetId()}, obj)
	return nil
}

func (v *overlayView) remove(k Kind, obj api.StoreObject) error {
	v.stage(objKey{k, obj.GetId()}, nil)
	return nil
}

// flush writes the staged result into the memdb txn.
func (v *overlayView) flush() error {
	for _, key := range v.order {
		obj := v.staged[key]
		if obj != nil {
			if err := v.base.put(key.kind, obj); err != nil {
				return fmt.Errorf("%s %s: %w", key.kind, key.id, err)
			}
			continue
		}
		cur, err := v.base.get(key.kind, key.id)
		if err != nil {
			return err
		}
		if cur != nil {
			if err := v.base.remove(key.kind, cur); err != nil {
				return fmt.Errorf("%s %s: %w", key.kind, key.id, err)
			}
		}
	}
	return nil
}
