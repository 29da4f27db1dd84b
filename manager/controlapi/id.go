package controlapi

import (
	"crypto/rand"
	"math/big"
	"strings"
)

// idLen is the length of an object ID: 128 bits need 25 base-36 digits.
const idLen = 25

// NewID returns a new random object ID: 128 bits from crypto/rand written
// as 25 base-36 digits (0-9a-z), the form of docker's swarm object IDs.
func NewID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // never fails (Go 1.24+: crashes instead)
	s := new(big.Int).SetBytes(b[:]).Text(36)
	if len(s) < idLen {
		s = strings.Repeat("0", idLen-len(s)) + s
	}
	return s
}
