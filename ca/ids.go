package ca

import (
	"crypto/rand"
	"fmt"
)

// NewNodeID returns a new random node ID: 128 random bits written as 25
// base-36 digits, the form of docker's object IDs.
func NewNodeID() (string, error) {
	var b [secretBytes]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("new node ID: %w", err)
	}
	return base36(b[:], secretDigits), nil
}
