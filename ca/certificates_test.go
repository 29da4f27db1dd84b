package ca

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/openswarm/swarmd/api"
)

func TestIssueNodeCertificate(t *testing.T) {
	root := newRoot(t)
	now := time.Now()
	for _, tc := range []struct {
		name     string
		role     api.NodeRole
		expiry   time.Duration
		wantOU   string
		wantLife time.Duration
	}{
		{"worker default expiry", worker, 0, "swarm-worker", DefaultNodeCertExpiry},
		{"manager default expiry", manager, 0, "swarm-manager", DefaultNodeCertExpiry},
		{"worker one hour", worker, time.Hour, "swarm-worker", time.Hour},
		{"manager one minute", manager, time.Minute, "swarm-manager", time.Minute},
	} {
		t.Run(tc.name, func(t *testing.T) {
			csrPEM, _, err := GenerateNodeKeyAndCSR()
			if err != nil {
				t.Fatal(err)
			}
			certPEM, err := root.IssueNodeCertificate(context.Background(), csrPEM, "node1", tc.role, testOrg, tc.expiry)
			if err != nil {
				t.Fatal(err)
			}
			leaf, _, err := parseCertificatePEM(certPEM)
			if err != nil {
				t.Fatal(err)
			}
			s := leaf.Subject
			if s.CommonName != "node1" || !slices.Equal(s.OrganizationalUnit, []string{tc.wantOU}) || !slices.Equal(s.Organization, []string{testOrg}) {
				t.Errorf("subject = %v", s)
			}
			if !slices.Equal(leaf.DNSNames, []string{tc.wantOU, "node1"}) {
				t.Errorf("DNS names = %v", leaf.DNSNames)
			}
			for _, eku := range []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth} {
				if !slices.Contains(leaf.ExtKeyUsage, eku) {
					t.Errorf("missing extended key usage %v", eku)
				}
			}
			if leaf.IsCA {
				t.Error("node certificate is a CA")
			}
			if d := leaf.NotAfter.Sub(now); d < tc.wantLife-time.Minute || d > tc.wantLife+time.Minute {
				t.Errorf("valid for %s more, want %s", d, tc.wantLife)
			}
			if !leaf.NotBefore.Before(now) {
				t.Errorf("NotBefore %s is not backdated", leaf.NotBefore)
			}
			if _, err := root.verify(leaf, nil, now); err != nil {
				t.Errorf("does not verify against the root: %v", err)
			}
			p, err := PeerOf(leaf)
			if err != nil {
				t.Fatal(err)
			}
			if want, _ := RoleOf(tc.role); p != (Peer{NodeID: "node1", Role: want, Org: testOrg}) {
				t.Errorf("PeerOf = %+v", p)
			}
		})
	}
}

// A CSR asking for another identity, other names and a CA certificate gets
// none of it: only its key is used.
func TestIssueIgnoresCSRSubject(t *testing.T) {
	root := newRoot(t)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	bc, err := asn1.Marshal(struct {
		IsCA bool `asn1:"optional"`
	}{true})
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject: pkix.Name{
			CommonName:         "evil-node",
			Organization:       []string{"evil-cluster"},
			OrganizationalUnit: []string{"swarm-manager"},
			Country:            []string{"XX"},
		},
		DNSNames:        []string{"evil.example", "swarm-manager"},
		IPAddresses:     []net.IP{net.ParseIP("10.6.6.6")},
		EmailAddresses:  []string{"evil@example.com"},
		ExtraExtensions: []pkix.Extension{{Id: asn1.ObjectIdentifier{2, 5, 29, 19}, Critical: true, Value: bc}},
	}, key)
	if err != nil {
		t.Fatal(err)
	}
	csrPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
	certPEM, err := root.IssueNodeCertificate(context.Background(), csrPEM, "node1", worker, testOrg, 0)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _, err := parseCertificatePEM(certPEM)
	if err != nil {
		t.Fatal(err)
	}
	s := leaf.Subject
	if s.CommonName != "node1" || !slices.Equal(s.OrganizationalUnit, []string{"swarm-worker"}) ||
		!slices.Equal(s.Organization, []string{testOrg}) || len(s.Country) != 0 {
		t.Errorf("subject = %v, want CN=node1 OU=swarm-worker O=%s only", s, testOrg)
	}
	if !slices.Equal(leaf.DNSNames, []string{"swarm-worker", "node1"}) || len(leaf.IPAddresses) != 0 || len(leaf.EmailAddresses) != 0 {
		t.Errorf("names = %v %v %v", leaf.DNSNames, leaf.IPAddresses, leaf.EmailAddresses)
	}
	if leaf.IsCA {
		t.Error("CSR obtained a CA certificate")
	}
	if !leaf.PublicKey.(*ecdsa.PublicKey).Equal(&key.PublicKey) {
		t.Error("certificate does not carry the CSR's key")
	}
}

