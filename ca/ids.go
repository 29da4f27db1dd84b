package ca

import "crypto/rand"

// NewID returns a new random object ID — of a node, a cluster, a service,
// ...: 128 random bits written as 25 base-36 digits, the form of docker's
// object IDs.
func NewID() string {
	var b [secretBytes]byte
	_, _ = rand.Read(b[:]) // never fails: crypto/rand crashes the program instead (Go 1.24+)
	return base36(b[:], secretDigits)
}
