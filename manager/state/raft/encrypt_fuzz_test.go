package raft

import (
	"bytes"
	"testing"
)

// FuzzEnvelope: opening whatever lies on disk never panics; a sealed
// record opens to what was sealed, and a record changed anywhere does not
// open.
func FuzzEnvelope(f *testing.F) {
	c, err := newCryptor(bytes.Repeat([]byte{7}, DEKSize))
	if err != nil {
		f.Fatal(err)
	}
	f.Add([]byte("plain protobuf bytes"), 0)
	f.Add([]byte{}, 3)
	f.Add([]byte(envelopeMagic), 5)
	f.Fuzz(func(t *testing.T, data []byte, flip int) {
		_, _ = c.open(data) // garbage: an error or plaintext, never a panic
		if len(data) == 0 {
			return
		}
		sealed, err := c.seal(data)
		if err != nil {
			t.Fatal(err)
		}
		got, err := c.open(sealed)
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("round trip: %v", err)
		}
		i := flip % len(sealed)
		if i < 0 {
			i = -i
		}
		tampered := bytes.Clone(sealed)
		tampered[i] ^= 0x5a
		if got, err := c.open(tampered); err == nil && bytes.Equal(got, data) && i >= len(envelopeMagic) {
			t.Fatalf("a record changed at byte %d still opens", i)
		}
	})
}