func TestIssueNodeCertificateErrors(t *testing.T) {
	root := newRoot(t)
	csrPEM, _, err := GenerateNodeKeyAndCSR()
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(csrPEM)
	block.Bytes[len(block.Bytes)-1] ^= 0xff // break the signature
	tampered := pem.EncodeToMemory(block)
	rsaKey, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	rsaDER, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, rsaKey)
	if err != nil {
		t.Fatal(err)
	}
	smallRSA := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: rsaDER})
	for _, tc := range []struct {
		name   string
		root   RootCA
		csr    []byte
		nodeID string
		role   api.NodeRole
		org    string
		expiry time.Duration
		want   string
	}{
		{"expiry below minimum", root, csrPEM, "n", worker, testOrg, 30 * time.Second, "shorter than the minimum of 1m0s"},
		{"negative expiry", root, csrPEM, "n", worker, testOrg, -time.Hour, "shorter than the minimum"},
		{"no CSR", root, nil, "n", worker, testOrg, 0, "no PEM data"},
		{"tampered CSR", root, tampered, "n", worker, testOrg, 0, "CSR: "},
		{"small RSA key", root, smallRSA, "n", worker, testOrg, 0, "too small"},
		{"no node ID", root, csrPEM, "", worker, testOrg, 0, "empty node ID"},
		{"no org", root, csrPEM, "n", worker, "", 0, "empty organization"},
		{"unknown role", root, csrPEM, "n", api.NodeRole(7), testOrg, 0, "unknown node role"},
		{"root without key", root.WithoutKey(), csrPEM, "n", worker, testOrg, 0, "external CA"},
		{"no root", RootCA{}, csrPEM, "n", worker, testOrg, 0, "no root CA"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tc.root.IssueNodeCertificate(context.Background(), tc.csr, tc.nodeID, tc.role, tc.org, tc.expiry)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tc.want)
			}
		})
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := root.IssueNodeCertificate(ctx, csrPEM, "n", worker, testOrg, 0); err == nil {
		t.Error("issued with a cancelled context")
	}
}

// A node certificate never outlives its root.
func TestIssueClipsToRootExpiry(t *testing.T) {
	root := newRoot(t)
	now := root.Certificate().NotAfter.Add(-time.Hour)
	p := issueAt(t, root, "n", worker, testOrg, DefaultNodeCertExpiry, now)
	if !p.leaf.NotAfter.Equal(root.Certificate().NotAfter) {
		t.Errorf("NotAfter %s, root's %s", p.leaf.NotAfter, root.Certificate().NotAfter)
	}
}

func TestGenerateNodeKeyAndCSR(t *testing.T) {
	csrPEM, keyPEM, err := GenerateNodeKeyAndCSR()
	if err != nil {
		t.Fatal(err)
	}
	csr, err := ParseCSR(csrPEM)
	if err != nil {
		t.Fatal(err)
	}
	k, ok := csr.PublicKey.(*ecdsa.PublicKey)
	if !ok || k.Curve != elliptic.P256() {
		t.Fatalf("CSR key %T, want ECDSA P-256", csr.PublicKey)
	}
	priv, err := parsePrivateKeyPEM(keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	if !publicKeysEqual(priv.Public(), csr.PublicKey) {
		t.Error("key and CSR do not match")
	}
	other, _, err := GenerateNodeKeyAndCSR()
	if err != nil {
		t.Fatal(err)
	}
	if string(other) == string(csrPEM) {
		t.Error("two CSRs are equal")
	}
}

func TestIssuedRole(t *testing.T) {
	for _, tc := range []struct {
		desired, current, want api.NodeRole
	}{
		{worker, worker, worker},
		{manager, worker, manager},  // promotion: at once
		{manager, manager, manager}, // manager
		{worker, manager, manager},  // demotion: only once Node.Role says worker
	} {
		n := &api.Node{Spec: &api.NodeSpec{DesiredRole: tc.desired}, Role: tc.current}
		if got := IssuedRole(n); got != tc.want {
			t.Errorf("desired %v current %v: got %v, want %v", tc.desired, tc.current, got, tc.want)
		}
	}
}

func TestPeerOf(t *testing.T) {
	for _, tc := range []struct {
		name string
		subj pkix.Name
		want string
	}{
		{"no CN", pkix.Name{OrganizationalUnit: []string{"swarm-worker"}, Organization: []string{"o"}}, "common name"},
		{"no OU", pkix.Name{CommonName: "n", Organization: []string{"o"}}, "organizational units"},
		{"two OUs", pkix.Name{CommonName: "n", OrganizationalUnit: []string{"swarm-worker", "swarm-manager"}, Organization: []string{"o"}}, "organizational units"},
		{"unknown role", pkix.Name{CommonName: "n", OrganizationalUnit: []string{"admin"}, Organization: []string{"o"}}, "unknown role"},
		{"no O", pkix.Name{CommonName: "n", OrganizationalUnit: []string{"swarm-worker"}}, "organizations"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := PeerOf(&x509.Certificate{Subject: tc.subj})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
}

func TestRoles(t *testing.T) {
	for _, r := range []api.NodeRole{worker, manager} {
		role, err := RoleOf(r)
		if err != nil {
			t.Fatal(err)
		}
		back, ok := role.NodeRole()
		if !ok || back != r {
			t.Errorf("%v -> %v -> %v", r, role, back)
		}
	}
	if _, ok := RoleAnyone.NodeRole(); ok {
		t.Error("RoleAnyone maps to a node role")
	}
	if _, err := RoleOf(api.NodeRole(9)); err == nil {
		t.Error("unknown node role accepted")
	}
}

func TestCheckNodeCertExpiry(t *testing.T) {
	for _, tc := range []struct {
		in, want time.Duration
		ok       bool
	}{
		{0, DefaultNodeCertExpiry, true},
		{time.Minute, time.Minute, true},
		{59 * time.Second, 0, false},
		{-time.Minute, 0, false},
		{24 * time.Hour, 24 * time.Hour, true},
	} {
		got, err := CheckNodeCertExpiry(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("CheckNodeCertExpiry(%s) = %s, %v", tc.in, got, err)
		}
	}
}
