package ca

import (
	"context"
	"errors"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/openswarm/swarmd/api"
	"github.com/openswarm/swarmd/manager/state/store"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

var nodeIDRE = regexp.MustCompile(`^[0-9a-z]{25}$`)

// Joining with each token over real gRPC: the TOFU bootstrap, the role the
// token grants, the node object the server creates.
func TestJoin(t *testing.T) {
	c := startCluster(t, clusterOpts{})
	tokens := c.tokens(t)
	for _, tc := range []struct {
		name     string
		token    string
		role     api.NodeRole
		wantRole Role
	}{
		{"worker token", tokens.Worker, worker, RoleWorker},
		{"manager token", tokens.Manager, worker, RoleManager},
		{"manager token asking for manager", tokens.Manager, manager, RoleManager},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := testContext(t)
			sec, err := Join(ctx, c.addr, tc.token, tc.role)
			if err != nil {
				t.Fatal(err)
			}
			p := sec.Peer()
			if p.Role != tc.wantRole || p.Org != testOrg || !nodeIDRE.MatchString(p.NodeID) {
				t.Fatalf("joined as %+v", p)
			}
			if sec.RootCA().Digest() != c.root.Digest() {
				t.Error("joined with another root")
			}
			n := c.node(t, p.NodeID)
			if n == nil {
				t.Fatal("no node object")
			}
			wantRole, _ := tc.wantRole.NodeRole()
			if n.GetRole() != wantRole || n.GetSpec().GetDesiredRole() != wantRole ||
				n.GetSpec().GetMembership() != api.NodeMembership_NODE_MEMBERSHIP_ACCEPTED {
				t.Errorf("node %v", n)
			}
			cert := n.GetCertificate()
			if cert.GetStatus() != api.Certificate_ISSUED || cert.GetCn() != p.NodeID || cert.GetRole() != wantRole ||
				string(cert.GetCertificate()) != string(sec.CertPEM()) {
				t.Errorf("node certificate %v", cert)
			}
			// The joined node's certificate works for node-to-manager calls.
			conn := dialAs(t, c.addr, sec.TLSCertificate(), sec.RootCA())
			if _, err := api.NewNodeCAClient(conn).NodeCertificateStatus(ctx, &api.NodeCertificateStatusRequest{NodeId: p.NodeID}); err != nil {
				t.Errorf("authenticated call: %v", err)
			}
		})
	}
	// Tokens and keys never reach the logs.
	logs := c.logs.String()
	if !strings.Contains(logs, "node joined") {
		t.Errorf("no join logged: %s", logs)
	}
	for _, secret := range []string{tokens.Worker, tokens.Manager, tokens.Worker[60:], tokens.Manager[60:], "PRIVATE KEY", "CERTIFICATE REQUEST"} {
		if strings.Contains(logs, secret) {
			t.Errorf("logs contain a secret: %s", logs)
		}
	}
}

