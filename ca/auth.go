package ca

import (
	"context"
	"crypto/x509"
	"slices"
	"time"

	"github.com/openswarm/swarmd/api"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

// MethodRoles returns the authorization table of every gRPC method of the
// api services: the roles allowed to call it. RoleAnyone admits callers
// without a certificate. A method missing from the table is denied by the
// interceptors; a test checks that every method of every service in the
// swarmd.api package is listed. The map is new on every call.
func MethodRoles() map[string][]Role {
	managers := []Role{RoleManager}
	nodes := []Role{RoleWorker, RoleManager}
	anyone := []Role{RoleAnyone}
	return map[string][]Role{
		// CA: the root certificate is public; the unlock key is not.
		api.CA_GetRootCACertificate_FullMethodName: anyone,
		api.CA_GetUnlockKey_FullMethodName:         managers,

		// NodeCA: joining nodes have no certificate yet (a join token or
		// the caller's own certificate is checked by the server).
		api.NodeCA_IssueNodeCertificate_FullMethodName:  anyone,
		api.NodeCA_NodeCertificateStatus_FullMethodName: anyone,

		// Control: cluster administration, forwarded between managers.
		api.Control_GetNode_FullMethodName:       managers,
		api.Control_ListNodes_FullMethodName:     managers,
		api.Control_UpdateNode_FullMethodName:    managers,
		api.Control_RemoveNode_FullMethodName:    managers,
		api.Control_GetTask_FullMethodName:       managers,
		api.Control_ListTasks_FullMethodName:     managers,
		api.Control_RemoveTask_FullMethodName:    managers,
		api.Control_GetService_FullMethodName:    managers,
		api.Control_ListServices_FullMethodName:  managers,
		api.Control_CreateService_FullMethodName: managers,
		api.Control_UpdateService_FullMethodName: managers,
		api.Control_RemoveService_FullMethodName: managers,
		api.Control_GetNetwork_FullMethodName:    managers,
		api.Control_ListNetworks_FullMethodName:  managers,
		api.Control_CreateNetwork_FullMethodName: managers,
		api.Control_RemoveNetwork_FullMethodName: managers,
		api.Control_GetCluster_FullMethodName:    managers,
		api.Control_ListClusters_FullMethodName:  managers,
		api.Control_UpdateCluster_FullMethodName: managers,
		api.Control_GetSecret_FullMethodName:     managers,
		api.Control_ListSecrets_FullMethodName:   managers,
		api.Control_CreateSecret_FullMethodName:  managers,
		api.Control_UpdateSecret_FullMethodName:  managers,
		api.Control_RemoveSecret_FullMethodName:  managers,
		api.Control_GetConfig_FullMethodName:     managers,
		api.Control_ListConfigs_FullMethodName:   managers,
		api.Control_CreateConfig_FullMethodName:  managers,
		api.Control_UpdateConfig_FullMethodName:  managers,
		api.Control_RemoveConfig_FullMethodName:  managers,

		// Raft and its membership: managers only.
		api.Raft_Stream_FullMethodName:          managers,
		api.Raft_Snapshot_FullMethodName:        managers,
		api.Raft_ResolveAddress_FullMethodName:  managers,
		api.RaftMembership_Join_FullMethodName:  managers,
		api.RaftMembership_Leave_FullMethodName: managers,

		// Agents (every node runs one) talk to the dispatcher and log broker.
		api.Dispatcher_Session_FullMethodName:            nodes,
		api.Dispatcher_Heartbeat_FullMethodName:          nodes,
		api.Dispatcher_UpdateTaskStatus_FullMethodName:   nodes,
		api.Dispatcher_Assignments_FullMethodName:        nodes,
		api.Dispatcher_Mesh_FullMethodName:               nodes,
		api.Dispatcher_Networks_FullMethodName:           nodes,
		api.LogBroker_ListenSubscriptions_FullMethodName: nodes,
		api.LogBroker_PublishLogs_FullMethodName:         nodes,

		// Reading logs is administration.
		api.Logs_SubscribeLogs_FullMethodName: managers,
	}
}

// AuthorizeFromContext returns the identity of the caller of a gRPC method
// if one of the allowed roles may call it. The identity comes only from the
// client certificate the TLS handshake verified against the cluster's root
// (google.golang.org/grpc/peer and credentials.TLSInfo), never from the
// request. The certificate must be of cluster org and valid now.
//
// With RoleAnyone among allowed, a caller without a certificate is let
// through with the zero Peer; one with a certificate is still checked.
// Errors are gRPC status errors: Unauthenticated without a usable
// certificate, PermissionDenied for the wrong cluster or role.
func AuthorizeFromContext(ctx context.Context, org string, allowed ...Role) (Peer, error) {
	return authorize(ctx, org, allowed, time.Now())
}

func authorize(ctx context.Context, org string, allowed []Role, now time.Time) (Peer, error) {
	if org == "" {
		return Peer{}, status.Error(codes.Internal, "authorization: no cluster ID configured")
	}
	leaf := verifiedLeaf(ctx)
	anyone := slices.Contains(allowed, RoleAnyone)
	if leaf == nil {
		if anyone {
			return Peer{}, nil
		}
		return Peer{}, status.Error(codes.Unauthenticated, "a verified node certificate is required")
	}
	if now.Before(leaf.NotBefore) || now.After(leaf.NotAfter) {
		return Peer{}, status.Error(codes.Unauthenticated, "the node certificate is expired or not yet valid")
	}
	id, err := PeerOf(leaf)
	if err != nil {
		return Peer{}, status.Errorf(codes.PermissionDenied, "unusable node certificate: %v", err)
	}
	if id.Org != org {
		return Peer{}, status.Errorf(codes.PermissionDenied, "node certificate of cluster %s, not of this cluster", id.Org)
	}
	if anyone || slices.Contains(allowed, id.Role) {
		return id, nil
	}
	return Peer{}, status.Errorf(codes.PermissionDenied, "role %s is not allowed to call this method", id.Role)
}

// verifiedLeaf returns the peer's certificate if the TLS handshake verified
// it, else nil.
func verifiedLeaf(ctx context.Context) *x509.Certificate {
	p, ok := peer.FromContext(ctx)
	if !ok || p.AuthInfo == nil {
		return nil
	}
	ti, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(ti.State.VerifiedChains) == 0 || len(ti.State.VerifiedChains[0]) == 0 {
		return nil
	}
	return ti.State.VerifiedChains[0][0]
}

type peerKey struct{}

// PeerFromContext returns the caller identity the interceptors established
// (the zero Peer for an unauthenticated caller of a RoleAnyone method).
func PeerFromContext(ctx context.Context) (Peer, bool) {
	p, ok := ctx.Value(peerKey{}).(Peer)
	return p, ok
}

// Authorizer enforces an authorization table (see MethodRoles) on a gRPC
// server through its interceptors. Methods missing from the table are
// denied.
type Authorizer struct {
	org   string
	roles map[string][]Role
	now   func() time.Time
}

// NewAuthorizer returns an Authorizer for cluster org. roles is copied.
func NewAuthorizer(org string, roles map[string][]Role) *Authorizer {
	c := make(map[string][]Role, len(roles))
	for m, r := range roles {
		c[m] = slices.Clone(r)
	}
	return &Authorizer{org: org, roles: c, now: time.Now}
}

// Authorize checks the caller of fullMethod.
func (a *Authorizer) Authorize(ctx context.Context, fullMethod string) (Peer, error) {
	allowed, ok := a.roles[fullMethod]
	if !ok || len(allowed) == 0 {
		return Peer{}, status.Errorf(codes.PermissionDenied, "method %s is not open to any role", fullMethod)
	}
	return authorize(ctx, a.org, allowed, a.now())
}

// UnaryServerInterceptor enforces the table on unary calls and puts the
// caller's Peer in the handler's context (PeerFromContext).
func (a *Authorizer) UnaryServerInterceptor() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		p, err := a.Authorize(ctx, info.FullMethod)
		if err != nil {
			return nil, err
		}
		return handler(context.WithValue(ctx, peerKey{}, p), req)
	}
}

// StreamServerInterceptor enforces the table on streaming calls and puts
// the caller's Peer in the stream's context (PeerFromContext).
func (a *Authorizer) StreamServerInterceptor() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		p, err := a.Authorize(ss.Context(), info.FullMethod)
		if err != nil {
			return err
		}
		return handler(srv, &peerStream{ServerStream: ss, ctx: context.WithValue(ss.Context(), peerKey{}, p)})
	}
}

// ServerOptions returns the grpc.ServerOptions installing both interceptors.
func (a *Authorizer) ServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(a.UnaryServerInterceptor()),
		grpc.ChainStreamInterceptor(a.StreamServerInterceptor()),
	}
}

type peerStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *peerStream) Context() context.Context { return s.ctx }
