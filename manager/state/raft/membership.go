package raft

import (
	"fmt"
	"sort"
	"sync"

	"github.com/openswarm/swarmd/api"
	raftpb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// membership is the raft group as the applied log describes it: the members
// with their addresses and the IDs that were removed and may never return.
// It changes only when conf-change entries or snapshots are applied.
type membership struct {
	mu      sync.RWMutex
	members map[uint64]*api.RaftMember
	removed map[uint64]bool
}

func newMembership() *membership {
	return &membership{members: map[uint64]*api.RaftMember{}, removed: map[uint64]bool{}}
}

// decodeMemberContext reads the member a conf change carries.
func decodeMemberContext(b []byte) (*api.RaftMember, error) {
	var mc api.MemberContext
	if err := proto.Unmarshal(b, &mc); err != nil {
		return nil, fmt.Errorf("decode member context: %w", err)
	}
	if mc.GetMember() == nil {
		return nil, fmt.Errorf("decode member context: no member")
	}
	return mc.GetMember(), nil
}

func encodeMemberContext(m *api.RaftMember) []byte {
	b, err := proto.Marshal(&api.MemberContext{Member: m})
	if err != nil {
		// Marshalling a well-formed message cannot fail.
		panic(err)
	}
	return b
}

// checkConfChange decides whether a committed conf change may be applied.
// A rejected change is applied as a no-op on every member alike.
func (ms *membership) checkConfChange(cc *raftpb.ConfChange) error {
	ms.mu.RLock()
	defer ms.mu.RUnlock()
	id := cc.GetNodeId()
	if ms.removed[id] {
		return fmt.Errorf("%w: raft member %x", ErrMemberRemoved, id)
	}
	switch cc.GetType() {
	case raftpb.ConfChangeType_ConfChangeAddNode, raftpb.ConfChangeType_ConfChangeAddLearnerNode,
		raftpb.ConfChangeType_ConfChangeUpdateNode:
		m, err := decodeMemberContext(cc.GetContext())
		if err != nil {
			return err
		}
		if m.GetRaftId() != id {
			return fmt.Errorf("conf change for %x carries member %x", id, m.GetRaftId())
		}
	case raftpb.ConfChangeType_ConfChangeRemoveNode:
		if _, ok := ms.members[id]; !ok {
			return fmt.Errorf("%w: raft member %x", ErrMemberUnknown, id)
		}
	}
	return nil
}

// apply records a conf change that raft accepted.
func (ms *membership) apply(cc *raftpb.ConfChange) {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	id := cc.GetNodeId()
	switch cc.GetType() {
	case raftpb.ConfChangeType_ConfChangeRemoveNode:
		delete(ms.members, id)
		ms.removed[id] = true
	default:
		m, err := decodeMemberContext(cc.GetContext())
		if err == nil {
			ms.members[id] = m
		}
	}
}

func (ms *membership) get(id uint64) (*api.RaftMember, bool) {
	ms.mu.RLock()
	defer ms.mu.RUnlock()
	m, ok := ms.members[id]
	return m, ok
}

func (ms *membership) isRemoved(id uint64) bool {
	ms.mu.RLock()
	defer ms.mu.RUnlock()
	return ms.removed[id]
}

// list returns the members ordered by raft ID.
func (ms *membership) list() []*api.RaftMember {
	ms.mu.RLock()
	defer ms.mu.RUnlock()
	out := make([]*api.RaftMember, 0, len(ms.members))
	for _, m := range ms.members {
		out = append(out, proto.Clone(m).(*api.RaftMember))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].GetRaftId() < out[j].GetRaftId() })
	return out
}

func (ms *membership) removedIDs() []uint64 {
	ms.mu.RLock()
	defer ms.mu.RUnlock()
	out := make([]uint64, 0, len(ms.removed))
	for id := range ms.removed {
		out = append(out, id)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

func (ms *membership) snapshot() *api.ClusterSnapshot {
	return &api.ClusterSnapshot{Members: ms.list(), Removed: ms.removedIDs()}
}

func (ms *membership) restore(cs *api.ClusterSnapshot) {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	ms.members = map[uint64]*api.RaftMember{}
	ms.removed = map[uint64]bool{}
	for _, m := range cs.GetMembers() {
		ms.members[m.GetRaftId()] = m
	}
	for _, id := range cs.GetRemoved() {
		ms.removed[id] = true
	}
}

// add records members known from outside the log (a join response) so the
// transport can reach them before the log catches up.
func (ms *membership) add(m *api.RaftMember) {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	if !ms.removed[m.GetRaftId()] {
		ms.members[m.GetRaftId()] = m
	}
}
