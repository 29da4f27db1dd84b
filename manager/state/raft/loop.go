package raft

import (
	"context"
	"errors"
	"fmt"
	"runtime"

	"github.com/openswarm/swarmd/api"
	"go.etcd.io/raft/v3"
	raftpb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// run is the raft loop: tick, and handle each Ready in order — send (the
// leader first, in parallel with its own disk write), persist, apply,
// advance.
func (n *Node) run() {
	defer n.shutdown()
	ticker := n.cfg.Clock.NewTicker(n.cfg.TickInterval)
	defer ticker.Stop()
	for {
		select {
		case <-ticker.Chan():
			n.raft.Tick()
			if n.IsLeader() {
				n.promoteLearners()
			}
		case rd := <-n.raft.Ready():
			if err := n.handleReady(rd); err != nil {
				n.fail(err)
				return
			}
		case <-n.stopCh:
			return
		}
	}
}

func (n *Node) shutdown() {
	n.raft.Stop()
	n.tr.stop()
	if err := n.disk.close(); err != nil {
		n.log.Warn("raft: close log", "error", err)
	}
	n.setLeader(0)
	n.wg.Wait()
	close(n.doneCh)
	n.log.Info("raft: member stopped", "raft.id", fmt.Sprintf("%x", n.id))
}

func (n *Node) handleReady(rd raft.Ready) error {
	if rd.SoftState != nil {
		n.setLeader(rd.SoftState.Lead)
	}
	if rd.HardState != nil && rd.HardState.GetTerm() != 0 {
		n.term.Store(rd.HardState.GetTerm())
		n.cfg.Metrics.setTerm(rd.HardState.GetTerm())
	}
	leader := n.IsLeader()
	if leader && len(rd.Entries) == 0 && raft.IsEmptySnap(rd.Snapshot) {
		return n.handleLeaderCommit(rd)
	}
	if leader && len(rd.Messages) > 0 {
		n.tr.send(rd.Messages)
		// Let the peer senders put the messages on the wire before this
		// goroutine blocks its P in fsync: followers persist in parallel.
		runtime.Gosched()
	}
	if !raft.IsEmptySnap(rd.Snapshot) {
		if err := n.disk.saveSnapshot(rd.Snapshot); err != nil {
			return err
		}
	}
	if err := n.disk.save(rd.HardState, rd.Entries); err != nil {
		return err
	}
	if !raft.IsEmptySnap(rd.Snapshot) {
		if err := n.storage.ApplySnapshot(rd.Snapshot); err != nil {
			return fmt.Errorf("raft: apply snapshot: %w", err)
		}
		n.logBytes = 0
		if err := n.restoreSnapshot(rd.Snapshot); err != nil {
			return err
		}
		n.syncPeers()
		n.snapsReceived.Add(1)
		n.log.Info("raft: restored from a snapshot sent by the leader", "index", n.snapshotIndex)
	}
	if err := n.appendLog(rd.Entries); err != nil {
		return fmt.Errorf("raft: append to log: %w", err)
	}
	if !leader {
		n.tr.send(rd.Messages)
	}
	if err := n.applyEntries(rd.CommittedEntries); err != nil {
		return err
	}
	n.cfg.Metrics.setApplied(n.applied.Load())
	if err := n.maybeSnapshot(); err != nil {
		return err
	}
	n.raft.Advance()
	n.campaignIfAlone()
	return nil
}

// handleLeaderCommit handles a leader's Ready that brings no entries to
// persist, typically the commit of entries the followers acknowledged: the
// committed entries are applied (waking their proposers) before the
// messages, mostly commit index updates for the followers, are sent.
func (n *Node) handleLeaderCommit(rd raft.Ready) error {
	err := n.applyEntries(rd.CommittedEntries)
	n.tr.send(rd.Messages)
	if err != nil {
		return err
	}
	n.cfg.Metrics.setApplied(n.applied.Load())
	if err := n.disk.save(rd.HardState, nil); err != nil {
		return err
	}
	if err := n.maybeSnapshot(); err != nil {
		return err
	}
	n.raft.Advance()
	n.campaignIfAlone()
	return nil
}

// campaignIfAlone makes a member that is the only voter lead at once
// instead of after an election timeout: a new single-manager swarm is ready
// in milliseconds.
func (n *Node) campaignIfAlone() {
	if n.aloneChecked || n.Leader() != 0 || n.confState == nil {
		return
	}
	n.aloneChecked = true
	if v := n.confState.GetVoters(); len(v) != 1 || v[0] != n.id {
		return
	}
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), n.cfg.electionTimeout())
		defer cancel()
		_ = n.raft.Campaign(ctx)
	}()
}

