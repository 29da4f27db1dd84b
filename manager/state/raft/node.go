package raft

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/openswarm/swarmd/api"
	"go.etcd.io/raft/v3"
	raftpb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
)

// StateMachine is what the log drives: the store.
type StateMachine interface {
	// Apply applies one transaction at the given log index, deterministically.
	Apply(index uint64, actions []*api.StoreAction) error
	Save() (*api.StoreSnapshot, error)
	Restore(*api.StoreSnapshot) error
}

// BatchStateMachine is a state machine that applies many transactions in
// one commit; errs[i] is what Apply would have returned for transaction i.
type BatchStateMachine interface {
	ApplyBatch(indexes []uint64, requests [][]*api.StoreAction) []error
}

// ProposedStateMachine is a BatchStateMachine that also applies this
// member's own proposals from memory: where proposed[i] is set,
// requests[i] is the very slice of actions given to ProposeValue (not a
// copy decoded from the log), which the state machine takes over; the
// result must be what applying the decoded copy would give. The member
// still decodes every other request, and all of them after a restart.
type ProposedStateMachine interface {
	ApplyBatchProposed(indexes []uint64, requests [][]*api.StoreAction, proposed []bool) []error
}

// Node is one raft member.
type Node struct {
	cfg     Config
	log     *slog.Logger
	sm      StateMachine
	disk    *diskStorage
	storage *raft.MemoryStorage
	raft    raft.Node
	members *membership
	tr      *transport
	waits   *waits

	id        uint64
	seq       atomic.Uint64
	proposals chan *proposal

	lead    atomic.Uint64
	term    atomic.Uint64
	applied atomic.Uint64
	// appliedTerm is the term of the last entry applied.
	appliedTerm atomic.Uint64
	// snapsReceived counts snapshots installed from the leader.
	snapsReceived atomic.Uint64
	// snapInterval and keepEntries are Config.SnapshotInterval and
	// Config.LogEntriesForSlowFollowers, changeable while running
	// (SetSnapshotPolicy).
	snapInterval atomic.Uint64
	keepEntries  atomic.Uint64
	leadMu       sync.Mutex
	leadCh       chan struct{}
	applyCh      chan struct{} // closed (and replaced) after each applied batch; under leadMu

	// wantSnapshot: raft found the snapshot older than the log in
	// memory (see logStorage); the run loop takes a new one.
	wantSnapshot atomic.Bool
	// maxLogBytes and keepLogBytes bound the log in memory (see
	// compactBySize).
	maxLogBytes, keepLogBytes uint64

	// Owned by the run loop.
	logBytes      uint64 // entry data in the log in memory
	confState     *raftpb.ConfState
	snapshotIndex uint64
	aloneChecked  bool
	promoting     map[uint64]bool
	promoteMu     sync.Mutex
	confMu        sync.Mutex

	running   atomic.Bool
	startOnce sync.Once
	stopOnce  sync.Once
	stopCh    chan struct{}
	doneCh    chan struct{}
	errMu     sync.Mutex
	err       error
	wg        sync.WaitGroup
}

type proposal struct {
	req  *api.InternalRaftRequest
	size int
}

// NewNode prepares a member; Start brings it up.
func NewNode(cfg Config) (*Node, error) {
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	n := &Node{
		cfg:          cfg,
		log:          cfg.Logger.With("module", "raft"),
		storage:      raft.NewMemoryStorage(),
		members:      newMembership(),
		waits:        newWaits(),
		proposals:    make(chan *proposal, 4096),
		maxLogBytes:  defaultMaxLogBytes,
		keepLogBytes: defaultKeepLogBytes,
		leadCh:       make(chan struct{}),
		applyCh:      make(chan struct{}),
		promoting:    map[uint64]bool{},
		stopCh:       make(chan struct{}),
		doneCh:       make(chan struct{}),
	}
	disk, err := newDiskStorage(cfg.Dir, cfg.KeepOldSnapshots+1, cfg.DEK, n.log)
	if err != nil {
		return nil, err
	}
	n.disk = disk
	n.snapInterval.Store(cfg.SnapshotInterval)
	n.keepEntries.Store(cfg.LogEntriesForSlowFollowers)
	n.seq.Store(randomUint64())
	return n, nil
}

