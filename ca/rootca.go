package ca

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/cloudflare/cfssl/csr"
	"github.com/cloudflare/cfssl/initca"
)

const (
	// RootCAExpiry is the lifetime of a root CA created by CreateRootCA.
	RootCAExpiry = 20 * 365 * 24 * time.Hour
	// RootCN is the common name docker and swarmkit give the swarm root CA.
	RootCN = "swarm-ca"
)

// Digest is the SHA-256 digest of a certificate's DER encoding: the root
// CA's fingerprint that join tokens carry.
type Digest [sha256.Size]byte

// DigestOf returns the digest of a certificate's DER bytes.
func DigestOf(der []byte) Digest { return sha256.Sum256(der) }

// String returns the digest as "sha256:<hex>", the form Cluster.RootCA's
// ca_cert_hash holds.
func (d Digest) String() string { return "sha256:" + hex.EncodeToString(d[:]) }

// Equal compares two digests in constant time.
func (d Digest) Equal(o Digest) bool { return subtle.ConstantTimeCompare(d[:], o[:]) == 1 }

// ParseDigest parses the "sha256:<hex>" form of String.
func ParseDigest(s string) (Digest, error) {
	var d Digest
	h, ok := strings.CutPrefix(s, "sha256:")
	if !ok {
		return d, fmt.Errorf("digest %q: want sha256:<hex>", s)
	}
	b, err := hex.DecodeString(h)
	if err != nil || len(b) != len(d) {
		return d, fmt.Errorf("digest %q: want %d hex-encoded bytes", s, len(d))
	}
	copy(d[:], b)
	return d, nil
}

// RootCA is the cluster's trust anchor: its certificate and, when this
// cluster signs certificates itself, its private key. A RootCA without a key
// still verifies certificates; signing then goes to an external CA.
//
// The zero RootCA is empty (IsZero) and fails every operation.
type RootCA struct {
	certPEM []byte
	keyPEM  []byte
	cert    *x509.Certificate
	signer  crypto.Signer
	pool    *x509.CertPool
	digest  Digest
}

// CreateRootCA creates a self-signed root CA with cfssl's initca: an ECDSA
// P-256 key and a certificate valid for RootCAExpiry with common name cn
// (RootCN when empty).
func CreateRootCA(cn string) (RootCA, error) {
	if cn == "" {
		cn = RootCN
	}
	req := &csr.CertificateRequest{
		CN:         cn,
		KeyRequest: &csr.KeyRequest{A: "ecdsa", S: 256},
		CA:         &csr.CAConfig{Expiry: RootCAExpiry.String()},
	}
	certPEM, _, keyPEM, err := initca.New(req)
	if err != nil {
		return RootCA{}, fmt.Errorf("create root CA: %w", err)
	}
	return NewRootCA(certPEM, keyPEM)
}

