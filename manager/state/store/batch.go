package store

import (
	"context"
	"errors"
	"fmt"

	"github.com/openswarm/swarmd/api"
	"google.golang.org/protobuf/proto"
)

// Batch groups many small transactions into as few proposals as the size
// limit allows. Each call to Batch.Update is atomic; consecutive calls share
// one transaction (and see each other's writes) until the accumulated
// actions are proposed.
type Batch struct {
	s   *MemoryStore
	ctx context.Context

	t       *tx   // the chunk being prepared, nil if none
	size    int   // encoded size of t.actions
	maxSeen int   // largest callback seen, to predict the next one
	err     error // sticky: a proposal failed
}

// Batch runs cb, which calls b.Update any number of times, and returns once
// everything those calls wrote has been applied. A proposal is made
// whenever the next callback would likely take the accumulated actions past
// the maximum proposal size, or, if a callback writes more than predicted,
// just before that callback's actions: no proposal exceeds the maximum.
// Callbacks run once each.
//
// Writes of b.Update calls that returned nil are proposed even if cb then
// fails. The first failed proposal stops the batch: later b.Update calls
// return its error, as does Batch. Like Update, callbacks read a snapshot
// (taken when the current chunk started) plus the chunk's own writes.
func (s *MemoryStore) Batch(ctx context.Context, cb func(b *Batch) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if s.proposer == nil {
		s.localMu.Lock()
		defer s.localMu.Unlock()
	}
	b := &Batch{s: s, ctx: ctx}
	defer b.abort()
	err := cb(b)
	if ferr := b.flush(); ferr != nil && !errors.Is(err, ferr) {
		err = errors.Join(err, ferr)
	}
	return err
}

// Update runs cb in the batch's current transaction. If cb fails, its
// writes are dropped and its error returned; the batch goes on. A single
// callback writing more than the maximum proposal size gets ErrTxTooLarge.
func (b *Batch) Update(cb func(tx Tx) error) error {
	if b.err != nil {
		return b.err
	}
	if b.t == nil {
		b.open()
	}
	n0 := len(b.t.actions)
	if err := cb(b.t); err != nil {
		if rerr := b.rebuild(n0); rerr != nil {
			return errors.Join(err, rerr)
		}
		return err
	}
	added := actionsSize(b.t.actions[n0:])
	if n := len(b.t.actions) - n0; added+requestOverhead > b.s.opts.maxProposalBytes {
		if rerr := b.rebuild(n0); rerr != nil {
			return rerr
		}
		return fmt.Errorf("%d actions encode to %d bytes, more than %d: %w", n, added+requestOverhead, b.s.opts.maxProposalBytes, ErrTxTooLarge)
	}
	if b.size+added+requestOverhead > b.s.opts.maxProposalBytes && n0 > 0 {
		// Propose what came before, then carry this callback's actions
		// into a new chunk.
		if err := b.split(n0); err != nil {
			return err
		}
		added = b.size
		n0 = 0
	} else {
		b.size += added
	}
	b.maxSeen = max(b.maxSeen, added)
	if b.size+b.maxSeen+requestOverhead > b.s.opts.maxProposalBytes {
		return b.flush()
	}
	return nil
}

// split proposes the chunk's actions before n0 and starts a new chunk with
// the rest (one callback's), on a snapshot that includes the proposal.
// Updates among the rest of objects the proposal wrote carry the version
// from before the proposal; they are moved onto the version the proposal
// gave, after checking that the stored object is still the one proposed
// (else someone wrote it in between: ErrSequenceConflict).
func (b *Batch) split(n0 int) error {
	flushed := b.t.actions[:n0]
	pending := append([]*api.StoreAction(nil), b.t.actions[n0:]...)
	proposed := make(map[objKey]api.StoreObject) // final state of what flushed wrote
	for _, a := range flushed {
		obj, k, err := objectOf(a)
		if err != nil {
			continue
		}
		if a.GetKind() == api.StoreAction_REMOVE {
			delete(proposed, objKey{k, obj.GetId()})
		} else {
			proposed[objKey{k, obj.GetId()}] = obj
		}
	}
	b.t.actions = flushed
	if err := b.flush(); err != nil {
		return err
	}
	b.open()
	for _, a := range pending {
		if a.GetKind() != api.StoreAction_UPDATE {
			continue
		}
		obj, k, err := objectOf(a)
		if err != nil {
			continue
		}
		mine, ok := proposed[objKey{k, obj.GetId()}]
		if !ok {
			continue
		}
		cur := b.t.lookup(k, obj.GetId())
		if cur == nil {
			b.abort()
			return fmt.Errorf("update %s %s: removed concurrently: %w", k, obj.GetId(), ErrNotExist)
		}
		if !sameContent(cur, mine) {
			b.abort()
			return fmt.Errorf("update %s %s: written concurrently: %w", k, obj.GetId(), ErrSequenceConflict)
		}
		m := obj.GetMeta()
		obj.SetMeta(&api.Meta{
			Version:   &api.Version{Index: cur.GetMeta().GetVersion().GetIndex()},
			CreatedAt: m.GetCreatedAt(),
			UpdatedAt: m.GetUpdatedAt(),
		})
	}
	size := actionsSize(pending)
	if size+requestOverhead > b.s.opts.maxProposalBytes {
		b.abort()
		return fmt.Errorf("%d actions encode to %d bytes, more than %d: %w", len(pending), size+requestOverhead, b.s.opts.maxProposalBytes, ErrTxTooLarge)
	}
	if err := b.replay(pending); err != nil {
		b.abort()
		return err
	}
	b.size = size
	return nil
}

// sameContent reports whether a and b are equal but for their Meta.
func sameContent(a, b api.StoreObject) bool {
	if a == b {
		return true
	}
	ca, cb := clone(a), clone(b)
	ca.SetMeta(nil)
	cb.SetMeta(nil)
	return proto.Equal(ca, cb)
}

func (b *Batch) open() {
	b.t = b.s.newTx()
	b.size = 0
}

func (b *Batch) abort() {
	if b.t != nil {
		b.t.abort()
		b.t = nil
	}
}

// replay performs already-prepared actions on the current chunk.
func (b *Batch) replay(actions []*api.StoreAction) error {
	for _, a := range actions {
		if _, err := b.t.w.do(a, 0); err != nil {
			return err
		}
		b.t.actions = append(b.t.actions, a)
	}
	return nil
}

// rebuild drops the actions from n0 on: the chunk is reopened on the same
// snapshot and its earlier actions replayed, which succeeds as it did the
// first time.
func (b *Batch) rebuild(n0 int) error {
	keep := b.t.actions[:n0]
	snap, now := b.t.snap, b.t.now
	b.abort()
	if n0 == 0 {
		return nil
	}
	size := b.size
	b.t = newTx(snap, now)
	if err := b.replay(keep); err != nil {
		b.abort()
		b.err = fmt.Errorf("batch: replaying the chunk: %w", err)
		return b.err
	}
	b.size = size
	return nil
}

// flush proposes the current chunk and waits until it is applied.
func (b *Batch) flush() error {
	if b.t == nil {
		return b.err
	}
	actions := b.t.actions
	b.abort()
	if len(actions) == 0 || b.err != nil {
		return b.err
	}
	if err := b.s.propose(b.ctx, actions); err != nil {
		b.err = err
		return err
	}
	return nil
}
