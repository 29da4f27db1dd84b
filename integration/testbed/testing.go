package testbed

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// RequireEngine skips t when the machine's own Docker Engine (which builds
// the test images) does not answer; under CI=true that fails t instead.
func RequireEngine(t testing.TB) {
	t.Helper()
	if err := exec.Command("docker", "-H", "unix:///var/run/docker.sock", "version").Run(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI=true and the Docker engine does not answer: %v", err)
		}
		t.Skipf("no Docker engine: %v", err)
	}
}

// Eventually polls cond every 100 ms until it holds, failing t once
// timeout has passed.
func Eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting until %s", timeout, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// MustDocker is Docker that fails t when the command fails.
func (h *Host) MustDocker(ctx context.Context, t testing.TB, args ...string) string {
	t.Helper()
	out, err := h.Docker(ctx, args...)
	if err != nil {
		t.Fatalf("%s: docker %s: %v\n%s", h.Name, strings.Join(args, " "), err, out)
	}
	return out
}
