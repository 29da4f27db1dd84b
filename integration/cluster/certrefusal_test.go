//go:build integration

package cluster

import (
	"bytes"
	"context"
	"crypto"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"go.etcd.io/etcd/server/v3/etcdserver/api/snap"
	"go.etcd.io/etcd/server/v3/storage/wal"
	"go.etcd.io/etcd/server/v3/storage/wal/walpb"
	"go.etcd.io/raft/v3/raftpb"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/openswarm/swarmd/api"
	"github.com/openswarm/swarmd/ca"
)

// TestRemoteAPIRefusals checks, against real swarmd processes, who the
// remote API (gRPC over mutual TLS on --listen-remote-api) lets in: a
// worker's certificate reaches the agent's methods and nothing else, an
// expired or not yet valid certificate and a certificate of another cluster
// fail the TLS handshake, a caller without a certificate reaches only the
// CA's joining methods, and bytes that are not TLS close the connection
// without harming the server. Every refusal is followed by a check that
// the cluster did not change.
func TestRemoteAPIRefusals(t *testing.T) {
	m := startSwarmd(t, "m1", "127.0.0.171:4242", "--init")
	m.waitReady(t)
	workerToken, _ := joinTokens(t, m.socket())
	w := startSwarmd(t, "w1", "127.0.0.172:4242", "--join-addr", m.addr, "--join-token", workerToken)
	w.waitReady(t)
	other := startSwarmd(t, "other", "127.0.0.173:4242", "--init")
	other.waitReady(t)
	eventually(t, 20*time.Second, "both nodes of the swarm READY", func() bool {
		out, err := swarmctl(t, m.socket(), "node", "ls")
		rows := nodeRows(out)
		return err == nil && len(rows) == 2 && rows["m1"][3] == "READY" && rows["w1"][3] == "READY"
	}, m, w)

	mgrSec := loadSecurity(t, m)
	wrkSec := loadSecurity(t, w)
	otherSec := loadSecurity(t, other)
	root := mgrSec.RootCA()
	clusterID := mgrSec.Peer().Org
	if wrkSec.Peer().Role != ca.RoleWorker || mgrSec.Peer().Role != ca.RoleManager {
		t.Fatalf("roles: worker certificate %s, manager certificate %s", wrkSec.Peer().Role, mgrSec.Peer().Role)
	}
	if otherSec.Peer().Org == clusterID {
		t.Fatal("the two swarms have the same cluster ID")
	}

	admin := dialTLS(t, m.addr, clientTLS(t, mgrSec.TLSCertificate(), root))
	before := clusterState(t, admin)
	unchanged := func(t *testing.T) {
		t.Helper()
		if after := clusterState(t, admin); after != before {
			t.Fatalf("the cluster changed:\nbefore:\n%s\nafter:\n%s", before, after)
		}
	}

	t.Run("worker certificate", func(t *testing.T) {
		testWorkerCertificate(t, m.addr, admin, wrkSec, root)
		unchanged(t)
	})

	t.Run("expired or foreign certificates", func(t *testing.T) {
		rootCert, rootKey := rootKeyFromStateDir(t, m.dir)
		selfMade, selfMadeKey := newSelfSignedCA(t)
		now := time.Now()
		for _, tc := range []struct {
			name string
			cert tls.Certificate
			// alert is the TLS alert the server ends the handshake with;
			// empty when the handshake must succeed.
			alert string
			// code is the status of Control.ListNodes.
			code codes.Code
		}{
			{"valid manager certificate signed by the root (control)",
				signCert(t, rootCert, rootKey, mgrSec.NodeID(), ca.RoleManager, clusterID, now.Add(-time.Hour), now.Add(time.Hour)), "", codes.OK},
			{"expired manager certificate signed by the root",
				signCert(t, rootCert, rootKey, mgrSec.NodeID(), ca.RoleManager, clusterID, now.Add(-48*time.Hour), now.Add(-24*time.Hour)), "expired certificate", codes.Unavailable},
			{"not yet valid manager certificate signed by the root",
				signCert(t, rootCert, rootKey, mgrSec.NodeID(), ca.RoleManager, clusterID, now.Add(24*time.Hour), now.Add(48*time.Hour)), "expired certificate", codes.Unavailable},
			{"manager certificate of another swarm", *otherSec.TLSCertificate(), "unknown certificate authority", codes.Unavailable},
			{"self-made CA copying this swarm's identity",
				signCert(t, selfMade, selfMadeKey, mgrSec.NodeID(), ca.RoleManager, clusterID, now.Add(-time.Hour), now.Add(time.Hour)), "unknown certificate authority", codes.Unavailable},
			{"manager certificate signed by a worker's key, chained to the worker's certificate",
				signedByWorker(t, wrkSec, mgrSec.NodeID(), clusterID, now), "unknown certificate authority", codes.Unavailable},
			{"root-signed certificate naming another cluster",
				signCert(t, rootCert, rootKey, mgrSec.NodeID(), ca.RoleManager, otherSec.Peer().Org, now.Add(-time.Hour), now.Add(time.Hour)), "", codes.PermissionDenied},
			{"root-signed certificate with an unknown role",
				signCert(t, rootCert, rootKey, mgrSec.NodeID(), ca.Role("swarm-admin"), clusterID, now.Add(-time.Hour), now.Add(time.Hour)), "", codes.PermissionDenied},
		} {
			t.Run(tc.name, func(t *testing.T) {
				cfg := clientTLS(t, &tc.cert, root)
				err := tlsExchange(t, m.addr, cfg)
				if tc.alert == "" {
					if err != nil {
						t.Fatalf("TLS handshake: %v, want it to succeed", err)
					}
				} else if err == nil || !strings.Contains(err.Error(), "remote error: tls: "+tc.alert) {
					t.Fatalf("TLS handshake: %v, want the server's %q alert", err, tc.alert)
				}
				conn := dialTLS(t, m.addr, cfg)
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				_, err = api.NewControlClient(conn).ListNodes(ctx, &api.ListNodesRequest{})
				if status.Code(err) != tc.code {
					t.Fatalf("Control.ListNodes: %v, want %v", err, tc.code)
				}
				if tc.alert != "" {
					_, err := api.NewCAClient(conn).GetRootCACertificate(ctx, &api.GetRootCACertificateRequest{})
					if status.Code(err) != codes.Unavailable {
						t.Fatalf("CA.GetRootCACertificate over a refused handshake: %v, want Unavailable", err)
					}
				}
			})
		}
		unchanged(t)
	})

	t.Run("no certificate", func(t *testing.T) {
		testNoCertificate(t, m.addr, root)
		unchanged(t)
	})

	t.Run("not TLS", func(t *testing.T) {
		for _, tc := range []struct {
			name string
			data []byte
		}{
			{"HTTP/1.1 request", []byte("GET / HTTP/1.1\r\nHost: 127.0.0.171\r\nConnection: keep-alive\r\n\r\n")},
			{"HTTP/2 preface without TLS", []byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")},
			{"TLS record header announcing 64 KiB", []byte{0x16, 0x03, 0x01, 0xff, 0xff, 0x01, 0x00}},
			// Not starting with a TLS handshake record (0x16), which
			// would make the server wait for the rest of the record.
			{"random bytes", append([]byte{0xff}, randomBytes(t, 4095)...)},
		} {
			t.Run(tc.name, func(t *testing.T) {
				got, err := writeAndReadUntilClosed(m.addr, tc.data)
				if err != nil {
					t.Fatal(err)
				}
				if bytes.HasPrefix(got, []byte("HTTP/")) {
					t.Fatalf("the remote API answered HTTP: %q", got)
				}
				// A new connection: the server still accepts and serves.
				fresh := dialTLS(t, m.addr, clientTLS(t, mgrSec.TLSCertificate(), root))
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				if _, err := api.NewControlClient(fresh).ListNodes(ctx, &api.ListNodesRequest{}); err != nil {
					t.Fatalf("a valid call after the bad connection: %v", err)
				}
			})
		}
		unchanged(t)
		if m.hasExited() {
			t.Fatalf("swarmd exited:\n%s", tail(m.logs(), 20))
		}
	})

	// Last, as it adds a node: joining needs no certificate.
	t.Run("join without certificate", func(t *testing.T) {
		conn := dialTLS(t, m.addr, clientTLS(t, nil, root))
		csr, _, err := ca.GenerateNodeKeyAndCSR()
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		resp, err := api.NewNodeCAClient(conn).IssueNodeCertificate(ctx, &api.IssueNodeCertificateRequest{Csr: csr, Token: workerToken})
		if err != nil || resp.GetNodeId() == "" {
			t.Fatalf("IssueNodeCertificate with the worker token: %v, %v", resp, err)
		}
		st, err := api.NewNodeCAClient(conn).NodeCertificateStatus(ctx, &api.NodeCertificateStatusRequest{NodeId: resp.GetNodeId()})
		if err != nil {
			t.Fatalf("NodeCertificateStatus: %v", err)
		}
		leaf, err := parseLeaf(st.GetCertificate().GetCertificate())
		if err != nil {
			t.Fatal(err)
		}
		if id, err := ca.PeerOf(leaf); err != nil || id != (ca.Peer{NodeID: resp.GetNodeId(), Role: ca.RoleWorker, Org: clusterID}) {
			t.Fatalf("the joining node's certificate is for %+v (%v)", id, err)
		}
	})
}

// testWorkerCertificate calls every method of the remote API with a
// worker's certificate: the agent's methods are let through (a dispatcher
// session even starts), every other one is PermissionDenied, including
// requests that would change the cluster if they ran.
func testWorkerCertificate(t *testing.T, addr string, admin *grpc.ClientConn, sec *ca.SecurityConfig, root ca.RootCA) {
	conn := dialTLS(t, addr, clientTLS(t, sec.TLSCertificate(), root))
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	// Accepted: a dispatcher session for the worker's own node.
	sctx, scancel := context.WithTimeout(ctx, 20*time.Second)
	defer scancel()
	stream, err := api.NewDispatcherClient(conn).Session(sctx, &api.SessionRequest{})
	if err != nil {
		t.Fatalf("Dispatcher.Session: %v", err)
	}
	msg, err := stream.Recv()
	if err != nil || msg.GetSessionId() == "" {
		t.Fatalf("Dispatcher.Session with the worker's certificate: %v, %v; want a session", msg, err)
	}
	if _, err := api.NewDispatcherClient(conn).Heartbeat(sctx, &api.HeartbeatRequest{SessionId: msg.GetSessionId()}); err != nil {
		t.Fatalf("Dispatcher.Heartbeat with the worker's session: %v", err)
	}
	scancel()

	// Refused: requests that would change the cluster.
	nodes, err := api.NewControlClient(admin).ListNodes(ctx, &api.ListNodesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var managerID string
	var managerRaftID uint64
	for _, n := range nodes.GetNodes() {
		if n.GetManagerStatus() != nil {
			managerID, managerRaftID = n.GetId(), n.GetManagerStatus().GetRaftId()
		}
	}
	clusters, err := api.NewControlClient(admin).ListClusters(ctx, &api.ListClustersRequest{})
	if err != nil || len(clusters.GetClusters()) != 1 {
		t.Fatalf("ListClusters: %v %v", clusters, err)
	}
	cl := clusters.GetClusters()[0]
	control := api.NewControlClient(conn)
	for _, tc := range []struct {
		name string
		call func() error
	}{
		{"Control.CreateService", func() error {
			_, err := control.CreateService(ctx, &api.CreateServiceRequest{Spec: &api.ServiceSpec{
				Annotations: &api.Annotations{Name: "intruder"},
				Task:        &api.TaskSpec{Container: &api.ContainerSpec{Image: "busybox"}},
				Mode:        &api.ServiceSpec_Replicated{Replicated: &api.ReplicatedService{Replicas: 1}},
			}})
			return err
		}},
		{"Control.CreateNetwork", func() error {
			_, err := control.CreateNetwork(ctx, &api.CreateNetworkRequest{Spec: &api.NetworkSpec{Annotations: &api.Annotations{Name: "intruder"}}})
			return err
		}},
		{"Control.CreateSecret", func() error {
			_, err := control.CreateSecret(ctx, &api.CreateSecretRequest{Spec: &api.SecretSpec{Annotations: &api.Annotations{Name: "intruder"}, Data: []byte("x")}})
			return err
		}},
		{"Control.UpdateCluster rotating the manager token", func() error {
			_, err := control.UpdateCluster(ctx, &api.UpdateClusterRequest{ClusterId: cl.GetId(), ClusterVersion: cl.GetMeta().GetVersion(),
				Spec: cl.GetSpec(), Rotation: &api.KeyRotation{ManagerJoinToken: true, WorkerJoinToken: true}})
			return err
		}},
		{"Control.RemoveNode of the manager", func() error {
			_, err := control.RemoveNode(ctx, &api.RemoveNodeRequest{NodeId: managerID, Force: true})
			return err
		}},
		{"Control.ListNodes", func() error {
			_, err := control.ListNodes(ctx, &api.ListNodesRequest{})
			return err
		}},
		{"RaftMembership.Join as the worker", func() error {
			_, err := api.NewRaftMembershipClient(conn).Join(ctx, &api.JoinRequest{NodeId: sec.NodeID(), Addr: "127.0.0.172:4242"})
			return err
		}},
		{"RaftMembership.Leave of the manager", func() error {
			_, err := api.NewRaftMembershipClient(conn).Leave(ctx, &api.LeaveRequest{RaftId: managerRaftID})
			return err
		}},
		{"CA.GetUnlockKey", func() error {
			_, err := api.NewCAClient(conn).GetUnlockKey(ctx, &api.GetUnlockKeyRequest{})
			return err
		}},
		{"Logs.SubscribeLogs", func() error {
			s, err := api.NewLogsClient(conn).SubscribeLogs(ctx, &api.SubscribeLogsRequest{Selector: &api.LogSelector{NodeIds: []string{managerID}}})
			if err != nil {
				return err
			}
			_, err = s.Recv()
			return err
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.call(); status.Code(err) != codes.PermissionDenied {
				t.Fatalf("%s with a worker's certificate: %v, want PermissionDenied", tc.name, err)
			}
		})
	}

	// Every method: a worker reaches the agent's and the joining ones only.
	for _, mth := range remoteMethods() {
		t.Run(mth.name, func(t *testing.T) {
			err := callEmpty(ctx, conn, mth)
			switch code := status.Code(err); {
			case openToWorkers(mth.name) || openToAnyone(mth.name):
				if code == codes.PermissionDenied || code == codes.Unauthenticated || code == codes.Unavailable {
					t.Fatalf("worker refused a method open to workers: %v", err)
				}
			default:
				if code != codes.PermissionDenied {
					t.Fatalf("worker calling a manager-only method: %v, want PermissionDenied", err)
				}
			}
		})
	}
}

// testNoCertificate calls every method without a client certificate: only
// the CA's public methods answer, everything else is Unauthenticated.
func testNoCertificate(t *testing.T, addr string, root ca.RootCA) {
	conn := dialTLS(t, addr, clientTLS(t, nil, root))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	got, err := api.NewCAClient(conn).GetRootCACertificate(ctx, &api.GetRootCACertificateRequest{})
	if err != nil || !bytes.Equal(bytes.TrimSpace(got.GetCertificate()), bytes.TrimSpace(root.CertPEM())) {
		t.Fatalf("CA.GetRootCACertificate without a certificate: %v, want the root certificate", err)
	}
	csr, _, err := ca.GenerateNodeKeyAndCSR()
	if err != nil {
		t.Fatal(err)
	}
	_, err = api.NewNodeCAClient(conn).IssueNodeCertificate(ctx, &api.IssueNodeCertificateRequest{Csr: csr, Token: "SWMTKN-1-" + strings.Repeat("0", 50) + "-" + strings.Repeat("0", 25)})
	if c := status.Code(err); c != codes.PermissionDenied && c != codes.InvalidArgument {
		t.Fatalf("IssueNodeCertificate with a wrong token: %v, want the join token refused", err)
	}

	for _, mth := range remoteMethods() {
		open := openToAnyone(mth.name)
		t.Run(mth.name, func(t *testing.T) {
			err := callEmpty(ctx, conn, mth)
			code := status.Code(err)
			if open && (code == codes.Unauthenticated || code == codes.PermissionDenied || code == codes.Unavailable) {
				t.Fatalf("a method open to joining nodes refused a caller without a certificate: %v", err)
			}
			if !open && code != codes.Unauthenticated {
				t.Fatalf("without a certificate: %v, want Unauthenticated", err)
			}
		})
	}
}

// openToAnyone reports whether a caller without a certificate may call
// method: only what a joining node needs.
func openToAnyone(method string) bool {
	switch method {
	case api.CA_GetRootCACertificate_FullMethodName,
		api.NodeCA_IssueNodeCertificate_FullMethodName,
		api.NodeCA_NodeCertificateStatus_FullMethodName:
		return true
	}
	return false
}

// openToWorkers reports whether a worker's certificate may call method:
// the agent's services (dispatcher, log broker).
func openToWorkers(method string) bool {
	return strings.HasPrefix(method, "/"+api.Dispatcher_ServiceDesc.ServiceName+"/") ||
		strings.HasPrefix(method, "/"+api.LogBroker_ServiceDesc.ServiceName+"/")
}

// remoteMethod is one method of a service the remote API serves.
type remoteMethod struct {
	name      string
	streaming bool
}

// remoteMethods lists every method of every service on the remote API.
func remoteMethods() []remoteMethod {
	var out []remoteMethod
	for _, sd := range []*grpc.ServiceDesc{
		&api.CA_ServiceDesc, &api.NodeCA_ServiceDesc, &api.Control_ServiceDesc,
		&api.Dispatcher_ServiceDesc, &api.Logs_ServiceDesc, &api.LogBroker_ServiceDesc,
		&api.Raft_ServiceDesc, &api.RaftMembership_ServiceDesc,
	} {
		for _, md := range sd.Methods {
			out = append(out, remoteMethod{name: "/" + sd.ServiceName + "/" + md.MethodName})
		}
		for _, st := range sd.Streams {
			out = append(out, remoteMethod{name: "/" + sd.ServiceName + "/" + st.StreamName, streaming: true})
		}
	}
	return out
}

// callEmpty calls a method with an empty request and returns its status;
// a method that is let through but then waits (a stream) is cut short
// after a few seconds and reported as DeadlineExceeded.
func callEmpty(ctx context.Context, conn *grpc.ClientConn, m remoteMethod) error {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	if !m.streaming {
		return conn.Invoke(ctx, m.name, &emptypb.Empty{}, &emptypb.Empty{})
	}
	s, err := conn.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true, ClientStreams: true}, m.name)
	if err != nil {
		return err
	}
	if err := s.SendMsg(&emptypb.Empty{}); err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	if err := s.CloseSend(); err != nil {
		return err
	}
	if err := s.RecvMsg(&emptypb.Empty{}); !errors.Is(err, io.EOF) {
		return err
	}
	return nil
}

