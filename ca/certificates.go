package ca

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/cloudflare/cfssl/config"
	cfcsr "github.com/cloudflare/cfssl/csr"
	"github.com/cloudflare/cfssl/signer"
	"github.com/cloudflare/cfssl/signer/local"
	"github.com/openswarm/swarmd/api"
)

const (
	// DefaultNodeCertExpiry is the lifetime of a node certificate when the
	// cluster's CA config does not say otherwise.
	DefaultNodeCertExpiry = 90 * 24 * time.Hour
	// MinNodeCertExpiry is the shortest node certificate lifetime accepted.
	MinNodeCertExpiry = time.Minute
	// maxBackdate bounds how far before issuance a node certificate's
	// NotBefore is set, to tolerate clock skew between nodes.
	maxBackdate = 5 * time.Minute
)

// Role is what a node certificate's OU says a node is allowed to do, plus
// RoleAnyone for methods that need no certificate at all.
type Role string

const (
	// RoleManager is the OU of a manager's certificate.
	RoleManager Role = "swarm-manager"
	// RoleWorker is the OU of a worker's certificate.
	RoleWorker Role = "swarm-worker"
	// RoleAnyone, in an authorization table, admits every caller, including
	// one that presents no certificate (a node that is joining).
	RoleAnyone Role = "*"
)

// RoleOf maps a node role to the certificate role (OU).
func RoleOf(r api.NodeRole) (Role, error) {
	switch r {
	case api.NodeRole_NODE_ROLE_MANAGER:
		return RoleManager, nil
	case api.NodeRole_NODE_ROLE_WORKER:
		return RoleWorker, nil
	}
	return "", fmt.Errorf("unknown node role %v", r)
}

// NodeRole maps a certificate role to the node role; false for RoleAnyone
// and unknown roles.
func (r Role) NodeRole() (api.NodeRole, bool) {
	switch r {
	case RoleManager:
		return api.NodeRole_NODE_ROLE_MANAGER, true
	case RoleWorker:
		return api.NodeRole_NODE_ROLE_WORKER, true
	}
	return 0, false
}

// Peer is the identity a verified node certificate carries.
type Peer struct {
	NodeID string // CN
	Role   Role   // OU: RoleManager or RoleWorker
	Org    string // O: the cluster ID
}

// Authenticated reports whether p comes from a certificate (the zero Peer is
// an unauthenticated caller).
func (p Peer) Authenticated() bool { return p.NodeID != "" }

// PeerOf reads the identity of a node certificate: exactly one CN, one OU
// (a known role) and one O. It does not verify the certificate.
func PeerOf(cert *x509.Certificate) (Peer, error) {
	s := cert.Subject
	if s.CommonName == "" {
		return Peer{}, errors.New("certificate has no common name (node ID)")
	}
	if len(s.OrganizationalUnit) != 1 {
		return Peer{}, fmt.Errorf("certificate has %d organizational units, want 1 (the role)", len(s.OrganizationalUnit))
	}
	role := Role(s.OrganizationalUnit[0])
	if _, ok := role.NodeRole(); !ok {
		return Peer{}, fmt.Errorf("certificate has unknown role %q", s.OrganizationalUnit[0])
	}
	if len(s.Organization) != 1 || s.Organization[0] == "" {
		return Peer{}, fmt.Errorf("certificate has %d organizations, want 1 (the cluster ID)", len(s.Organization))
	}
	return Peer{NodeID: s.CommonName, Role: role, Org: s.Organization[0]}, nil
}

// GenerateNodeKeyAndCSR creates an ECDSA P-256 key and a certificate signing
// request for it. The CSR carries no subject: the CA decides it. keyPEM is
// secret.
func GenerateNodeKeyAndCSR() (csrPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generate node key: %w", err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	if err != nil {
		return nil, nil, fmt.Errorf("create CSR: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, fmt.Errorf("encode node key: %w", err)
	}
	csrPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
	keyPEM = pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
	return csrPEM, keyPEM, nil
}

