package manager

import (
	"context"
	"fmt"
	"strings"
	"sync"

	"github.com/openswarm/swarmd/ca"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
)

// leaderForwarder sends control calls made on a follower's socket to the
// leader, so every manager answers as the leader does: reads see every
// acknowledged write, and the managers' reachability is the leader's view.
type leaderForwarder struct {
	m *Manager

	mu   sync.Mutex
	addr string
	conn *grpc.ClientConn
}

func (f *leaderForwarder) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if f.serveHere(ctx) {
		return handler(ctx, req)
	}
	if err := f.m.raft.WaitForLeader(ctx); err != nil {
		return nil, status.Errorf(codes.Unavailable, "no leader: %v", err)
	}
	// Watch for a change of leader from before the leader is looked up:
	// a call forwarded to a leader that lost its place (cut off from the
	// others, it steps down) would otherwise hang until the client gives up.
	changed := f.m.raft.LeaderChanged()
	if f.serveHere(ctx) {
		return handler(ctx, req)
	}
	reply, err := replyFor(info.FullMethod)
	if err != nil {
		return nil, err
	}
	conn, err := f.leaderConn()
	if err != nil {
		return nil, err
	}
	fctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-changed:
			cancel()
		case <-fctx.Done():
		}
	}()
	if err := conn.Invoke(fctx, info.FullMethod, req, reply); err != nil {
		if ctx.Err() == nil && fctx.Err() != nil {
			return nil, status.Error(codes.Unavailable, "the leader changed while the call was forwarded to it; it may or may not have taken effect")
		}
		return nil, err
	}
	return reply, nil
}

// serveHere reports whether this manager answers the call itself: it is
// the leader and has applied everything committed before it led (a new
// leader waits for that; one that steps down meanwhile forwards).
func (f *leaderForwarder) serveHere(ctx context.Context) bool {
	return f.m.raft.IsLeader() && f.m.raft.WaitLeaderReady(ctx) == nil
}

func (f *leaderForwarder) leaderConn() (*grpc.ClientConn, error) {
	addr, ok := f.m.raft.LeaderAddr()
	if !ok {
		return nil, status.Error(codes.Unavailable, "the leader's address is unknown")
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.conn != nil && f.addr == addr {
		return f.conn, nil
	}
	if f.conn != nil {
		_ = f.conn.Close()
	}
	creds, err := f.m.cfg.Security.ClientCredentials(ca.ManagerServerName)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "forward to leader: %v", err)
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		return nil, status.Errorf(codes.Unavailable, "forward to leader: %v", err)
	}
	f.addr, f.conn = addr, conn
	return conn, nil
}

func (f *leaderForwarder) close() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.conn != nil {
		_ = f.conn.Close()
		f.conn = nil
	}
}

// replyFor makes an empty response message for a full gRPC method name
// ("/pkg.Service/Method"), from the registered service descriptors.
func replyFor(fullMethod string) (proto.Message, error) {
	name := strings.ReplaceAll(strings.TrimPrefix(fullMethod, "/"), "/", ".")
	d, err := protoregistry.GlobalFiles.FindDescriptorByName(protoreflect.FullName(name))
	if err != nil {
		return nil, status.Errorf(codes.Unimplemented, "unknown method %s", fullMethod)
	}
	md, ok := d.(protoreflect.MethodDescriptor)
	if !ok {
		return nil, status.Errorf(codes.Unimplemented, "%s is not a method", fullMethod)
	}
	mt, err := protoregistry.GlobalTypes.FindMessageByName(md.Output().FullName())
	if err != nil {
		return nil, fmt.Errorf("reply type of %s: %w", fullMethod, err)
	}
	return mt.New().Interface(), nil
}
