package ca

import (
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