func (n *Node) setLeader(lead uint64) {
	if n.lead.Swap(lead) == lead {
		return
	}
	n.cfg.Metrics.leaderChanged(lead != 0 && lead == n.id)
	n.leadMu.Lock()
	close(n.leadCh)
	n.leadCh = make(chan struct{})
	n.leadMu.Unlock()
	if lead != 0 {
		n.log.Info("raft: leader known", "raft.id", fmt.Sprintf("%x", n.id), "raft.leader", fmt.Sprintf("%x", lead), "term", n.term.Load())
	}
}

// syncPeers makes the transport match the membership.
func (n *Node) syncPeers() {
	known := map[uint64]bool{}
	for _, m := range n.members.list() {
		known[m.GetRaftId()] = true
		if err := n.tr.setPeer(m.GetRaftId(), m.GetAddr()); err != nil {
			n.log.Warn("raft: add peer", "raft.peer", fmt.Sprintf("%x", m.GetRaftId()), "error", err)
		}
	}
	n.tr.mu.Lock()
	var stale []uint64
	for id := range n.tr.peers {
		if !known[id] {
			stale = append(stale, id)
		}
	}
	n.tr.mu.Unlock()
	for _, id := range stale {
		n.tr.removePeer(id)
	}
}

// applyEntries applies committed entries in order. Consecutive normal
// entries go to the state machine together when it can apply a batch in
// one commit; conf changes apply between batches.
func (n *Node) applyEntries(ents []*raftpb.Entry) error {
	var pending pendingApply
	for _, e := range ents {
		if e.GetIndex() <= n.applied.Load() {
			continue
		}
		switch e.GetType() {
		case raftpb.EntryType_EntryNormal:
			n.collect(&pending, e)
			continue
		case raftpb.EntryType_EntryConfChange:
			n.flushApply(&pending)
			if err := n.applyConfChange(e); err != nil {
				return err
			}
		}
		n.applied.Store(e.GetIndex())
	}
	n.flushApply(&pending)
	if len(ents) > 0 {
		if last := ents[len(ents)-1]; last.GetIndex() <= n.applied.Load() {
			n.appliedTerm.Store(last.GetTerm())
		}
		n.leadMu.Lock()
		close(n.applyCh)
		n.applyCh = make(chan struct{})
		n.leadMu.Unlock()
	}
	return nil
}

// pendingApply gathers the requests of consecutive normal entries.
type pendingApply struct {
	indexes  []uint64
	requests [][]*api.StoreAction
	// proposed[i]: requests[i] are this member's own actions, taken
	// back from memory rather than decoded.
	proposed []bool
	ids      []requestID
	last     uint64
}

// requestID identifies a request to the member that proposed it.
type requestID struct{ proposer, seq uint64 }

func (n *Node) collect(p *pendingApply, e *raftpb.Entry) {
	p.last = e.GetIndex()
	if len(e.GetData()) == 0 {
		return
	}
	_, own := n.sm.(ProposedStateMachine)
	reqs, err := decodeEntry(e.GetData(), n.id, own, n.waits.takeActions)
	if err != nil {
		n.log.Error("raft: undecodable log entry skipped", "index", e.GetIndex(), "error", err)
		return
	}
	for _, r := range reqs {
		p.indexes = append(p.indexes, e.GetIndex())
		p.requests = append(p.requests, r.actions)
		p.proposed = append(p.proposed, r.proposed)
		p.ids = append(p.ids, r.id)
	}
}