// ParseCSR parses and checks a PEM certificate signing request: its
// signature must verify and its key must be ECDSA (P-256 or P-384) or RSA
// of at least 2048 bits.
func ParseCSR(csrPEM []byte) (*x509.CertificateRequest, error) {
	block, rest := pem.Decode(csrPEM)
	if block == nil {
		return nil, errors.New("CSR: no PEM data")
	}
	if block.Type != "CERTIFICATE REQUEST" && block.Type != "NEW CERTIFICATE REQUEST" {
		return nil, fmt.Errorf("CSR: PEM block is %q, want CERTIFICATE REQUEST", block.Type)
	}
	if len(bytes.TrimSpace(rest)) > 0 {
		return nil, errors.New("CSR: more than one PEM block")
	}
	req, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("CSR: %w", err)
	}
	if err := req.CheckSignature(); err != nil {
		return nil, fmt.Errorf("CSR: bad signature: %w", err)
	}
	switch k := req.PublicKey.(type) {
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() && k.Curve != elliptic.P384() {
			return nil, fmt.Errorf("CSR: unsupported curve %s", k.Curve.Params().Name)
		}
	case *rsa.PublicKey:
		if k.N.BitLen() < 2048 {
			return nil, fmt.Errorf("CSR: RSA key of %d bits is too small", k.N.BitLen())
		}
	default:
		return nil, fmt.Errorf("CSR: unsupported key type %T", req.PublicKey)
	}
	return req, nil
}

// CheckNodeCertExpiry validates a configured node certificate lifetime and
// returns the one to use: DefaultNodeCertExpiry for 0.
func CheckNodeCertExpiry(d time.Duration) (time.Duration, error) {
	if d == 0 {
		return DefaultNodeCertExpiry, nil
	}
	if d < MinNodeCertExpiry {
		return 0, fmt.Errorf("node certificate expiry %s is shorter than the minimum of %s", d, MinNodeCertExpiry)
	}
	return d, nil
}

// nodeSubject is what a node certificate must say.
type nodeSubject struct {
	nodeID string
	role   Role
	org    string
}

func newNodeSubject(nodeID string, role api.NodeRole, org string) (nodeSubject, error) {
	r, err := RoleOf(role)
	if err != nil {
		return nodeSubject{}, err
	}
	if nodeID == "" {
		return nodeSubject{}, errors.New("empty node ID")
	}
	if org == "" {
		return nodeSubject{}, errors.New("empty organization (cluster ID)")
	}
	return nodeSubject{nodeID: nodeID, role: r, org: org}, nil
}

// signRequest is the cfssl request for a node certificate: the subject and
// the DNS names (the role, so clients can check they reach a manager, and
// the node ID) come from us, never from the CSR.
func (n nodeSubject) signRequest(csrPEM []byte) signer.SignRequest {
	return signer.SignRequest{
		Hosts:   []string{string(n.role), n.nodeID},
		Request: string(csrPEM),
		Subject: &signer.Subject{
			CN:    n.nodeID,
			Names: []cfcsr.Name{{O: n.org, OU: string(n.role)}},
		},
	}
}

// IssueNodeCertificate signs csrPEM with the root's key: CN = nodeID, OU =
// swarm-manager or swarm-worker, O = org (the cluster ID), client and server
// authentication, valid for expiry (DefaultNodeCertExpiry when 0, at least
// MinNodeCertExpiry, never beyond the root's own expiry). Only the CSR's
// public key is used. It returns the PEM certificate.
func (r RootCA) IssueNodeCertificate(ctx context.Context, csrPEM []byte, nodeID string, role api.NodeRole, org string, expiry time.Duration) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return r.issueNodeCertificate(csrPEM, nodeID, role, org, expiry, time.Now())
}

