package ca

import (
	"crypto/rand"
	"regexp"
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

// TestBase36Of128 checks the fast ID encoding against base36 for edge and
// random values.
func TestBase36Of128(t *testing.T) {
	cases := [][secretBytes]byte{{}, {15: 1}, {15: 35}, {15: 36}, {0: 0x80}}
	var ones [secretBytes]byte
	for i := range ones {
		ones[i] = 0xff
	}
	cases = append(cases, ones)
	for range 1000 {
		var b [secretBytes]byte
		_, _ = rand.Read(b[:])
		cases = append(cases, b)
	}
	for _, b := range cases {
		if got, want := base36of128(b), base36(b[:], secretDigits); got != want {
			t.Fatalf("%x: %s, want %s", b, got, want)
		}
	}
}