// clusterState summarises what a refused call must not change: nodes and
// their roles, raft membership, services, networks, secrets, configs and
// the cluster's spec and join tokens.
func clusterState(t *testing.T, admin *grpc.ClientConn) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c := api.NewControlClient(admin)
	var lines []string
	nodes, err := c.ListNodes(ctx, &api.ListNodesRequest{})
	if err != nil {
		t.Fatalf("ListNodes with the manager's certificate: %v", err)
	}
	for _, n := range nodes.GetNodes() {
		lines = append(lines, fmt.Sprintf("node %s role=%v desired=%v membership=%v availability=%v raft=%d",
			n.GetId(), n.GetRole(), n.GetSpec().GetDesiredRole(), n.GetSpec().GetMembership(), n.GetSpec().GetAvailability(),
			n.GetManagerStatus().GetRaftId()))
	}
	services, err := c.ListServices(ctx, &api.ListServicesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range services.GetServices() {
		lines = append(lines, "service "+s.GetId()+" "+s.GetSpec().GetAnnotations().GetName())
	}
	networks, err := c.ListNetworks(ctx, &api.ListNetworksRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range networks.GetNetworks() {
		lines = append(lines, "network "+n.GetId()+" "+n.GetSpec().GetAnnotations().GetName())
	}
	secrets, err := c.ListSecrets(ctx, &api.ListSecretsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range secrets.GetSecrets() {
		lines = append(lines, "secret "+s.GetId()+" "+s.GetSpec().GetAnnotations().GetName())
	}
	configs, err := c.ListConfigs(ctx, &api.ListConfigsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range configs.GetConfigs() {
		lines = append(lines, "config "+s.GetId()+" "+s.GetSpec().GetAnnotations().GetName())
	}
	clusters, err := c.ListClusters(ctx, &api.ListClustersRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, cl := range clusters.GetClusters() {
		spec, err := proto.MarshalOptions{Deterministic: true}.Marshal(cl.GetSpec())
		if err != nil {
			t.Fatal(err)
		}
		tokens := cl.GetRootCa().GetJoinTokens()
		// Tokens are compared by digest of their text, never printed.
		lines = append(lines, fmt.Sprintf("cluster %s spec=%x tokens=%x root=%s", cl.GetId(), spec,
			ca.DigestOf([]byte(tokens.GetWorker()+" "+tokens.GetManager())), cl.GetRootCa().GetCaCertHash()))
	}
	slices.Sort(lines)
	return strings.Join(lines, "\n")
}

func loadSecurity(t *testing.T, p *proc) *ca.SecurityConfig {
	t.Helper()
	sec, err := ca.NewKeyReadWriter(p.dir).Load()
	if err != nil {
		t.Fatalf("%s's certificates: %v", p.name, err)
	}
	return sec
}

// clientTLS is a client configuration that verifies the manager against
// root and presents cert (none when nil), whatever cert is: unlike
// ca.ClientTLSConfig it accepts certificates swarmd would never make.
func clientTLS(t *testing.T, cert *tls.Certificate, root ca.RootCA) *tls.Config {
	t.Helper()
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: root.Pool(), ServerName: ca.ManagerServerName}
	if cert != nil {
		c := *cert
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &c, nil }
	}
	return cfg
}

func dialTLS(t *testing.T, addr string, cfg *tls.Config) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

// tlsExchange completes a TLS handshake with the server and reads from it
// until the server has processed the client certificate: with TLS 1.3 the
// server's verdict on it arrives after the client's side of the handshake,
// as an alert on the first read. A nil error means the server kept the
// connection (its first HTTP/2 frame arrives, or nothing before the
// deadline).
func tlsExchange(t *testing.T, addr string, cfg *tls.Config) error {
	t.Helper()
	raw, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	cfg = cfg.Clone()
	cfg.NextProtos = []string{"h2"} // gRPC servers drop connections without it
	conn := tls.Client(raw, cfg)
	if err := conn.SetDeadline(time.Now().Add(2 * time.Second)); err != nil {
		t.Fatal(err)
	}
	if err := conn.Handshake(); err != nil {
		return err
	}
	_, err = conn.Read(make([]byte, 1))
	var ne net.Error
	if err == nil || (errors.As(err, &ne) && ne.Timeout()) {
		return nil
	}
	return err
}

// writeAndReadUntilClosed writes data on a new TCP connection and reads
// until the server closes it; it fails if the server keeps it open.
func writeAndReadUntilClosed(addr string, data []byte) ([]byte, error) {
	conn, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(15 * time.Second)); err != nil {
		return nil, err
	}
	if _, err := conn.Write(data); err != nil {
		return nil, fmt.Errorf("write: %w", err)
	}
	got, err := io.ReadAll(conn)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return got, fmt.Errorf("the server kept the connection open (read %q)", got)
	}
	// A reset also closes the connection.
	return got, nil
}

