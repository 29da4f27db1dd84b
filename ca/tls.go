package ca

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/credentials"
)

// ManagerServerName is the TLS server name a node dials managers with: every
// manager certificate carries it as a DNS name, no worker certificate does.
const ManagerServerName = string(RoleManager)

// ServerTLSConfig returns the TLS configuration of a node's gRPC server:
// TLS 1.2 or later, cert as the server certificate, and a client
// certificate requested and verified against root when one is presented. A
// caller without a certificate still connects (a joining node must reach
// NodeCA.IssueNodeCertificate and CA.GetRootCACertificate); authorization
// (AuthorizeFromContext and the interceptors) decides what it may call.
func ServerTLSConfig(cert tls.Certificate, root RootCA) (*tls.Config, error) {
	if len(cert.Certificate) == 0 {
		return nil, errors.New("server TLS: no certificate")
	}
	return serverTLSConfig(func() *tls.Certificate { return &cert }, root)
}

func serverTLSConfig(get func() *tls.Certificate, root RootCA) (*tls.Config, error) {
	if root.IsZero() {
		return nil, errors.New("server TLS: no root CA")
	}
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return get(), nil
		},
		ClientAuth: tls.VerifyClientCertIfGiven,
		ClientCAs:  root.Pool(),
	}, nil
}

// ClientTLSConfig returns the TLS configuration to dial another node: TLS
// 1.2 or later, the server verified against root and serverName (usually
// ManagerServerName), and cert presented as the client certificate (nil
// for a node that has none yet). With a certificate, the server's must
// belong to the same cluster (same O).
func ClientTLSConfig(cert *tls.Certificate, root RootCA, serverName string) (*tls.Config, error) {
	if cert == nil {
		return clientTLSConfig(nil, "", root, serverName)
	}
	if len(cert.Certificate) == 0 {
		return nil, errors.New("client TLS: empty certificate")
	}
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		return nil, fmt.Errorf("client TLS: %w", err)
	}
	id, err := PeerOf(leaf)
	if err != nil {
		return nil, fmt.Errorf("client TLS: %w", err)
	}
	return clientTLSConfig(func() *tls.Certificate { return cert }, id.Org, root, serverName)
}

func clientTLSConfig(get func() *tls.Certificate, org string, root RootCA, serverName string) (*tls.Config, error) {
	if root.IsZero() {
		return nil, errors.New("client TLS: no root CA")
	}
	if serverName == "" {
		return nil, errors.New("client TLS: no server name")
	}
	cfg := &tls.Config{
		MinVersion: tls.VersionTLS12,
		RootCAs:    root.Pool(),
		ServerName: serverName,
	}
	if get != nil {
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return get(), nil
		}
	}
	if org != "" {
		cfg.VerifyConnection = func(cs tls.ConnectionState) error {
			if len(cs.VerifiedChains) == 0 || len(cs.VerifiedChains[0]) == 0 {
				return errors.New("server certificate not verified")
			}
			id, err := PeerOf(cs.VerifiedChains[0][0])
			if err != nil {
				return fmt.Errorf("server certificate: %w", err)
			}
			if id.Org != org {
				return fmt.Errorf("server certificate belongs to cluster %s, not %s", id.Org, org)
			}
			return nil
		}
	}
	return cfg, nil
}

// ServerCredentials wraps ServerTLSConfig as gRPC transport credentials.
func ServerCredentials(cert tls.Certificate, root RootCA) (credentials.TransportCredentials, error) {
	cfg, err := ServerTLSConfig(cert, root)
	if err != nil {
		return nil, err
	}
	return credentials.NewTLS(cfg), nil
}

// ClientCredentials wraps ClientTLSConfig as gRPC transport credentials.
func ClientCredentials(cert *tls.Certificate, root RootCA, serverName string) (credentials.TransportCredentials, error) {
	cfg, err := ClientTLSConfig(cert, root, serverName)
	if err != nil {
		return nil, err
	}
	return credentials.NewTLS(cfg), nil
}

// BootstrapCredentials are the transport credentials of the only call made
// without verifying the server: a joining node fetching the root CA with
// CA.GetRootCACertificate, whose answer it then checks against the digest in
// its join token (see FetchRootCA). Never send anything secret over them.
func BootstrapCredentials() credentials.TransportCredentials {
	return credentials.NewTLS(&tls.Config{
		MinVersion:         tls.VersionTLS12,
		InsecureSkipVerify: true, // the root is pinned by the join token digest instead
	})
}

// keyPair is one validated node certificate and key.
type keyPair struct {
	tls     tls.Certificate
	leaf    *x509.Certificate
	peer    Peer
	certPEM []byte
	keyPEM  []byte
}

// ValidateKeyPair checks a node certificate and key: they belong together,
// the certificate chains to root at time now, allows client and server
// authentication and names a node (CN), a role (OU) and a cluster (O).
func ValidateKeyPair(certPEM, keyPEM []byte, root RootCA, now time.Time) (Peer, error) {
	kp, err := newKeyPair(certPEM, keyPEM, root, now)
	if err != nil {
		return Peer{}, err
	}
	return kp.peer, nil
}

