package store

import (
	"fmt"

	"github.com/openswarm/swarmd/api"
)

// Apply applies one committed request: all of actions, atomically, or none
// of them, returning why. It must be called on every member with the same
// arguments in the same (log) order; the result depends only on the store's
// state and the arguments. Created and updated objects get version index.
// Apply takes ownership of the objects in actions. After the commit it
// publishes one event per action, then an EventCommit.
//
// Apply is ApplyBatch of one request.
func (s *MemoryStore) Apply(index uint64, actions []*api.StoreAction) error {
	s.applyMu.Lock()
	defer s.applyMu.Unlock()
	return s.applyOneLocked(index, actions)
}

func (s *MemoryStore) applyOneLocked(index uint64, actions []*api.StoreAction) error {
	var errs [1]error
	indexes := [1]uint64{index}
	requests := [1][]*api.StoreAction{actions}
	s.applyLocked(indexes[:], requests[:], nil, errs[:])
	return errs[0]
}

// ApplyBatch applies committed requests in order: request i is the actions
// requests[i], at log index indexes[i] (requests sharing a log entry share
// its index). The result is that of calling Apply on each in turn, but in one
// commit: it is much cheaper per request when raft hands over many at once.
// Each request is still atomic and checked against the state the requests
// before it left; a failing one changes nothing, and its error (what Apply
// would have returned) is in its slot of the result, which has one slot per
// request. If the two slices differ in length, nothing is applied and every
// slot holds an ErrInvalidObject error. ApplyBatch takes ownership of the
// objects in the requests' actions.
//
// Readers see the state before the batch until ApplyBatch commits, then the
// state after all of it; no reader or watcher ever sees a state between two
// requests of the batch that was not committed. After the commit, the
// events of each successful request are published, in request order, each
// request's followed by its EventCommit, exactly as Apply would have.
func (s *MemoryStore) ApplyBatch(indexes []uint64, requests [][]*api.StoreAction) []error {
	return s.ApplyBatchProposed(indexes, requests, nil)
}

// ApplyBatchProposed is ApplyBatch where proposed[i] reports that
// requests[i] are the very actions this store handed to its Proposer
// (ProposeValue), not a copy decoded from the log. Their objects may share
// messages with stored objects (Tx.CreateOwned, Tx.UpdateOwned): applying
// them modifies no message they hold, only the objects themselves and the
// Meta and Version each transaction gave them. The result, stored objects
// and events included, equals that of applying decoded copies. If
// proposed is shorter than requests, the rest count as decoded.
func (s *MemoryStore) ApplyBatchProposed(indexes []uint64, requests [][]*api.StoreAction, proposed []bool) []error {
	errs := make([]error, len(requests))
	if len(indexes) != len(requests) {
		for i := range errs {
			errs[i] = fmt.Errorf("apply batch: %d indexes for %d requests: %w", len(indexes), len(requests), ErrInvalidObject)
		}
		return errs
	}
	if len(requests) == 0 {
		return errs
	}
	s.applyMu.Lock()
	defer s.applyMu.Unlock()
	s.applyLocked(indexes, requests, proposed, errs)
	return errs
}

// applier is the state of the apply path that outlives a batch, for reuse.
// It is guarded by MemoryStore.applyMu.
type applier struct {
	txn     dbTxn
	w       writer
	specs   specCache
	changes []change     // the batch's changes, when watching; the request's, else
	events  []Event      // the batch's events, being published
	commits []commitMark // the batch's successful requests, when watching
}

// commitMark ends a successful request: its changes end at end in
// applier.changes (and start where the previous mark's end).
type commitMark struct {
	index uint64
	end   int
}

// maxKeptChanges bounds the change buffer kept between batches.
const maxKeptChanges = 4096