// Start loads the member's state (or creates or joins a cluster) and starts
// the raft loop. It applies sm's state from the newest snapshot before
// returning; committed entries after it are applied as the loop runs.
func (n *Node) Start(ctx context.Context, sm StateMachine) error {
	err := errors.New("raft: member already started")
	n.startOnce.Do(func() {
		n.sm = sm
		err = n.start(ctx)
		if err != nil {
			close(n.doneCh)
			return
		}
		n.running.Store(true)
		n.cfg.Metrics.setApplied(n.applied.Load())
		n.wg.Add(1)
		go n.run()
		go n.runProposals()
	})
	return err
}

func (n *Node) start(ctx context.Context) error {
	switch {
	case n.disk.exists():
		return n.restart()
	case n.cfg.JoinAddr != "":
		return n.join(ctx)
	default:
		return n.bootstrap()
	}
}

func (n *Node) raftConfig(applied uint64) *raft.Config {
	return &raft.Config{
		ID:                        n.id,
		ElectionTick:              n.cfg.ElectionTick,
		HeartbeatTick:             n.cfg.HeartbeatTick,
		Storage:                   logStorage{n.storage, &n.wantSnapshot},
		Applied:                   applied,
		MaxSizePerMsg:             maxSizePerMsg,
		MaxInflightMsgs:           maxInflightMsgs,
		MaxUncommittedEntriesSize: 64 << 20,
		CheckQuorum:               true,
		PreVote:                   true,
		StepDownOnRemoval:         true,
		Logger:                    raftLogger{n.log},
	}
}

func (n *Node) self() *api.RaftMember {
	return &api.RaftMember{RaftId: n.id, NodeId: n.cfg.NodeID, Addr: n.cfg.Addr}
}

// bootstrap creates a new cluster with this member alone.
func (n *Node) bootstrap() error {
	n.id = randomUint64()
	if err := n.disk.create(n.self()); err != nil {
		return err
	}
	n.tr = newTransport(n.id, n.cfg.Credentials, n, n.markRemoved, n.log)
	n.raft = raft.StartNode(n.raftConfig(0), []raft.Peer{{ID: n.id, Context: encodeMemberContext(n.self())}})
	n.log.Info("raft: new cluster", "raft.id", fmt.Sprintf("%x", n.id), "addr", n.cfg.Addr)
	return nil
}

// join asks the cluster at JoinAddr to add this member, then starts empty:
// the leader sends the log or a snapshot.
func (n *Node) join(ctx context.Context) error {
	tr := newTransport(0, n.cfg.Credentials, n, func() {}, n.log)
	conn, err := tr.dial(n.cfg.JoinAddr)
	if err != nil {
		return fmt.Errorf("raft: dial %s: %w", n.cfg.JoinAddr, err)
	}
	defer conn.Close()
	resp, err := api.NewRaftMembershipClient(conn).Join(ctx, &api.JoinRequest{NodeId: n.cfg.NodeID, Addr: n.cfg.Addr})
	if err != nil {
		return fmt.Errorf("raft: join through %s: %w", n.cfg.JoinAddr, err)
	}
	n.id = resp.GetRaftId()
	if err := n.disk.create(n.self()); err != nil {
		return err
	}
	// raft runs before the transport knows any peer: a peer whose
	// connection fails at once reports it to raft.
	n.raft = raft.RestartNode(n.raftConfig(0))
	n.tr = newTransport(n.id, n.cfg.Credentials, n, n.markRemoved, n.log)
	for _, m := range resp.GetMembers() {
		n.members.add(m)
		if err := n.tr.setPeer(m.GetRaftId(), m.GetAddr()); err != nil {
			n.raft.Stop()
			return err
		}
	}
	n.log.Info("raft: joined cluster", "raft.id", fmt.Sprintf("%x", n.id), "via", n.cfg.JoinAddr, "members", len(resp.GetMembers()))
	return nil
}