func (r RootCA) issueNodeCertificate(csrPEM []byte, nodeID string, role api.NodeRole, org string, expiry time.Duration, now time.Time) ([]byte, error) {
	if r.IsZero() {
		return nil, errors.New("issue node certificate: no root CA")
	}
	if !r.CanSign() {
		return nil, errors.New("issue node certificate: the root CA key is not available (external CA)")
	}
	expiry, err := CheckNodeCertExpiry(expiry)
	if err != nil {
		return nil, err
	}
	subj, err := newNodeSubject(nodeID, role, org)
	if err != nil {
		return nil, fmt.Errorf("issue node certificate: %w", err)
	}
	if _, err := ParseCSR(csrPEM); err != nil {
		return nil, fmt.Errorf("issue node certificate: %w", err)
	}
	notBefore := now.Add(-min(maxBackdate, expiry/10)).Truncate(time.Second)
	notAfter := now.Add(expiry).Truncate(time.Second)
	if notAfter.After(r.cert.NotAfter) {
		notAfter = r.cert.NotAfter
	}
	if !notAfter.After(now) {
		return nil, errors.New("issue node certificate: the root CA has expired")
	}
	policy := &config.Signing{
		Default: &config.SigningProfile{
			Usage:        []string{"signing", "key encipherment", "server auth", "client auth"},
			Expiry:       expiry,
			ExpiryString: expiry.String(),
			// Only the key comes from the CSR; subject and names are ours.
			CSRWhitelist: &config.CSRWhitelist{PublicKey: true, PublicKeyAlgorithm: true, SignatureAlgorithm: true},
		},
	}
	s, err := local.NewSigner(r.signer, r.cert, signer.DefaultSigAlgo(r.signer), policy)
	if err != nil {
		return nil, fmt.Errorf("issue node certificate: signer: %w", err)
	}
	req := subj.signRequest(csrPEM)
	req.NotBefore, req.NotAfter = notBefore, notAfter
	certPEM, err := s.Sign(req)
	if err != nil {
		return nil, fmt.Errorf("issue node certificate: %w", err)
	}
	if err := r.checkIssued(certPEM, csrPEM, subj, now); err != nil {
		return nil, err
	}
	return certPEM, nil
}

// checkIssued verifies a freshly issued certificate (ours or an external
// CA's): it chains to the root, is valid now, is no CA, allows client and
// server authentication, carries exactly the subject we asked for and the
// CSR's public key.
func (r RootCA) checkIssued(certPEM, csrPEM []byte, want nodeSubject, now time.Time) error {
	leaf, intermediates, err := parseCertificatePEM(certPEM)
	if err != nil {
		return fmt.Errorf("issued certificate: %w", err)
	}
	if _, err := r.verify(leaf, intermediates, now); err != nil {
		return fmt.Errorf("issued certificate: %w", err)
	}
	if leaf.IsCA {
		return errors.New("issued certificate is a CA certificate")
	}
	got, err := PeerOf(leaf)
	if err != nil {
		return fmt.Errorf("issued certificate: %w", err)
	}
	if got.NodeID != want.nodeID || got.Role != want.role || got.Org != want.org {
		return fmt.Errorf("issued certificate has subject CN=%s OU=%s O=%s, want CN=%s OU=%s O=%s",
			got.NodeID, got.Role, got.Org, want.nodeID, want.role, want.org)
	}
	csr, err := ParseCSR(csrPEM)
	if err != nil {
		return err
	}
	if !publicKeysEqual(csr.PublicKey, leaf.PublicKey) {
		return errors.New("issued certificate does not carry the CSR's public key")
	}
	return nil
}

// verify checks that leaf chains to the root at time now and may be used
// for both client and server authentication.
func (r RootCA) verify(leaf *x509.Certificate, intermediates []*x509.Certificate, now time.Time) ([][]*x509.Certificate, error) {
	if r.IsZero() {
		return nil, errors.New("no root CA")
	}
	opts := x509.VerifyOptions{
		Roots:       r.pool,
		CurrentTime: now,
		KeyUsages:   []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if len(intermediates) > 0 {
		opts.Intermediates = x509.NewCertPool()
		for _, c := range intermediates {
			opts.Intermediates.AddCert(c)
		}
	}
	chains, err := leaf.Verify(opts)
	if err != nil {
		return nil, err
	}
	if len(leaf.ExtKeyUsage) > 0 && !slices.Contains(leaf.ExtKeyUsage, x509.ExtKeyUsageServerAuth) && !slices.Contains(leaf.ExtKeyUsage, x509.ExtKeyUsageAny) {
		return nil, errors.New("certificate does not allow server authentication")
	}
	return chains, nil
}

// IssuedRole is the role the CA puts into a node's next certificate. A
// promotion takes effect at once (Spec.DesiredRole manager); a demotion only
// once whoever removes the node from the raft group has set Node.Role to
// worker, so a manager never loses its certificate role while it is still a
// raft member.
func IssuedRole(node *api.Node) api.NodeRole {
	if node.GetSpec().GetDesiredRole() == api.NodeRole_NODE_ROLE_MANAGER || node.GetRole() == api.NodeRole_NODE_ROLE_MANAGER {
		return api.NodeRole_NODE_ROLE_MANAGER
	}
	return api.NodeRole_NODE_ROLE_WORKER
}
