package ca

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"strings"
	"testing"
	"time"
)

func TestCreateRootCA(t *testing.T) {
	before := time.Now()
	r, err := CreateRootCA("")
	if err != nil {
		t.Fatal(err)
	}
	c := r.Certificate()
	if c.Subject.CommonName != RootCN {
		t.Errorf("CN = %q, want %q", c.Subject.CommonName, RootCN)
	}
	if !c.IsCA || !c.BasicConstraintsValid {
		t.Error("root is not a CA certificate")
	}
	k, ok := c.PublicKey.(*ecdsa.PublicKey)
	if !ok || k.Curve != elliptic.P256() {
		t.Errorf("root key is %T, want ECDSA P-256", c.PublicKey)
	}
	if life := c.NotAfter.Sub(before); life < RootCAExpiry-time.Hour || life > RootCAExpiry+time.Hour {
		t.Errorf("root valid for %s after creation, want about %s", life, RootCAExpiry)
	}
	if err := c.CheckSignatureFrom(c); err != nil {
		t.Errorf("root is not self-signed: %v", err)
	}
	if !r.CanSign() || len(r.KeyPEM()) == 0 {
		t.Error("a created root must hold its key")
	}
	if r.Digest() != sha256.Sum256(c.Raw) {
		t.Error("Digest is not the SHA-256 of the certificate's DER")
	}
	if !strings.HasPrefix(r.Digest().String(), "sha256:") {
		t.Errorf("digest string %q", r.Digest())
	}

	// Load/save: the PEM forms rebuild the same root.
	again, err := NewRootCA(r.CertPEM(), r.KeyPEM())
	if err != nil {
		t.Fatal(err)
	}
	if again.Digest() != r.Digest() || !again.CanSign() {
		t.Error("root reloaded from PEM differs")
	}
	noKey, err := NewRootCA(r.CertPEM(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if noKey.CanSign() || noKey.KeyPEM() != nil {
		t.Error("root without key can sign")
	}
	if r.WithoutKey().CanSign() {
		t.Error("WithoutKey kept the key")
	}

	named, err := CreateRootCA("other-ca")
	if err != nil {
		t.Fatal(err)
	}
	if named.Certificate().Subject.CommonName != "other-ca" {
		t.Errorf("CN = %q", named.Certificate().Subject.CommonName)
	}
	if named.Digest() == r.Digest() {
		t.Error("two roots share a digest")
	}
}

func TestNewRootCAErrors(t *testing.T) {
	r := newRoot(t)
	other := newRoot(t)
	node := issue(t, r, "node1", worker, testOrg)
	for _, tc := range []struct {
		name      string
		cert, key []byte
		want      string
	}{
		{"empty", nil, nil, "no PEM data"},
		{"garbage", []byte("not pem"), nil, "no PEM data"},
		{"key as cert", r.KeyPEM(), nil, "want CERTIFICATE"},
		{"two certificates", append(r.CertPEM(), other.CertPEM()...), nil, "more than one"},
		{"node certificate", node.certPEM, nil, "not a CA"},
		{"other root's key", r.CertPEM(), other.KeyPEM(), "does not match"},
		{"garbage key", r.CertPEM(), []byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"), "malformed private key"},
		{"cert as key", r.CertPEM(), r.CertPEM(), "not a private key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewRootCA(tc.cert, tc.key)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tc.want)
			}
			if k := r.KeyPEM(); bytes.Contains([]byte(err.Error()), k[30:60]) {
				t.Error("error contains key material")
			}
		})
	}
	var zero RootCA
	if !zero.IsZero() {
		t.Error("zero RootCA is not IsZero")
	}
}

func TestDigestParse(t *testing.T) {
	r := newRoot(t)
	d, err := ParseDigest(r.Digest().String())
	if err != nil || d != r.Digest() {
		t.Fatalf("round trip: %v %v", d, err)
	}
	for _, bad := range []string{"", "sha256:", "md5:00", "sha256:zz", "sha256:" + strings.Repeat("0", 62)} {
		if _, err := ParseDigest(bad); err == nil {
			t.Errorf("ParseDigest(%q) accepted", bad)
		}
	}
}
