package mesh

import (
	"bytes"
	"testing"
)

// FuzzReadHeader: whatever a peer sends as a tunnel header is refused or
// parsed into a header that encodes back to the same bytes; never a panic
// nor an unbounded read.
func FuzzReadHeader(f *testing.F) {
	for _, h := range []tunnelHeader{
		{Protocol: TCP, Target: 80, TaskID: "abc123"},
		{Protocol: UDP, Target: 53, TaskID: "x"},
	} {
		b, err := h.marshal()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("SWMT"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		h, err := readHeader(bytes.NewReader(data))
		if err != nil {
			return
		}
		if len(h.TaskID) > MaxTaskIDLen {
			t.Fatalf("task ID of %d bytes accepted", len(h.TaskID))
		}
		b, err := h.marshal()
		if err != nil {
			t.Fatalf("a parsed header does not encode: %v", err)
		}
		if !bytes.HasPrefix(data, b) {
			t.Fatalf("header %+v encodes to %x, read from %x", h, b, data)
		}
	})
}

// FuzzReadFrame: a UDP frame read from a stream is never longer than the
// stream holds.
func FuzzReadFrame(f *testing.F) {
	f.Add([]byte{0, 3, 'a', 'b', 'c'})
	f.Add([]byte{0xff, 0xff})
	f.Fuzz(func(t *testing.T, data []byte) {
		var buf []byte
		p, err := readFrame(bytes.NewReader(data), &buf)
		if err == nil && len(p) > len(data) {
			t.Fatalf("frame of %d bytes from %d", len(p), len(data))
		}
	})
}
