// Package version holds the build's version, set at link time by hack/build:
//
//	go build -ldflags "-X github.com/openswarm/swarmd/version.Version=... \
//	                   -X github.com/openswarm/swarmd/version.GitCommit=..."
package version

import (
	"fmt"
	"runtime"
)

// Version and GitCommit are set at link time (-ldflags -X). They are not
// meant to be assigned by code.
var (
	// Version is the output of `git describe --always --dirty`.
	Version = "dev"
	// GitCommit is the full commit hash the binary was built from.
	GitCommit = "unknown"
)

// String describes the build in one line: program name, version, commit and
// Go toolchain, e.g. "swarmd v0.1.0 (commit 6584c8a..., go1.26.8)".
func String(program string) string {
	return fmt.Sprintf("%s %s (commit %s, %s)", program, Version, GitCommit, runtime.Version())
}