func TestJoinRefused(t *testing.T) {
	c := startCluster(t, clusterOpts{})
	other := startCluster(t, clusterOpts{})
	tokens := c.tokens(t)
	wrongSecret := tokens.Worker[:len(tokens.Worker)-25] + strings.Repeat("0", 25)

	// Rotate the worker token away.
	oldWorker := tokens.Worker
	if err := c.store.Update(context.Background(), func(tx store.Tx) error {
		cl := store.GetCluster(tx, testOrg)
		if err := RotateJoinTokens(cl, true, false); err != nil {
			return err
		}
		return tx.Update(cl)
	}); err != nil {
		t.Fatal(err)
	}
	if c.tokens(t).Worker == oldWorker {
		t.Fatal("rotation did not change the worker token")
	}

	for _, tc := range []struct {
		name  string
		token string
		role  api.NodeRole
		code  codes.Code // of the raw RPC over a connection pinned to c's root
		want  string     // in the raw RPC's error
		join  string     // in Join's error
	}{
		{"worker token for a manager", c.tokens(t).Worker, manager, codes.PermissionDenied, msgNeedToken + " as a manager", msgNeedToken},
		{"wrong secret", wrongSecret, worker, codes.PermissionDenied, msgNeedToken, msgNeedToken},
		{"rotated-away token", oldWorker, worker, codes.PermissionDenied, msgNeedToken, msgNeedToken},
		{"token of another cluster", other.tokens(t).Worker, worker, codes.PermissionDenied, msgNeedToken, "remote CA does not match fingerprint"},
		{"malformed token", "SWMTKN-1-abc-def", worker, codes.InvalidArgument, "invalid join token", "invalid join token"},
		{"no token", "", worker, codes.InvalidArgument, msgNeedToken, "invalid join token"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := testContext(t)
			csr, _, err := GenerateNodeKeyAndCSR()
			if err != nil {
				t.Fatal(err)
			}
			conn := dialAs(t, c.addr, nil, c.root)
			_, err = api.NewNodeCAClient(conn).IssueNodeCertificate(ctx, &api.IssueNodeCertificateRequest{Role: tc.role, Csr: csr, Token: tc.token})
			if status.Code(err) != tc.code || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("RPC: err = %v, want %v %q", err, tc.code, tc.want)
			}
			if err != nil && len(tc.token) > 30 && strings.Contains(err.Error(), tc.token[40:]) {
				t.Errorf("error reveals the token: %v", err)
			}
			_, err = Join(ctx, c.addr, tc.token, tc.role)
			if err == nil || !strings.Contains(err.Error(), tc.join) {
				t.Errorf("Join: err = %v, want %q", err, tc.join)
			}
		})
	}
	var nodes []*api.Node
	c.store.View(func(tx store.ReadTx) { nodes, _ = store.FindNodes(tx, store.All) })
	if len(nodes) != 0 {
		t.Errorf("refused joins created %d nodes", len(nodes))
	}
}

// A manager whose root does not match the token is refused before the
// token is sent.
func TestJoinMismatchedRoot(t *testing.T) {
	c := startCluster(t, clusterOpts{})
	other := startCluster(t, clusterOpts{})
	_, err := Join(testContext(t), other.addr, c.tokens(t).Manager, worker)
	if !errors.Is(err, ErrRootCAMismatch) {
		t.Fatalf("err = %v, want ErrRootCAMismatch", err)
	}
	if !strings.Contains(err.Error(), "Expected: "+c.root.Digest().String()) {
		t.Errorf("err = %v", err)
	}
	if strings.Contains(other.logs.String(), "node joined") {
		t.Error("the other cluster admitted the node")
	}
}

