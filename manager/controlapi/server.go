package controlapi

import (
	"context"
	"log/slog"
	"time"

	"github.com/openswarm/swarmd/api"
	"github.com/openswarm/swarmd/manager/state/store"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// RaftInfo is what the control API needs from the raft member of its
// manager (*raft.Node satisfies it). It fills ManagerStatus on nodes,
// guards demotions against a loss of quorum, and removes a demoted
// manager's raft membership when its node is force-removed.
type RaftInfo interface {
	// Members lists the raft members: raft ID, node ID and address.
	Members() []*api.RaftMember
	// Leader is the raft ID of the current leader, or 0 if none is known.
	Leader() uint64
	// Reachable reports whether the member with that raft ID answered
	// recently, as far as this member can tell.
	Reachable(raftID uint64) bool
	// RemoveMember removes a member from the raft group for good. It
	// must refuse when the remaining members would lose quorum.
	RemoveMember(ctx context.Context, raftID uint64) error
}

// TokenGenerator returns a new join token for role, for the cluster's
// current root CA. UpdateCluster calls it to rotate join tokens.
type TokenGenerator func(role api.NodeRole) (string, error)

// Option configures a Server.
type Option func(*Server)

// WithTokenGenerator sets how join tokens are rotated. Without it, a
// rotation request fails with codes.Unimplemented.
func WithTokenGenerator(g TokenGenerator) Option { return func(s *Server) { s.tokens = g } }

// WithClock sets the clock for the timestamps the server writes (update
// and job status, orphaned tasks). Default time.Now.
func WithClock(now func() time.Time) Option { return func(s *Server) { s.now = now } }

// WithLogger sets the logger (default slog.Default()).
func WithLogger(l *slog.Logger) Option { return func(s *Server) { s.log = l } }

// Server implements api.ControlServer over a store.
type Server struct {
	api.UnimplementedControlServer

	store  *store.MemoryStore
	raft   RaftInfo
	tokens TokenGenerator
	now    func() time.Time
	log    *slog.Logger
}

var _ api.ControlServer = (*Server)(nil)

// NewServer returns a control server over s. raft may be nil (a store
// without raft, in tools and tests): nodes then carry no ManagerStatus and
// removing or demoting managers skips the raft checks, except that a node
// whose desired role is manager cannot be removed.
func NewServer(s *store.MemoryStore, raft RaftInfo, opts ...Option) *Server {
	srv := &Server{store: s, raft: raft, now: time.Now, log: slog.Default()}
	for _, o := range opts {
		o(srv)
	}
	return srv
}

func (s *Server) timestamp() *timestamppb.Timestamp { return timestamppb.New(s.now()) }

// setVersion makes obj carry the version an update was computed from.
func setVersion(obj api.StoreObject, v *api.Version) {
	m := obj.GetMeta()
	if m == nil {
		m = &api.Meta{}
		obj.SetMeta(m)
	}
	m.Version = &api.Version{Index: v.GetIndex()}
}

// reread returns the stored copy of the object with obj's ID (with its new
// version after a write), or obj if it is gone already.
func reread[T api.StoreObject](s *Server, obj T) T {
	var cur T
	s.store.View(func(tx store.ReadTx) { cur = store.Get[T](tx, obj.GetId()) })
	if cur.GetId() == "" {
		return obj
	}
	return cur
}
