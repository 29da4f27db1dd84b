// Package raft replicates the store through go.etcd.io/raft/v3: a raft node
// with CheckQuorum and PreVote, its log and snapshots on disk (fsync'd before
// anything is acknowledged), a gRPC transport between managers, membership
// changes, and proposals batched from any member.
//
// All raft I/O happens in one loop (Ready: send, persist, apply, advance);
// the store decides, deterministically, what each committed entry does.
package raft

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jonboulle/clockwork"
	"google.golang.org/grpc/credentials"
)

// Errors callers can test with errors.Is.
var (
	ErrStopped          = errors.New("raft: member stopped")
	ErrNoLeader         = errors.New("raft: no leader")
	ErrMemberRemoved    = errors.New("raft: member was removed from the cluster")
	ErrMemberUnknown    = errors.New("raft: member unknown")
	ErrProposalTooLarge = errors.New("raft: proposal too large")
	ErrLostQuorum       = errors.New("raft: removing this member would lose quorum")
	ErrAlreadyMember    = errors.New("raft: node is already a member")
	ErrNotLeader        = errors.New("raft: not the leader")
)

// Defaults, as docker uses them: a 100 ms tick, a heartbeat every tick and an
// election after 10 ticks without one.
const (
	DefaultTickInterval               = 100 * time.Millisecond
	DefaultHeartbeatTick              = 1
	DefaultElectionTick               = 10
	DefaultSnapshotInterval           = 10000
	DefaultLogEntriesForSlowFollowers = 500
	DefaultMaxProposalBytes           = 1 << 20
	maxBatchBytes                     = 512 << 10
	maxSizePerMsg                     = 256 << 10
	maxInflightMsgs                   = 256
)

// Config configures one raft member.
type Config struct {
	// NodeID is the swarm node this member runs on.
	NodeID string
	// Addr is the address other members dial to reach this one.
	Addr string
	// Dir holds the log (wal/) and snapshots (snap/): <state-dir>/raft.
	Dir string
	// JoinAddr, when there is no state in Dir, joins the cluster of the
	// member there instead of creating a new one.
	JoinAddr string
	// ForceNewCluster restarts from the local state as the only member.
	ForceNewCluster bool

	TickInterval  time.Duration
	HeartbeatTick int
	ElectionTick  int
	// SnapshotInterval is how many applied entries trigger a snapshot and
	// log compaction.
	SnapshotInterval uint64
	// LogEntriesForSlowFollowers are kept after compaction so a follower a
	// little behind catches up from the log rather than a snapshot.
	LogEntriesForSlowFollowers uint64
	// KeepOldSnapshots is how many snapshots to keep besides the newest.
	KeepOldSnapshots int
	// MaxProposalBytes bounds one transaction.
	MaxProposalBytes int

	// DEK is the data encryption key of this member's log and snapshots on
	// disk: DEKSize random bytes, kept by the node (nil: no encryption, for
	// tests and compatibility). Records written before are read either way;
	// sealed ones need the same key. Only the disk is encrypted.
	DEK []byte

	// Credentials secure connections to other members (nil: plaintext,
	// for tests only).
	Credentials credentials.TransportCredentials
	Clock       clockwork.Clock
	Logger      *slog.Logger
	// Metrics, if set, record the member's term, leadership, applied
	// index and proposals (nil: no metrics).
	Metrics *Metrics
}

func (c *Config) setDefaults() {
	if c.TickInterval == 0 {
		c.TickInterval = DefaultTickInterval
	}
	if c.HeartbeatTick == 0 {
		c.HeartbeatTick = DefaultHeartbeatTick
	}
	if c.ElectionTick == 0 {
		c.ElectionTick = DefaultElectionTick
	}
	if c.SnapshotInterval == 0 {
		c.SnapshotInterval = DefaultSnapshotInterval
	}
	if c.LogEntriesForSlowFollowers == 0 {
		c.LogEntriesForSlowFollowers = DefaultLogEntriesForSlowFollowers
	}
	if c.MaxProposalBytes == 0 {
		c.MaxProposalBytes = DefaultMaxProposalBytes
	}
	if c.Clock == nil {
		c.Clock = clockwork.NewRealClock()
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

func (c *Config) validate() error {
	switch {
	case c.Dir == "":
		return errors.New("raft: no state directory")
	case c.Addr == "":
		return errors.New("raft: no advertise address")
	case c.HeartbeatTick < 1:
		return fmt.Errorf("raft: heartbeat tick must be at least 1, got %d", c.HeartbeatTick)
	case c.ElectionTick <= c.HeartbeatTick:
		return fmt.Errorf("raft: election tick (%d) must be greater than heartbeat tick (%d)", c.ElectionTick, c.HeartbeatTick)
	case len(c.DEK) != 0 && len(c.DEK) != DEKSize:
		return fmt.Errorf("raft: data encryption key must be %d bytes, got %d", DEKSize, len(c.DEK))
	case c.TickInterval <= 0:
		return fmt.Errorf("raft: tick interval must be positive, got %s", c.TickInterval)
	}
	return nil
}

// electionTimeout is how long followers wait for a leader.
func (c *Config) electionTimeout() time.Duration {
	return time.Duration(c.ElectionTick) * c.TickInterval
}
