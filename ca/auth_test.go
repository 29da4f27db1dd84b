package ca

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/openswarm/swarmd/api"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
)

// Every method of every service of the swarmd.api package is in the
// authorization table, and the table names nothing else: a new RPC cannot
// be forgotten (the interceptors would deny it anyway).
func TestMethodRolesCoverEveryMethod(t *testing.T) {
	table := MethodRoles()
	seen := map[string]bool{}
	services := 0
	protoregistry.GlobalFiles.RangeFilesByPackage("swarmd.api", func(fd protoreflect.FileDescriptor) bool {
		for i := 0; i < fd.Services().Len(); i++ {
			sd := fd.Services().Get(i)
			services++
			for j := 0; j < sd.Methods().Len(); j++ {
				full := fmt.Sprintf("/%s/%s", sd.FullName(), sd.Methods().Get(j).Name())
				seen[full] = true
				roles, ok := table[full]
				if !ok {
					t.Errorf("%s is missing from MethodRoles", full)
					continue
				}
				if len(roles) == 0 {
					t.Errorf("%s allows no role", full)
				}
			}
		}
		return true
	})
	if services < 8 {
		t.Fatalf("found %d services in swarmd.api; is the api package registered?", services)
	}
	for m := range table {
		if !seen[m] {
			t.Errorf("MethodRoles lists %s, which no service has", m)
		}
	}
	// The table is a fresh copy every time.
	table[api.Control_GetNode_FullMethodName] = []Role{RoleAnyone}
	if slices.Contains(MethodRoles()[api.Control_GetNode_FullMethodName], RoleAnyone) {
		t.Error("MethodRoles returns shared state")
	}
}

func TestMethodRolesPolicy(t *testing.T) {
	managers := []Role{RoleManager}
	nodes := []Role{RoleWorker, RoleManager}
	anyone := []Role{RoleAnyone}
	table := MethodRoles()
	for _, tc := range []struct {
		service *grpc.ServiceDesc
		want    []Role
		except  map[string][]Role
	}{
		{&api.Control_ServiceDesc, managers, nil},
		{&api.Raft_ServiceDesc, managers, nil},
		{&api.RaftMembership_ServiceDesc, managers, nil},
		{&api.Dispatcher_ServiceDesc, nodes, nil},
		{&api.LogBroker_ServiceDesc, nodes, nil},
		{&api.Logs_ServiceDesc, managers, nil},
		{&api.NodeCA_ServiceDesc, anyone, nil},
		{&api.CA_ServiceDesc, anyone, map[string][]Role{"GetUnlockKey": managers}},
	} {
		var names []string
		for _, m := range tc.service.Methods {
			names = append(names, m.MethodName)
		}
		for _, s := range tc.service.Streams {
			names = append(names, s.StreamName)
		}
		for _, name := range names {
			want := tc.want
			if w, ok := tc.except[name]; ok {
				want = w
			}
			full := "/" + tc.service.ServiceName + "/" + name
			if got := table[full]; !slices.Equal(got, want) {
				t.Errorf("%s: roles %v, want %v", full, got, want)
			}
		}
	}
}

// peerContext is what grpc gives a handler for a TLS connection with the
// given verified client certificate (nil: none).
func peerContext(leaf *x509.Certificate) context.Context {
	st := tls.ConnectionState{}
	if leaf != nil {
		st.PeerCertificates = []*x509.Certificate{leaf}
		st.VerifiedChains = [][]*x509.Certificate{{leaf}}
	}
	return peer.NewContext(context.Background(), &peer.Peer{AuthInfo: credentials.TLSInfo{State: st}})
}

