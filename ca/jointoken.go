package ca

import (
	"crypto/rand"
	"crypto/subtle"
	"errors"
	"fmt"
	"math/big"
	"math/bits"
	"strings"

	"github.com/openswarm/swarmd/api"
)

// Join token format, as docker and swarmkit write it:
//
//	SWMTKN-1-<root CA digest: 50 base-36 digits>-<secret: 25 base-36 digits>
const (
	joinTokenPrefix  = "SWMTKN"
	joinTokenVersion = 1
	digestDigits     = 50 // ceil(256 / log2(36))
	secretDigits     = 25 // ceil(128 / log2(36))
	secretBytes      = 16
)

// ErrInvalidJoinToken is what every malformed join token error wraps.
var ErrInvalidJoinToken = errors.New("invalid join token")

// ErrRootCAMismatch is returned when a root CA certificate does not have the
// digest a join token pins.
var ErrRootCAMismatch = errors.New("remote CA does not match fingerprint")

// JoinToken is a parsed join token. Secret is secret: JoinToken's String and
// GoString leave it out, so printing a JoinToken never reveals it.
type JoinToken struct {
	Version int
	Digest  Digest // of the root CA certificate's DER
	Secret  string // 25 base-36 digits
}

// GenerateJoinToken returns a new token for the cluster whose root is root:
// its digest and 128 random bits.
func GenerateJoinToken(root RootCA) (string, error) {
	if root.IsZero() {
		return "", errors.New("generate join token: no root CA")
	}
	var secret [secretBytes]byte
	if _, err := rand.Read(secret[:]); err != nil {
		return "", fmt.Errorf("generate join token: %w", err)
	}
	t := JoinToken{
		Version: joinTokenVersion,
		Digest:  root.Digest(),
		Secret:  base36(secret[:], secretDigits),
	}
	return t.Encode(), nil
}

// ParseJoinToken parses a join token. Errors wrap ErrInvalidJoinToken and
// never contain the token.
func ParseJoinToken(s string) (JoinToken, error) {
	parts := strings.Split(strings.TrimSpace(s), "-")
	if len(parts) != 4 || parts[0] != joinTokenPrefix {
		return JoinToken{}, fmt.Errorf("%w: want SWMTKN-1-<digest>-<secret>", ErrInvalidJoinToken)
	}
	if parts[1] != "1" {
		return JoinToken{}, fmt.Errorf("%w: unsupported version (want 1)", ErrInvalidJoinToken)
	}
	digest, err := parseBase36(parts[2], digestDigits)
	if err != nil {
		return JoinToken{}, fmt.Errorf("%w: root CA digest %v", ErrInvalidJoinToken, err)
	}
	if _, err := parseBase36(parts[3], secretDigits); err != nil {
		return JoinToken{}, fmt.Errorf("%w: secret %v", ErrInvalidJoinToken, err)
	}
	t := JoinToken{Version: joinTokenVersion, Secret: parts[3]}
	if digest.BitLen() > 8*len(t.Digest) {
		return JoinToken{}, fmt.Errorf("%w: root CA digest is too large", ErrInvalidJoinToken)
	}
	digest.FillBytes(t.Digest[:])
	return t, nil
}

// Encode returns the token in its textual form. The result is secret.
func (t JoinToken) Encode() string {
	return fmt.Sprintf("%s-%d-%s-%s", joinTokenPrefix, t.Version, base36(t.Digest[:], digestDigits), t.Secret)
}

// String describes the token without its secret.
func (t JoinToken) String() string {
	return fmt.Sprintf("%s-%d-%s-<redacted>", joinTokenPrefix, t.Version, base36(t.Digest[:], digestDigits))
}

// GoString describes the token without its secret.
func (t JoinToken) GoString() string {
	return fmt.Sprintf("ca.JoinToken{Version:%d, Digest:%s, Secret:<redacted>}", t.Version, t.Digest)
}

// VerifyRoot checks that certPEM (one PEM certificate) is the root CA the
// token pins. A mismatch wraps ErrRootCAMismatch:
// "remote CA does not match fingerprint. Expected: sha256:...".
func (t JoinToken) VerifyRoot(certPEM []byte) error {
	der, err := singleCertificateDER(certPEM)
	if err != nil {
		return fmt.Errorf("remote CA certificate: %w", err)
	}
	got := DigestOf(der)
	if !got.Equal(t.Digest) {
		return fmt.Errorf("%w. Expected: %s, got: %s", ErrRootCAMismatch, t.Digest, got)
	}
	return nil
}