// Renewal: a node with a valid certificate and no token gets a new one for
// its own ID and the role its node object says.
func TestRenew(t *testing.T) {
	c := startCluster(t, clusterOpts{})
	ctx := testContext(t)
	sec, err := Join(ctx, c.addr, c.tokens(t).Worker, worker)
	if err != nil {
		t.Fatal(err)
	}
	id := sec.NodeID()
	krw := NewKeyReadWriter(t.TempDir())
	if err := krw.Save(sec); err != nil {
		t.Fatal(err)
	}
	creds, err := sec.ClientCredentials(ManagerServerName)
	if err != nil {
		t.Fatal(err)
	}
	cc := dial(t, c.addr, creds)

	oldSerial := sec.Certificate().SerialNumber
	if err := Renew(ctx, cc, sec, krw); err != nil {
		t.Fatal(err)
	}
	if sec.NodeID() != id || sec.Peer().Role != RoleWorker || sec.Certificate().SerialNumber.Cmp(oldSerial) == 0 {
		t.Fatalf("after renewal: %+v", sec.Peer())
	}

	// Promote: the next renewal yields a manager certificate.
	if err := c.store.Update(ctx, func(tx store.Tx) error {
		n := store.GetNode(tx, id)
		n.Spec.DesiredRole = manager
		return tx.Update(n)
	}); err != nil {
		t.Fatal(err)
	}
	if err := Renew(ctx, cc, sec, krw); err != nil {
		t.Fatal(err)
	}
	if sec.Peer().Role != RoleManager {
		t.Fatalf("after promotion: %+v", sec.Peer())
	}
	if n := c.node(t, id); n.GetRole() != manager || n.GetCertificate().GetRole() != manager {
		t.Errorf("node after promotion: %v", n)
	}
	stored, err := krw.Load()
	if err != nil {
		t.Fatal(err)
	}
	if stored.Peer().Role != RoleManager {
		t.Error("the renewed certificate was not stored")
	}

	// Demotion waits for Node.Role (set once the node left raft).
	if err := c.store.Update(ctx, func(tx store.Tx) error {
		n := store.GetNode(tx, id)
		n.Spec.DesiredRole = worker
		return tx.Update(n)
	}); err != nil {
		t.Fatal(err)
	}
	if err := Renew(ctx, cc, sec, krw); err != nil {
		t.Fatal(err)
	}
	if sec.Peer().Role != RoleManager {
		t.Fatalf("demoted before leaving raft: %+v", sec.Peer())
	}
	if err := c.store.Update(ctx, func(tx store.Tx) error {
		n := store.GetNode(tx, id)
		n.Role = worker
		return tx.Update(n)
	}); err != nil {
		t.Fatal(err)
	}
	if err := Renew(ctx, cc, sec, krw); err != nil {
		t.Fatal(err)
	}
	if sec.Peer().Role != RoleWorker {
		t.Fatalf("after demotion: %+v", sec.Peer())
	}

	// A removed node cannot renew.
	if err := c.store.Update(ctx, func(tx store.Tx) error { return store.DeleteNode(tx, id) }); err != nil {
		t.Fatal(err)
	}
	err = Renew(ctx, cc, sec, krw)
	if status.Code(err) != codes.NotFound || !strings.Contains(err.Error(), "not a member") {
		t.Errorf("removed node renewed: %v", err)
	}
}

func TestNodeCertificateStatus(t *testing.T) {
	c := startCluster(t, clusterOpts{})
	ctx := testContext(t)
	sec, err := Join(ctx, c.addr, c.tokens(t).Worker, worker)
	if err != nil {
		t.Fatal(err)
	}
	cl := api.NewNodeCAClient(dialAs(t, c.addr, nil, c.root))
	resp, err := cl.NodeCertificateStatus(ctx, &api.NodeCertificateStatusRequest{NodeId: sec.NodeID()})
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetCertificate().GetStatus() != api.Certificate_ISSUED || string(resp.GetCertificate().GetCertificate()) != string(sec.CertPEM()) {
		t.Errorf("certificate %v", resp.GetCertificate())
	}
	rc := resp.GetRootCa()
	if string(rc.GetCaCert()) != string(c.root.CertPEM()) || rc.GetCaCertHash() != c.root.Digest().String() {
		t.Errorf("root CA %v", rc)
	}
	if len(rc.GetCaKey()) != 0 || rc.GetJoinTokens() != nil {
		t.Error("NodeCertificateStatus leaks the root key or the join tokens")
	}
	for _, tc := range []struct {
		id   string
		code codes.Code
	}{{"", codes.InvalidArgument}, {"nosuchnode", codes.NotFound}} {
		if _, err := cl.NodeCertificateStatus(ctx, &api.NodeCertificateStatusRequest{NodeId: tc.id}); status.Code(err) != tc.code {
			t.Errorf("NodeCertificateStatus(%q): %v, want %v", tc.id, err, tc.code)
		}
	}
}