// restart resumes from the log and snapshot on disk.
func (n *Node) restart() error {
	if removedMarker(n.cfg.Dir) {
		return fmt.Errorf("%w; remove %s and join again", ErrMemberRemoved, n.cfg.Dir)
	}
	l, err := n.disk.load()
	if err != nil {
		return err
	}
	n.id = l.self.GetRaftId()
	if err := n.restoreLoaded(l); err != nil {
		_ = n.disk.close()
		return err
	}
	if n.cfg.ForceNewCluster {
		if err := n.forceNewCluster(l); err != nil {
			_ = n.disk.close()
			return err
		}
	}
	if err := n.appendLog(l.entries); err != nil {
		return fmt.Errorf("raft: load log: %w", err)
	}
	// raft runs before the transport knows any peer: a peer whose
	// connection fails at once (it is down) reports it to raft.
	n.raft = raft.RestartNode(n.raftConfig(n.snapshotIndex))
	n.tr = newTransport(n.id, n.cfg.Credentials, n, n.markRemoved, n.log)
	for _, m := range n.members.list() {
		if err := n.tr.setPeer(m.GetRaftId(), m.GetAddr()); err != nil {
			n.raft.Stop()
			return err
		}
	}
	n.log.Info("raft: restarted from disk", "raft.id", fmt.Sprintf("%x", n.id),
		"snapshot_index", n.snapshotIndex, "entries", len(l.entries), "commit", l.hardState.GetCommit())
	return nil
}

func (n *Node) restoreLoaded(l *loaded) error {
	if l.snapshot != nil {
		if err := n.storage.ApplySnapshot(l.snapshot); err != nil {
			return fmt.Errorf("raft: load snapshot: %w", err)
		}
		if err := n.restoreSnapshot(l.snapshot); err != nil {
			return err
		}
	}
	if l.hardState != nil {
		if err := n.storage.SetHardState(l.hardState); err != nil {
			return fmt.Errorf("raft: load hard state: %w", err)
		}
	}
	// Conf changes already in the committed log tell who this member is to
	// the cluster: a member removed before it went down must not come back.
	for _, e := range l.entries {
		if e.GetIndex() > l.hardState.GetCommit() || e.GetType() != raftpb.EntryType_EntryConfChange {
			continue
		}
		var cc raftpb.ConfChange
		if proto.Unmarshal(e.GetData(), &cc) == nil && cc.GetType() == raftpb.ConfChangeType_ConfChangeRemoveNode && cc.GetNodeId() == n.id {
			return fmt.Errorf("%w: raft member %x; remove %s and join again", ErrMemberRemoved, n.id, n.cfg.Dir)
		}
	}
	if n.members.isRemoved(n.id) {
		return fmt.Errorf("%w: raft member %x; remove %s and join again", ErrMemberRemoved, n.id, n.cfg.Dir)
	}
	return nil
}

// forceNewCluster keeps every committed entry, drops the uncommitted tail and
// commits the removal of every other member, so this member alone is a
// quorum and keeps all the data.
func (n *Node) forceNewCluster(l *loaded) error {
	commit := l.hardState.GetCommit()
	ents := l.entries
	if len(ents) > 0 {
		first := ents[0].GetIndex()
		switch {
		case commit < first:
			ents = nil
		case commit-first+1 < uint64(len(ents)):
			ents = ents[:commit-first+1]
		}
	}
	voters := map[uint64]bool{}
	if l.snapshot != nil {
		for _, id := range l.snapshot.GetMetadata().GetConfState().GetVoters() {
			voters[id] = true
		}
		for _, id := range l.snapshot.GetMetadata().GetConfState().GetLearners() {
			voters[id] = true
		}
	}
	for _, e := range ents {
		if e.GetType() != raftpb.EntryType_EntryConfChange {
			continue
		}
		var cc raftpb.ConfChange
		if err := proto.Unmarshal(e.GetData(), &cc); err != nil {
			return fmt.Errorf("raft: force new cluster: decode conf change: %w", err)
		}
		switch cc.GetType() {
		case raftpb.ConfChangeType_ConfChangeRemoveNode:
			delete(voters, cc.GetNodeId())
		default:
			voters[cc.GetNodeId()] = true
		}
	}
	term, index := l.hardState.GetTerm(), commit
	var extra []*raftpb.Entry
	for id := range voters {
		if id == n.id {
			continue
		}
		m, _ := n.members.get(id)
		if m == nil {
			m = &api.RaftMember{RaftId: id}
		}
		cc := &raftpb.ConfChange{
			Type:    raftpb.ConfChangeType_ConfChangeRemoveNode.Enum(),
			NodeId:  proto.Uint64(id),
			Context: encodeMemberContext(m),
		}
		data, err := proto.Marshal(cc)
		if err != nil {
			return fmt.Errorf("raft: force new cluster: %w", err)
		}
		index++
		extra = append(extra, &raftpb.Entry{
			Type: raftpb.EntryType_EntryConfChange.Enum(), Term: proto.Uint64(term), Index: proto.Uint64(index), Data: data,
		})
	}
	hs := &raftpb.HardState{Term: proto.Uint64(term), Vote: proto.Uint64(l.hardState.GetVote()), Commit: proto.Uint64(index)}
	if err := n.disk.save(hs, extra); err != nil {
		return err
	}
	if err := n.storage.SetHardState(hs); err != nil {
		return fmt.Errorf("raft: force new cluster: %w", err)
	}
	l.entries = append(ents, extra...)
	l.hardState = hs
	n.log.Warn("raft: forcing a new cluster from local state", "raft.id", fmt.Sprintf("%x", n.id),
		"removed_members", len(extra), "commit", index)
	return nil
}

