package testbed

import (
	"fmt"
	"os"
	"os/exec"
)

// BuildBinaries returns a directory holding fresh swarmd and swarmctl
// binaries: $SWARMD_BIN_DIR when set (hack/test builds them once for every
// integration package), else a new temporary directory they are built
// into (static, CGO_ENABLED=0). Callers build once per test binary, e.g.
// with sync.OnceValues.
func BuildBinaries() (string, error) {
	if dir := os.Getenv("SWARMD_BIN_DIR"); dir != "" {
		return dir, nil
	}
	dir, err := os.MkdirTemp("", "swarmd-bin")
	if err != nil {
		return "", fmt.Errorf("build swarmd: %w", err)
	}
	cmd := exec.Command("go", "build", "-o", dir, "github.com/openswarm/swarmd/cmd/swarmd", "github.com/openswarm/swarmd/cmd/swarmctl")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build swarmd: %w\n%s", err, out)
	}
	return dir, nil
}
