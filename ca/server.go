package ca

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/openswarm/swarmd/api"
	"github.com/openswarm/swarmd/manager/state/store"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// msgNeedToken is docker's refusal of a join without a valid token.
const msgNeedToken = "A valid join token is necessary to join this cluster"

// ServerConfig configures a Server.
type ServerConfig struct {
	// Store holds the cluster object (root CA, join tokens, CA config) and
	// the nodes.
	Store *store.MemoryStore
	// ClusterID is the ID of the cluster object and the O of every
	// certificate of the cluster.
	ClusterID string
	// Logger receives one line per issued certificate (default
	// slog.Default()). Tokens, CSRs and keys are never logged.
	Logger *slog.Logger
	// ExternalCA tunes the client used when the cluster's CA config lists
	// external CAs.
	ExternalCA ExternalCAOptions
}

// Server is the CA and NodeCA gRPC services of a manager, backed by the
// store: it issues node certificates against a join token (joining) or the
// caller's own certificate (renewal), signing with the root key in the
// cluster object or through the cluster's external CAs.
//
// Authorization of the services' methods is the interceptors' job (see
// MethodRoles); the handlers additionally read the caller's verified
// certificate where the answer depends on it.
type Server struct {
	api.UnimplementedCAServer
	api.UnimplementedNodeCAServer

	store     *store.MemoryStore
	clusterID string
	log       *slog.Logger
	extOpts   ExternalCAOptions
	now       func() time.Time

	mu    sync.Mutex
	cache RootCA // last root parsed from the cluster object
}

// NewServer returns a Server for the cluster cfg.ClusterID.
func NewServer(cfg ServerConfig) (*Server, error) {
	if cfg.Store == nil {
		return nil, errors.New("ca server: no store")
	}
	if cfg.ClusterID == "" {
		return nil, errors.New("ca server: no cluster ID")
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	return &Server{
		store:     cfg.Store,
		clusterID: cfg.ClusterID,
		log:       log.With("component", "ca"),
		extOpts:   cfg.ExternalCA,
		now:       time.Now,
	}, nil
}

// Register registers the CA and NodeCA services on g.
func (s *Server) Register(g grpc.ServiceRegistrar) {
	api.RegisterCAServer(g, s)
	api.RegisterNodeCAServer(g, s)
}

// GetRootCACertificate returns the root CA certificate (PEM).
func (s *Server) GetRootCACertificate(ctx context.Context, _ *api.GetRootCACertificateRequest) (*api.GetRootCACertificateResponse, error) {
	cluster, err := s.cluster()
	if err != nil {
		return nil, err
	}
	return &api.GetRootCACertificateResponse{Certificate: cluster.GetRootCa().GetCaCert()}, nil
}

// GetUnlockKey returns the managers' unlock key, to managers only.
func (s *Server) GetUnlockKey(ctx context.Context, _ *api.GetUnlockKeyRequest) (*api.GetUnlockKeyResponse, error) {
	if _, err := AuthorizeFromContext(ctx, s.clusterID, RoleManager); err != nil {
		return nil, err
	}
	cluster, err := s.cluster()
	if err != nil {
		return nil, err
	}
	resp := &api.GetUnlockKeyResponse{Version: cluster.GetMeta().GetVersion()}
	for _, k := range cluster.GetUnlockKeys() {
		if k.GetSubsystem() == string(RoleManager) {
			resp.UnlockKey = k.GetKey()
		}
	}
	return resp, nil
}

// IssueNodeCertificate signs the CSR. A caller presenting a valid
// certificate of this cluster renews it: the new certificate is for its own
// node ID and the role IssuedRole gives its node object. Any other caller
// joins: its token must be one of the cluster's join tokens, which decides
// the role (a request for the manager role with the worker token is
// refused), and a new node is created with the certificate. Signing is
// synchronous; NodeCertificateStatus returns the result.
func (s *Server) IssueNodeCertificate(ctx context.Context, req *api.IssueNodeCertificateRequest) (*api.IssueNodeCertificateResponse, error) {
	if len(req.GetCsr()) == 0 {
		return nil, status.Error(codes.InvalidArgument, "a certificate signing request is required")
	}
	if _, err := ParseCSR(req.GetCsr()); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "%v", err)
	}
	caller, err := AuthorizeFromContext(ctx, s.clusterID, RoleAnyone)
	if err != nil {
		return nil, err
	}
	cluster, err := s.cluster()
	if err != nil {
		return nil, err
	}
	if caller.Authenticated() {
		return s.renew(ctx, cluster, caller, req.GetCsr())
	}
	return s.join(ctx, cluster, req)
}

