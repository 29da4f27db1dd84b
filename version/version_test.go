package version

import (
	"runtime"
	"strings"
	"testing"
)

func TestString(t *testing.T) {
	got := String("swarmd")
	for _, want := range []string{"swarmd ", Version, GitCommit, runtime.Version()} {
		if !strings.Contains(got, want) {
			t.Errorf("String(%q) = %q, missing %q", "swarmd", got, want)
		}
	}
}