func newKeyPair(certPEM, keyPEM []byte, root RootCA, now time.Time) (*keyPair, error) {
	c, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		// tls's errors describe the mismatch without key material.
		return nil, fmt.Errorf("node certificate and key: %w", err)
	}
	leaf, intermediates, err := parseCertificatePEM(certPEM)
	if err != nil {
		return nil, fmt.Errorf("node certificate: %w", err)
	}
	if _, err := root.verify(leaf, intermediates, now); err != nil {
		return nil, fmt.Errorf("node certificate: %w", err)
	}
	id, err := PeerOf(leaf)
	if err != nil {
		return nil, fmt.Errorf("node certificate: %w", err)
	}
	c.Leaf = leaf
	return &keyPair{
		tls:     c,
		leaf:    leaf,
		peer:    id,
		certPEM: append([]byte(nil), certPEM...),
		keyPEM:  append([]byte(nil), keyPEM...),
	}, nil
}

// SecurityConfig is a node's TLS identity: the cluster's root CA and the
// node's current certificate and key, which UpdateCertificate replaces
// (renewal, role change) without rebuilding servers or connections: TLS
// configurations made from it read the current certificate at each
// handshake.
type SecurityConfig struct {
	root RootCA
	cur  atomic.Pointer[keyPair]
}

// NewSecurityConfig validates the node's certificate and key against root
// (see ValidateKeyPair) and returns a SecurityConfig holding them. root's
// private key, if any, is dropped.
func NewSecurityConfig(root RootCA, certPEM, keyPEM []byte) (*SecurityConfig, error) {
	kp, err := newKeyPair(certPEM, keyPEM, root, time.Now())
	if err != nil {
		return nil, err
	}
	s := &SecurityConfig{root: root.WithoutKey()}
	s.cur.Store(kp)
	return s, nil
}

// RootCA returns the root CA (without its key).
func (s *SecurityConfig) RootCA() RootCA { return s.root }

// Peer returns the identity in the current certificate.
func (s *SecurityConfig) Peer() Peer { return s.cur.Load().peer }

// NodeID returns the node ID in the current certificate.
func (s *SecurityConfig) NodeID() string { return s.cur.Load().peer.NodeID }

// Certificate returns the current parsed certificate (read-only).
func (s *SecurityConfig) Certificate() *x509.Certificate { return s.cur.Load().leaf }

// TLSCertificate returns the current certificate and key for crypto/tls.
func (s *SecurityConfig) TLSCertificate() *tls.Certificate {
	c := s.cur.Load().tls
	return &c
}

// CertPEM returns the current certificate, PEM encoded.
func (s *SecurityConfig) CertPEM() []byte { return append([]byte(nil), s.cur.Load().certPEM...) }

// KeyPEM returns the current private key, PEM encoded. It is secret.
func (s *SecurityConfig) KeyPEM() []byte { return append([]byte(nil), s.cur.Load().keyPEM...) }

// UpdateCertificate replaces the certificate and key after validating them
// like NewSecurityConfig; the node ID and cluster must stay the same (the
// role may change).
func (s *SecurityConfig) UpdateCertificate(certPEM, keyPEM []byte) error {
	kp, err := newKeyPair(certPEM, keyPEM, s.root, time.Now())
	if err != nil {
		return err
	}
	old := s.cur.Load().peer
	if kp.peer.NodeID != old.NodeID || kp.peer.Org != old.Org {
		return fmt.Errorf("new certificate is for node %s of cluster %s, not node %s of cluster %s",
			kp.peer.NodeID, kp.peer.Org, old.NodeID, old.Org)
	}
	s.cur.Store(kp)
	return nil
}

// ServerTLSConfig is ServerTLSConfig with the current certificate.
func (s *SecurityConfig) ServerTLSConfig() *tls.Config {
	cfg, err := serverTLSConfig(s.TLSCertificate, s.root)
	if err != nil {
		panic(err) // s.root is never zero
	}
	return cfg
}

// ClientTLSConfig is ClientTLSConfig with the current certificate.
func (s *SecurityConfig) ClientTLSConfig(serverName string) (*tls.Config, error) {
	return clientTLSConfig(s.TLSCertificate, s.Peer().Org, s.root, serverName)
}

// ServerCredentials returns gRPC server credentials from ServerTLSConfig.
func (s *SecurityConfig) ServerCredentials() credentials.TransportCredentials {
	return credentials.NewTLS(s.ServerTLSConfig())
}

// ClientCredentials returns gRPC client credentials from ClientTLSConfig.
func (s *SecurityConfig) ClientCredentials(serverName string) (credentials.TransportCredentials, error) {
	cfg, err := s.ClientTLSConfig(serverName)
	if err != nil {
		return nil, err
	}
	return credentials.NewTLS(cfg), nil
}