func TestAuthorize(t *testing.T) {
	root := newRoot(t)
	w := issue(t, root, "w1", worker, testOrg).leaf
	m := issue(t, root, "m1", manager, testOrg).leaf
	foreign := issue(t, root, "f1", manager, "othercluster").leaf
	now := time.Now()
	unverified := peer.NewContext(context.Background(), &peer.Peer{AuthInfo: credentials.TLSInfo{State: tls.ConnectionState{PeerCertificates: []*x509.Certificate{m}}}})

	for _, tc := range []struct {
		name    string
		ctx     context.Context
		org     string
		allowed []Role
		now     time.Time
		want    Peer
		code    codes.Code
	}{
		{"manager on manager method", peerContext(m), testOrg, []Role{RoleManager}, now, Peer{"m1", RoleManager, testOrg}, codes.OK},
		{"worker on manager method", peerContext(w), testOrg, []Role{RoleManager}, now, Peer{}, codes.PermissionDenied},
		{"worker on node method", peerContext(w), testOrg, []Role{RoleWorker, RoleManager}, now, Peer{"w1", RoleWorker, testOrg}, codes.OK},
		{"no certificate on manager method", peerContext(nil), testOrg, []Role{RoleManager}, now, Peer{}, codes.Unauthenticated},
		{"no peer at all", context.Background(), testOrg, []Role{RoleWorker}, now, Peer{}, codes.Unauthenticated},
		{"unverified certificate", unverified, testOrg, []Role{RoleManager}, now, Peer{}, codes.Unauthenticated},
		{"no certificate on open method", peerContext(nil), testOrg, []Role{RoleAnyone}, now, Peer{}, codes.OK},
		{"certificate on open method", peerContext(w), testOrg, []Role{RoleAnyone}, now, Peer{"w1", RoleWorker, testOrg}, codes.OK},
		{"other cluster", peerContext(foreign), testOrg, []Role{RoleManager}, now, Peer{}, codes.PermissionDenied},
		{"other cluster on open method", peerContext(foreign), testOrg, []Role{RoleAnyone}, now, Peer{}, codes.PermissionDenied},
		{"expired", peerContext(m), testOrg, []Role{RoleManager}, m.NotAfter.Add(time.Second), Peer{}, codes.Unauthenticated},
		{"not yet valid", peerContext(m), testOrg, []Role{RoleManager}, m.NotBefore.Add(-time.Second), Peer{}, codes.Unauthenticated},
		{"no roles", peerContext(m), testOrg, nil, now, Peer{}, codes.PermissionDenied},
		{"no org configured", peerContext(m), "", []Role{RoleManager}, now, Peer{}, codes.Internal},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := authorize(tc.ctx, tc.org, tc.allowed, tc.now)
			if status.Code(err) != tc.code {
				t.Fatalf("err = %v, want code %v", err, tc.code)
			}
			if got != tc.want {
				t.Errorf("peer = %+v, want %+v", got, tc.want)
			}
		})
	}
	if _, err := AuthorizeFromContext(peerContext(m), testOrg, RoleManager); err != nil {
		t.Errorf("AuthorizeFromContext: %v", err)
	}
}

// controlServer answers GetNode with the caller's node ID, read from the
// context the interceptor prepared.
type controlServer struct {
	api.UnimplementedControlServer
}

func (controlServer) GetNode(ctx context.Context, _ *api.GetNodeRequest) (*api.GetNodeResponse, error) {
	p, ok := PeerFromContext(ctx)
	if !ok {
		return nil, status.Error(codes.Internal, "no peer in context")
	}
	return &api.GetNodeResponse{Node: &api.Node{Id: p.NodeID}}, nil
}

// dispatcherServer serves Session (a stream) to check the stream
// interceptor.
type dispatcherServer struct {
	api.UnimplementedDispatcherServer
}

func (dispatcherServer) Session(_ *api.SessionRequest, s grpc.ServerStreamingServer[api.SessionMessage]) error {
	p, ok := PeerFromContext(s.Context())
	if !ok {
		return status.Error(codes.Internal, "no peer in context")
	}
	return s.Send(&api.SessionMessage{SessionId: p.NodeID})
}

