//go:build integration

package testbed

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

const testImage = "swarmd-test:v1"

// requireRoot skips unless the root engine answers (fails instead with
// CI=true).
func requireRootEngine(t *testing.T) {
	t.Helper()
	out, err := exec.Command("docker", "-H", "unix:///var/run/docker.sock", "version", "--format", "{{.Server.APIVersion}}").CombinedOutput()
	if err == nil {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("CI=true and the Docker engine does not answer: %v\n%s", err, out)
	}
	t.Skipf("no Docker engine: %v", err)
}

func swarmdBin(t *testing.T) string {
	t.Helper()
	dir, err := BuildBinaries()
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

func newTestbed(t *testing.T, ctx context.Context, cfg Config) *Testbed {
	t.Helper()
	cfg.Logf = t.Logf
	start := time.Now()
	tb, err := New(ctx, cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Logf("New with %d hosts took %s (steps: %v)", cfg.Hosts, time.Since(start).Round(time.Millisecond), tb.Timings)
	t.Cleanup(func() {
		if t.Failed() {
			for _, h := range tb.Hosts() {
				t.Logf("--- %s swarmd log (tail) ---\n%s", h.Name, h.LogTail(40))
				t.Logf("--- %s dockerd log (tail) ---\n%s", h.Name, h.EngineLogTail(15))
			}
		}
		start := time.Now()
		if err := tb.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		t.Logf("Close took %s", time.Since(start).Round(time.Millisecond))
		assertClean(t)
	})
	return tb
}

// assertClean checks that nothing of a testbed is left on the machine.
func assertClean(t *testing.T) {
	t.Helper()
	if out, _ := exec.Command("ip", "netns", "list").CombinedOutput(); strings.Contains(string(out), nsPrefix) {
		t.Errorf("namespaces left: %s", out)
	}
	if out, _ := exec.Command("ip", "-o", "link", "show").CombinedOutput(); strings.Contains(string(out), nsPrefix) || strings.Contains(string(out), Bridge) {
		t.Errorf("links left: %s", out)
	}
	if out, _ := exec.Command("iptables", "-w", "-S").CombinedOutput(); strings.Contains(string(out), Bridge) {
		t.Errorf("iptables rules left: %s", out)
	}
	// Engines, containerds, shims and swarmds name swtb-hN or the testbed's
	// /tmp/swtb-NNN directory in their command lines.
	out, _ := exec.Command("pgrep", "-a", "-f", "swtb-(h[0-9]|[0-9])").CombinedOutput()
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if line != "" && !strings.HasPrefix(line, fmt.Sprint(os.Getpid())+" ") {
			t.Errorf("process left: %s", line)
		}
	}
}

// eventually polls cond every 100 ms until it holds or timeout passes.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s: %v", timeout, what, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func get(ctx context.Context, c *http.Client, url string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	resp, err := c.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("%s: %s", url, resp.Status)
	}
	return strings.TrimSpace(string(body)), nil
}

