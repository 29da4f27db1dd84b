package ca

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"log/slog"
	"math/big"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/openswarm/swarmd/api"
	"github.com/openswarm/swarmd/manager/state/store"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/protobuf/types/known/durationpb"
)

const testOrg = "clusterid0000000000000000"

func newRoot(t testing.TB) RootCA {
	t.Helper()
	r, err := CreateRootCA("")
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// nodePair is a node certificate and key issued by a test root.
type nodePair struct {
	certPEM, keyPEM []byte
	tls             tls.Certificate
	leaf            *x509.Certificate
}

func issueAt(t testing.TB, root RootCA, nodeID string, role api.NodeRole, org string, expiry time.Duration, now time.Time) nodePair {
	t.Helper()
	csrPEM, keyPEM, err := GenerateNodeKeyAndCSR()
	if err != nil {
		t.Fatal(err)
	}
	certPEM, err := root.issueNodeCertificate(csrPEM, nodeID, role, org, expiry, now)
	if err != nil {
		t.Fatal(err)
	}
	c, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(c.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	c.Leaf = leaf
	return nodePair{certPEM: certPEM, keyPEM: keyPEM, tls: c, leaf: leaf}
}

func issue(t testing.TB, root RootCA, nodeID string, role api.NodeRole, org string) nodePair {
	t.Helper()
	return issueAt(t, root, nodeID, role, org, 0, time.Now())
}

const (
	worker  = api.NodeRole_NODE_ROLE_WORKER
	manager = api.NodeRole_NODE_ROLE_MANAGER
)

// serverCert makes a TLS server certificate for 127.0.0.1 signed by root
// (for the external CA's HTTPS endpoint).
func serverCert(t testing.TB, root RootCA) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(42),
		Subject:      pkix.Name{CommonName: "127.0.0.1"},
		NotBefore:    time.Now().Add(-time.Minute),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, root.Certificate(), &key.PublicKey, root.signer)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})
}

// lockedBuffer collects log output written from several goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// testCluster is a manager's CA server on a real gRPC server over TLS on
// loopback, with the authorization interceptors, backed by a local store.
type testCluster struct {
	root    RootCA
	store   *store.MemoryStore
	server  *Server
	addr    string
	mgr     nodePair // the serving manager's certificate
	logs    *lockedBuffer
	cluster *api.Cluster
}

type clusterOpts struct {
	expiry      time.Duration
	externalCAs []*api.ExternalCA
	noKey       bool
	root        *RootCA
	extraRegs   func(*grpc.Server)
}

func startCluster(t *testing.T, o clusterOpts) *testCluster {
	t.Helper()
	root := newRoot(t)
	if o.root != nil {
		root = *o.root
	}
	apiRoot, err := NewClusterRootCA(root)
	if err != nil {
		t.Fatal(err)
	}
	if o.noKey {
		apiRoot.CaKey = nil
	}
	cluster := &api.Cluster{
		Id:     testOrg,
		Spec:   &api.ClusterSpec{Annotations: &api.Annotations{Name: "default"}, CaConfig: &api.CAConfig{ExternalCas: o.externalCAs}},
		RootCa: apiRoot,
		UnlockKeys: []*api.EncryptionKey{
			{Subsystem: string(RoleManager), Key: []byte("unlock-key")},
		},
	}
	if o.expiry != 0 {
		cluster.Spec.CaConfig.NodeCertExpiry = durationpb.New(o.expiry)
	}
	st := store.NewMemoryStore(nil)
	if err := st.Update(context.Background(), func(tx store.Tx) error { return tx.Create(cluster) }); err != nil {
		t.Fatal(err)
	}
	logs := &lockedBuffer{}
	srv, err := NewServer(ServerConfig{
		Store:     st,
		ClusterID: testOrg,
		Logger:    slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	if err != nil {
		t.Fatal(err)
	}
	mgr := issue(t, root, "manager0", manager, testOrg)
	creds, err := ServerCredentials(mgr.tls, root)
	if err != nil {
		t.Fatal(err)
	}
	authz := NewAuthorizer(testOrg, MethodRoles())
	g := grpc.NewServer(append(authz.ServerOptions(), grpc.Creds(creds))...)
	srv.Register(g)
	if o.extraRegs != nil {
		o.extraRegs(g)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = g.Serve(lis)
	}()
	t.Cleanup(func() {
		g.Stop()
		<-served
		st.Close()
	})
	return &testCluster{root: root, store: st, server: srv, addr: lis.Addr().String(), mgr: mgr, logs: logs, cluster: cluster}
}

// dial connects to the cluster's manager with creds.
func dial(t *testing.T, addr string, creds credentials.TransportCredentials) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

// dialAs connects presenting cert (nil: none), verifying the manager
// against root.
func dialAs(t *testing.T, addr string, cert *tls.Certificate, root RootCA) *grpc.ClientConn {
	t.Helper()
	creds, err := ClientCredentials(cert, root, ManagerServerName)
	if err != nil {
		t.Fatal(err)
	}
	return dial(t, addr, creds)
}

func (c *testCluster) tokens(t *testing.T) *api.JoinTokens {
	t.Helper()
	var cl *api.Cluster
	c.store.View(func(tx store.ReadTx) { cl = store.GetCluster(tx, testOrg) })
	return cl.GetRootCa().GetJoinTokens()
}

func (c *testCluster) node(t *testing.T, id string) *api.Node {
	t.Helper()
	var n *api.Node
	c.store.View(func(tx store.ReadTx) { n = store.GetNode(tx, id) })
	return n
}

func testContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}
