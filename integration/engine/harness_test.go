//go:build integration

// Package engine tests swarmd as docker users meet it: real swarmd
// processes beside the real Docker Engine, driven with the real docker CLI
// (and the Go SDK) through swarmd's Engine API socket. Several swarmd
// hosts may share the one engine: each only touches the containers
// labelled with its own node ID.
package engine

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/openswarm/swarmd/integration/testbed"
	"github.com/openswarm/swarmd/internal/testimage"
)

// Test images: the same program in two versions, built offline.
const (
	imageV1 = "swarmd-test:v1"
	imageV2 = "swarmd-test:v2"
)

var buildOnce = sync.OnceValues(testbed.BuildBinaries)

var imagesOnce = sync.OnceValue(func() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if err := testimage.Build(ctx, imageV1); err != nil {
		return err
	}
	return testimage.Build(ctx, imageV2)
})

// requireEngine skips the test when no engine answers, unless CI=true.
func requireEngine(t *testing.T) {
	t.Helper()
	out, err := exec.Command("docker", "-H", "unix:///var/run/docker.sock", "version", "--format", "{{.Server.APIVersion}}").CombinedOutput()
	if err == nil {
		if err := imagesOnce(); err != nil {
			t.Fatalf("test images: %v", err)
		}
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("CI=true and the Docker engine does not answer: %v\n%s", err, out)
	}
	t.Skipf("no Docker engine: %v", err)
}

// host is one swarmd process beside the engine.
type host struct {
	t      *testing.T
	name   string
	ip     string // the address of its cluster API
	nodeID string // once in a swarm (see remember)
	dir    string
	cmd    *exec.Cmd
	log    *syncBuffer
	exited chan struct{}
}

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (s *syncBuffer) Write(b []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.Write(b)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.String()
}

// startHost starts a swarmd named name whose cluster API will listen on
// ip; it is inactive until `docker swarm init/join`.
func startHost(t *testing.T, name, ip string) *host {
	t.Helper()
	requireEngine(t)
	dir, err := os.MkdirTemp("", "swarmd-"+name+"-")
	if err != nil {
		t.Fatal(err)
	}
	h := &host{t: t, name: name, ip: ip, dir: dir}
	h.run()
	t.Cleanup(func() {
		// Leave (removes the node's containers), then stop.
		h.remember()
		_, _ = h.dockerErr("swarm", "leave", "--force")
		h.stop()
		if h.nodeID != "" {
			// A host killed mid-test leaves its containers behind.
			out, _ := exec.Command("docker", "-H", "unix:///var/run/docker.sock", "ps", "-aq",
				"--filter", "label=com.docker.swarm.node.id="+h.nodeID).Output()
			if ids := strings.Fields(string(out)); len(ids) > 0 {
				_ = exec.Command("docker", append([]string{"-H", "unix:///var/run/docker.sock", "rm", "-f"}, ids...)...).Run()
			}
		}
		if t.Failed() {
			t.Logf("swarmd %s log (tail):\n%s", name, tail(h.log.String(), 60))
		}
		// A swarmd killed leaves its plugin socket, which the engine
		// would try to activate on every plugin lookup from then on.
		_ = os.Remove("/run/docker/plugins/swarmd-" + name + ".sock")
		_ = os.RemoveAll(dir)
	})
	return h
}

func (h *host) socket() string { return filepath.Join(h.dir, "docker.sock") }

// run starts h's swarmd with the harness's flags and extra, and waits
// until it answers.
func (h *host) run(extra ...string) {
	h.t.Helper()
	bin, err := buildOnce()
	if err != nil {
		h.t.Fatal(err)
	}
	h.log = &syncBuffer{}
	h.cmd = exec.Command(filepath.Join(bin, "swarmd"), append([]string{
		"--state-dir", filepath.Join(h.dir, "swarm"),
		"--listen-engine-api", h.socket(),
		"--listen-control-api", filepath.Join(h.dir, "control.sock"),
		"--listen-remote-api", h.ip + ":2377",
		// Hosts share the machine: each binds its mesh to its own address.
		"--listen-mesh", h.ip + ":7946", "--mesh-bind-addr", h.ip,
		// ... and serves its network plugin under its own name.
		"--network-plugin", "swarmd-" + h.name,
		"--hostname", h.name,
		"--engine-addr", "unix:///var/run/docker.sock",
		"--log-level", "debug"}, extra...)...)
	h.cmd.Stdout, h.cmd.Stderr = h.log, h.log
	if err := h.cmd.Start(); err != nil {
		h.t.Fatal(err)
	}
	h.exited = make(chan struct{})
	go func() { _ = h.cmd.Wait(); close(h.exited) }()
	eventually(h.t, 20*time.Second, "swarmd "+h.name+" answers on its socket", func() bool {
		_, err := h.dockerErr("version", "--format", "{{.Server.APIVersion}}")
		return err == nil
	})
}

// stop stops swarmd with SIGTERM (SIGKILL after 30 s).
func (h *host) stop() {
	if h.cmd == nil || h.cmd.Process == nil {
		return
	}
	_ = h.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-h.exited:
	case <-time.After(30 * time.Second):
		_ = h.cmd.Process.Kill()
		<-h.exited
	}
}

// kill stops swarmd with SIGKILL.
func (h *host) kill() {
	_ = h.cmd.Process.Kill()
	<-h.exited
}

// dockerErr runs the docker CLI against this swarmd.
func (h *host) dockerErr(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "docker", args...)
	cmd.Env = append(os.Environ(), "DOCKER_HOST=unix://"+h.socket(), "DOCKER_CONFIG="+filepath.Join(h.dir, "docker-config"), "DOCKER_CLI_HINTS=false")
	out, err := cmd.CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

// docker runs the docker CLI against this swarmd and fails the test if it
// fails.
func (h *host) docker(args ...string) string {
	h.t.Helper()
	out, err := h.dockerErr(args...)
	if err != nil {
		h.t.Fatalf("docker %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// engine runs the docker CLI against the engine itself.
func engine(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command("docker", append([]string{"-H", "unix:///var/run/docker.sock"}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("docker %s (engine): %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// remember records the host's node ID while swarmd answers.
func (h *host) remember() {
	if id, err := h.dockerErr("info", "--format", "{{.Swarm.NodeID}}"); err == nil && id != "" {
		h.nodeID = id
	}
}

// initSwarm runs `docker swarm init` on h and returns the node ID.
func (h *host) initSwarm() string {
	h.t.Helper()
	h.docker("swarm", "init", "--advertise-addr", h.ip, "--listen-addr", h.ip+":2377")
	h.remember()
	return h.nodeID
}

// eventually polls cond until it holds or the timeout passes.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting until %s", timeout, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