// applyLocked applies the requests, putting their errors in errs;
// proposed marks those that are this store's own proposals (see
// ApplyBatchProposed). applyMu is held.
func (s *MemoryStore) applyLocked(indexes []uint64, requests [][]*api.StoreAction, proposed []bool, errs []error) {
	a := &s.applier
	watching := s.queue.Len() > 0
	keep := watching || s.guard != nil // the changes outlive their request
	a.txn = dbTxn{st: *s.state.Load(), own: new(owner)}
	a.w.v = &a.txn
	wrote := false
	for ri, actions := range requests {
		// Decoded objects own every message they hold; a local store's
		// and its own proposals' may share them with stored objects.
		a.specs.ownsMessages = s.proposer != nil && (ri >= len(proposed) || !proposed[ri])
		index := indexes[ri]
		if index > s.lastIndex {
			s.lastIndex = index
		}
		if index == 0 {
			errs[ri] = fmt.Errorf("apply at index 0: %w", ErrInvalidObject)
			continue
		}
		start := len(a.changes)
		if err := a.apply(index, actions); err != nil {
			// Take back what the request wrote, newest first: the
			// state is again what the requests before it left.
			a.undo(a.changes[start:])
			clear(a.changes[start:])
			a.changes = a.changes[:start]
			errs[ri] = err
			continue
		}
		if len(a.changes) > start {
			wrote = true
		}
		if keep {
			a.commits = append(a.commits, commitMark{index: index, end: len(a.changes)})
		} else {
			clear(a.changes[start:])
			a.changes = a.changes[:start]
		}
	}
	if wrote {
		s.state.Store(a.txn.commit())
		if s.guard != nil {
			for _, c := range a.changes {
				s.guard.record(c.obj)
			}
		}
	}
	a.txn = dbTxn{}
	if watching {
		s.publish(a.changes, a.commits)
	}
	clear(a.changes)
	a.changes = a.changes[:0]
	if cap(a.changes) > maxKeptChanges {
		a.changes = nil
	}
	a.commits = a.commits[:0]
}

// apply performs one request's actions, recording them in a.changes. On
// error the actions performed so far are recorded but not undone.
func (a *applier) apply(index uint64, actions []*api.StoreAction) error {
	a.w.reset(updatesAfterWrites(actions))
	for i, act := range actions {
		c, err := a.w.do(act, index)
		if err != nil {
			return fmt.Errorf("apply index %d action %d: %w", index, i, err)
		}
		if t, ok := c.obj.(*api.Task); ok {
			old, _ := c.old.(*api.Task)
			a.specs.share(t, old)
		}
		a.changes = append(a.changes, c)
	}
	return nil
}

// updatesAfterWrites reports whether an update follows another action in
// actions: only then may an update find its object already written by the
// request (with the request's version), and the writer must remember the
// versions from before the request (writer.track).
func updatesAfterWrites(actions []*api.StoreAction) bool {
	for i, a := range actions {
		if i > 0 && a.GetKind() == api.StoreAction_UPDATE {
			return true
		}
	}
	return false
}

// undo reverts changes, newest first. Writes cannot fail, so the state
// afterwards holds the very objects it held before the changes.
func (a *applier) undo(changes []change) {
	for i := len(changes) - 1; i >= 0; i-- {
		c := changes[i]
		kp := kindPos(c.kind)
		if c.action == api.StoreAction_CREATE {
			a.txn.remove(kp, c.obj.GetId())
		} else {
			a.txn.put(kp, c.old)
		}
	}
}

// publish publishes the events of committed requests: each request's
// changes, then its EventCommit. Event objects are the stored objects
// themselves (never modified once stored), shared by the event's
// subscribers, which must treat them as read-only.
func (s *MemoryStore) publish(changes []change, commits []commitMark) {
	evs := s.applier.events[:0]
	start := 0
	for _, m := range commits {
		for _, c := range changes[start:m.end] {
			ev := Event{Index: m.index}
			switch c.action {
			case api.StoreAction_CREATE:
				ev.Action, ev.Object = EventCreate, c.obj
			case api.StoreAction_UPDATE:
				ev.Action, ev.Object, ev.Old = EventUpdate, c.obj, c.old
			case api.StoreAction_REMOVE:
				ev.Action, ev.Object = EventRemove, c.old
			}
			evs = append(evs, ev)
		}
		evs = append(evs, Event{Action: EventCommit, Index: m.index})
		start = m.end
	}
	s.queue.PublishAll(evs)
	clear(evs)
	if cap(evs) > maxKeptChanges {
		evs = nil
	}
	s.applier.events = evs[:0]
}
