package raft

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/openswarm/swarmd/api"
	"go.etcd.io/raft/v3"
	raftpb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// ProposeValue proposes one store transaction and waits until this member
// applied it, returning what applying it returned. Any member may propose:
// followers forward to the leader. If ctx ends first, the outcome is
// unknown: the transaction may still commit.
func (n *Node) ProposeValue(ctx context.Context, actions []*api.StoreAction) error {
	start, applied := n.cfg.Clock.Now(), false
	defer func() { n.cfg.Metrics.proposed(n.cfg.Clock.Since(start), applied) }()
	select {
	case <-n.stopCh:
		return ErrStopped
	default:
	}
	req := &api.InternalRaftRequest{Proposer: n.id, Seq: n.seq.Add(1), Actions: actions}
	size := proto.Size(req)
	if size > n.cfg.MaxProposalBytes {
		return fmt.Errorf("%w: %d bytes, limit %d", ErrProposalTooLarge, size, n.cfg.MaxProposalBytes)
	}
	ch := n.waits.register(req.GetSeq(), actions)
	select {
	case n.proposals <- &proposal{req: req, size: size}:
	case <-ctx.Done():
		n.waits.cancel(req.GetSeq())
		return ctx.Err()
	case <-n.stopCh:
		n.waits.cancel(req.GetSeq())
		return ErrStopped
	}
	select {
	case err := <-ch:
		if np := (notProposed{}); errors.As(err, &np) {
			return np.err
		}
		applied = true
		return err
	case <-ctx.Done():
		n.waits.cancel(req.GetSeq())
		return ctx.Err()
	case <-n.stopCh:
		n.waits.cancel(req.GetSeq())
		return ErrStopped
	}
}

// runProposals packs waiting transactions into as few log entries as it can:
// while raft takes one entry, the next batch gathers.
func (n *Node) runProposals() {
	defer n.wg.Done()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-n.stopCh:
			cancel()
		case <-ctx.Done():
		}
	}()
	for {
		var first *proposal
		select {
		case first = <-n.proposals:
		case <-n.stopCh:
			return
		}
		batch := []*proposal{first}
		size := first.size
	drain:
		for size < maxBatchBytes {
			select {
			case p := <-n.proposals:
				batch = append(batch, p)
				size += p.size
			default:
				break drain
			}
		}
		n.proposeBatch(ctx, batch)
	}
}

func (n *Node) proposeBatch(ctx context.Context, batch []*proposal) {
	reqs := make([]*api.InternalRaftRequest, len(batch))
	for i, p := range batch {
		reqs[i] = p.req
	}
	// ProposeValue sized every request just now, and its caller waits
	// without touching the actions: the cached sizes are current, so
	// encoding does not walk every message twice.
	data, err := proto.MarshalOptions{UseCachedSize: true}.Marshal(&api.RaftBatch{Requests: reqs})
	if err == nil {
		err = n.raft.Propose(ctx, data)
	}
	if err == nil {
		return
	}
	if errors.Is(err, raft.ErrProposalDropped) {
		err = fmt.Errorf("%w: %w", ErrNoLeader, err)
	}
	for _, r := range reqs {
		n.waits.trigger(r.GetSeq(), notProposed{err})
	}
}

// proposeConfChange proposes one membership change and waits for it to be
// applied. Raft takes one change at a time, so changes are serialised here.
func (n *Node) proposeConfChange(ctx context.Context, typ raftpb.ConfChangeType, m *api.RaftMember) error {
	n.confMu.Lock()
	defer n.confMu.Unlock()
	seq := n.seq.Add(1)
	cc := &raftpb.ConfChange{
		Id:      proto.Uint64(seq),
		Type:    typ.Enum(),
		NodeId:  proto.Uint64(m.GetRaftId()),
		Context: encodeMemberContext(m),
	}
	ch := n.waits.register(seq, nil)
	if err := n.raft.ProposeConfChange(ctx, cc); err != nil {
		n.waits.cancel(seq)
		return fmt.Errorf("raft: propose %s: %w", typ, err)
	}
	select {
	case err := <-ch:
		return err
	case <-ctx.Done():
		n.waits.cancel(seq)
		return ctx.Err()
	case <-n.stopCh:
		n.waits.cancel(seq)
		return ErrStopped
	}
}

// addMember adds a new member as a learner; the leader promotes it to voter
// once it has caught up, so a slow joiner never costs the cluster its quorum.
func (n *Node) addMember(ctx context.Context, nodeID, addr string) (*api.RaftMember, error) {
	for _, m := range n.members.list() {
		if m.GetNodeId() == nodeID && nodeID != "" {
			return nil, fmt.Errorf("%w: node %s is raft member %x", ErrAlreadyMember, nodeID, m.GetRaftId())
		}
	}
	var id uint64
	for id == 0 || n.members.isRemoved(id) {
		id = randomUint64()
		if _, ok := n.members.get(id); ok {
			id = 0
		}
	}
	m := &api.RaftMember{RaftId: id, NodeId: nodeID, Addr: addr}
	if err := n.proposeConfChange(ctx, raftpb.ConfChangeType_ConfChangeAddLearnerNode, m); err != nil {
		return nil, err
	}
	return m, nil
}