// rootKeyFromStateDir returns the swarm's root CA certificate and key as a
// manager keeps them: the certificate in certificates/swarm-root-ca.crt, the
// key only in the cluster object inside the raft log, whose records are
// sealed with the key in certificates/raft-dek ("SWE1" | 12-byte nonce |
// AES-256-GCM ciphertext, "SWE1" as additional data).
func rootKeyFromStateDir(t *testing.T, stateDir string) (*x509.Certificate, crypto.Signer) {
	t.Helper()
	certPEM, err := os.ReadFile(filepath.Join(stateDir, ca.CertificatesDir, ca.RootCACertFilename))
	if err != nil {
		t.Fatal(err)
	}
	dekPEM, err := os.ReadFile(filepath.Join(stateDir, ca.CertificatesDir, "raft-dek"))
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(dekPEM)
	if blk == nil || len(blk.Headers) != 0 {
		t.Fatal("certificates/raft-dek is not an unsealed PEM block")
	}
	block, err := aes.NewCipher(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		t.Fatal(err)
	}
	open := func(data []byte) []byte {
		const magic = "SWE1"
		if !bytes.HasPrefix(data, []byte(magic)) || len(data) < len(magic)+aead.NonceSize() {
			return data
		}
		nonce := data[len(magic) : len(magic)+aead.NonceSize()]
		plain, err := aead.Open(nil, nonce, data[len(magic)+aead.NonceSize():], []byte(magic))
		if err != nil {
			t.Fatalf("open a raft record: %v", err)
		}
		return plain
	}

	var records [][]byte
	raftDir := filepath.Join(stateDir, "raft")
	if sn, err := snap.New(zap.NewNop(), filepath.Join(raftDir, "snap")).Load(); err == nil {
		records = append(records, open(sn.GetData()))
	}
	// swarmd keeps writing the log: a read that meets a record being
	// written is tried again.
	var ents []*raftpb.Entry
	var readErr error
	eventually(t, 10*time.Second, "a complete read of the raft log", func() bool {
		ents, readErr = readRaftLog(filepath.Join(raftDir, "wal"))
		if readErr != nil {
			t.Logf("read the raft log: %v", readErr)
		}
		return readErr == nil
	})
	for _, e := range ents {
		records = append(records, open(e.GetData()))
	}
	for _, r := range records {
		for i := bytes.Index(r, []byte("-----BEGIN ")); i >= 0; {
			b, _ := pem.Decode(r[i:])
			if b != nil && strings.HasSuffix(b.Type, "PRIVATE KEY") {
				if root, err := ca.NewRootCA(certPEM, pem.EncodeToMemory(b)); err == nil {
					key, err := parseKey(b)
					if err != nil {
						t.Fatal(err)
					}
					return root.Certificate(), key
				}
			}
			next := bytes.Index(r[i+1:], []byte("-----BEGIN "))
			if next < 0 {
				break
			}
			i += 1 + next
		}
	}
	t.Fatalf("no key of the root CA in %s", raftDir)
	return nil, nil
}