// entryRequest is one request of a log entry.
type entryRequest struct {
	id      requestID
	actions []*api.StoreAction
	// proposed: actions are the ones this member proposed, from memory.
	proposed bool
	raw      []byte // the encoded request, until decoded
}

// decodeEntry returns the requests of a normal entry's data (an
// api.RaftBatch). With own set, the requests this member (self) proposed
// and whose actions take still holds are not decoded: their actions are
// taken from memory. An entry that does not decode yields an error and no
// request, as proto.Unmarshal of the whole batch would.
func decodeEntry(data []byte, self uint64, own bool, take func(seq uint64) ([]*api.StoreAction, bool)) ([]entryRequest, error) {
	if !own {
		var batch api.RaftBatch
		if err := proto.Unmarshal(data, &batch); err != nil {
			return nil, err
		}
		reqs := make([]entryRequest, len(batch.GetRequests()))
		for i, r := range batch.GetRequests() {
			reqs[i] = entryRequest{id: requestID{r.GetProposer(), r.GetSeq()}, actions: r.GetActions()}
		}
		return reqs, nil
	}
	var reqs []entryRequest
	for len(data) > 0 {
		num, typ, n := protowire.ConsumeTag(data)
		if n < 0 {
			return nil, protowire.ParseError(n)
		}
		data = data[n:]
		if num != raftBatchRequests || typ != protowire.BytesType {
			if n = protowire.ConsumeFieldValue(num, typ, data); n < 0 {
				return nil, protowire.ParseError(n)
			}
			data = data[n:]
			continue
		}
		raw, n := protowire.ConsumeBytes(data)
		if n < 0 {
			return nil, protowire.ParseError(n)
		}
		data = data[n:]
		id, err := decodeRequestID(raw)
		if err != nil {
			return nil, err
		}
		reqs = append(reqs, entryRequest{id: id, raw: raw})
	}
	// Decode the others' requests first: if one fails, the entry is
	// skipped and this member's actions stay where they were.
	for i := range reqs {
		if reqs[i].id.proposer == self {
			continue
		}
		if err := reqs[i].decode(); err != nil {
			return nil, err
		}
	}
	for i := range reqs {
		r := &reqs[i]
		if r.id.proposer != self {
			continue
		}
		if actions, ok := take(r.id.seq); ok {
			r.actions, r.proposed, r.raw = actions, true, nil
			continue
		}
		if err := r.decode(); err != nil {
			return nil, err
		}
	}
	return reqs, nil
}

func (r *entryRequest) decode() error {
	var req api.InternalRaftRequest
	if err := proto.Unmarshal(r.raw, &req); err != nil {
		return err
	}
	r.actions, r.raw = req.GetActions(), nil
	return nil
}

// Field numbers of api.RaftBatch and api.InternalRaftRequest.
const (
	raftBatchRequests = 1
	requestProposer   = 1
	requestSeq        = 2
)

// decodeRequestID reads the proposer and seq of an encoded
// api.InternalRaftRequest (the last occurrence of each wins, as in
// proto.Unmarshal), skipping its actions.
func decodeRequestID(b []byte) (requestID, error) {
	var id requestID
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return requestID{}, protowire.ParseError(n)
		}
		b = b[n:]
		if (num == requestProposer || num == requestSeq) && typ == protowire.VarintType {
			v, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return requestID{}, protowire.ParseError(n)
			}
			b = b[n:]
			if num == requestProposer {
				id.proposer = v
			} else {
				id.seq = v
			}
			continue
		}
		if n = protowire.ConsumeFieldValue(num, typ, b); n < 0 {
			return requestID{}, protowire.ParseError(n)
		}
		b = b[n:]
	}
	return id, nil
}