func TestTestbed(t *testing.T) {
	requireRootEngine(t)
	bin := swarmdBin(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	tb := newTestbed(t, ctx, Config{Hosts: 2, SwarmdBin: bin, Images: []string{testImage}})
	h1, h2 := tb.Host(1), tb.Host(2)

	// Each host has its own engine, hostname and image.
	for _, h := range tb.Hosts() {
		name, err := h.Engine(ctx, "info", "--format", "{{.Name}}")
		if err != nil || name != h.Name {
			t.Fatalf("%s engine name %q: %v", h.Name, name, err)
		}
		if _, err := h.Engine(ctx, "image", "inspect", testImage); err != nil {
			t.Fatalf("%s: image: %v", h.Name, err)
		}
	}
	id1, _ := h1.Engine(ctx, "info", "--format", "{{.ID}}")
	id2, _ := h2.Engine(ctx, "info", "--format", "{{.ID}}")
	if id1 == id2 {
		t.Fatalf("engines share ID %s", id1)
	}

	// A published port on h1 answers from h2, and a partition cuts it.
	if out, err := h1.Engine(ctx, "run", "-d", "--init", "--name", "web", "-p", "18080:80", testImage); err != nil {
		t.Fatalf("run web: %v\n%s", err, out)
	}
	url := "http://" + h1.IP + ":18080/"
	c2 := h2.HTTPClient()
	eventually(t, 20*time.Second, "web on h1 from h2", func() error {
		body, err := get(ctx, c2, url)
		if err == nil && !strings.HasSuffix(body, " v1") {
			return fmt.Errorf("body %q", body)
		}
		return err
	})
	if out, err := h2.Exec(ctx, "curl", "-sS", "-m", "2", url); err != nil || !strings.HasSuffix(out, " v1") {
		t.Fatalf("curl from h2: %q, %v", out, err)
	}
	if err := tb.Partition([]*Host{h1}, []*Host{h2}); err != nil {
		t.Fatal(err)
	}
	if body, err := get(ctx, c2, url); err == nil {
		t.Fatalf("partitioned, yet h2 got %q from h1", body)
	}
	if out, err := h2.Exec(ctx, "curl", "-sS", "-m", "1", url); err == nil {
		t.Fatalf("partitioned, yet curl from h2 got %q", out)
	}
	if err := tb.Heal(); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "web on h1 from h2 after Heal", func() error {
		_, err := get(ctx, c2, url)
		return err
	})

	// Netem: a delay where the kernel has netem, else emulated loss.
	switch err := h2.Netem(ctx, "delay 200ms"); {
	case errors.Is(err, errors.ErrUnsupported):
		t.Logf("no netem qdisc: %v", err)
		if err := h2.Netem(ctx, "loss 100%"); err != nil {
			t.Fatal(err)
		}
		if body, err := get(ctx, c2, url); err == nil {
			t.Fatalf("loss 100%%, yet h2 got %q from h1", body)
		}
	case err != nil:
		t.Fatal(err)
	default:
		start := time.Now()
		if _, err := get(ctx, c2, url); err != nil {
			t.Fatalf("with netem: %v", err)
		}
		if d := time.Since(start); d < 400*time.Millisecond {
			t.Errorf("netem delay 200ms: request took only %s", d)
		}
	}
	if err := h2.ClearNetem(ctx); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "web on h1 from h2 after ClearNetem", func() error {
		_, err := get(ctx, c2, url)
		return err
	})

	// A two-node swarm.
	for _, h := range tb.Hosts() {
		if err := h.StartSwarmd(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if out, err := h1.Docker(ctx, "swarm", "init", "--advertise-addr", h1.IP); err != nil {
		t.Fatalf("swarm init: %v\n%s", err, out)
	}
	token, err := h1.Docker(ctx, "swarm", "join-token", "-q", "worker")
	if err != nil {
		t.Fatalf("join-token: %v", err)
	}
	if out, err := h2.Docker(ctx, "swarm", "join", "--token", token, h1.IP+":2377"); err != nil {
		t.Fatalf("swarm join: %v\n%s", err, out)
	}
	eventually(t, 60*time.Second, "2 nodes Ready", func() error {
		out, err := h1.Docker(ctx, "node", "ls", "--format", "{{.Hostname}} {{.Status}}")
		if err != nil {
			return err
		}
		if strings.Count(out, "Ready") != 2 || !strings.Contains(out, "h1 Ready") || !strings.Contains(out, "h2 Ready") {
			return fmt.Errorf("node ls: %q", out)
		}
		return nil
	})
	out, _ := h1.Docker(ctx, "node", "ls")
	t.Logf("node ls:\n%s", out)

	// The engine restarts on its data root.
	if err := h2.StopEngine(ctx); err != nil {
		t.Fatal(err)
	}
	if err := h2.StartEngine(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := h2.Engine(ctx, "image", "inspect", testImage); err != nil {
		t.Fatalf("h2 after engine restart: %v", err)
	}

	// Pause / Resume / Stop / Kill.
	if err := h2.Pause(); err != nil {
		t.Fatal(err)
	}
	if err := h2.Resume(); err != nil {
		t.Fatal(err)
	}
	if err := h2.StopSwarmd(ctx); err != nil {
		t.Fatal(err)
	}
	if err := h1.Kill(); err != nil {
		t.Fatal(err)
	}
}

// TestNewTimings measures New for 2 and 3 hosts (with the test image).
func TestNewTimings(t *testing.T) {
	requireRootEngine(t)
	if testing.Short() {
		t.Skip("short")
	}
	for _, n := range []int{2, 3} {
		t.Run(fmt.Sprintf("%dhosts", n), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			defer cancel()
			tb := newTestbed(t, ctx, Config{Hosts: n, Images: []string{testImage}})
			for _, h := range tb.Hosts() {
				if _, err := h.Engine(ctx, "image", "inspect", testImage); err != nil {
					t.Fatalf("%s: image: %v", h.Name, err)
				}
			}
		})
	}
}

// TestNewFails checks that a failing New leaves nothing behind.
func TestNewFails(t *testing.T) {
	requireRootEngine(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	tb, err := New(ctx, Config{Hosts: 2, Images: []string{"swarmd-test:INVALID TAG"}, Logf: t.Logf})
	if err == nil {
		tb.Close()
		t.Fatal("New with an invalid image tag succeeded")
	}
	msg, _, _ := strings.Cut(err.Error(), "\n")
	t.Logf("New: %s", msg)
	assertClean(t)
}