// readRaftLog reads every entry of the raft log in dir, from its start.
func readRaftLog(dir string) ([]*raftpb.Entry, error) {
	w, err := wal.OpenForRead(zap.NewNop(), dir, &walpb.Snapshot{})
	if err != nil {
		return nil, fmt.Errorf("open the raft log: %w", err)
	}
	defer w.Close()
	_, _, ents, err := w.ReadAll()
	if err != nil {
		return nil, fmt.Errorf("read the raft log: %w", err)
	}
	return ents, nil
}

func parseKey(b *pem.Block) (crypto.Signer, error) {
	var key any
	var err error
	switch b.Type {
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(b.Bytes)
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(b.Bytes)
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(b.Bytes)
	default:
		return nil, fmt.Errorf("unsupported key block %q", b.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("parse the root key: %w", err)
	}
	s, ok := key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("root key of type %T", key)
	}
	return s, nil
}

func newSelfSignedCA(t *testing.T) (*x509.Certificate, crypto.Signer) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: ca.RootCN},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert, key
}

// signCert makes a node certificate CN=nodeID, OU=role, O=org valid from
// notBefore to notAfter, signed by issuer.
func signCert(t *testing.T, issuer *x509.Certificate, issuerKey crypto.Signer, nodeID string, role ca.Role, org string, notBefore, notAfter time.Time) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 64))
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: nodeID, OrganizationalUnit: []string{string(role)}, Organization: []string{org}},
		DNSNames:     []string{string(role), nodeID},
		NotBefore:    notBefore,
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, issuer, &key.PublicKey, issuerKey)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
}

// signedByWorker makes a manager certificate signed with a worker's key and
// presents it with the worker's certificate as its intermediate: a node
// certificate is no CA, so this chain must not verify.
func signedByWorker(t *testing.T, wrk *ca.SecurityConfig, nodeID, org string, now time.Time) tls.Certificate {
	t.Helper()
	key, ok := wrk.TLSCertificate().PrivateKey.(crypto.Signer)
	if !ok {
		t.Fatalf("worker key of type %T", wrk.TLSCertificate().PrivateKey)
	}
	c := signCert(t, wrk.Certificate(), key, nodeID, ca.RoleManager, org, now.Add(-time.Hour), now.Add(time.Hour))
	c.Certificate = append(c.Certificate, wrk.Certificate().Raw)
	return c
}

func parseLeaf(certPEM []byte) (*x509.Certificate, error) {
	b, _ := pem.Decode(certPEM)
	if b == nil {
		return nil, errors.New("no PEM certificate")
	}
	return x509.ParseCertificate(b.Bytes)
}

func randomBytes(t *testing.T, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}
