package testbed

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"strings"
	"sync"
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

// NewSwarm builds the testbed cfg describes, starts swarmd on every host
// (with extra flags), forms one swarm of them — h1 its manager through
// `docker swarm init`, the others workers — and waits until every node is
// Ready. The testbed is closed when t ends, after every host's swarmd log
// tail is logged if t failed.
func NewSwarm(ctx context.Context, t testing.TB, cfg Config, extra ...string) *Testbed {
	t.Helper()
	tb, err := New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, h := range tb.Hosts() {
				t.Logf("--- %s swarmd log:\n%s", h.Name, h.LogTail(60))
			}
		}
		if err := tb.Close(); err != nil {
			t.Logf("testbed close: %v", err)
		}
	})
	hosts := tb.Hosts()
	errs := make([]error, len(hosts))
	var wg sync.WaitGroup
	for i, h := range hosts {
		wg.Add(1)
		go func() { defer wg.Done(); errs[i] = h.StartSwarmd(ctx, extra...) }()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	m := hosts[0]
	m.MustDocker(ctx, t, "swarm", "init", "--advertise-addr", m.IP)
	token := m.MustDocker(ctx, t, "swarm", "join-token", "-q", "worker")
	for _, h := range hosts[1:] {
		h.MustDocker(ctx, t, "swarm", "join", "--token", token, m.IP+":2377")
	}
	Eventually(t, 30*time.Second, "every node Ready", func() bool {
		out, err := m.Docker(ctx, "node", "ls", "--format", "{{.Status}}")
		return err == nil && strings.Count(out, "Ready") == len(hosts)
	})
	return tb
}