// NewRootCA builds a RootCA from a PEM certificate (exactly one CA
// certificate) and, optionally, the PEM private key that belongs to it.
// keyPEM may be nil: the RootCA then verifies but cannot sign.
func NewRootCA(certPEM, keyPEM []byte) (RootCA, error) {
	der, err := singleCertificateDER(certPEM)
	if err != nil {
		return RootCA{}, fmt.Errorf("root CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return RootCA{}, fmt.Errorf("root CA certificate: %w", err)
	}
	if !cert.BasicConstraintsValid || !cert.IsCA {
		return RootCA{}, errors.New("root CA certificate: not a CA certificate")
	}
	r := RootCA{
		certPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		cert:    cert,
		pool:    x509.NewCertPool(),
		digest:  DigestOf(der),
	}
	r.pool.AddCert(cert)
	if len(bytes.TrimSpace(keyPEM)) > 0 {
		signer, err := parsePrivateKeyPEM(keyPEM)
		if err != nil {
			return RootCA{}, fmt.Errorf("root CA key: %w", err)
		}
		if !publicKeysEqual(signer.Public(), cert.PublicKey) {
			return RootCA{}, errors.New("root CA key does not match the root CA certificate")
		}
		r.signer = signer
		r.keyPEM = append([]byte(nil), keyPEM...)
	}
	return r, nil
}

// IsZero reports whether r is the empty RootCA.
func (r RootCA) IsZero() bool { return r.cert == nil }

// CertPEM returns the root certificate, PEM encoded.
func (r RootCA) CertPEM() []byte { return append([]byte(nil), r.certPEM...) }

// KeyPEM returns the root's private key, PEM encoded, or nil when signing is
// external. It is secret: never log it.
func (r RootCA) KeyPEM() []byte { return append([]byte(nil), r.keyPEM...) }

// CanSign reports whether r holds the private key.
func (r RootCA) CanSign() bool { return r.signer != nil }

// Certificate returns the parsed root certificate (nil for the zero RootCA).
// Treat it as read-only.
func (r RootCA) Certificate() *x509.Certificate { return r.cert }

// Pool returns a certificate pool holding only the root. Treat it as
// read-only.
func (r RootCA) Pool() *x509.CertPool { return r.pool }

// Digest returns the SHA-256 digest of the root certificate's DER bytes.
func (r RootCA) Digest() Digest { return r.digest }

// WithoutKey returns r without its private key.
func (r RootCA) WithoutKey() RootCA {
	r.keyPEM, r.signer = nil, nil
	return r
}

// singleCertificateDER returns the DER of the only CERTIFICATE block of
// data; anything else but whitespace around it is an error.
func singleCertificateDER(data []byte) ([]byte, error) {
	block, rest := pem.Decode(data)
	if block == nil {
		return nil, errors.New("no PEM data")
	}
	if block.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("PEM block is %q, want CERTIFICATE", block.Type)
	}
	if len(bytes.TrimSpace(rest)) > 0 {
		return nil, errors.New("more than one PEM block")
	}
	return block.Bytes, nil
}

// parseCertificatePEM parses the first certificate of data and returns it
// with any further certificates (intermediates).
func parseCertificatePEM(data []byte) (*x509.Certificate, []*x509.Certificate, error) {
	var certs []*x509.Certificate
	for rest := data; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			if len(certs) == 0 {
				return nil, nil, errors.New("no PEM certificate")
			}
			if len(bytes.TrimSpace(rest)) > 0 {
				return nil, nil, errors.New("trailing data after the PEM certificates")
			}
			break
		}
		if block.Type != "CERTIFICATE" {
			return nil, nil, fmt.Errorf("PEM block is %q, want CERTIFICATE", block.Type)
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, nil, err
		}
		certs = append(certs, c)
	}
	return certs[0], certs[1:], nil
}

// parsePrivateKeyPEM parses a PKCS#8, SEC 1 (EC) or PKCS#1 (RSA) key. Error
// messages never include key material.
func parsePrivateKeyPEM(data []byte) (crypto.Signer, error) {
	block, rest := pem.Decode(data)
	if block == nil {
		return nil, errors.New("no PEM data")
	}
	if len(bytes.TrimSpace(rest)) > 0 {
		return nil, errors.New("more than one PEM block")
	}
	if _, ok := block.Headers["DEK-Info"]; ok {
		return nil, errors.New("encrypted keys are not supported")
	}
	var key any
	var err error
	switch block.Type {
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(block.Bytes)
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	default:
		return nil, fmt.Errorf("PEM block is %q, not a private key", block.Type)
	}
	if err != nil {
		return nil, errors.New("malformed private key")
	}
	s, ok := key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("unsupported private key type %T", key)
	}
	return s, nil
}

// publicKeysEqual compares two public keys of any supported type.
func publicKeysEqual(a, b crypto.PublicKey) bool {
	type equaler interface{ Equal(crypto.PublicKey) bool }
	switch k := a.(type) {
	case *ecdsa.PublicKey, *rsa.PublicKey, ed25519.PublicKey:
		return k.(equaler).Equal(b)
	}
	return false
}