func (s *Server) join(ctx context.Context, cluster *api.Cluster, req *api.IssueNodeCertificateRequest) (*api.IssueNodeCertificateResponse, error) {
	if req.GetToken() == "" {
		return nil, status.Error(codes.InvalidArgument, msgNeedToken)
	}
	if _, err := ParseJoinToken(req.GetToken()); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "%s: %v", msgNeedToken, err)
	}
	role, ok := tokenRole(cluster.GetRootCa().GetJoinTokens(), req.GetToken())
	if !ok {
		return nil, status.Error(codes.PermissionDenied, msgNeedToken)
	}
	if req.GetRole() == api.NodeRole_NODE_ROLE_MANAGER && role != api.NodeRole_NODE_ROLE_MANAGER {
		return nil, status.Errorf(codes.PermissionDenied, "%s as a manager: this is the worker join token", msgNeedToken)
	}
	nodeID := NewID()
	cert, err := s.sign(ctx, cluster, req.GetCsr(), nodeID, role)
	if err != nil {
		return nil, err
	}
	node := &api.Node{
		Id: nodeID,
		Spec: &api.NodeSpec{
			DesiredRole:  role,
			Membership:   api.NodeMembership_NODE_MEMBERSHIP_ACCEPTED,
			Availability: api.NodeAvailability_NODE_AVAILABILITY_ACTIVE,
		},
		Status: &api.NodeStatus{State: api.NodeStatus_UNKNOWN},
		Role:   role,
		Certificate: &api.Certificate{
			Role:        role,
			Csr:         req.GetCsr(),
			Status:      api.Certificate_ISSUED,
			Certificate: cert,
			Cn:          nodeID,
		},
	}
	if err := s.store.Update(ctx, func(tx store.Tx) error { return tx.Create(node) }); err != nil {
		return nil, status.Errorf(codes.Unavailable, "store the new node: %v", err)
	}
	s.log.Info("node joined", "node.id", nodeID, "role", role.String())
	return &api.IssueNodeCertificateResponse{NodeId: nodeID, NodeMembership: api.NodeMembership_NODE_MEMBERSHIP_ACCEPTED}, nil
}

func (s *Server) renew(ctx context.Context, cluster *api.Cluster, caller Peer, csr []byte) (*api.IssueNodeCertificateResponse, error) {
	var node *api.Node
	s.store.View(func(tx store.ReadTx) { node = store.GetNode(tx, caller.NodeID) })
	if node == nil {
		return nil, status.Errorf(codes.NotFound, "node %s is not a member of this cluster", caller.NodeID)
	}
	role := IssuedRole(node)
	cert, err := s.sign(ctx, cluster, csr, caller.NodeID, role)
	if err != nil {
		return nil, err
	}
	var membership api.NodeMembership
	err = s.store.Update(ctx, func(tx store.Tx) error {
		n := store.GetNode(tx, caller.NodeID)
		if n == nil {
			return store.ErrNotExist
		}
		n.Role = role
		n.Certificate = &api.Certificate{
			Role:        role,
			Csr:         csr,
			Status:      api.Certificate_ISSUED,
			Certificate: cert,
			Cn:          caller.NodeID,
		}
		membership = n.GetSpec().GetMembership()
		return tx.Update(n)
	})
	switch {
	case errors.Is(err, store.ErrNotExist):
		return nil, status.Errorf(codes.NotFound, "node %s is not a member of this cluster", caller.NodeID)
	case err != nil:
		return nil, status.Errorf(codes.Unavailable, "store the renewed certificate: %v", err)
	}
	s.log.Info("node certificate renewed", "node.id", caller.NodeID, "role", role.String())
	return &api.IssueNodeCertificateResponse{NodeId: caller.NodeID, NodeMembership: membership}, nil
}

