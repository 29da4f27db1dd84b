package raft

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/openswarm/swarmd/api"
	raftpb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// service serves the Raft and RaftMembership gRPC services of a member.
type service struct {
	api.UnimplementedRaftServer
	api.UnimplementedRaftMembershipServer
	n *Node
}

func (s *service) step(ctx context.Context, m *raftpb.Message) error {
	n := s.n
	if !n.running.Load() {
		return status.Error(codes.Unavailable, "raft: member not started")
	}
	if n.members.isRemoved(m.GetFrom()) {
		return removedStatus()
	}
	if m.GetTo() != n.id {
		return status.Errorf(codes.InvalidArgument, "raft: message for member %x reached member %x", m.GetTo(), n.id)
	}
	if n.tr.dropped(m.GetFrom(), n.id) {
		return nil
	}
	select {
	case <-n.stopCh:
		return status.Error(codes.Unavailable, ErrStopped.Error())
	default:
	}
	if err := n.raft.Step(ctx, m); err != nil {
		return status.Errorf(codes.Unavailable, "raft: step: %v", err)
	}
	return nil
}

// Stream receives a peer's messages in order. When the stream from the
// leader breaks, the leader is probably gone: the member is told at once
// rather than after an election timeout.
func (s *service) Stream(stream api.Raft_StreamServer) error {
	var from uint64
	for {
		msg, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return stream.SendAndClose(&api.StreamAck{})
		}
		if err != nil {
			s.n.peerStreamLost(from)
			return err
		}
		var m raftpb.Message
		if err := proto.Unmarshal(msg.GetMessage(), &m); err != nil {
			return status.Errorf(codes.InvalidArgument, "raft: decode message: %v", err)
		}
		from = m.GetFrom()
		if err := s.step(stream.Context(), &m); err != nil {
			if stream.Context().Err() != nil {
				// The stream broke while its last message was being
				// stepped: the same loss as a failed Recv.
				s.n.peerStreamLost(from)
			}
			return err
		}
	}
}

// Snapshot receives a snapshot in chunks and steps it whole.
func (s *service) Snapshot(stream api.Raft_SnapshotServer) error {
	var header raftpb.Message
	var data []byte
	first := true
	for {
		chunk, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return status.Error(codes.InvalidArgument, "raft: snapshot stream ended before its last chunk")
		}
		if err != nil {
			return err
		}
		if first {
			if err := proto.Unmarshal(chunk.GetHeader(), &header); err != nil || header.GetSnapshot() == nil {
				return status.Errorf(codes.InvalidArgument, "raft: decode snapshot header: %v", err)
			}
			first = false
		}
		data = append(data, chunk.GetData()...)
		if chunk.GetLast() {
			break
		}
	}
	header.Snapshot.Data = data
	if err := s.step(stream.Context(), &header); err != nil {
		return err
	}
	return stream.SendAndClose(&api.StreamAck{})
}

// ResolveAddress tells a member's address.
func (s *service) ResolveAddress(_ context.Context, req *api.ResolveAddressRequest) (*api.ResolveAddressResponse, error) {
	m, ok := s.n.members.get(req.GetRaftId())
	if !ok {
		return nil, status.Errorf(codes.NotFound, "raft: member %x unknown", req.GetRaftId())
	}
	return &api.ResolveAddressResponse{Addr: m.GetAddr()}, nil
}

// Join adds a member; a follower passes the request to the leader.
func (s *service) Join(ctx context.Context, req *api.JoinRequest) (*api.JoinResponse, error) {
	n := s.n
	if !n.running.Load() {
		return nil, status.Error(codes.Unavailable, "raft: member not started")
	}
	if req.GetAddr() == "" {
		return nil, status.Error(codes.InvalidArgument, "raft: join: no address to reach the new member")
	}
	if err := n.WaitForLeader(ctx); err != nil {
		return nil, status.Errorf(codes.Unavailable, "raft: no leader: %v", err)
	}
	if !n.IsLeader() {
		return forwardToLeader(ctx, n, func(ctx context.Context, c api.RaftMembershipClient) (*api.JoinResponse, error) {
			return c.Join(ctx, req)
		})
	}
	m, err := n.addMember(ctx, req.GetNodeId(), req.GetAddr())
	if err != nil {
		return nil, toStatus(err)
	}
	return &api.JoinResponse{RaftId: m.GetRaftId(), Members: n.members.list(), RemovedMembers: n.members.removedIDs()}, nil
}

// Leave removes a member; a follower passes the request to the leader. A
// leader asked to remove itself hands leadership over first.
func (s *service) Leave(ctx context.Context, req *api.LeaveRequest) (*api.LeaveResponse, error) {
	n := s.n
	if !n.running.Load() {
		return nil, status.Error(codes.Unavailable, "raft: member not started")
	}
	if err := n.WaitForLeader(ctx); err != nil {
		return nil, status.Errorf(codes.Unavailable, "raft: no leader: %v", err)
	}
	if n.IsLeader() && req.GetRaftId() == n.id {
		if err := n.TransferLeadership(ctx); err != nil {
			return nil, toStatus(err)
		}
	}
	if !n.IsLeader() {
		return forwardToLeader(ctx, n, func(ctx context.Context, c api.RaftMembershipClient) (*api.LeaveResponse, error) {
			return c.Leave(ctx, req)
		})
	}
	if err := n.RemoveMember(ctx, req.GetRaftId()); err != nil {
		return nil, toStatus(err)
	}
	return &api.LeaveResponse{}, nil
}

func forwardToLeader[T any](ctx context.Context, n *Node, call func(context.Context, api.RaftMembershipClient) (T, error)) (T, error) {
	var zero T
	addr, ok := n.LeaderAddr()
	if !ok {
		return zero, status.Error(codes.Unavailable, "raft: leader address unknown")
	}
	conn, err := n.tr.dial(addr)
	if err != nil {
		return zero, status.Errorf(codes.Unavailable, "raft: dial leader: %v", err)
	}
	defer conn.Close()
	return call(ctx, api.NewRaftMembershipClient(conn))
}

func toStatus(err error) error {
	switch {
	case errors.Is(err, ErrAlreadyMember):
		return status.Error(codes.AlreadyExists, err.Error())
	case errors.Is(err, ErrMemberUnknown):
		return status.Error(codes.NotFound, err.Error())
	case errors.Is(err, ErrLostQuorum), errors.Is(err, ErrMemberRemoved):
		return status.Error(codes.FailedPrecondition, err.Error())
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return status.Error(codes.DeadlineExceeded, err.Error())
	default:
		return status.Error(codes.Unavailable, fmt.Sprint(err))
	}
}

// LeaveCluster removes this member from the raft group through the leader
// (handing leadership over first if it leads). The member stops once the
// removal is applied.
func (n *Node) LeaveCluster(ctx context.Context) error {
	_, err := (&service{n: n}).Leave(ctx, &api.LeaveRequest{RaftId: n.id})
	return err
}