func TestGetRootCACertificateAndUnlockKey(t *testing.T) {
	c := startCluster(t, clusterOpts{})
	ctx := testContext(t)
	// Unverified bootstrap connection: the root is public.
	resp, err := api.NewCAClient(dial(t, c.addr, BootstrapCredentials())).GetRootCACertificate(ctx, &api.GetRootCACertificateRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if string(resp.GetCertificate()) != string(c.root.CertPEM()) {
		t.Error("wrong root certificate")
	}
	w := issue(t, c.root, "w", worker, testOrg)
	m := issue(t, c.root, "m", manager, testOrg)
	if _, err := api.NewCAClient(dialAs(t, c.addr, &w.tls, c.root)).GetUnlockKey(ctx, &api.GetUnlockKeyRequest{}); status.Code(err) != codes.PermissionDenied {
		t.Errorf("worker GetUnlockKey: %v", err)
	}
	key, err := api.NewCAClient(dialAs(t, c.addr, &m.tls, c.root)).GetUnlockKey(ctx, &api.GetUnlockKeyRequest{})
	if err != nil || string(key.GetUnlockKey()) != "unlock-key" {
		t.Errorf("manager GetUnlockKey: %v %v", key, err)
	}
	// The handler checks on its own too (defence in depth).
	if _, err := c.server.GetUnlockKey(peerContext(w.leaf), &api.GetUnlockKeyRequest{}); status.Code(err) != codes.PermissionDenied {
		t.Errorf("handler let a worker have the unlock key: %v", err)
	}
}

func TestIssueNodeCertificateRequestErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts clusterOpts
		csr  func(t *testing.T) []byte
		code codes.Code
		want string
	}{
		{"no CSR", clusterOpts{}, func(*testing.T) []byte { return nil }, codes.InvalidArgument, "signing request is required"},
		{"garbage CSR", clusterOpts{}, func(*testing.T) []byte { return []byte("garbage") }, codes.InvalidArgument, "CSR"},
		{"expiry below minimum", clusterOpts{expiry: 30 * time.Second}, goodCSR, codes.FailedPrecondition, "minimum"},
		{"no key, no external CA", clusterOpts{noKey: true}, goodCSR, codes.FailedPrecondition, "neither a root CA key nor an external CA"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := startCluster(t, tc.opts)
			ctx := testContext(t)
			cl := api.NewNodeCAClient(dialAs(t, c.addr, nil, c.root))
			_, err := cl.IssueNodeCertificate(ctx, &api.IssueNodeCertificateRequest{Csr: tc.csr(t), Token: c.tokens(t).Worker})
			if status.Code(err) != tc.code || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %v %q", err, tc.code, tc.want)
			}
		})
	}
}

func goodCSR(t *testing.T) []byte {
	csr, _, err := GenerateNodeKeyAndCSR()
	if err != nil {
		t.Fatal(err)
	}
	return csr
}

// The cluster's node certificate expiry is honoured.
func TestServerCertExpiry(t *testing.T) {
	c := startCluster(t, clusterOpts{expiry: time.Minute})
	before := time.Now()
	sec, err := Join(testContext(t), c.addr, c.tokens(t).Worker, worker)
	if err != nil {
		t.Fatal(err)
	}
	if d := sec.Certificate().NotAfter.Sub(before); d < 55*time.Second || d > 65*time.Second {
		t.Errorf("certificate valid for %s more, want about a minute", d)
	}
}

func TestNewServerErrors(t *testing.T) {
	if _, err := NewServer(ServerConfig{ClusterID: "x"}); err == nil {
		t.Error("server without store")
	}
	if _, err := NewServer(ServerConfig{Store: store.NewMemoryStore(nil)}); err == nil {
		t.Error("server without cluster ID")
	}
	srv, err := NewServer(ServerConfig{Store: store.NewMemoryStore(nil), ClusterID: "x"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := srv.GetRootCACertificate(context.Background(), &api.GetRootCACertificateRequest{}); status.Code(err) != codes.Unavailable {
		t.Errorf("root of a missing cluster: %v", err)
	}
}