// promoteLearners makes caught-up learners voters. Leader only.
func (n *Node) promoteLearners() {
	st := n.raft.Status()
	commit := st.HardState.GetCommit()
	for id, pr := range st.Progress {
		if !pr.IsLearner || pr.Match < commit {
			continue
		}
		n.promoteMu.Lock()
		busy := n.promoting[id]
		n.promoting[id] = true
		n.promoteMu.Unlock()
		if busy {
			continue
		}
		go func() {
			defer func() {
				n.promoteMu.Lock()
				delete(n.promoting, id)
				n.promoteMu.Unlock()
			}()
			m, ok := n.members.get(id)
			if !ok {
				return
			}
			ctx, cancel := context.WithTimeout(context.Background(), 4*n.cfg.electionTimeout())
			defer cancel()
			if err := n.proposeConfChange(ctx, raftpb.ConfChangeType_ConfChangeAddNode, m); err != nil {
				n.log.Warn("raft: promote learner", "raft.peer", fmt.Sprintf("%x", id), "error", err)
			}
		}()
	}
}

// RemoveMember removes a member from the cluster; it may never come back
// with the same raft ID. It refuses when the remaining members that answer
// would not form a quorum. Leader only.
func (n *Node) RemoveMember(ctx context.Context, id uint64) error {
	if !n.IsLeader() {
		return ErrNotLeader
	}
	m, ok := n.members.get(id)
	if !ok {
		return fmt.Errorf("%w: %x", ErrMemberUnknown, id)
	}
	// A new leader has not heard from its followers yet: give them an
	// election timeout to answer before calling them unreachable.
	deadline := n.cfg.Clock.Now().Add(n.cfg.electionTimeout())
	for {
		err := n.canRemove(id)
		if err == nil {
			break
		}
		if n.cfg.Clock.Now().After(deadline) {
			return err
		}
		select {
		case <-n.cfg.Clock.After(n.cfg.TickInterval):
		case <-ctx.Done():
			return err
		case <-n.stopCh:
			return ErrStopped
		}
	}
	return n.proposeConfChange(ctx, raftpb.ConfChangeType_ConfChangeRemoveNode, m)
}

// canRemove checks that the voters left, counting only those that answer,
// still form a majority of the new configuration.
func (n *Node) canRemove(id uint64) error {
	st := n.raft.Status()
	voters := 0
	reachable := 0
	for vid, pr := range st.Progress {
		if pr.IsLearner || vid == id {
			continue
		}
		voters++
		if vid == n.id || pr.RecentActive {
			reachable++
		}
	}
	if voters == 0 || reachable < voters/2+1 {
		return fmt.Errorf("%w (%d of %d remaining members reachable)", ErrLostQuorum, reachable, voters)
	}
	return nil
}

// TransferLeadership hands leadership to another voter and waits until this
// member no longer leads.
func (n *Node) TransferLeadership(ctx context.Context) error {
	if !n.IsLeader() {
		return nil
	}
	st := n.raft.Status()
	var target uint64
	var best uint64
	for id, pr := range st.Progress {
		if id == n.id || pr.IsLearner || !pr.RecentActive {
			continue
		}
		if pr.Match >= best {
			target, best = id, pr.Match
		}
	}
	if target == 0 {
		return fmt.Errorf("raft: transfer leadership: %w", ErrLostQuorum)
	}
	n.raft.TransferLeadership(ctx, n.id, target)
	for {
		ch := n.LeaderChanged()
		if !n.IsLeader() {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("raft: transfer leadership: %w", ctx.Err())
		case <-n.stopCh:
			return ErrStopped
		}
	}
}

// peerStreamLost reacts to the stream from a peer breaking. If that peer
// leads, it has most likely died (a killed process's connections close at
// once): waiting for the election timeout would leave the cluster without a
// writable leader for one to two seconds. Every follower forgets the leader,
// so pre-votes are granted at once, and the follower with the lowest raft ID
// campaigns straight away. PreVote makes a false alarm harmless: while the
// leader lives, the other members refuse the pre-vote.
func (n *Node) peerStreamLost(id uint64) {
	if id == 0 || id != n.Leader() || n.IsLeader() {
		return
	}
	go n.replaceLostLeader(id)
}

func (n *Node) replaceLostLeader(lost uint64) {
	timeout := n.cfg.electionTimeout()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := n.raft.ForgetLeader(ctx); err != nil {
		return
	}
	var first uint64
	for _, v := range n.Voters() {
		if v != lost && (first == 0 || v < first) {
			first = v
		}
	}
	if first != n.id {
		return
	}
	n.log.Info("raft: connection to the leader lost; campaigning at once", "raft.leader", fmt.Sprintf("%x", lost))
	// The other followers may learn of the loss a moment later: try again
	// every few milliseconds for half an election timeout.
	retry := min(n.cfg.TickInterval, 5*time.Millisecond)
	for i := 0; i < max(1, int(timeout/2/retry)); i++ {
		if l := n.Leader(); l != 0 && l != lost {
			return
		}
		if err := n.raft.Campaign(ctx); err != nil {
			return
		}
		select {
		case <-n.cfg.Clock.After(retry):
		case <-n.stopCh:
			return
		case <-ctx.Done():
			return
		}
	}
}