// restoreSnapshot loads a snapshot's data into the store and membership.
func (n *Node) restoreSnapshot(sn *raftpb.Snapshot) error {
	var rs api.RaftSnapshot
	if err := proto.Unmarshal(sn.GetData(), &rs); err != nil {
		return fmt.Errorf("raft: decode snapshot: %w", err)
	}
	if err := n.sm.Restore(rs.GetStore()); err != nil {
		return fmt.Errorf("raft: restore store from snapshot: %w", err)
	}
	n.members.restore(rs.GetMembership())
	n.confState = sn.GetMetadata().GetConfState()
	n.snapshotIndex = sn.GetMetadata().GetIndex()
	n.applied.Store(n.snapshotIndex)
	return nil
}

// Register serves this member's raft and membership services on s.
func (n *Node) Register(s *grpc.Server) {
	svc := &service{n: n}
	api.RegisterRaftServer(s, svc)
	api.RegisterRaftMembershipServer(s, svc)
}

// Stop stops the member; it is safe to call more than once.
func (n *Node) Stop() {
	n.stopOnce.Do(func() { close(n.stopCh) })
	<-n.doneCh
}

// Done is closed once the member has stopped.
func (n *Node) Done() <-chan struct{} { return n.doneCh }

// Err is why the member stopped, once it has.
func (n *Node) Err() error {
	n.errMu.Lock()
	defer n.errMu.Unlock()
	return n.err
}

func (n *Node) fail(err error) {
	n.errMu.Lock()
	if n.err == nil {
		n.err = err
	}
	n.errMu.Unlock()
	n.stopOnce.Do(func() { close(n.stopCh) })
}

// markRemoved records on disk that this member was removed, so it never
// starts again under the same raft ID, and stops it.
func (n *Node) markRemoved() {
	if err := writeRemovedMarker(n.cfg.Dir); err != nil {
		n.log.Error("raft: record removal", "error", err)
	}
	go n.fail(fmt.Errorf("%w: raft member %x", ErrMemberRemoved, n.id))
}

// SetSnapshotPolicy changes how many applied entries trigger a snapshot
// (interval) and how many entries compaction keeps for slow followers
// (keep) while the member runs; zero leaves a value as it is.
func (n *Node) SetSnapshotPolicy(interval, keep uint64) {
	if interval != 0 && n.snapInterval.Swap(interval) != interval {
		n.log.Info("raft: snapshot interval set", "entries", interval)
	}
	if keep != 0 {
		n.keepEntries.Store(keep)
	}
}

// Voters lists the raft IDs that vote, as this member's raft sees them.
func (n *Node) Voters() []uint64 {
	ids := n.raft.Status().Config.Voters.IDs()
	out := make([]uint64, 0, len(ids))
	for id := range ids {
		out = append(out, id)
	}
	return out
}

// SetDropFilter makes the member lose every message, in or out, for which
// drop(from, to) is true; nil restores delivery. For partition tests.
func (n *Node) SetDropFilter(drop func(from, to uint64) bool) {
	if drop == nil {
		n.tr.drop.Store(nil)
		return
	}
	n.tr.drop.Store(&drop)
}

