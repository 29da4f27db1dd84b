package ca

import (
	"crypto/rand"
	"math/big"
	"regexp"
	"strings"
	"testing"
)

func TestNewID(t *testing.T) {
	re := regexp.MustCompile(`^[0-9a-z]{25}$`)
	seen := make(map[string]bool)
	for range 1000 {
		id := NewID()
		if !re.MatchString(id) {
			t.Fatalf("ID %q is not 25 base-36 digits", id)
		}
		if seen[id] {
			t.Fatalf("ID %q twice", id)
		}
		seen[id] = true
	}
}

// TestBase36 checks base36 against the same number written by math/big,
// for the lengths it writes (IDs and secrets, digests) and others, edge
// and random values.
func TestBase36(t *testing.T) {
	reference := func(b []byte, digits int) string {
		s := new(big.Int).SetBytes(b).Text(36)
		if len(s) < digits {
			s = strings.Repeat("0", digits-len(s)) + s
		}
		return s
	}
	tests := []struct {
		name   string
		size   int
		digits int
	}{
		{"ID and secret", secretBytes, secretDigits},
		{"digest", 32, digestDigits},
		{"empty", 0, 3},
		{"odd length", 11, 4},
		{"longer than the limb buffer", 40, 10},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			zeros, ones, low := make([]byte, tc.size), make([]byte, tc.size), make([]byte, tc.size)
			for i := range ones {
				ones[i] = 0xff
			}
			if tc.size > 0 {
				low[tc.size-1] = 36
			}
			cases := [][]byte{zeros, ones, low}
			for range 300 {
				b := make([]byte, tc.size)
				_, _ = rand.Read(b)
				cases = append(cases, b)
			}
			for _, b := range cases {
				if got, want := base36(b, tc.digits), reference(b, tc.digits); got != want {
					t.Fatalf("%x: %s, want %s", b, got, want)
				}
			}
		})
	}
}
