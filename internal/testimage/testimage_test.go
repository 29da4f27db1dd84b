package testimage

import (
	"archive/tar"
	"bytes"
	"io"
	"testing"
)

func TestVersion(t *testing.T) {
	for _, tc := range []struct{ tag, want string }{
		{"swarmd-test:v1", "v1"},
		{"swarmd-demo:v2", "v2"},
		{"plain", "latest"},
		{"localhost:5000/img", "latest"},
		{"localhost:5000/img:v3", "v3"},
	} {
		if got := Version(tc.tag); got != tc.want {
			t.Errorf("Version(%q) = %q, want %q", tc.tag, got, tc.want)
		}
	}
}

func TestPack(t *testing.T) {
	var buf bytes.Buffer
	if err := pack(&buf, []byte("binary")); err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(&buf)
	seen := map[string]int64{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		seen[h.Name] = h.Mode
	}
	if seen["app"] != 0o755 || seen["tmp/"] != 0o1777 {
		t.Errorf("entries %v", seen)
	}
}