// NodeCertificateStatus returns a node's certificate and the root CA
// certificate (never the root key or the join tokens).
func (s *Server) NodeCertificateStatus(ctx context.Context, req *api.NodeCertificateStatusRequest) (*api.NodeCertificateStatusResponse, error) {
	if req.GetNodeId() == "" {
		return nil, status.Error(codes.InvalidArgument, "a node ID is required")
	}
	var node *api.Node
	var cluster *api.Cluster
	s.store.View(func(tx store.ReadTx) {
		node = store.GetNode(tx, req.GetNodeId())
		cluster = store.GetCluster(tx, s.clusterID)
	})
	if node == nil {
		return nil, status.Errorf(codes.NotFound, "node %s not found", req.GetNodeId())
	}
	if cluster.GetRootCa() == nil {
		return nil, status.Error(codes.Unavailable, "the cluster has no root CA yet")
	}
	return &api.NodeCertificateStatusResponse{
		Certificate: node.GetCertificate(),
		RootCa: &api.RootCA{
			CaCert:     cluster.GetRootCa().GetCaCert(),
			CaCertHash: cluster.GetRootCa().GetCaCertHash(),
		},
	}, nil
}

// cluster returns the cluster object, which must have a root CA.
func (s *Server) cluster() (*api.Cluster, error) {
	var c *api.Cluster
	s.store.View(func(tx store.ReadTx) { c = store.GetCluster(tx, s.clusterID) })
	if c == nil || len(c.GetRootCa().GetCaCert()) == 0 {
		return nil, status.Error(codes.Unavailable, "the cluster has no root CA yet")
	}
	return c, nil
}

// rootCA parses the cluster's root CA, reusing the last parse while the
// certificate and key are unchanged.
func (s *Server) rootCA(cluster *api.Cluster) (RootCA, error) {
	cert, key := cluster.GetRootCa().GetCaCert(), cluster.GetRootCa().GetCaKey()
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.cache.IsZero() && bytes.Equal(s.cache.certPEM, cert) && bytes.Equal(s.cache.keyPEM, key) {
		return s.cache, nil
	}
	root, err := NewRootCA(cert, key)
	if err != nil {
		return RootCA{}, err
	}
	s.cache = root
	return root, nil
}

// sign issues the node's certificate with the cluster's external CAs if it
// lists any, else with the root key, and checks the result.
func (s *Server) sign(ctx context.Context, cluster *api.Cluster, csr []byte, nodeID string, role api.NodeRole) ([]byte, error) {
	root, err := s.rootCA(cluster)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "cluster root CA: %v", err)
	}
	caCfg := cluster.GetSpec().GetCaConfig()
	expiry, err := CheckNodeCertExpiry(caCfg.GetNodeCertExpiry().AsDuration())
	if err != nil {
		return nil, status.Errorf(codes.FailedPrecondition, "cluster CA config: %v", err)
	}
	if cas := caCfg.GetExternalCas(); len(cas) > 0 {
		ext, err := NewExternalCA(cas, root, s.extOpts)
		if err != nil {
			return nil, status.Errorf(codes.FailedPrecondition, "cluster CA config: %v", err)
		}
		cert, err := ext.IssueNodeCertificate(ctx, csr, nodeID, role, s.clusterID)
		if err != nil {
			return nil, status.Errorf(codes.Unavailable, "%v", err)
		}
		subj, err := newNodeSubject(nodeID, role, s.clusterID)
		if err != nil {
			return nil, status.Errorf(codes.Internal, "%v", err)
		}
		if err := root.checkIssued(cert, csr, subj, s.now()); err != nil {
			return nil, status.Errorf(codes.Unavailable, "external CA: %v", err)
		}
		return cert, nil
	}
	if !root.CanSign() {
		return nil, status.Error(codes.FailedPrecondition, "the cluster has neither a root CA key nor an external CA")
	}
	cert, err := root.issueNodeCertificate(csr, nodeID, role, s.clusterID, expiry, s.now())
	if err != nil {
		return nil, status.Errorf(codes.Internal, "%v", fmt.Errorf("sign node certificate: %w", err))
	}
	return cert, nil
}