// Through a real gRPC server with TLS and the interceptors: workers cannot
// call Control, managers can, unauthenticated callers reach only the open
// methods, another cluster's certificate is refused.
func TestInterceptorsOverGRPC(t *testing.T) {
	c := startCluster(t, clusterOpts{extraRegs: func(g *grpc.Server) {
		api.RegisterControlServer(g, controlServer{})
		api.RegisterDispatcherServer(g, dispatcherServer{})
		api.RegisterLogsServer(g, api.UnimplementedLogsServer{})
	}})
	ctx := testContext(t)
	w := issue(t, c.root, "worker1", worker, testOrg)
	m := issue(t, c.root, "manager1", manager, testOrg)
	otherOrg := issue(t, c.root, "intruder", manager, "othercluster")

	workerConn := dialAs(t, c.addr, &w.tls, c.root)
	managerConn := dialAs(t, c.addr, &m.tls, c.root)
	anonConn := dialAs(t, c.addr, nil, c.root)
	// Our client refuses a server of another cluster; this one is an
	// intruder's that does not care.
	otherOrgConn := dial(t, c.addr, credentials.NewTLS(&tls.Config{
		RootCAs:      c.root.Pool(),
		ServerName:   ManagerServerName,
		Certificates: []tls.Certificate{otherOrg.tls},
	}))

	getNode := func(conn *grpc.ClientConn) (string, error) {
		resp, err := api.NewControlClient(conn).GetNode(ctx, &api.GetNodeRequest{NodeId: "x"})
		return resp.GetNode().GetId(), err
	}
	session := func(conn *grpc.ClientConn) (string, error) {
		s, err := api.NewDispatcherClient(conn).Session(ctx, &api.SessionRequest{})
		if err != nil {
			return "", err
		}
		msg, err := s.Recv()
		return msg.GetSessionId(), err
	}
	subscribeLogs := func(conn *grpc.ClientConn) (string, error) {
		s, err := api.NewLogsClient(conn).SubscribeLogs(ctx, &api.SubscribeLogsRequest{})
		if err != nil {
			return "", err
		}
		_, err = s.Recv()
		return "", err
	}
	for _, tc := range []struct {
		name   string
		call   func(*grpc.ClientConn) (string, error)
		conn   *grpc.ClientConn
		code   codes.Code
		wantID string
	}{
		{"worker calls Control", getNode, workerConn, codes.PermissionDenied, ""},
		{"manager calls Control", getNode, managerConn, codes.OK, "manager1"},
		{"anonymous calls Control", getNode, anonConn, codes.Unauthenticated, ""},
		{"other cluster calls Control", getNode, otherOrgConn, codes.PermissionDenied, ""},
		{"worker opens a session", session, workerConn, codes.OK, "worker1"},
		{"anonymous opens a session", session, anonConn, codes.Unauthenticated, ""},
		{"worker subscribes to logs", subscribeLogs, workerConn, codes.PermissionDenied, ""},
		{"manager subscribes to logs", subscribeLogs, managerConn, codes.Unimplemented, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id, err := tc.call(tc.conn)
			if status.Code(err) != tc.code {
				t.Fatalf("err = %v, want code %v", err, tc.code)
			}
			if id != tc.wantID {
				t.Errorf("handler saw caller %q, want %q", id, tc.wantID)
			}
		})
	}

	// Unauthenticated callers reach the open methods.
	if _, err := api.NewCAClient(anonConn).GetRootCACertificate(ctx, &api.GetRootCACertificateRequest{}); err != nil {
		t.Errorf("anonymous GetRootCACertificate: %v", err)
	}
	csr, _, err := GenerateNodeKeyAndCSR()
	if err != nil {
		t.Fatal(err)
	}
	resp, err := api.NewNodeCAClient(anonConn).IssueNodeCertificate(ctx, &api.IssueNodeCertificateRequest{Csr: csr, Token: c.tokens(t).Worker})
	if err != nil || resp.GetNodeId() == "" {
		t.Errorf("anonymous IssueNodeCertificate: %v", err)
	}
	if _, err := api.NewCAClient(anonConn).GetUnlockKey(ctx, &api.GetUnlockKeyRequest{}); status.Code(err) != codes.Unauthenticated {
		t.Errorf("anonymous GetUnlockKey: %v", err)
	}

	// A certificate of another root does not get through the handshake.
	other := newRoot(t)
	foreign := issue(t, other, "foreign", manager, testOrg)
	creds, err := ClientCredentials(&foreign.tls, c.root, ManagerServerName)
	if err != nil {
		t.Fatal(err)
	}
	_, err = getNode(dial(t, c.addr, creds))
	if status.Code(err) != codes.Unavailable {
		t.Errorf("certificate of another root: err = %v, want Unavailable (handshake refused)", err)
	}
}

// A method missing from the table is denied, even to managers.
func TestInterceptorDeniesUnlistedMethods(t *testing.T) {
	root := newRoot(t)
	m := issue(t, root, "manager1", manager, testOrg)
	table := MethodRoles()
	delete(table, api.Control_GetNode_FullMethodName)
	authz := NewAuthorizer(testOrg, table)
	ctx := peerContext(m.leaf)
	_, err := authz.UnaryServerInterceptor()(ctx, nil, &grpc.UnaryServerInfo{FullMethod: api.Control_GetNode_FullMethodName},
		func(context.Context, any) (any, error) {
			t.Fatal("handler called")
			return nil, nil
		})
	if status.Code(err) != codes.PermissionDenied {
		t.Errorf("err = %v, want PermissionDenied", err)
	}
	err = authz.StreamServerInterceptor()(nil, fakeStream{ctx}, &grpc.StreamServerInfo{FullMethod: "/swarmd.api.New/Method"},
		func(any, grpc.ServerStream) error {
			t.Fatal("handler called")
			return nil
		})
	if status.Code(err) != codes.PermissionDenied {
		t.Errorf("stream: err = %v, want PermissionDenied", err)
	}
	// The Authorizer copied the table: changing it afterwards has no effect.
	table[api.Control_GetNode_FullMethodName] = []Role{RoleAnyone}
	if _, err := authz.Authorize(ctx, api.Control_GetNode_FullMethodName); status.Code(err) != codes.PermissionDenied {
		t.Errorf("Authorizer shares the caller's table: %v", err)
	}
}

type fakeStream struct{ ctx context.Context }

func (f fakeStream) Context() context.Context   { return f.ctx }
func (fakeStream) SetHeader(metadata.MD) error  { return nil }
func (fakeStream) SendHeader(metadata.MD) error { return nil }
func (fakeStream) SetTrailer(metadata.MD)       {}
func (fakeStream) SendMsg(any) error            { return nil }
func (fakeStream) RecvMsg(any) error            { return nil }