// flushApply applies the gathered requests and wakes their proposers.
func (n *Node) flushApply(p *pendingApply) {
	if p.last == 0 {
		return
	}
	var errs []error
	if psm, ok := n.sm.(ProposedStateMachine); ok && len(p.requests) > 0 {
		errs = psm.ApplyBatchProposed(p.indexes, p.requests, p.proposed)
	} else if bsm, ok := n.sm.(BatchStateMachine); ok && len(p.requests) > 0 {
		errs = bsm.ApplyBatch(p.indexes, p.requests)
	} else {
		errs = make([]error, len(p.requests))
		for i := range p.requests {
			errs[i] = n.sm.Apply(p.indexes[i], p.requests[i])
		}
	}
	for i, id := range p.ids {
		if id.proposer == n.id {
			n.waits.trigger(id.seq, errs[i])
		}
	}
	n.applied.Store(p.last)
	*p = pendingApply{}
}

func (n *Node) applyConfChange(e *raftpb.Entry) error {
	var cc raftpb.ConfChange
	if err := proto.Unmarshal(e.GetData(), &cc); err != nil {
		n.log.Error("raft: undecodable conf change skipped", "index", e.GetIndex(), "error", err)
		return nil
	}
	if err := n.members.checkConfChange(&cc); err != nil {
		n.log.Warn("raft: conf change refused", "index", e.GetIndex(), "error", err)
		n.waits.trigger(cc.GetId(), err)
		return nil
	}
	n.confState = n.raft.ApplyConfChange(&cc)
	n.members.apply(&cc)
	id := cc.GetNodeId()
	switch cc.GetType() {
	case raftpb.ConfChangeType_ConfChangeRemoveNode:
		n.log.Info("raft: member removed", "raft.peer", fmt.Sprintf("%x", id))
		if id == n.id {
			n.waits.trigger(cc.GetId(), nil)
			if err := writeRemovedMarker(n.cfg.Dir); err != nil {
				n.log.Error("raft: record removal", "error", err)
			}
			return fmt.Errorf("%w: raft member %x", ErrMemberRemoved, n.id)
		}
		n.tr.removePeer(id)
	default:
		m, _ := n.members.get(id)
		n.log.Info("raft: member configured", "raft.peer", fmt.Sprintf("%x", id), "addr", m.GetAddr(), "change", cc.GetType().String())
		if err := n.tr.setPeer(id, m.GetAddr()); err != nil {
			n.log.Warn("raft: add peer", "raft.peer", fmt.Sprintf("%x", id), "error", err)
		}
	}
	n.waits.trigger(cc.GetId(), nil)
	return nil
}

// maybeSnapshot snapshots the store and compacts the log every
// SnapshotInterval applied entries, or when raft needs a snapshot newer
// than the log in memory; else it compacts the log if it grew too large.
func (n *Node) maybeSnapshot() error {
	applied := n.applied.Load()
	if applied-n.snapshotIndex >= n.snapInterval.Load() || applied > n.snapshotIndex && n.wantSnapshot.Swap(false) {
		return n.snapshot(applied)
	}
	return n.compactBySize(applied)
}

func (n *Node) snapshot(applied uint64) error {
	st, err := n.sm.Save()
	if err != nil {
		return fmt.Errorf("raft: snapshot store: %w", err)
	}
	data, err := proto.Marshal(&api.RaftSnapshot{Membership: n.members.snapshot(), Store: st})
	if err != nil {
		return fmt.Errorf("raft: encode snapshot: %w", err)
	}
	sn, err := n.storage.CreateSnapshot(applied, n.confState, data)
	if err != nil {
		if errors.Is(err, raft.ErrSnapOutOfDate) {
			return nil
		}
		return fmt.Errorf("raft: create snapshot: %w", err)
	}
	if err := n.disk.saveSnapshot(sn); err != nil {
		return err
	}
	if keep := n.keepEntries.Load(); applied > keep {
		compact := applied - keep
		if first, _ := n.storage.FirstIndex(); compact > first {
			if err := n.storage.Compact(compact); err != nil && !errors.Is(err, raft.ErrCompacted) {
				return fmt.Errorf("raft: compact log: %w", err)
			}
			n.countLogBytes()
		}
	}
	if err := n.disk.purge(); err != nil {
		n.log.Warn("raft: purge old snapshots", "error", err)
	}
	n.snapshotIndex = applied
	n.log.Debug("raft: snapshot taken", "index", applied, "bytes", len(data))
	return nil
}
