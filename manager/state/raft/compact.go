package raft

import (
	"errors"
	"fmt"
	"sync/atomic"

	"go.etcd.io/raft/v3"
	raftpb "go.etcd.io/raft/v3/raftpb"
)

// The log in memory is compacted by size as well as by snapshot: in a
// burst of large entries, the entries applied since the last snapshot
// (taken every SnapshotInterval entries) would otherwise stay in memory,
// tens of megabytes of them. The bounds are small: the log in memory only
// serves followers a little behind (those being sent entries keep theirs,
// see compactBySize); 4 MiB instead of 16 took 30-40 MB off a manager's
// peak RSS while it scheduled 100,000 tasks (raft copies each entry it
// appends, and the garbage collector's headroom doubles what is held).
const (
	// defaultMaxLogBytes is the entry data the log in memory may hold
	// before it is compacted.
	defaultMaxLogBytes = 4 << 20
	// defaultKeepLogBytes is the newest applied entry data compaction
	// keeps, for followers slightly behind.
	defaultKeepLogBytes = 2 << 20
)

// logStorage is the log in memory as raft reads it: MemoryStorage, but
// its snapshot is reported temporarily unavailable (and a new one asked
// for) when the log was compacted past it, for then the entries that
// follow it are gone: a follower sent that snapshot could not catch up.
// raft tries again later; by then the member has taken a snapshot.
type logStorage struct {
	*raft.MemoryStorage
	wantSnapshot *atomic.Bool
}

func (s logStorage) Snapshot() (*raftpb.Snapshot, error) {
	sn, err := s.MemoryStorage.Snapshot()
	if err != nil {
		return sn, err
	}
	if first, _ := s.FirstIndex(); sn.GetMetadata().GetIndex()+1 < first {
		s.wantSnapshot.Store(true)
		return nil, raft.ErrSnapshotTemporarilyUnavailable
	}
	return sn, nil
}

// appendLog appends entries to the log in memory, counting their bytes.
func (n *Node) appendLog(ents []*raftpb.Entry) error {
	if err := n.storage.Append(ents); err != nil {
		return err
	}
	for _, e := range ents {
		n.logBytes += uint64(len(e.GetData()))
	}
	return nil
}

// compactBySize compacts the log in memory once it holds more than
// maxLogBytes of entry data: up to the applied index, keeping the newest
// keepLogBytes and, on the leader, the entries a connected follower
// still lacks but is being sent (a follower further behind needs a
// snapshot anyway).
func (n *Node) compactBySize(applied uint64) error {
	if n.logBytes <= n.maxLogBytes {
		return nil
	}
	first, _ := n.storage.FirstIndex()
	target := applied
	if n.IsLeader() {
		for id, pr := range n.raft.Status().Progress {
			if id != n.id && pr.RecentActive && pr.Match+1 >= first && pr.Match < target {
				target = pr.Match
			}
		}
	}
	if target < first {
		return nil
	}
	ents, err := n.storage.Entries(first, target+1, ^uint64(0))
	if err != nil {
		return nil // compacted or replaced meanwhile: nothing to do
	}
	// Keep the newest entries up to keepLogBytes (and at most
	// LogEntriesForSlowFollowers of them).
	compact, kept := target, uint64(0)
	for i := len(ents) - 1; i >= 0; i-- {
		size := uint64(len(ents[i].GetData()))
		if kept+size > n.keepLogBytes || target-ents[i].GetIndex() >= n.keepEntries.Load() {
			break
		}
		kept += size
		compact = ents[i].GetIndex() - 1
	}
	if compact < first {
		return nil
	}
	if err := n.storage.Compact(compact); err != nil && !errors.Is(err, raft.ErrCompacted) {
		return fmt.Errorf("raft: compact log: %w", err)
	}
	n.countLogBytes()
	return nil
}

// countLogBytes recounts the entry data in the log in memory.
func (n *Node) countLogBytes() {
	n.logBytes = 0
	first, _ := n.storage.FirstIndex()
	last, _ := n.storage.LastIndex()
	if last < first {
		return
	}
	ents, err := n.storage.Entries(first, last+1, ^uint64(0))
	if err != nil {
		return
	}
	for _, e := range ents {
		n.logBytes += uint64(len(e.GetData()))
	}
}
