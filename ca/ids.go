package ca

import (
	"crypto/rand"
	"encoding/binary"
	"math/bits"
)

// NewID returns a new random object ID — of a node, a cluster, a service,
// ...: 128 random bits written as 25 base-36 digits, the form of docker's
// object IDs.
func NewID() string {
	var b [secretBytes]byte
	_, _ = rand.Read(b[:]) // never fails: crypto/rand crashes the program instead (Go 1.24+)
	return base36of128(b)
}

// base36of128 is base36(b[:], secretDigits) without big numbers: the
// orchestrators make an ID per task, a hundred thousand in a burst.
func base36of128(b [secretBytes]byte) string {
	const alphabet = "0123456789abcdefghijklmnopqrstuvwxyz"
	hi, lo := binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:])
	var out [secretDigits]byte
	for i := len(out) - 1; i >= 0; i-- {
		// (hi, lo) / 36, one 64-bit half at a time.
		var r uint64
		hi, r = bits.Div64(0, hi, 36)
		lo, r = bits.Div64(r, lo, 36)
		out[i] = alphabet[r]
	}
	return string(out[:])
}