// IsVoter reports whether this member votes (a joining member is a learner
// until it has caught up with the log).
func (n *Node) IsVoter() bool {
	for _, id := range n.Voters() {
		if id == n.id {
			return true
		}
	}
	return false
}

// WaitVoter blocks until this member votes.
func (n *Node) WaitVoter(ctx context.Context) error {
	tick := time.NewTicker(n.cfg.TickInterval / 4)
	defer tick.Stop()
	for !n.IsVoter() {
		select {
		case <-tick.C:
		case <-ctx.Done():
			return ctx.Err()
		case <-n.doneCh:
			return ErrStopped
		}
	}
	return nil
}

// SnapshotsReceived counts snapshots this member installed from the leader.
func (n *Node) SnapshotsReceived() uint64 { return n.snapsReceived.Load() }

// ID is this member's raft ID.
func (n *Node) ID() uint64 { return n.id }

// Leader is the raft ID of the current leader, or 0.
func (n *Node) Leader() uint64 { return n.lead.Load() }

// IsLeader reports whether this member leads.
func (n *Node) IsLeader() bool { return n.lead.Load() == n.id && n.id != 0 }

// Term is the current raft term.
func (n *Node) Term() uint64 { return n.term.Load() }

// AppliedIndex is the last log index applied to the store.
func (n *Node) AppliedIndex() uint64 { return n.applied.Load() }

// WaitLeaderReady returns once this member, the leader, has applied an
// entry of its own term: only then has it applied every entry committed
// before it led, so that its store answers reads as the cluster does (a
// new leader learns that older entries are committed only when one of its
// own term commits). It returns ErrNotLeader when the member is not, or
// stops being, the leader first, or ctx's error.
func (n *Node) WaitLeaderReady(ctx context.Context) error {
	for {
		n.leadMu.Lock()
		applied, changed := n.applyCh, n.leadCh
		n.leadMu.Unlock()
		if !n.IsLeader() {
			return ErrNotLeader
		}
		if n.appliedTerm.Load() >= n.term.Load() {
			return nil
		}
		select {
		case <-applied:
		case <-changed:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// LeaderChanged returns a channel closed at the next leadership change.
func (n *Node) LeaderChanged() <-chan struct{} {
	n.leadMu.Lock()
	defer n.leadMu.Unlock()
	return n.leadCh
}

// LeaderAddr is the address of the current leader, if known.
func (n *Node) LeaderAddr() (string, bool) {
	m, ok := n.members.get(n.Leader())
	if !ok {
		return "", false
	}
	return m.GetAddr(), true
}

// Members lists the members as the applied log knows them.
func (n *Node) Members() []*api.RaftMember { return n.members.list() }

// IsRemoved reports whether a raft ID was removed from the cluster.
func (n *Node) IsRemoved(id uint64) bool { return n.members.isRemoved(id) }

// Reachable reports whether a member answered recently, as far as this
// member can tell (the leader knows best).
func (n *Node) Reachable(id uint64) bool {
	if id == n.id {
		return true
	}
	if n.IsLeader() {
		if pr, ok := n.raft.Status().Progress[id]; ok {
			return pr.RecentActive
		}
		return false
	}
	return n.tr.active(id, 2*n.cfg.electionTimeout())
}

// WaitForLeader blocks until some member leads.
func (n *Node) WaitForLeader(ctx context.Context) error {
	for {
		ch := n.LeaderChanged()
		if n.Leader() != 0 {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		case <-n.doneCh:
			return ErrStopped
		}
	}
}

// ReportUnreachable is called by the transport.
func (n *Node) ReportUnreachable(id uint64) { n.raft.ReportUnreachable(id) }

// ReportSnapshot is called by the transport.
func (n *Node) ReportSnapshot(id uint64, s raft.SnapshotStatus) { n.raft.ReportSnapshot(id, s) }

func randomUint64() uint64 {
	var b [8]byte
	for {
		if _, err := rand.Read(b[:]); err != nil {
			panic(err)
		}
		if v := binary.LittleEndian.Uint64(b[:]); v != 0 {
			return v
		}
	}
}
