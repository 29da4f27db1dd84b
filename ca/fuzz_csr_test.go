package ca

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"log/slog"
	"net"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/openswarm/swarmd/api"
	"github.com/openswarm/swarmd/manager/state/store"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// FuzzCSR feeds arbitrary certificate signing requests to the CA the way a
// joining node does (NodeCA.IssueNodeCertificate with a join token, no
// client certificate); with resign set, the fuzzed bytes are the content
// of a CSR that is then signed (see signedCSR). Invariants:
//
//   - nothing panics;
//   - a CSR that ParseCSR rejects is refused with InvalidArgument, creates
//     no node, and RootCA.IssueNodeCertificate refuses to sign it too;
//   - asking for the manager role with the worker token is refused;
//   - an accepted CSR yields a node and a certificate whose identity is the
//     one the CA decides (CN = the new node ID, OU = the token's role, O =
//     the cluster, DNS names = role and node ID, the CA's validity period),
//     never anything the CSR asks for (subject, names, CA basic
//     constraints); the certificate carries the CSR's key, which is of a
//     supported type and size and signed the CSR, and chains to the root;
//   - a refusal never echoes the join token.
func FuzzCSR(f *testing.F) {
	for _, s := range csrSeeds(f) {
		f.Add(s, false, false, false)
		f.Add(s, true, true, false)
		if b, _ := pem.Decode(s); b != nil {
			f.Add(b.Bytes, false, true, true) // its content, signed again
		}
	}
	valid, _, err := GenerateNodeKeyAndCSR()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(valid, true, false, false) // manager role asked with the worker token
	subject, err := asn1.Marshal(pkix.Name{CommonName: "evil", OrganizationalUnit: []string{string(RoleManager)}, Organization: []string{"x"}}.ToRDNSequence())
	if err != nil {
		f.Fatal(err)
	}
	f.Add(subject, false, false, true) // a raw subject, signed
	// The key that signs CSRs made from fuzzed content (resign).
	resignKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		f.Fatal(err)
	}

	root, err := CreateRootCA("")
	if err != nil {
		f.Fatal(err)
	}
	apiRoot, err := NewClusterRootCA(root)
	if err != nil {
		f.Fatal(err)
	}
	st := store.NewMemoryStore(nil)
	f.Cleanup(st.Close)
	cluster := &api.Cluster{
		Id:     testOrg,
		Spec:   &api.ClusterSpec{Annotations: &api.Annotations{Name: "default"}, CaConfig: &api.CAConfig{}},
		RootCa: apiRoot,
	}
	if err := st.Update(context.Background(), func(tx store.Tx) error { return tx.Create(cluster) }); err != nil {
		f.Fatal(err)
	}
	srv, err := NewServer(ServerConfig{Store: st, ClusterID: testOrg, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		f.Fatal(err)
	}
	// A fixed clock: the certificate's validity period is exactly known.
	now := time.Now().Truncate(time.Second)
	srv.now = func() time.Time { return now }
	tokens := apiRoot.GetJoinTokens()

	countNodes := func(t *testing.T) int {
		var n int
		var err error
		st.View(func(tx store.ReadTx) { n, err = store.Count(tx, store.KindNode, store.All) })
		if err != nil {
			t.Fatal(err)
		}
		return n
	}

	f.Fuzz(func(t *testing.T, csrPEM []byte, askManager, managerToken, resign bool) {
		if resign {
			csrPEM = signedCSR(resignKey, csrPEM)
		}
		token, role := tokens.GetWorker(), api.NodeRole_NODE_ROLE_WORKER
		if managerToken {
			token, role = tokens.GetManager(), api.NodeRole_NODE_ROLE_MANAGER
		}
		asked := api.NodeRole_NODE_ROLE_WORKER
		if askManager {
			asked = api.NodeRole_NODE_ROLE_MANAGER
		}
		before := countNodes(t)
		csr, parseErr := ParseCSR(csrPEM)
		resp, err := srv.IssueNodeCertificate(context.Background(), &api.IssueNodeCertificateRequest{Csr: csrPEM, Token: token, Role: asked})
		if err != nil && strings.Contains(err.Error(), token) {
			t.Fatalf("error reveals the join token: %v", err)
		}
		if parseErr != nil {
			if status.Code(err) != codes.InvalidArgument {
				t.Fatalf("CSR rejected by ParseCSR (%v): IssueNodeCertificate = %v, want InvalidArgument", parseErr, err)
			}
			if n := countNodes(t) - before; n != 0 {
				t.Fatalf("%d nodes created for a rejected CSR", n)
			}
			if _, err := root.issueNodeCertificate(csrPEM, "fuzznode", role, testOrg, 0, now); err == nil {
				t.Fatalf("the root signed a CSR that ParseCSR rejects (%v)", parseErr)
			}
			return
		}
		if askManager && !managerToken {
			if status.Code(err) != codes.PermissionDenied {
				t.Fatalf("manager role with the worker token: %v, want PermissionDenied", err)
			}
			if n := countNodes(t) - before; n != 0 {
				t.Fatalf("%d nodes created for a refused join", n)
			}
			return
		}
		if err != nil {
			// Refusing a CSR is always allowed; it must leave nothing behind.
			if n := countNodes(t) - before; n != 0 {
				t.Fatalf("%d nodes created for a refused CSR: %v", n, err)
			}
			return
		}
		var node *api.Node
		st.View(func(tx store.ReadTx) { node = store.GetNode(tx, resp.GetNodeId()) })
		if node == nil {
			t.Fatalf("accepted CSR: node %q not in the store", resp.GetNodeId())
		}
		defer func() {
			if err := st.Update(context.Background(), func(tx store.Tx) error { return store.DeleteNode(tx, node.GetId()) }); err != nil {
				t.Error(err)
			}
		}()
		checkIssuedIdentity(t, root, csr, node, resp.GetNodeId(), role, now)
	})
}

