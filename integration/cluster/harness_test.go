//go:build integration

// Package cluster tests clusters of real swarmd processes, each with its own
// state directory and its own loopback address (127.0.0.x), driven with the
// real swarmctl, as an operator would.
package cluster

import (
	"bytes"
	"context"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/openswarm/swarmd/integration/testbed"
)

var buildOnce = sync.OnceValues(testbed.BuildBinaries)

func binDir(t *testing.T) string {
	t.Helper()
	dir, err := buildOnce()
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

// proc is one swarmd process.
type proc struct {
	t      *testing.T
	name   string
	addr   string // remote API host:port
	dir    string
	args   []string
	cmd    *exec.Cmd
	log    *bytes.Buffer
	mu     sync.Mutex
	start  time.Time
	exited chan struct{}
}

func (p *proc) socket() string { return filepath.Join(p.dir, "swarmd.sock") }

type syncBuffer struct {
	mu  *sync.Mutex
	buf *bytes.Buffer
}

func (s syncBuffer) Write(b []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.Write(b)
}

func (p *proc) logs() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.log.String()
}

// startSwarmd runs swarmd with its own state dir on addr.
func startSwarmd(t *testing.T, name, addr string, extra ...string) *proc {
	t.Helper()
	p := &proc{t: t, name: name, addr: addr, dir: filepath.Join(t.TempDir(), name), log: &bytes.Buffer{}}
	p.args = append([]string{"-d", p.dir, "--listen-remote-api", addr, "--hostname", name,
		"--listen-control-api", p.socket(), "--listen-engine-api", filepath.Join(p.dir, "docker.sock"),
		"--listen-mesh=", "--network-plugin=", "--log-level", "debug"}, extra...)
	p.run(t)
	t.Cleanup(func() { p.kill() })
	return p
}

func (p *proc) run(t *testing.T) {
	t.Helper()
	p.cmd = exec.Command(filepath.Join(binDir(t), "swarmd"), p.args...)
	p.cmd.Stdout = syncBuffer{&p.mu, p.log}
	p.cmd.Stderr = syncBuffer{&p.mu, p.log}
	p.start = time.Now()
	p.exited = make(chan struct{})
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", p.name, err)
	}
	go func() { _ = p.cmd.Wait(); close(p.exited) }()
}

// restart starts the process again on the same state, without join flags.
func (p *proc) restart(t *testing.T) {
	t.Helper()
	var kept []string
	for i := 0; i < len(p.args); i++ {
		switch p.args[i] {
		case "--join-addr", "--join-token":
			i++
		case "--init":
		default:
			kept = append(kept, p.args[i])
		}
	}
	p.args = kept
	p.run(t)
}

func (p *proc) kill() {
	if p.cmd != nil && p.cmd.Process != nil {
		_ = p.cmd.Process.Signal(syscall.SIGKILL)
		<-p.exited
	}
}

func (p *proc) hasExited() bool {
	select {
	case <-p.exited:
		return true
	default:
		return false
	}
}

func (p *proc) waitReady(t *testing.T) time.Duration {
	t.Helper()
	eventually(t, 30*time.Second, p.name+" to log \"node is ready\"", func() bool {
		return strings.Contains(p.logs(), "node is ready")
	}, p)
	return time.Since(p.start)
}

func swarmctl(t *testing.T, socket string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(binDir(t), "swarmctl"), append([]string{"-s", socket}, args...)...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

var tokenRE = regexp.MustCompile(`(Worker|Manager): (SWMTKN-1-\S+)`)

func joinTokens(t *testing.T, socket string) (worker, manager string) {
	t.Helper()
	out, err := swarmctl(t, socket, "cluster", "inspect", "default")
	if err != nil {
		t.Fatalf("cluster inspect: %v\n%s", err, out)
	}
	for _, m := range tokenRE.FindAllStringSubmatch(out, -1) {
		if m[1] == "Worker" {
			worker = m[2]
		} else {
			manager = m[2]
		}
	}
	if worker == "" || manager == "" {
		t.Fatalf("no join tokens in:\n%s", out)
	}
	return worker, manager
}

func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool, procs ...*proc) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			for _, p := range procs {
				t.Logf("--- %s logs ---\n%s", p.name, tail(p.logs(), 40))
			}
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