// NewClusterRootCA returns the cluster object's RootCA for root: certificate,
// key (when root has it), digest and fresh worker and manager join tokens.
func NewClusterRootCA(root RootCA) (*api.RootCA, error) {
	worker, err := GenerateJoinToken(root)
	if err != nil {
		return nil, err
	}
	manager, err := GenerateJoinToken(root)
	if err != nil {
		return nil, err
	}
	return &api.RootCA{
		CaKey:      root.KeyPEM(),
		CaCert:     root.CertPEM(),
		CaCertHash: root.Digest().String(),
		JoinTokens: &api.JoinTokens{Worker: worker, Manager: manager},
	}, nil
}

// RotateJoinTokens replaces the cluster's worker and/or manager join token
// with a new one for the cluster's root CA. The old token stops working as
// soon as the cluster object is stored.
func RotateJoinTokens(cluster *api.Cluster, worker, manager bool) error {
	if !worker && !manager {
		return nil
	}
	root, err := NewRootCA(cluster.GetRootCa().GetCaCert(), nil)
	if err != nil {
		return fmt.Errorf("rotate join tokens: %w", err)
	}
	if cluster.RootCa.JoinTokens == nil {
		cluster.RootCa.JoinTokens = &api.JoinTokens{}
	}
	if worker {
		if cluster.RootCa.JoinTokens.Worker, err = GenerateJoinToken(root); err != nil {
			return err
		}
	}
	if manager {
		if cluster.RootCa.JoinTokens.Manager, err = GenerateJoinToken(root); err != nil {
			return err
		}
	}
	return nil
}

// tokenRole returns the role token grants in the cluster, comparing in
// constant time against both tokens whatever the outcome.
func tokenRole(tokens *api.JoinTokens, token string) (api.NodeRole, bool) {
	w := tokens.GetWorker() != "" && subtle.ConstantTimeCompare([]byte(token), []byte(tokens.GetWorker())) == 1
	m := tokens.GetManager() != "" && subtle.ConstantTimeCompare([]byte(token), []byte(tokens.GetManager())) == 1
	switch {
	case m:
		return api.NodeRole_NODE_ROLE_MANAGER, true
	case w:
		return api.NodeRole_NODE_ROLE_WORKER, true
	}
	return 0, false
}

// base36 writes b (big-endian) in base 36, zero-padded to digits.
//
// It divides the big-endian number b by 36 in 64-bit limbs rather than
// with big numbers: the orchestrators make an ID per task (NewID), a
// hundred thousand in a burst.
func base36(b []byte, digits int) string {
	const alphabet = "0123456789abcdefghijklmnopqrstuvwxyz"
	var limbBuf [4]uint64 // 32 bytes, the longest value written here
	n := (len(b) + 7) / 8
	limbs := limbBuf[:min(n, len(limbBuf))]
	if n > len(limbBuf) {
		limbs = make([]uint64, n)
	}
	// b in n limbs, most significant first.
	for i, c := range b {
		p := len(b) - 1 - i // the byte's place, least significant first
		limbs[n-1-p/8] |= uint64(c) << (8 * (p % 8))
	}
	// Digits from the last: a base-36 digit holds more than 5 bits.
	var digitBuf [64]byte
	out := digitBuf[:]
	if size := max(digits, len(b)*8/5+1); size > len(out) {
		out = make([]byte, size)
	}
	i := len(out)
	for {
		var r, rest uint64
		for j := range limbs {
			limbs[j], r = bits.Div64(r, limbs[j], 36)
			rest |= limbs[j]
		}
		i--
		out[i] = alphabet[r]
		if rest == 0 {
			break
		}
	}
	for len(out)-i < digits {
		i--
		out[i] = '0'
	}
	return string(out[i:])
}

// parseBase36 parses exactly digits lower-case base-36 digits.
func parseBase36(s string, digits int) (*big.Int, error) {
	if len(s) != digits {
		return nil, fmt.Errorf("has %d characters, want %d", len(s), digits)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'z') {
			return nil, errors.New("is not lower-case base 36")
		}
	}
	n, ok := new(big.Int).SetString(s, 36)
	if !ok {
		return nil, errors.New("is not base 36")
	}
	return n, nil
}