// signedCSR turns fuzzed bytes into a CSR with a valid signature, so that
// fuzzed content reaches the CA beyond the signature check: data parsed as
// a DER CSR gives its subject, names and extensions; other data is used as
// the raw DER subject. When Go refuses to build a CSR from it, data is
// returned as it is.
func signedCSR(key crypto.Signer, data []byte) []byte {
	tmpl := &x509.CertificateRequest{}
	if req, err := x509.ParseCertificateRequest(data); err == nil {
		tmpl.RawSubject = req.RawSubject
		tmpl.DNSNames = req.DNSNames
		tmpl.EmailAddresses = req.EmailAddresses
		tmpl.IPAddresses = req.IPAddresses
		tmpl.URIs = req.URIs
		tmpl.ExtraExtensions = req.Extensions
	} else {
		tmpl.RawSubject = data
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		return data
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
}

// checkIssuedIdentity checks the node and certificate the CA made for an
// accepted join against what the CA decided.
func checkIssuedIdentity(t *testing.T, root RootCA, csr *x509.CertificateRequest, node *api.Node, nodeID string, role api.NodeRole, now time.Time) {
	t.Helper()
	wantRole, err := RoleOf(role)
	if err != nil {
		t.Fatal(err)
	}
	if nodeID == "" || node.GetRole() != role || node.GetSpec().GetDesiredRole() != role || node.GetCertificate().GetRole() != role {
		t.Fatalf("node %q has role %v (desired %v, certificate %v), want %v", nodeID,
			node.GetRole(), node.GetSpec().GetDesiredRole(), node.GetCertificate().GetRole(), role)
	}
	leaf, rest, err := parseCertificatePEM(node.GetCertificate().GetCertificate())
	if err != nil || len(rest) != 0 {
		t.Fatalf("issued certificate: %v (%d extra certificates)", err, len(rest))
	}
	if _, err := root.verify(leaf, nil, now); err != nil {
		t.Fatalf("issued certificate does not verify against the root: %v", err)
	}
	got, err := PeerOf(leaf)
	if err != nil {
		t.Fatal(err)
	}
	if want := (Peer{NodeID: nodeID, Role: wantRole, Org: testOrg}); got != want {
		t.Fatalf("issued certificate is for %+v, want %+v (CSR asked for %q)", got, want, csr.Subject.String())
	}
	s := leaf.Subject
	if len(s.Country)+len(s.Province)+len(s.Locality)+len(s.StreetAddress)+len(s.PostalCode) != 0 || s.SerialNumber != "" {
		t.Fatalf("issued certificate has subject fields the CA did not decide: %s", s.String())
	}
	names := slices.Clone(leaf.DNSNames)
	slices.Sort(names)
	wantNames := []string{string(wantRole), nodeID}
	slices.Sort(wantNames)
	if !slices.Equal(names, wantNames) {
		t.Fatalf("issued certificate names %v, want %v", leaf.DNSNames, wantNames)
	}
	if len(leaf.IPAddresses)+len(leaf.EmailAddresses)+len(leaf.URIs) != 0 {
		t.Fatalf("issued certificate carries names from the CSR: %v %v %v", leaf.IPAddresses, leaf.EmailAddresses, leaf.URIs)
	}
	if leaf.IsCA || leaf.KeyUsage&x509.KeyUsageCertSign != 0 {
		t.Fatal("issued certificate may sign certificates")
	}
	if !slices.Contains(leaf.ExtKeyUsage, x509.ExtKeyUsageClientAuth) || !slices.Contains(leaf.ExtKeyUsage, x509.ExtKeyUsageServerAuth) {
		t.Fatalf("issued certificate usages %v lack client or server authentication", leaf.ExtKeyUsage)
	}
	if err := csr.CheckSignature(); err != nil {
		t.Fatalf("accepted a CSR whose signature does not verify: %v", err)
	}
	switch k := csr.PublicKey.(type) {
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() && k.Curve != elliptic.P384() {
			t.Fatalf("accepted a CSR with curve %s", k.Curve.Params().Name)
		}
	case *rsa.PublicKey:
		if k.N.BitLen() < 2048 {
			t.Fatalf("accepted a CSR with a %d-bit RSA key", k.N.BitLen())
		}
	default:
		t.Fatalf("accepted a CSR with a %T key", csr.PublicKey)
	}
	if !publicKeysEqual(csr.PublicKey, leaf.PublicKey) {
		t.Fatal("issued certificate does not carry the CSR's key")
	}
	if wantAfter := now.Add(DefaultNodeCertExpiry); !leaf.NotAfter.Equal(wantAfter) {
		t.Fatalf("issued certificate valid until %s, want %s", leaf.NotAfter, wantAfter)
	}
	if leaf.NotBefore.After(now) || leaf.NotBefore.Before(now.Add(-maxBackdate)) {
		t.Fatalf("issued certificate valid from %s, want within %s before %s", leaf.NotBefore, maxBackdate, now)
	}
}

// csrSeeds returns valid and invalid CSRs: plain ones, ones asking for an
// identity, names and CA powers of their own, unsupported keys, a broken
// signature, and framing mistakes.
func csrSeeds(tb testing.TB) [][]byte {
	tb.Helper()
	csrPEM := func(typ string, tmpl *x509.CertificateRequest, key crypto.Signer) []byte {
		der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
		if err != nil {
			tb.Fatal(err)
		}
		return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
	}
	ecKey := func(c elliptic.Curve) crypto.Signer {
		k, err := ecdsa.GenerateKey(c, rand.Reader)
		if err != nil {
			tb.Fatal(err)
		}
		return k
	}
	rsaKey := func(bits int) crypto.Signer {
		k, err := rsa.GenerateKey(rand.Reader, bits)
		if err != nil {
			tb.Fatal(err)
		}
		return k
	}
	_, edKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	caTrue, err := asn1.Marshal(struct {
		IsCA bool `asn1:"optional"`
	}{true})
	if err != nil {
		tb.Fatal(err)
	}
	greedy := &x509.CertificateRequest{
		Subject: pkix.Name{
			CommonName:         "evil-node",
			OrganizationalUnit: []string{string(RoleManager), string(RoleWorker)},
			Organization:       []string{"other-cluster"},
			Country:            []string{"XX"},
		},
		DNSNames:       []string{string(RoleManager), "evil.example"},
		IPAddresses:    []net.IP{net.IPv4(127, 0, 0, 1)},
		EmailAddresses: []string{"root@evil.example"},
		URIs:           []*url.URL{{Scheme: "spiffe", Host: "evil.example"}},
		ExtraExtensions: []pkix.Extension{
			{Id: asn1.ObjectIdentifier{2, 5, 29, 19}, Critical: true, Value: caTrue}, // basic constraints CA:TRUE
		},
	}
	plain, _, err := GenerateNodeKeyAndCSR()
	if err != nil {
		tb.Fatal(err)
	}
	block, _ := pem.Decode(plain)
	badSig := slices.Clone(block.Bytes)
	badSig[len(badSig)-1] ^= 0xff

	return [][]byte{
		plain,
		csrPEM("CERTIFICATE REQUEST", greedy, ecKey(elliptic.P384())),
		csrPEM("NEW CERTIFICATE REQUEST", &x509.CertificateRequest{Subject: pkix.Name{CommonName: "x"}}, ecKey(elliptic.P256())),
		csrPEM("CERTIFICATE REQUEST", greedy, rsaKey(2048)),
		csrPEM("CERTIFICATE REQUEST", &x509.CertificateRequest{}, rsaKey(1024)),
		csrPEM("CERTIFICATE REQUEST", &x509.CertificateRequest{}, ecKey(elliptic.P224())),
		csrPEM("CERTIFICATE REQUEST", &x509.CertificateRequest{}, edKey),
		csrPEM("CERTIFICATE", &x509.CertificateRequest{}, ecKey(elliptic.P256())),
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: badSig}),
		append(slices.Clone(plain), plain...),
		block.Bytes,
		plain[:len(plain)/2],
		nil,
	}
}
