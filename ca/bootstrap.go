package ca

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/openswarm/swarmd/api"
	"google.golang.org/grpc"
)

// FetchRootCA asks a manager for the root CA certificate
// (CA.GetRootCACertificate) and accepts it only if its digest is the one
// token pins. conn is typically dialed with BootstrapCredentials: the
// server is not verified, the digest check replaces that verification.
func FetchRootCA(ctx context.Context, conn grpc.ClientConnInterface, token JoinToken) (RootCA, error) {
	resp, err := api.NewCAClient(conn).GetRootCACertificate(ctx, &api.GetRootCACertificateRequest{})
	if err != nil {
		return RootCA{}, fmt.Errorf("fetch root CA: %w", err)
	}
	if err := token.VerifyRoot(resp.GetCertificate()); err != nil {
		return RootCA{}, err
	}
	root, err := NewRootCA(resp.GetCertificate(), nil)
	if err != nil {
		return RootCA{}, fmt.Errorf("fetch root CA: %w", err)
	}
	return root, nil
}

// RequestNodeCertificate asks a manager to sign csrPEM
// (NodeCA.IssueNodeCertificate) and waits for the certificate
// (NodeCA.NodeCertificateStatus). With a token, conn must verify the server
// against root (ClientCredentials with the pinned root) so the token only
// goes to the cluster it belongs to; without one, conn must carry the
// node's current certificate (a renewal). role MANAGER demands a manager
// certificate; WORKER takes the role the token grants. The certificate is
// checked: it chains to root, names the node and holds the CSR's key.
func RequestNodeCertificate(ctx context.Context, conn grpc.ClientConnInterface, root RootCA, csrPEM []byte, token string, role api.NodeRole) (nodeID string, certPEM []byte, err error) {
	csr, err := ParseCSR(csrPEM)
	if err != nil {
		return "", nil, err
	}
	c := api.NewNodeCAClient(conn)
	resp, err := c.IssueNodeCertificate(ctx, &api.IssueNodeCertificateRequest{Role: role, Csr: csrPEM, Token: token})
	if err != nil {
		return "", nil, fmt.Errorf("request node certificate: %w", err)
	}
	nodeID = resp.GetNodeId()
	if nodeID == "" {
		return "", nil, errors.New("request node certificate: no node ID in the answer")
	}
	// Signing is synchronous on our managers: the first status normally
	// carries the certificate. Poll in case it does not.
	backoff := 100 * time.Millisecond
	for {
		st, err := c.NodeCertificateStatus(ctx, &api.NodeCertificateStatusRequest{NodeId: nodeID})
		if err != nil {
			return "", nil, fmt.Errorf("node certificate status: %w", err)
		}
		cert := st.GetCertificate()
		switch cert.GetStatus() {
		case api.Certificate_FAILED:
			return "", nil, fmt.Errorf("node certificate refused: %s", cert.GetMessage())
		case api.Certificate_ISSUED:
			leaf, intermediates, err := parseCertificatePEM(cert.GetCertificate())
			if err != nil {
				return "", nil, fmt.Errorf("issued certificate: %w", err)
			}
			if publicKeysEqual(csr.PublicKey, leaf.PublicKey) {
				if _, err := root.verify(leaf, intermediates, time.Now()); err != nil {
					return "", nil, fmt.Errorf("issued certificate: %w", err)
				}
				if leaf.Subject.CommonName != nodeID {
					return "", nil, fmt.Errorf("issued certificate is for node %s, not %s", leaf.Subject.CommonName, nodeID)
				}
				return nodeID, cert.GetCertificate(), nil
			}
			// Still the previous certificate: wait for ours.
		}
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return "", nil, fmt.Errorf("node certificate status: %w", ctx.Err())
		case <-t.C:
		}
		backoff = min(2*backoff, 2*time.Second)
	}
}

// Join obtains a node certificate from the manager at addr with a join
// token, trusting the cluster on first use with the root pinned by the
// token:
//
//  1. parse the token; it carries the SHA-256 digest of the root CA
//     certificate;
//  2. over TLS without server verification (BootstrapCredentials), fetch the
//     root CA certificate (CA.GetRootCACertificate); nothing secret is sent;
//  3. accept the root only if its digest matches the token's
//     (JoinToken.VerifyRoot), else fail with "remote CA does not match
//     fingerprint";
//  4. from then on verify the managers against that root (server name
//     swarm-manager): send a fresh CSR and the token
//     (NodeCA.IssueNodeCertificate), fetch the certificate
//     (NodeCA.NodeCertificateStatus) and check it.
//
// The caller persists the result (KeyReadWriter.Save) and uses it for every
// later connection. opts are extra dial options (not credentials).
func Join(ctx context.Context, addr, token string, role api.NodeRole, opts ...grpc.DialOption) (*SecurityConfig, error) {
	t, err := ParseJoinToken(token)
	if err != nil {
		return nil, err
	}
	bconn, err := grpc.NewClient(addr, append(opts, grpc.WithTransportCredentials(BootstrapCredentials()))...)
	if err != nil {
		return nil, fmt.Errorf("join %s: %w", addr, err)
	}
	root, err := FetchRootCA(ctx, bconn, t)
	_ = bconn.Close()
	if err != nil {
		return nil, fmt.Errorf("join %s: %w", addr, err)
	}
	creds, err := ClientCredentials(nil, root, ManagerServerName)
	if err != nil {
		return nil, err
	}
	conn, err := grpc.NewClient(addr, append(opts, grpc.WithTransportCredentials(creds))...)
	if err != nil {
		return nil, fmt.Errorf("join %s: %w", addr, err)
	}
	defer func() { _ = conn.Close() }()
	csrPEM, keyPEM, err := GenerateNodeKeyAndCSR()
	if err != nil {
		return nil, err
	}
	_, certPEM, err := RequestNodeCertificate(ctx, conn, root, csrPEM, t.Encode(), role)
	if err != nil {
		return nil, fmt.Errorf("join %s: %w", addr, err)
	}
	return NewSecurityConfig(root, certPEM, keyPEM)
}

// Renew replaces the node's certificate with a new one for a new key, over
// conn, which must be authenticated with sec (sec.ClientCredentials). The
// manager issues it for the role the node object says (IssuedRole), so a
// renewal after a promotion yields a manager certificate. The new pair is
// written through krw (unless nil) before sec switches to it.
func Renew(ctx context.Context, conn grpc.ClientConnInterface, sec *SecurityConfig, krw *KeyReadWriter) error {
	csrPEM, keyPEM, err := GenerateNodeKeyAndCSR()
	if err != nil {
		return err
	}
	nodeID, certPEM, err := RequestNodeCertificate(ctx, conn, sec.RootCA(), csrPEM, "", api.NodeRole_NODE_ROLE_WORKER)
	if err != nil {
		return fmt.Errorf("renew: %w", err)
	}
	if nodeID != sec.NodeID() {
		return fmt.Errorf("renew: got a certificate for node %s, not %s", nodeID, sec.NodeID())
	}
	if _, err := ValidateKeyPair(certPEM, keyPEM, sec.RootCA(), time.Now()); err != nil {
		return fmt.Errorf("renew: %w", err)
	}
	if krw != nil {
		if err := krw.Write(certPEM, keyPEM); err != nil {
			return fmt.Errorf("renew: %w", err)
		}
	}
	return sec.UpdateCertificate(certPEM, keyPEM)
}
